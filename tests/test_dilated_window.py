import copy
import itertools
import math

import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from spikingjelly.activation_based.model import parametric_lif_net

from sj_ext.functional import LIFParameters, lif_multi_step, lif_step, run_steps
from sj_ext.functional.grouping import (
    group_views,
    merge_groups,
    partition,
    split_groups,
    unpartition,
)
from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF
from sj_ext.surrogate import DynamicRect

DT = torch.float64


# ----------------------------------------------------------------------------------------------
# An independent re-statement of docs/methods.md, Grouping (and DS-ATGO for the adaptive
# threshold): explicit index sets per group, a plain loop over groups and steps.
def ref_groups(sizes, grid, window):
    """Every group's flat (row-major) positions over the grouped dims, local order row-major."""
    per_dim = []
    for size, g in zip(sizes, grid, strict=True):
        s = size // g
        if window == "block":  # contiguous window a*s .. (a+1)*s - 1
            per_dim.append([[a * s + i for i in range(s)] for a in range(g)])
        else:  # dilated: positions p with p % g == a
            per_dim.append([[p for p in range(size) if p % g == a] for a in range(g)])
    groups = []
    for index in itertools.product(*(range(g) for g in grid)):  # row-major order of (a, b, ..)
        positions = []
        for coord in itertools.product(*(per_dim[d][a] for d, a in enumerate(index))):
            flat = 0
            for c, size in zip(coord, sizes, strict=True):
                flat = flat * size + c
            positions.append(flat)
        groups.append(positions)
    return groups


OMEGA = {
    "sine": lambda r, o: 2 * torch.sin(math.pi / 4 * r * torch.cos(math.pi / 4 * o)),
    "add": lambda r, o: r + o,
    "none": lambda r, o: o,
}


def ref_forward(
    x_seq,
    *,
    gdims,
    grid,
    window,
    omega,
    k,
    decay_input,
    v_reset,
    detach_reset,
    fire,
    v_threshold=1.0,
    adaptive=None,
):
    """Returns spikes [T, N, *], the last membrane and the per-step thresholds.

    ``fire(z, sigma)`` stands for Θ with its surrogate; ``adaptive`` is None or a dict with
    ``f_c, stats, momentum, training, running`` (a tensor [T] or [T, C], updated in place)."""
    rest = 0.0 if v_reset is None else v_reset
    u = torch.full_like(x_seq[0], rest)
    n_g = len(gdims)
    tail = list(range(x_seq.dim() - 1 - n_g, x_seq.dim() - 1))
    sizes = [x_seq.shape[1 + d] for d in gdims]
    groups = ref_groups(sizes, grid, window)
    spikes, thresholds = [], []
    for t in range(x_seq.shape[0]):
        xf = x_seq[t].movedim(list(gdims), tail).flatten(-n_g)
        uf = u.movedim(list(gdims), tail).flatten(-n_g)
        hf = torch.zeros_like(xf)
        prev = None
        for pos in groups:
            own = uf[..., pos]
            m = own if prev is None else omega(prev, own)
            xg = xf[..., pos]
            if decay_input:
                hg = m + k * (xg - (m - rest))
            else:
                hg = m - k * (m - rest) + xg
            hf = hf.index_copy(-1, torch.tensor(pos), hg)
            prev = hg
        h = hf.unflatten(-1, sizes).movedim(tail, list(gdims))
        sigma = None
        if adaptive is None:
            v_th = torch.tensor(v_threshold, dtype=h.dtype)
        else:
            hd = h.detach()
            if adaptive["stats"] == "layer":
                n = hd.numel()
                mu = hd.sum() / n
                sigma = torch.sqrt(((hd - mu) ** 2).sum() / (n - 1))
            else:  # per channel (dim 1 of [N, C, *])
                hc = hd.transpose(0, 1).reshape(hd.shape[1], -1)
                n = hc.shape[1]
                mu = hc.sum(1) / n
                sigma = torch.sqrt(((hc - mu[:, None]) ** 2).sum(1) / (n - 1))
            if adaptive["training"]:
                v_th = adaptive["f_c"] * (mu + sigma)
                m_ = adaptive["momentum"]
                adaptive["running"][t] = (1 - m_) * adaptive["running"][t] + m_ * v_th
            else:
                v_th = adaptive["running"][t].clone()
            if adaptive["stats"] == "channel":
                shape = (1, -1) + (1,) * (h.dim() - 2)
                v_th, sigma = v_th.view(shape), sigma.view(shape)
        s = fire(h - v_th, sigma)
        s_r = s.detach() if detach_reset else s
        u = h - v_th * s_r if v_reset is None else h * (1 - s_r) + v_reset * s_r
        spikes.append(s)
        thresholds.append(v_th.detach().flatten())
    return torch.stack(spikes), u, torch.stack(thresholds)


