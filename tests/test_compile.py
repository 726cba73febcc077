"""The sj_ext neurons under ``torch.compile`` (CPU): one graph, the eager results.

SpikingJelly users hit contiguity trouble in compiled multi-step neurons
(SpikingJelly issue #753). Here Dynamo captures the whole net with
``fullgraph=True`` (no graph break: the fused multi-step autograd function of
AdaptiveThresholdLIF and DilatedWindowLIF's grouped views included) and
AOTAutograd traces forward and backward (``backend='aot_eager'``: the same
graphs Inductor would compile, without its code generation, which takes over
a minute per net on a 2-core CPU). Outputs, membranes, thresholds and gradients
equal eager mode exactly. ``SJ_EXT_COMPILE_BACKEND=inductor python -m pytest
tests/test_compile.py`` runs the same check through Inductor (the default
``torch.compile``); its fused kernels reorder float32 arithmetic, so membranes,
thresholds and gradients are compared to 1e-4 there, the spikes still exactly.
"""

import copy
import os

import pytest
import torch
from spikingjelly.activation_based import layer

from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF

pytestmark = pytest.mark.skipif(
    not torch._dynamo.is_dynamo_supported(), reason="torch.compile is not supported here"
)

BACKEND = os.environ.get("SJ_EXT_COMPILE_BACKEND", "aot_eager")
NEURONS = {
    "adaptive-plif": lambda: AdaptiveThresholdLIF(step_mode="m", learnable_tau=True),
    "dilated": lambda: DilatedWindowLIF(step_mode="m", groups=(2, 2), threshold="adaptive"),
}


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
    tol = dict(rtol=0, atol=0) if BACKEND == "aot_eager" else dict(rtol=1e-4, atol=1e-4)
    for got, want in zip(records[1][1:], records[0][1:], strict=True):
        torch.testing.assert_close(got, want, **tol)
