"""Runs of the sj_ext neurons recorded for comparison: backend against backend, device against host.

Shared by tests/test_fused_lif_kernels.py (the CPU harness) and tests/test_fused_lif_gpu.py (CUDA).
"""

import torch
from spikingjelly.activation_based import functional, surrogate

from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF
from sj_ext.surrogate import DynamicATan


def train_and_eval(node, x, steps=3, chunks=(3, 2)):
    """A few training passes (sequences in chunks), then one in eval mode; everything recorded."""
    out = []
    w = torch.linspace(-1, 2, x[0].numel(), dtype=x.dtype, device=x.device).view_as(x[0])
    for _ in range(steps):
        functional.reset_net(node)
        xi = x.clone().requires_grad_(True)
        parts, t0 = [], 0
        for n in chunks:
            parts.append(node(xi[t0 : t0 + n]))
            t0 += n
        s = torch.cat(parts)
        loss = (s * w).sum() + (node.v**2).sum()
        grads = torch.autograd.grad(loss, [xi] + list(node.parameters()))
        out += [s, node.v, *grads, node.threshold_seq, node.sigma_seq, node.width_seq]
        out.append(node.running_threshold.clone())
    node.eval()
    functional.reset_net(node)
    out += [node(x), node.threshold_seq, node.sigma_seq, node.width_seq]
    return out


NEURON_CASES = [
    (AdaptiveThresholdLIF, dict()),
    (AdaptiveThresholdLIF, dict(tau=1.25, decay_input=False, learnable_tau=True, f_c=0.9)),
    (AdaptiveThresholdLIF, dict(v_reset=None, surrogate_function=DynamicATan())),
    (AdaptiveThresholdLIF, dict(threshold="fixed", surrogate_function=surrogate.ATan())),
    (DilatedWindowLIF, dict(learnable_tau=True)),
    (DilatedWindowLIF, dict(threshold="adaptive", window="block", projection="add")),
    (DilatedWindowLIF, dict(threshold="adaptive", surrogate_function=surrogate.Sigmoid())),
]


def assert_same_records(results, **tol):
    """Both runs of :func:`train_and_eval` agree (``None`` where the other is ``None``)."""
    for a, b in zip(*results, strict=True):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b, **tol)