def fire_sigmoid(alpha, spiking=True):
    """SpikingJelly's Sigmoid surrogate: Θ forward, alpha*sg*(1-sg) backward (or the smooth g)."""

    def fire(z, sigma):
        g = torch.sigmoid(alpha * z)
        if not spiking:
            return g
        return (z >= 0).to(z.dtype) + (g - g.detach())

    return fire


def fire_dynamic_rect(a0=1.0, v0=1.0):
    """DS-ATGO's rectangle of width a = a0 (1 + tanh(sigma - v0)), straight-through."""

    def fire(z, sigma):
        a = a0 * (1 + torch.tanh(sigma - v0))
        g = torch.clamp(z / a + 0.5, 0.0, 1.0)
        return (z >= 0).to(z.dtype) + (g - g.detach())

    return fire


def run(node, x):
    functional.reset_net(node)
    return node(x) if node.step_mode == "m" else torch.stack([node(xt) for xt in x])


# ----------------------------------------------------------------------------------------------
# The partition: every position in exactly one group, and scattered back in place.
@pytest.mark.parametrize("window", ["block", "dilated"])
@pytest.mark.parametrize(
    "shape,dims,grid",
    [
        ((2, 3, 4, 6), (2, 3), (2, 3)),
        ((2, 12, 5), (1,), (4,)),
        ((1, 4, 6, 4), (1, 2, 3), (2, 3, 2)),
    ],
)
def test_partition_and_inverse_are_exact(window, shape, dims, grid):
    x = torch.arange(math.prod(shape), dtype=DT).view(shape)
    parts = partition(x, dims, grid, window)
    assert parts.shape[0] == math.prod(grid)
    # every position of every sample in exactly one group
    values = parts.flatten()
    assert values.numel() == x.numel()
    assert torch.equal(values.sort().values, x.flatten())
    # each group holds exactly the reference index set, local positions in row-major order
    rest = [d for d in range(x.dim()) if d not in dims]
    x_flat = x.permute(*rest, *dims).flatten(len(rest))
    for g, pos in enumerate(ref_groups([shape[d] for d in dims], grid, window)):
        got = parts[g].permute(*rest, *dims).flatten(len(rest))
        assert torch.equal(got, x_flat[..., pos])
    assert torch.equal(unpartition(parts, dims, grid, window), x)
    # the autograd path: views forward, one merge backward
    xg = x.clone().requires_grad_(True)
    views = split_groups(xg, dims, grid, window)
    for v, ref in zip(views, group_views(x, dims, grid, window), strict=True):
        assert torch.equal(v, ref)
    w = torch.randn(x.shape, dtype=DT)
    merged = merge_groups([2 * v for v in views], dims, grid, window)
    assert torch.equal(merged, 2 * x)
    (g,) = torch.autograd.grad((merged * w).sum(), xg)
    assert torch.equal(g, 2 * w)


def test_dilated_groups_span_the_map_and_blocks_do_not():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    dilated = partition(x, (2, 3), (2, 2), "dilated")
    block = partition(x, (2, 3), (2, 2), "block")
    assert dilated[1].flatten().tolist() == [1.0, 3.0, 9.0, 11.0]  # i % 2 == 0, j % 2 == 1
    assert block[1].flatten().tolist() == [2.0, 3.0, 6.0, 7.0]  # the top-right window


def test_partition_gradcheck():
    x = torch.randn(1, 2, 4, 6, dtype=DT, requires_grad=True)

    def f(x):
        p = partition(x, (2, 3), (2, 3), "dilated")
        return unpartition(p.flip(0) * p, (2, 3), (2, 3), "dilated")

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


