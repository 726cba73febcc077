"""SpikingJelly's own tools on the sj_ext neurons, written as a SpikingJelly user writes them.

``functional.reset_net`` / ``set_step_mode`` / ``detach_net``, the monitors
(``OutputMonitor``; ``AttributeMonitor`` on ``v_seq`` with ``store_v_seq``),
``op_counter``, ``layer.SeqToANNContainer``, ``copy.deepcopy``, pickling,
``state_dict`` across step modes and backends, ``extra_repr`` and
``supported_backends``: each checked against what it should give (LIFNode's
records, a count by hand, the run it replaces), not only that it runs.
"""

import copy
import inspect
import pickle

import pytest
import torch
from spikingjelly.activation_based import functional, layer, monitor, neuron, surrogate
from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter
from torch import nn

from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF, set_backend

NODES = {
    "adaptive": (AdaptiveThresholdLIF, dict(learnable_tau=True)),
    "dilated": (DilatedWindowLIF, dict(threshold="adaptive", learnable_tau=True)),
}
#: the fixed-threshold forms, which are SpikingJelly's LIFNode
AS_LIFNODE = {
    "adaptive": (AdaptiveThresholdLIF, dict(threshold="fixed")),
    "dilated": (DilatedWindowLIF, dict(projection="none")),
}


@pytest.fixture(params=list(NODES))
def make_node(request):
    cls, kwargs = NODES[request.param]
    return lambda **kw: cls(**kwargs, **kw)


def conv_net(node):
    """A SpikingJelly net as users build it: step-mode layers around the node, ``[T, N, *]``."""
    torch.manual_seed(0)
    return nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1, step_mode=node.step_mode),
        node,
        layer.Flatten(step_mode=node.step_mode),
        layer.Linear(4 * 4 * 4, 3, step_mode=node.step_mode),
    )


def inputs(seed=1):
    torch.manual_seed(seed)
    return 2.0 * torch.rand(4, 2, 2, 4, 4)  # [T, N, C, H, W]


def test_reset_net_restarts_every_state(make_node):
    net = conv_net(make_node(step_mode="m"))
    x = inputs()
    first = net(x)
    assert not torch.equal(net(x), first)  # the membrane carried on
    functional.reset_net(net)
    node = net[1]
    assert node.v == node.v_reset and node.time_step == 0 and node.threshold_seq is None
    torch.testing.assert_close(net(x), first, rtol=0, atol=0)


def test_set_step_mode_single_steps_are_the_sequence(make_node):
    net = conv_net(make_node(step_mode="m"))
    x = inputs()
    results = []
    for mode in ("m", "s"):
        functional.set_step_mode(net, mode)
        functional.reset_net(net)
        xi = x.clone().requires_grad_(True)
        out = net(xi) if mode == "m" else torch.stack([net(x_t) for x_t in xi])
        grads = torch.autograd.grad(out.square().sum(), [xi, *net.parameters()])
        results.append((out, net[1].threshold_seq, *grads))
    assert net[1].step_mode == "s"
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want)


def test_detach_net_cuts_the_graph_between_chunks(make_node):
    """Truncated BPTT: after detach_net the second chunk's loss reaches no earlier input."""
    for detach, reaches_first in ((False, True), (True, False)):
        net = conv_net(make_node(step_mode="m"))
        x = inputs().requires_grad_(True)
        net(x[:2])
        if detach:
            functional.detach_net(net)
            assert net[1].v.grad_fn is None
        (grad,) = torch.autograd.grad(net(x[2:]).sum(), x)
        assert bool(grad[:2].abs().sum() > 0) == reaches_first
        assert grad[2:].abs().sum() > 0


