r"""Half-precision input gradients of ``AdaptiveThresholdLIF`` against float32.

A float16 / bfloat16 neuron and its float32 twin (same parameters, input
``x.float()``) take the same spike and surrogate-window decisions except where
the charged membrane lies within rounding of a decision edge: the threshold
(:math:`z = h - V_{th} = 0`) or, for a width surrogate, the window edges
:math:`|z| = a_t / 2`. Such neuron-steps are found, not guessed: with
:math:`z` and :math:`a_t` of both runs,

.. math::
    \tau = |z_{half} - z_{32}| + |a_{half} - a_{32}| / 2 + \epsilon\, a_{32},

(the membranes' accumulated rounding, the recorded widths' difference, and
:math:`\epsilon a` for a width recomputed from the rounded :math:`\sigma_t`
in another order, as the kernels do), a neuron-step is ambiguous when
:math:`|z_{32}| \le \tau` or :math:`||z_{32}| - a_{32}/2| \le \tau`. The
input gradient of step :math:`t` flows through steps :math:`t' \ge t` of the
same neuron, whose membranes follow the decisions of every step before, so
the whole neuron is excluded when any of its steps is ambiguous. Every other
element must match float32 to :math:`\epsilon \max|g_{32}|`: an adjoint
computed in float32 from the rounded forward, rounded once.
"""

import copy
from functools import partial

import torch

from sj_ext.functional import lif_step, run_steps


def input_gradient(node, x):
    """``d sum(spikes * w) / d x`` for a ramp ``w`` over the last dim (one fresh forward)."""
    xi = x.clone().requires_grad_(True)
    s = node(xi)
    ramp = torch.linspace(-1, 1, s.shape[-1], device=x.device, dtype=x.dtype)
    (g,) = torch.autograd.grad((s * ramp).sum(), xi)
    return g


def charged_membranes(node, x):
    """``h_t`` ``[T, N, *]`` of ``node`` (fixed threshold, from rest) by the torch functions."""
    k = node.k.detach() if isinstance(node.k, torch.Tensor) else node.k
    step = partial(lif_step, k=k, params=node.lif_parameters(x.shape[1:]))
    v0 = torch.full_like(x[0], node.v_reset or 0.0)
    return run_steps(step, x, v0, node.v_threshold, keep_charged=True)[2]


def unambiguous(node, ref, x):
    """Elements of ``x`` whose gradient no rounding-close decision reaches (module docstring)."""
    eps = torch.finfo(x.dtype).eps
    z = (charged_membranes(node, x) - node.v_threshold).float()
    z32 = charged_membranes(ref, x.float()) - ref.v_threshold
    tol = (z - z32).abs()
    near = z32.abs() <= tol
    if ref.width_seq is not None:
        shape = (-1,) + (1,) * (x.dim() - 1)
        a, a32 = node.width_seq.float().view(shape), ref.width_seq.view(shape)
        tol = tol + (a - a32).abs() / 2 + eps * a32
        near = (z32.abs() <= tol) | ((z32.abs() - a32 / 2).abs() <= tol)
    return ~near.any(0, keepdim=True).expand_as(near)


def assert_gradient_near_float32(node, x):
    """``node`` (half precision, any backend, fixed threshold) against its float32 twin."""
    ref = copy.deepcopy(node).float()
    ref.backend = "torch"
    g, g32 = input_gradient(node, x), input_gradient(ref, x.float())
    keep = unambiguous(node, ref, x)
    assert keep.float().mean() > 0.9, "too many rounding-close decisions for a meaningful check"
    assert g32[keep].abs().sum() > 0
    atol = torch.finfo(x.dtype).eps * g32.abs().max().item()
    torch.testing.assert_close(g.float()[keep], g32[keep], rtol=0, atol=atol)
    return g