# ----------------------------------------------------------------------------------------------
# Parity with the re-statement: forward and surrogate gradients.
HARD = dict(tau=2.0, decay_input=True, v_reset=0.0, detach_reset=False)
SOFT = dict(tau=1.25, decay_input=False, v_reset=None, detach_reset=True)
PROJECTIONS = ["sine", "add", "none", "callable"]


def _projection(name):
    if name == "callable":
        return lambda r, o: 0.5 * r + torch.tanh(o)
    return name


def _omega(name):
    if name == "callable":
        return lambda r, o: 0.5 * r + torch.tanh(o)
    return OMEGA[name]


@pytest.mark.parametrize("cfg", [HARD, SOFT], ids=["hard", "soft"])
@pytest.mark.parametrize("projection", PROJECTIONS)
@pytest.mark.parametrize("window", ["block", "dilated"])
def test_parity_with_method_equations(cfg, projection, window):
    torch.manual_seed(0)
    T, grid = 3, (2, 2)
    x = (1.5 * torch.randn(T, 2, 3, 4, 6, dtype=DT)).requires_grad_(True)
    node = DilatedWindowLIF(
        **cfg,
        groups=grid,
        window=window,
        projection=_projection(projection),
        v_threshold=0.7,
        surrogate_function=surrogate.Sigmoid(alpha=3.0),
        step_mode="m",
    ).to(DT)
    s = run(node, x)
    x_ref = x.detach().clone().requires_grad_(True)
    s_ref, u_ref, _ = ref_forward(
        x_ref,
        gdims=(2, 3),
        grid=grid,
        window=window,
        omega=_omega(projection),
        k=1.0 / cfg["tau"],
        decay_input=cfg["decay_input"],
        v_reset=cfg["v_reset"],
        detach_reset=cfg["detach_reset"],
        fire=fire_sigmoid(3.0),
        v_threshold=0.7,
    )
    assert torch.equal(s, s_ref)
    assert 0 < s.mean() < 1
    torch.testing.assert_close(node.v, u_ref.detach())
    w, wv = torch.randn_like(s), torch.randn_like(u_ref)
    (g,) = torch.autograd.grad((s * w).sum() + (node.v * wv).sum(), x)
    (g_ref,) = torch.autograd.grad((s_ref * w).sum() + (u_ref * wv).sum(), x_ref)
    assert g.abs().sum() > 0
    torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("window", ["block", "dilated"])
@pytest.mark.parametrize("projection", ["sine", "add"])
def test_smooth_gradients_gradcheck_and_reference(window, projection):
    torch.manual_seed(1)
    x = torch.randn(2, 1, 2, 4, 4, dtype=DT, requires_grad=True)
    sg = surrogate.Sigmoid(alpha=2.0, spiking=False)
    node = DilatedWindowLIF(
        tau=2.0,
        learnable_tau=True,
        window=window,
        projection=projection,
        v_reset=None,
        surrogate_function=sg,
        step_mode="m",
    ).to(DT)

    # gradcheck of the implementation (autograd vs finite differences), x and tau's w
    w0 = node.w.detach().clone().requires_grad_(True)

    def f_w(x, w):
        functional.reset_net(node)
        return torch.func.functional_call(node, {"w": w}, (x,))

    assert torch.autograd.gradcheck(f_w, (x, w0))
    # against the re-statement with the same smooth surrogate
    y = f_w(x, w0)
    w_ref = w0.detach().clone().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    y_ref, _, _ = ref_forward(
        x_ref,
        gdims=(2, 3),
        grid=(2, 2),
        window=window,
        omega=OMEGA[projection],
        k=torch.sigmoid(w_ref),
        decay_input=True,
        v_reset=None,
        detach_reset=False,
        fire=fire_sigmoid(2.0, spiking=False),
    )
    torch.testing.assert_close(y, y_ref)
    wy = torch.randn_like(y)
    grads = torch.autograd.grad((y * wy).sum(), (x, w0))
    grads_ref = torch.autograd.grad((y_ref * wy).sum(), (x_ref, w_ref))
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b)


