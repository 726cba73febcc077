"""The sj_ext neurons under ``torch.compile`` (CPU): one graph, the eager results.

SpikingJelly users hit contiguity trouble in compiled multi-step neurons
(SpikingJelly issue #753), and SpikingJelly's ``LIFNode`` compiles with
``fullgraph=True`` for its surrogates. Here Dynamo captures the whole net
with ``fullgraph=True`` -- no graph break (``torch._dynamo.explain``): the
fused multi-step autograd function of both neurons, whose backward takes the
surrogate's closed-form derivative (:func:`sj_ext.surrogate.spike_derivative`),
and DilatedWindowLIF's grouped views included -- in single- and multi-step
mode, for SpikingJelly's surrogates and sj_ext's dynamic ones. AOTAutograd
traces forward and backward (``backend='aot_eager'``: the same graphs Inductor
would compile, without its code generation, which takes over a minute per net
on a 2-core CPU). Outputs, membranes, thresholds and gradients equal eager
mode exactly. ``SJ_EXT_COMPILE_BACKEND=inductor python -m pytest
tests/test_compile.py`` runs the same checks through Inductor (the default
``torch.compile``); its fused kernels reorder float32 arithmetic, so membranes,
thresholds and gradients are compared to 1e-4 there, the spikes still exactly.
"""

import copy
import json
import os
from functools import partial

import pytest
import torch
from helpers import QUICKSTART
from spikingjelly.activation_based import layer, surrogate

import sj_ext.app.engine.trainer as trainer
from sj_ext.app.components import MODELS
from sj_ext.app.engine import Preempted, TrainingError, train
from sj_ext.app.engine.checkpoint import load_checkpoint
from sj_ext.app.recipe import RecipeError, load_recipe
from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF
from sj_ext.surrogate import DERIVATIVES, DynamicATan, DynamicRect, DynamicSigmoid

pytestmark = pytest.mark.skipif(
    not torch._dynamo.is_dynamo_supported(), reason="torch.compile is not supported here"
)

BACKEND = os.environ.get("SJ_EXT_COMPILE_BACKEND", "aot_eager")
TOLERANCE = dict(rtol=0, atol=0) if BACKEND == "aot_eager" else dict(rtol=1e-4, atol=1e-4)
NEURONS = {
    "adaptive-plif": lambda: AdaptiveThresholdLIF(step_mode="m", learnable_tau=True),
    "dilated": lambda: DilatedWindowLIF(step_mode="m", groups=(2, 2), threshold="adaptive"),
}
#: both neurons, the grouped one chained (sine) and unchained ('none': the one-node loop)
NODES = {
    "adaptive": lambda **kw: AdaptiveThresholdLIF(learnable_tau=True, **kw),
    "dilated": lambda **kw: DilatedWindowLIF(groups=(2, 2), learnable_tau=True, **kw),
    "dilated-none": lambda **kw: DilatedWindowLIF(projection="none", learnable_tau=True, **kw),
}
SURROGATES = {
    "ATan": surrogate.ATan,
    "Sigmoid": surrogate.Sigmoid,
    "DynamicRect": DynamicRect,
}


def sequence(node, x_seq):
    """``node`` over ``[T, N, *]``: one call in step mode ``'m'``, a call per step in ``'s'``."""
    if node.step_mode == "m":
        return node(x_seq)
    return torch.stack([node(x) for x in x_seq])


def eager_and_compiled(node, x):
    """Spikes, membrane, thresholds and gradients of ``node`` eager and compiled (fullgraph)."""
    torch._dynamo.reset()
    twin = copy.deepcopy(node)
    compiled = torch.compile(partial(sequence, twin), backend=BACKEND, fullgraph=True)
    weight = torch.linspace(-1, 1, x.shape[-1])
    records = []
    for run, module in ((partial(sequence, node), node), (compiled, twin)):
        xi = x.clone().requires_grad_(True)
        out = run(xi)
        grads = torch.autograd.grad((out * weight).sum(), [xi, *module.parameters()])
        records.append([out, module.v, module.threshold_seq, *grads])
    return records


def assert_compiled_equals_eager(records):
    (out, *rest), (out_c, *rest_c) = records
    assert 0 < out.mean() < 1
    assert torch.equal(out_c, out)  # the spikes
    for got, want in zip(rest_c, rest, strict=True):
        torch.testing.assert_close(got, want, **TOLERANCE)
    assert rest[2].abs().sum() > 0  # a gradient reaches the input


def graph_breaks(node, x) -> int:
    """``torch._dynamo.explain``'s graph-break count of ``node`` over ``x`` (state reset after)."""
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(partial(sequence, node))(x.requires_grad_(True))
    node.reset()
    return explanation.graph_break_count


@pytest.mark.parametrize("name", list(NEURONS))
def test_compiled_neuron_matches_eager(name):
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = torch.nn.Sequential(layer.Conv2d(2, 4, 3, padding=1, step_mode="m"), NEURONS[name]())
    compiled_net = copy.deepcopy(eager)
    compiled = torch.compile(compiled_net, backend=BACKEND, fullgraph=True)
    x = torch.rand(2, 2, 2, 8, 8)
    ramp = torch.linspace(-1, 1, 8)
    records = []
    for net, module in ((eager, eager), (compiled, compiled_net)):
        out = net(x)
        (out * ramp).sum().backward()
        node = module[1]
        records.append([out, node.v, node.threshold_seq, *(p.grad for p in module.parameters())])
    assert 0 < records[0][0].mean() < 1
    assert torch.equal(records[1][0], records[0][0])  # the spikes
    for got, want in zip(records[1][1:], records[0][1:], strict=True):
        torch.testing.assert_close(got, want, **TOLERANCE)


