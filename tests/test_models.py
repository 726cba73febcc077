"""The networks of the papers: output shapes, and parameter counts recomputed from the
architecture descriptions (not from the code that builds them)."""

import copy

import pytest
import torch
import torchvision
from spikingjelly.activation_based import functional, neuron

from sj_ext.app.components import MODELS
from sj_ext.models.layout import to_channels_last
from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF

T, N = 2, 2


def lif(**overrides):
    return neuron.LIFNode(step_mode="m", **overrides)


def plif(**overrides):
    return neuron.ParametricLIFNode(step_mode="m", **overrides)


def grouped(**overrides):
    return DilatedWindowLIF(step_mode="m", **overrides)


def conv(cin, cout, k=3, bias=False):
    return cin * cout * k * k + (cout if bias else 0)


def bn(c):
    return 2 * c


def fc(i, o, bias=True):
    return i * o + (o if bias else 0)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def build(name, num_classes, in_channels, factory, **args):
    model = MODELS.get(name)(
        num_classes=num_classes, in_channels=in_channels, spiking_neuron=factory, **args
    )
    functional.set_step_mode(model, "m")
    return model


def run(model, in_channels, size):
    with torch.no_grad():
        out = model(torch.rand(T, N, in_channels, size, size))
    functional.reset_net(model)
    return out


# ------------------------------------------------------------------------------ PLIF nets
def plif_mnist(cin, side):
    # 128c3-BN-PLIF-MP2 x2, FC2048-PLIF, FC100-PLIF, voting: 4 PLIF neurons, one w each
    return (
        conv(cin, 128) + bn(128) + conv(128, 128) + bn(128)
        + fc(128 * side * side, 2048) + fc(2048, 100) + 4
    )  # fmt: skip


def plif_dvs(convs, side, hidden, out):
    # n x (128c3-BN-PLIF-MP2), FC-hidden-PLIF, FC-out-PLIF, voting
    return (
        conv(2, 128) + (convs - 1) * conv(128, 128) + convs * bn(128)
        + fc(128 * side * side, hidden) + fc(hidden, out) + convs + 2
    )  # fmt: skip


PLIF_NETS = [
    # variant, in channels, classes, input side, expected parameters
    ("mnist", 1, 10, 28, plif_mnist(1, 7)),
    ("fashion_mnist", 1, 10, 28, plif_mnist(1, 7)),
    ("nmnist", 2, 10, 34, plif_mnist(2, 8)),
    # (256c3-BN-PLIF x3, MP2) x2, FC2048-PLIF, FC100-PLIF, voting
    (
        "cifar10",
        3,
        10,
        32,
        conv(3, 256) + 5 * conv(256, 256) + 6 * bn(256) + fc(256 * 8 * 8, 2048) + fc(2048, 100) + 8,
    ),  # fmt: skip
    ("cifar10dvs", 2, 10, 128, plif_dvs(4, 8, 512, 100)),
    ("dvsgesture", 2, 11, 128, plif_dvs(5, 4, 512, 110)),
]


@pytest.mark.parametrize("variant,cin,classes,side,expected", PLIF_NETS)
def test_parametric_lif_nets(variant, cin, classes, side, expected):
    calls = []

    def factory(**kwargs):
        calls.append(kwargs)
        return plif()

    model = build("parametric_lif_net", classes, cin, factory, variant=variant)
    assert n_params(model) == expected
    assert calls and all(kwargs == {} for kwargs in calls)  # SpikingJelly calls it with none
    if side <= 34:  # the 128 x 128 nets are shape-checked by the recipe runs
        assert run(model, cin, side).shape == (T, N, classes)


def test_parametric_lif_net_refuses_a_mismatched_dataset():
    with pytest.raises(ValueError, match="takes 1 input channels and 10 classes.*gives 3 and 10"):
        build("parametric_lif_net", 10, 3, plif, variant="mnist")
    with pytest.raises(ValueError, match="variant must be one of"):
        build("parametric_lif_net", 10, 1, plif, variant="svhn")