def test_groups_interact_within_one_step():
    """At T = 1 a later group's output depends on an earlier group's input (not with 'none')."""
    torch.manual_seed(2)
    x = torch.randn(1, 1, 1, 4, 4, dtype=DT, requires_grad=True)
    grads = {}
    for projection in ("sine", "none"):
        node = DilatedWindowLIF(
            projection=projection,
            window="dilated",
            surrogate_function=surrogate.Sigmoid(spiking=False),
            step_mode="m",
        ).to(DT)
        y = node(x)
        (grads[projection],) = torch.autograd.grad(y[0, 0, 0, 1, 1], x)  # group (1, 1): last
    # own position only for 'none'; the earlier groups' position (i', j') = (0, 0) too for 'sine'
    assert grads["none"].count_nonzero() == 1
    for i, j in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        assert grads["sine"][0, 0, 0, i, j] != 0
    assert grads["sine"].count_nonzero() == 4


def test_sequence_grouping_is_the_recurrent_variant():
    torch.manual_seed(3)
    T, L, D, g = 2, 8, 3, 4
    x = (2.0 * torch.randn(T, 2, L, D, dtype=DT)).requires_grad_(True)
    node = DilatedWindowLIF(
        dims=(-2,), groups=g, window="block", surrogate_function=surrogate.ATan(), step_mode="m"
    ).to(DT)
    s = node(x)
    x_ref = x.detach().clone().requires_grad_(True)
    atan = surrogate.ATan()

    def fire(z, sigma):
        return atan(z)  # SpikingJelly's own ATan is the surrogate under test here

    s_ref, _, _ = ref_forward(
        x_ref,
        gdims=(1,),
        grid=(g,),
        window="block",
        omega=OMEGA["sine"],
        k=0.5,
        decay_input=True,
        v_reset=0.0,
        detach_reset=False,
        fire=fire,
    )
    assert torch.equal(s, s_ref)
    plain = DilatedWindowLIF(dims=(-2,), groups=g, projection="none", step_mode="m").to(DT)
    assert not torch.equal(s, plain(x.detach()))
    w = torch.randn_like(s)
    (gr,) = torch.autograd.grad((s * w).sum(), x)
    (gr_ref,) = torch.autograd.grad((s_ref * w).sum(), x_ref)
    torch.testing.assert_close(gr, gr_ref)