@pytest.mark.parametrize("sg", list(SURROGATES))
@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("name", list(NODES))
def test_one_graph_and_the_eager_results(name, step_mode, sg):
    """No graph break, and the compiled forward and gradients are the eager ones."""
    torch.manual_seed(0)
    x = 2.0 * torch.rand(3, 2, 2, 4, 4)  # [T, N, C, H, W]
    node = NODES[name](surrogate_function=SURROGATES[sg](), step_mode=step_mode)
    assert graph_breaks(node, x) == 0
    assert_compiled_equals_eager(eager_and_compiled(node, x))


@pytest.mark.parametrize(
    "sg",
    [cls() for cls in DERIVATIVES] + [DynamicATan(), DynamicSigmoid()],
    ids=lambda sg: type(sg).__name__,
)
def test_every_closed_form_surrogate_compiles_whole(sg):
    """The one-node loop (its backward the closed-form g') of every surrogate that has one.

    ``fullgraph=True`` refuses any graph break, forward or backward.
    """
    torch.manual_seed(0)
    x = 2.0 * torch.rand(3, 4, 6)  # [T, N, F]
    node = AdaptiveThresholdLIF(learnable_tau=True, surrogate_function=sg, step_mode="m")
    assert_compiled_equals_eager(eager_and_compiled(node, x))


def test_a_surrogate_without_closed_form_is_named_and_still_compiles_whole():
    """It runs step by step through its own autograd function: a warning, no trace error."""

    class ShiftedATan(surrogate.ATan):  # a subclass may change the maths: no closed form
        pass

    torch.manual_seed(0)
    x = 2.0 * torch.rand(3, 4, 6)
    node = AdaptiveThresholdLIF(surrogate_function=ShiftedATan(), step_mode="m")
    with pytest.warns(RuntimeWarning, match="ShiftedATan.*register_derivative"):
        records = eager_and_compiled(node, x)  # the eager call warns
    assert_compiled_equals_eager(records)
    assert graph_breaks(node, x) == 0


# ------------------------------------------------------------------------ train.compile


class GraphBreak(torch.nn.Module):
    """The quickstart's ``small_cnn`` with a graph break in its forward."""

    def __init__(self, num_classes: int, in_channels: int, spiking_neuron, **small_cnn):
        super().__init__()
        self.net = MODELS.get("small_cnn")(num_classes, in_channels, spiking_neuron, **small_cnn)

    def forward(self, x):
        torch._dynamo.graph_break()
        return self.net(x)


if "test_graph_break" not in MODELS:
    MODELS.register("test_graph_break", GraphBreak)

ENGINE = ["train.device=cpu", "train.limit_train_batches=3", "monitor.every=null"]


def _records(metrics: dict) -> list[dict]:
    drop = {"seconds", "compile_seconds"}
    return [{k: v for k, v in row.items() if k not in drop} for row in metrics["epochs"]]


def test_a_compiled_run_trains_as_the_eager_one_and_resumes_eager(tmp_path, monkeypatch):
    """aot_eager traces what Inductor compiles; the warm-up leaves state and RNG alone."""
    quiet = dict(log=lambda *a: None)
    sets = [*ENGINE, "train.epochs=2"]
    eager = train(load_recipe(QUICKSTART, sets), tmp_path / "eager", **quiet)
    record = trainer.Trainer._record

    def record_then_stop(self, row, split):  # stopped right after epoch 1's checkpoint
        record(self, row, split)
        raise Preempted("stopped by SIGTERM", 15)

    monkeypatch.setattr(trainer.Trainer, "_record", record_then_stop)
    logs = []
    compiled = load_recipe(QUICKSTART, [*sets, "train.compile=aot_eager"])
    with pytest.raises(Preempted):
        train(compiled, tmp_path / "run", log=logs.append)
    monkeypatch.setattr(trainer.Trainer, "_record", record)
    assert any(line.startswith("compiled the model with aot_eager in ") for line in logs)
    first = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"][0]
    assert first["compile_seconds"] > 0
    assert {k: v for k, v in first.items() if k not in ("seconds", "compile_seconds")} == (
        _records(eager)[0]
    )
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["model"]
    assert not [k for k in state if "_orig_mod" in k]  # the model's own keys
    resumed = train(load_recipe(QUICKSTART, sets), tmp_path / "run", resume=True, **quiet)
    assert _records(resumed) == _records(eager)


def test_a_model_that_breaks_the_graph_is_refused_naming_the_key(tmp_path):
    recipe = load_recipe(QUICKSTART, [*ENGINE, "train.epochs=1", "model.name=test_graph_break"])
    recipe["train"]["compile"] = "aot_eager"
    with pytest.raises(TrainingError, match=r"train.compile: the model does not compile whole"):
        train(recipe, tmp_path / "a", log=lambda *a: None)
    recipe["model"]["name"], recipe["train"]["compile"] = "small_cnn", "no_such_backend"
    with pytest.raises(TrainingError, match=r"train.compile=null to train it eager"):
        train(recipe, tmp_path / "b", log=lambda *a: None)


def test_compile_and_the_monitors_are_refused_together():
    with pytest.raises(RecipeError, match="train.compile: the monitors hook the modules"):
        load_recipe(QUICKSTART, ["train.compile=inductor", "monitor.every=5"])