# ------------------------------------------------------------------------------ ResNets
def sew_stage(cin, width, blocks, stride):
    """SEW blocks: 2 x (conv3x3 + BN) each, + (conv1x1 + BN) on the first when shape changes."""
    total = 0
    for i in range(blocks):
        c = cin if i == 0 else width
        total += conv(c, width) + bn(width) + conv(width, width) + bn(width)
        if i == 0 and (stride != 1 or cin != width):
            total += conv(cin, width, 1) + bn(width)
    return total


def test_resnet19_matches_its_architecture():
    # conv3x3-128 + tdBN; 3 x 128, 3 x 256 (s2), 2 x 512 (s2); FC512-256 + BN1d; FC256-10
    expected = (
        conv(3, 128) + bn(128)
        + sew_stage(128, 128, 3, 1) + sew_stage(128, 256, 3, 2) + sew_stage(256, 512, 2, 2)
        + fc(512, 256, bias=False) + bn(256) + fc(256, 10, bias=False)
    )  # fmt: skip
    model = build("resnet19", 10, 3, lif)
    assert n_params(model) == expected
    assert run(model, 3, 16).shape == (T, N, 10)  # global pooling: any size divisible by 4


def test_small_sew_resnet_matches_its_architecture():
    # conv3x3-8 + tdBN; 1 x 8, 1 x 16 (s2), 1 x 32 (s2); GAP; real-valued FC32-10 with bias
    expected = (
        conv(1, 8) + bn(8)
        + sew_stage(8, 8, 1, 1) + sew_stage(8, 16, 1, 2) + sew_stage(16, 32, 1, 2)
        + fc(32, 10)
    )  # fmt: skip
    model = build("sew_resnet_small", 10, 1, lif, widths=[8, 16, 32], blocks=[1, 1, 1])
    assert n_params(model) == expected
    assert run(model, 1, 28).shape == (T, N, 10)  # maps 28, 14, 7
    assert not isinstance(list(model.head)[-1], neuron.BaseNode)  # the read-out is real-valued
    with pytest.raises(ValueError, match="one entry per stage"):
        build("sew_resnet_small", 10, 1, lif, widths=[8, 16], blocks=[1])


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
def test_imagenet_resnets_have_torchvisions_parameters(name):
    # same convs, norms and FC as torchvision's ResNet; the SEW spikes add no parameters
    model = build(name, 1000, 3, lif)
    assert n_params(model) == n_params(getattr(torchvision.models, name)())
    assert run(model, 3, 32).shape == (T, N, 1000)


def test_tdbn_weights_start_at_alpha_times_threshold():
    model = build("resnet19", 10, 3, lif, alpha=0.5, v_threshold=2.0)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 1 + 2 * 8 + 2 + 1  # stem, blocks, two downsamples, FC
    assert all(torch.all(m.weight == 1.0) for m in norms)


# ------------------------------------------------------------------------------ VGGSNN
def test_vggsnn_matches_its_architecture():
    # 64c3-128c3-AP2-256c3-256c3-AP2-512c3-512c3-AP2-512c3-512c3-AP2-FC10, BN after each conv
    widths = [2, 64, 128, 256, 256, 512, 512, 512, 512]
    expected = sum(conv(a, b) + bn(b) for a, b in zip(widths, widths[1:], strict=False))
    expected += fc(512 * 3 * 3, 10)
    model = build("vggsnn", 10, 2, lif, image_size=48)
    assert n_params(model) == expected
    assert run(model, 2, 48).shape == (T, N, 10)
    with pytest.raises(ValueError, match="divisible by 16"):
        build("vggsnn", 10, 2, lif, image_size=50)