# ----------------------------------------------------------------------------------------------
# projection='none' is SpikingJelly's LIF / PLIF.
@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("learnable", [False, True])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_none_projection_equals_spikingjelly_lif(v_reset, decay_input, learnable, step_mode):
    torch.manual_seed(4)
    kw = dict(
        decay_input=decay_input,
        v_threshold=0.8,
        v_reset=v_reset,
        surrogate_function=surrogate.Sigmoid(alpha=3.0),
        detach_reset=learnable,
        step_mode=step_mode,
    )
    ours = DilatedWindowLIF(tau=3.0, learnable_tau=learnable, projection="none", **kw)
    ref = neuron.ParametricLIFNode(init_tau=3.0, **kw) if learnable else neuron.LIFNode(3.0, **kw)
    x = torch.randn(5, 3, 2, 4, 6)
    outs, grads = [], []
    for node in (ours, ref):
        xi = x.clone().requires_grad_(True)
        s = run(node, xi)
        loss = (s * torch.linspace(-1, 1, 6)).sum() + (node.v**2).sum()
        grads.append(torch.autograd.grad(loss, [xi] + list(node.parameters())))
        outs.append((s, node.v))
    assert torch.equal(outs[0][0], outs[1][0])
    assert outs[0][0].sum() > 0
    torch.testing.assert_close(outs[0][1], outs[1][1])
    for g, g_ref in zip(*grads, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Combined with DS-ATGO's adaptive threshold.
@pytest.mark.parametrize("stats", ["layer", "channel"])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_adaptive_threshold_parity(stats, step_mode):
    torch.manual_seed(5)
    T, C, momentum, f_c = 3, 3, 0.2, 0.9
    node = DilatedWindowLIF(
        threshold="adaptive",
        stats=stats,
        f_c=f_c,
        momentum=momentum,
        window="block",
        step_mode=step_mode,
    ).to(DT)
    assert isinstance(node.surrogate_function, DynamicRect)
    running = torch.ones(T, dtype=DT) if stats == "layer" else torch.ones(T, C, dtype=DT)
    adaptive = dict(f_c=f_c, stats=stats, momentum=momentum, running=running)
    kw = dict(
        gdims=(2, 3),
        grid=(2, 2),
        window="block",
        omega=OMEGA["sine"],
        k=0.5,
        decay_input=True,
        v_reset=0.0,
        detach_reset=False,
        fire=fire_dynamic_rect(),
    )
    for _ in range(3):  # several training batches: the running thresholds accumulate
        x = (1.5 * torch.randn(T, 4, C, 4, 4, dtype=DT)).requires_grad_(True)
        s = run(node, x)
        x_ref = x.detach().clone().requires_grad_(True)
        s_ref, _, th_ref = ref_forward(x_ref, adaptive=dict(adaptive, training=True), **kw)
        assert torch.equal(s, s_ref)
        torch.testing.assert_close(node.threshold_seq, th_ref.view(node.threshold_seq.shape))
        torch.testing.assert_close(node.running_threshold, running)
        w = torch.randn_like(s)
        (g,) = torch.autograd.grad((s * w).sum(), x)
        (g_ref,) = torch.autograd.grad((s_ref * w).sum(), x_ref)
        assert g.abs().sum() > 0
        torch.testing.assert_close(g, g_ref)
    assert not torch.allclose(running, torch.ones_like(running))
    node.eval()
    x = 1.5 * torch.randn(T, 4, C, 4, 4, dtype=DT)
    before = running.clone()
    s_ref, _, th_ref = ref_forward(x, adaptive=dict(adaptive, training=False), **kw)
    assert torch.equal(run(node, x), s_ref)
    torch.testing.assert_close(node.running_threshold, before)
    torch.testing.assert_close(node.threshold_seq, th_ref.view(node.threshold_seq.shape))


def test_adaptive_statistics_cover_the_whole_charged_step():
    """V_th is taken over h of every group after all groups are charged (the sine-coupled h)."""
    torch.manual_seed(6)
    x = torch.randn(2, 6, 8, dtype=DT)
    k = 0.5
    dims, grid = (1,), (3,)
    params = LIFParameters(
        dims=dims,
        groups=grid,
        window="dilated",
        projection="sine",
        decay_input=True,
        v_reset=0.0,
        surrogate_function=DynamicRect(),
        detach_reset=False,
        f_c=1.0,
    )
    spike, v, h, v_th, sigma = lif_step(x, torch.zeros_like(x), k, None, params)
    # the charged membrane, group by group: rows 0,3 | 1,4 | 2,5 from rest
    h_ref = torch.zeros_like(x)
    prev = None
    for a in range(3):
        rows = [a, a + 3]
        m = torch.zeros(2, 8, dtype=DT) if prev is None else OMEGA["sine"](prev, 0.0 * prev)
        prev = m + k * (x[:, rows] - m)
        h_ref[:, rows] = prev
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(v_th, h_ref.mean() + h_ref.std())
    torch.testing.assert_close(sigma, h_ref.std())
    assert torch.equal(spike, (h_ref >= v_th).to(DT))


# ----------------------------------------------------------------------------------------------
# 's' and 'm' agree: forward, records, buffers and every gradient.
@pytest.mark.parametrize(
    "cfg",
    [
        dict(),
        dict(window="block", projection="add", tau=1.25, decay_input=False, learnable_tau=True),
        dict(v_reset=None, threshold="adaptive", stats="channel"),
        dict(threshold="adaptive", learnable_tau=True, detach_reset=True, groups=(1, 3)),
        dict(surrogate_function=DynamicRect(), groups=(3, 1), window="block"),
    ],
)
def test_single_and_multi_step_agree(cfg):
    torch.manual_seed(7)
    x = 1.5 * torch.randn(4, 2, 3, 6, 6, dtype=DT)
    v_weight = torch.randn(2, 3, 6, 6, dtype=DT)
    results = []
    for mode in ("s", "m"):
        node = DilatedWindowLIF(**cfg, step_mode=mode).to(DT)
        xi = x.clone().requires_grad_(True)
        for _ in range(2):  # the second batch runs on the first one's running thresholds
            s = run(node, xi)
        loss = (s * torch.linspace(-1, 2, 6, dtype=DT)).sum() + (node.v * v_weight).sum()
        grads = torch.autograd.grad(loss, [xi] + list(node.parameters()))
        records = (node.threshold_seq, node.sigma_seq, node.width_seq, node.running_threshold)
        results.append((s, node.v, records, grads))
    (s_s, v_s, rec_s, g_s), (s_m, v_m, rec_m, g_m) = results
    assert torch.equal(s_s, s_m)
    assert 0 < s_s.mean() < 1
    torch.testing.assert_close(v_s, v_m, rtol=1e-10, atol=1e-12)
    for a, b in zip(rec_s, rec_m, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(g_s, g_m, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_multi_step_in_chunks_continues_the_sequence():
    torch.manual_seed(8)
    x = torch.randn(5, 2, 3, 4, 4)
    whole = DilatedWindowLIF(threshold="adaptive", step_mode="m")
    chunked = copy.deepcopy(whole)
    s = whole(x)
    s_chunks = torch.cat([chunked(x[:2]), chunked(x[2:])])
    assert torch.equal(s, s_chunks)
    torch.testing.assert_close(whole.running_threshold, chunked.running_threshold)
    torch.testing.assert_close(whole.threshold_seq, chunked.threshold_seq)
    assert whole.time_step == chunked.time_step == 5


def test_fixed_threshold_records_and_reset_net():
    node = DilatedWindowLIF(step_mode="s")
    for _ in range(3):
        node(torch.randn(2, 3, 4, 4))
    assert node.time_step == 3
    assert torch.equal(node.threshold_seq, torch.ones(3))
    assert node.sigma_seq is None and node.width_seq is None
    assert node.running_threshold.numel() == 0  # only an adaptive threshold runs
    functional.reset_net(node)
    assert node.time_step == 0 and node.threshold_seq is None and node.v == 0.0


def test_state_dict_round_trip_of_running_thresholds():
    torch.manual_seed(9)

    def make():
        return torch.nn.Sequential(
            layer.Conv2d(2, 4, 3, padding=1),
            DilatedWindowLIF(threshold="adaptive", stats="channel"),
            layer.Conv2d(4, 4, 3, padding=1),
            DilatedWindowLIF(threshold="adaptive", window="block"),
        )

    net = make()
    functional.set_step_mode(net, "m")
    for _ in range(2):
        net(torch.randn(3, 2, 2, 8, 8))
        functional.reset_net(net)
    state = net.state_dict()
    assert state["1.running_threshold"].shape == (3, 4)
    assert state["3.running_threshold"].shape == (3,)
    fresh = make()
    functional.set_step_mode(fresh, "m")
    fresh.load_state_dict(state)
    net.eval(), fresh.eval()
    x = torch.randn(3, 2, 2, 8, 8)
    assert torch.equal(net(x), fresh(x))


# ----------------------------------------------------------------------------------------------
def test_drops_into_spikingjelly_cifar10net():
    torch.manual_seed(10)
    net = parametric_lif_net.CIFAR10Net(
        channels=4,
        spiking_neuron=DilatedWindowLIF,
        window="block",
        learnable_tau=True,
        surrogate_function=surrogate.ATan(),
    )
    functional.set_step_mode(net, "m")
    x = torch.rand(2, 2, 3, 32, 32)
    out = net(x)
    assert out.shape == (2, 2, 10)
    nodes = [m for m in net.modules() if isinstance(m, DilatedWindowLIF)]
    assert len(nodes) == 8
    # conv nodes group their maps (2x2); the two after Linear layers ([N, F]) run ungrouped
    grids = [n.grid_for(n.v.shape)[0] for n in nodes]
    assert grids == [(2, 3)] * 6 + [()] * 2
    out.sum().backward()
    assert all(n.w.grad is not None for n in nodes)
    functional.reset_net(net)
    assert all(n.time_step == 0 for n in nodes)


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(tau=1.0), ValueError, "tau"),
        (dict(window="overlap"), ValueError, "window"),
        (dict(projection="mul"), ValueError, "projection"),
        (dict(threshold="dynamic"), ValueError, "threshold"),
        (dict(groups=(2, 2, 2)), ValueError, "groups"),
        (dict(dims=(-2,), groups=(2, 2)), ValueError, "groups"),
        (dict(groups=(0, 2)), ValueError, "groups"),
        (dict(theta=float("nan")), ValueError, "theta"),
        (dict(stats="batch"), ValueError, "stats"),
        (dict(backend="triton"), ValueError, "backend"),
        (dict(step_mode="x"), ValueError, "step_mode"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        DilatedWindowLIF(**kwargs)


def _escaped(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize(
    "kwargs,shape,step_mode",
    [
        (dict(groups=(2, 2)), (2, 3, 5, 4), "s"),  # H = 5 does not divide by 2
        (dict(groups=(2, 3), window="block"), (4, 2, 3, 4, 4), "m"),  # W = 4 not by 3
        (dict(dims=(-2,), groups=3), (2, 3, 8, 5), "m"),  # L = 8 not by 3
        (dict(dims=(-2, -1)), (2, 6), "s"),  # [N, F]: -2 is the batch dim
        (dict(dims=(3, 4)), (2, 6, 4, 4), "s"),  # rank too small for dim 4
        (dict(), (2, 6, 4), "s"),  # rank 3 is ambiguous without dims
    ],
)
def test_shape_errors_name_the_shape_and_the_grid(kwargs, shape, step_mode):
    node = DilatedWindowLIF(**kwargs, step_mode=step_mode)
    step_shape = shape[1:] if step_mode == "m" else shape
    with pytest.raises(ValueError, match=_escaped(step_shape)) as info:
        node(torch.randn(*shape))
    assert f"groups={node.groups}" in str(info.value)


def test_wrong_projection_shape_and_rank_are_clear_errors():
    node = DilatedWindowLIF(projection=lambda r, o: r.sum(-1, keepdim=True), step_mode="s")
    with pytest.raises(ValueError, match="projection"):
        node(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\[T, N, \*\]"):
        DilatedWindowLIF(step_mode="m")(torch.tensor(1.0))


# ----------------------------------------------------------------------------------------------
# What the node hands to the functions, and the threshold kind it keeps.
def test_the_node_hands_its_attributes_to_the_functions_in_one_object():
    node = DilatedWindowLIF(groups=(2, 3), window="block", projection="add", threshold="adaptive")
    node.f_c = 0.7  # an attribute changed after construction takes effect
    params = node.lif_parameters((4, 3, 6, 6))
    assert params == LIFParameters(
        decay_input=True,
        v_reset=0.0,
        surrogate_function=node.surrogate_function,
        detach_reset=False,
        f_c=0.7,
        stats="layer",
        stats_group=None,
        dims=(2, 3),
        groups=(2, 3),
        window="block",
        projection="add",
        theta=node.theta,
    )
    flat = node.lif_parameters((4, 10))  # no map to group: ungrouped
    assert (flat.dims, flat.groups) == ((), ())


def test_the_threshold_kind_is_kept_once():
    for kind, adaptive in (("fixed", False), ("adaptive", True)):
        node = DilatedWindowLIF(threshold=kind)
        assert (node.threshold, node.adaptive) == (kind, adaptive)
        assert f"threshold={kind}" in repr(node)
    node = DilatedWindowLIF(threshold="fixed")
    node.threshold = "adaptive"  # the one fact: adaptive follows it
    assert node.adaptive
    with pytest.raises(AttributeError):
        node.adaptive = False
    with pytest.raises(ValueError, match="threshold"):
        AdaptiveThresholdLIF(threshold="moving")


def test_an_unchained_grid_runs_the_adjoint_loop_equal_to_autograd_of_the_steps():
    """projection='none' over a grid is one autograd node whose backward is autograd's."""
    torch.manual_seed(1)
    x = torch.randn(5, 2, 4, 4, 4, dtype=DT, requires_grad=True)
    v = torch.zeros(2, 4, 4, 4, dtype=DT)
    params = LIFParameters(
        surrogate_function=surrogate.ATan(), dims=(2, 3), groups=(2, 2), projection="none"
    )
    spikes, *_ = lif_multi_step(x, v, 0.5, 1.0, params)
    assert type(spikes.grad_fn).__name__ == "_AdjointLIFBackward"
    (grad,) = torch.autograd.grad((spikes * torch.arange(4, dtype=DT)).sum(), x)
    steps, *_ = run_steps(
        lambda xt, vt, threshold: lif_step(xt, vt, 0.5, threshold, params), x, v, 1.0
    )
    (want,) = torch.autograd.grad((steps * torch.arange(4, dtype=DT)).sum(), x)
    assert torch.equal(spikes, steps)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-12)