def test_output_monitor_records_the_spikes(make_node):
    net = conv_net(make_node(step_mode="m"))
    node = net[1]
    spikes = []
    node.register_forward_hook(lambda module, args, out: spikes.append(out))
    mon = monitor.OutputMonitor(net, type(node))
    x = inputs()
    net(x)
    functional.reset_net(net)
    net(x)
    assert mon.monitored_layers == ["1"]
    assert len(mon.records) == 2
    for record, out in zip(mon.records, spikes, strict=True):
        assert record.shape == x.shape[:2] + (4, 4, 4)
        assert torch.equal(record, out.detach())
    mon.remove_hooks()


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("name", list(AS_LIFNODE))
def test_attribute_monitor_on_v_seq_records_lifnodes_membranes(name, step_mode):
    cls, kwargs = AS_LIFNODE[name]
    x = inputs()
    records = []
    for node in (cls(**kwargs, store_v_seq=True), neuron.LIFNode(store_v_seq=True)):
        net = conv_net(node)
        functional.set_step_mode(net, step_mode)
        mon = monitor.AttributeMonitor("v_seq", pre_forward=False, net=net, instance=type(node))
        net(x) if step_mode == "m" else [net(x_t) for x_t in x]
        records.append((mon.records[-1], node.v))
        mon.remove_hooks()
    (v_seq, v), (v_seq_ref, v_ref) = records
    assert v_seq.shape == (4, 2, 4, 4, 4)
    torch.testing.assert_close(v_seq, v_seq_ref)
    torch.testing.assert_close(v_seq[-1], v)
    assert v_seq.abs().sum() > 0


def test_seq_to_ann_containers_around_the_node_are_the_step_mode_layers(make_node):
    reference = conv_net(make_node(step_mode="m"))
    conv, node, _, linear = reference
    ann_conv, ann_linear = nn.Conv2d(2, 4, 3, padding=1), nn.Linear(4 * 4 * 4, 3)
    ann_conv.load_state_dict(conv.state_dict())
    ann_linear.load_state_dict(linear.state_dict())
    containers = nn.Sequential(
        layer.SeqToANNContainer(ann_conv),
        copy.deepcopy(node),
        layer.SeqToANNContainer(nn.Flatten(), ann_linear),
    )
    x = inputs()
    torch.testing.assert_close(containers(x), reference(x), rtol=0, atol=0)


def test_op_counter_counts_each_spike_once_per_synapse(make_node):
    """SynOps of the Linear after the neuron = spikes x its out_features; its input has none."""
    node = make_node(step_mode="m")
    net = nn.Sequential(
        layer.SeqToANNContainer(nn.Linear(6, 8)), node, layer.SeqToANNContainer(nn.Linear(8, 5))
    )
    spikes = []
    node.register_forward_hook(lambda module, args, out: spikes.append(out))
    counter = SynOpCounter()
    with DispatchCounterMode([counter]):
        net(2.0 * torch.rand(4, 3, 6))
    assert spikes[0].sum() > 0
    assert counter.get_total() == int(spikes[0].sum()) * 5


def test_deepcopy_and_pickle_carry_the_state(make_node):
    net = conv_net(make_node(step_mode="m"))
    x = inputs()
    net(x)  # some training: running thresholds, a learnt tau
    with torch.no_grad():
        net(x)  # a state without a graph, as after an evaluation step
    twins = [copy.deepcopy(net), pickle.loads(pickle.dumps(net))]
    running = net[1].running_threshold.clone()  # 8 steps, the membrane after step 8
    with torch.no_grad():
        want = net(x)  # steps 9..12 of the original
        for twin in twins:
            assert twin[1].v is not net[1].v
            torch.testing.assert_close(twin[1].running_threshold, running, rtol=0, atol=0)
            torch.testing.assert_close(twin(x), want, rtol=0, atol=0)


@pytest.mark.parametrize("backends", [("torch", "cupy"), ("cupy", "torch")])
def test_state_dict_round_trip_across_step_modes_and_backends(make_node, backends):
    """Trained in one step mode and backend, loaded into the other: the same evaluation."""
    trained = conv_net(make_node(step_mode="m", backend=backends[0]))
    set_backend(trained, "torch")  # this CPU has no CuPy: train on the torch path
    x = inputs()
    for _ in range(3):
        trained(x).sum().backward()
        functional.reset_net(trained)
    set_backend(trained, backends[0])
    trained.eval()
    loaded = conv_net(make_node(step_mode="s", backend=backends[1]))
    loaded.load_state_dict(trained.state_dict())
    loaded.eval()
    assert loaded[1].running_threshold.shape == (4,)
    assert loaded[1].backend == backends[1]
    set_backend(trained, "torch")
    with torch.no_grad():
        torch.testing.assert_close(torch.stack([loaded(x_t) for x_t in x]), trained(x))