# ------------------------------------------------------------------------------ grouping
def test_grouping_cnn_alternates_windows_and_matches_its_architecture():
    # 2 x (c3-BN-SN) per stage of 128, 256, 512 with MP2 between stages, GAP, FC100
    widths = [3, 128, 128, 256, 256, 512, 512]
    expected = sum(conv(a, b) + bn(b) for a, b in zip(widths, widths[1:], strict=False))
    expected += fc(512, 100)
    model = build("grouping_cnn", 100, 3, grouped)
    assert n_params(model) == expected
    neurons = [m for m in model.modules() if isinstance(m, DilatedWindowLIF)]
    assert [m.window for m in neurons] == ["block", "dilated"] * 3
    assert all(m.groups == (2, 2) for m in neurons)
    assert run(model, 3, 16).shape == (T, N, 100)  # maps 16, 8, 4: divisible by the grid
    starts_dilated = build("grouping_cnn", 10, 3, grouped, first_window="dilated", widths=[8])
    assert [m.window for m in starts_dilated.modules() if isinstance(m, DilatedWindowLIF)] == [
        "dilated",
        "block",
    ]
    one_window = build("grouping_cnn", 10, 3, grouped, first_window="dilated", alternate=False)
    windows = [m.window for m in one_window.modules() if isinstance(m, DilatedWindowLIF)]
    assert windows == ["dilated"] * 6


def test_grouping_rnn_groups_tokens_and_matches_its_architecture():
    # conv4x4/4 to 64 - BN, SN; 3 x (FC64-64 - BN - SN) over the 16 tokens; token mean; FC10
    model = build("grouping_rnn", 10, 3, grouped, dim=64, depth=3, patch_size=4, groups=4)
    expected = conv(3, 64, 4) + bn(64) + 3 * (fc(64, 64, bias=False) + bn(64)) + fc(64, 10)
    assert n_params(model) == expected
    neurons = [m for m in model.modules() if isinstance(m, DilatedWindowLIF)]
    assert [m.window for m in neurons] == ["block", "dilated", "block", "dilated"]
    assert all(m.dims == (-2,) and m.groups == (4,) for m in neurons)
    assert run(model, 3, 16).shape == (T, N, 10)
    with pytest.raises(ValueError, match="divide|divisible"):  # 9 tokens in 4 groups
        run(model, 3, 12)


def test_grouped_neurons_are_recurrent_within_one_step():
    """At T = 1 the sine projection makes the output differ from independent groups."""
    torch.manual_seed(0)
    x = torch.rand(1, N, 3, 16, 16)

    def outputs(projection):
        torch.manual_seed(1)
        model = build(
            "grouping_cnn", 10, 3, lambda **o: grouped(projection=projection, **o), widths=[8]
        )
        with torch.no_grad():
            return model(x)

    assert not torch.equal(outputs("sine"), outputs("none"))


@pytest.mark.parametrize(
    "name,args,factory,size",
    [
        ("resnet19", {}, lambda: AdaptiveThresholdLIF(step_mode="m", learnable_tau=True), 8),
        ("vggsnn", {"image_size": 16}, lambda: grouped(threshold="adaptive"), 16),
    ],
    ids=["resnet19-adaptive", "vggsnn-dilated"],
)
def test_channels_last_gives_the_same_outputs_and_gradients(name, args, factory, size):
    """``train.channels_last``: the model and its input in NHWC, values unchanged (float64)."""
    torch.manual_seed(0)
    model = build(name, 10, 3, factory, **args).double()
    twin = to_channels_last(copy.deepcopy(model))
    first_conv = next(twin.parameters())
    assert first_conv.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(T, N, 3, size, size, dtype=torch.float64)
    x_cl = to_channels_last(x)
    assert x_cl.stride() == (N * 3 * size * size, 3 * size * size, 1, 3 * size, 3)
    assert torch.equal(x_cl, x)
    results = []
    for net, inputs in ((model, x), (twin, x_cl)):
        out = net(inputs)
        out.square().sum().backward()
        results.append((out, [p.grad for p in net.parameters()]))
    (out, grads), (out_cl, grads_cl) = results
    assert out.abs().sum() > 0
    torch.testing.assert_close(out_cl, out, rtol=1e-6, atol=1e-6)
    for g_cl, g in zip(grads_cl, grads, strict=True):
        torch.testing.assert_close(g_cl, g, rtol=1e-6, atol=1e-6)
