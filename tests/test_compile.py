"""The sj_ext neurons under ``torch.compile`` (CPU): one graph, the eager results.

SpikingJelly users hit contiguity trouble in compiled multi-step neurons
(SpikingJelly issue #753). Here Dynamo captures the whole net with
``fullgraph=True`` (no graph break: the fused multi-step autograd function of
AdaptiveThresholdLIF and DilatedWindowLIF's grouped views included) and
AOTAutograd traces forward and backward (``backend='aot_eager'``: the same
graphs Inductor would compile, without its code generation, which takes over
a minute on a 2-core CPU; ``benchmarks/check_compile.py`` runs Inductor).
Outputs, membranes, thresholds and gradients equal eager mode exactly.
"""

import copy

import pytest
import torch
from spikingjelly.activation_based import layer

from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF

pytestmark = pytest.mark.skipif(
    not torch._dynamo.is_dynamo_supported(), reason="torch.compile is not supported here"
)

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
    compiled = torch.compile(compiled_net, backend="aot_eager", fullgraph=True)
    x = torch.rand(2, 2, 2, 8, 8)
    ramp = torch.linspace(-1, 1, 8)
    records = []
    for net, module in ((eager, eager), (compiled, compiled_net)):
        out = net(x)
        (out * ramp).sum().backward()
        node = module[1]
        records.append([out, node.v, node.threshold_seq, *(p.grad for p in module.parameters())])
    assert 0 < records[0][0].mean() < 1
    for got, want in zip(records[1], records[0], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