def test_extra_repr_names_every_argument(make_node):
    """As LIFNode's: BaseNode's fields first, then every option of the constructor."""
    node = make_node(step_mode="m")
    text = node.extra_repr()
    assert text.startswith(neuron.BaseNode.extra_repr(node))
    skip = {"self", "surrogate_function", "learnable_tau", "store_v_seq"}  # a child, in tau, v_seq
    for name in inspect.signature(type(node)).parameters.keys() - skip:
        assert f"{name}=" in text, name
    assert "(learnable)" in text
    assert "surrogate_function" in repr(node)


def test_every_node_takes_the_shared_arguments_declared_once(make_node):
    """Each node writes its signature out; a wrong keyword is Python's own TypeError."""
    cls = type(make_node())
    assert "__signature__" not in vars(cls.__init__)  # the source's own signature
    params = inspect.signature(cls.__init__).parameters
    assert all(p.default is not inspect.Parameter.empty for n, p in params.items() if n != "self")
    assert cls(3.0).tau == 3.0  # tau by position, as LIFNode's
    with pytest.raises(TypeError, match="'taux'"):
        cls(taux=3.0)
    with pytest.raises(TypeError, match="positional"):
        cls(3.0, True)  # the others by keyword only


def test_the_nodes_shared_arguments_agree_with_each_other_and_with_lifnode():
    """The arguments both nodes take: the same names, kinds, defaults and order; those
    SpikingJelly's LIFNode has too, with its names and (but the surrogate, which each
    node picks for its threshold) its defaults. (SpikingJelly 2.0's nodes take no
    ``backend``; ours add it.)"""
    ours = [
        inspect.signature(c.__init__).parameters for c in (AdaptiveThresholdLIF, DilatedWindowLIF)
    ]
    shared = [n for n in ours[0] if n in ours[1]]
    assert shared == list(ours[0])  # DilatedWindowLIF adds its grid after them
    assert list(ours[1])[: len(shared)] == shared
    for name in shared:
        a, b = ours[0][name], ours[1][name]
        same = (a.kind, a.annotation) == (b.kind, b.annotation)
        defaults = a.default == b.default or name == "threshold"  # each node's own kind
        assert same and defaults, name
    lif = inspect.signature(neuron.LIFNode.__init__).parameters
    common = [n for n in shared if n in lif]
    assert set(common) >= {"tau", "decay_input", "v_threshold", "v_reset", "detach_reset",
                           "step_mode", "store_v_seq", "surrogate_function"}  # fmt: skip
    for name in common:
        if name == "surrogate_function":
            continue  # our nodes' own surrogates, each for its threshold
        assert ours[0][name].default == lif[name].default, name


def test_supported_backends_per_step_mode(make_node):
    """SpikingJelly's generic backend switch: a backend is set where the node supports it."""
    net = nn.Sequential(make_node(step_mode="m"), make_node(step_mode="s"), neuron.LIFNode())
    for m in net.modules():
        if "cupy" in getattr(m, "supported_backends", ()):
            m.backend = "cupy"
    assert [getattr(m, "backend", None) for m in net] == ["cupy", "torch", None]
    assert net[0].supported_backends == ("torch", "cupy", "cpu")
    assert net[1].supported_backends == ("torch",)
    for backend in net[0].supported_backends:  # every declared backend is one it takes
        assert type(net[0])(backend=backend).backend == backend


def test_fixed_threshold_nodes_drop_into_lifnode_nets():
    """spiking_neuron=: SpikingJelly's own model code builds the sj_ext nodes like LIFNode."""
    from spikingjelly.activation_based.model import parametric_lif_net

    x = torch.rand(2, 1, 1, 28, 28)
    outs = []
    for cls, kwargs in (*AS_LIFNODE.values(), (neuron.LIFNode, {})):
        torch.manual_seed(0)
        net = parametric_lif_net.MNISTNet(
            channels=4, spiking_neuron=cls, surrogate_function=surrogate.ATan(), **kwargs
        )
        functional.set_step_mode(net, "m")
        outs.append(net(x))
    assert outs[0].shape == (2, 1, 10)
    for out in outs[:2]:
        torch.testing.assert_close(out, outs[2])
