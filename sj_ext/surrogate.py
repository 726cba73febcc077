r"""Dynamic surrogate gradients (DS-ATGO's backward stage).

A dynamic surrogate keeps SpikingJelly's contract -- Heaviside forward
:math:`\Theta(x)` with :math:`\Theta(0) = 1`, a smooth derivative in
backward -- but the *width* of its derivative follows the spread of the
membrane potential it is applied to:

.. math::
    a_t = a_0 \, (1 + \tanh(\sigma_t - v_0))

where :math:`\sigma_t` is the (detached) standard deviation of the charged
membrane at step :math:`t` supplied by the neuron. A neuron that does not
supply :math:`\sigma_t` gets the fixed width :math:`a_0` (the value of the
rule at :math:`\sigma_t = v_0`). The shapes (derivative at :math:`x`, width :math:`a_t`,
:math:`\alpha_t = \alpha / a_t`):

.. math::
    \text{DynamicRect:}\quad & g'(x) = \tfrac{1}{a_t}\, \mathbb{1}[|x| < a_t / 2] \\
    \text{DynamicATan:}\quad & g'(x) = \frac{\alpha_t}{2 (1 + (\frac{\pi}{2} \alpha_t x)^2)} \\
    \text{DynamicSigmoid:}\quad & g'(x) = \alpha_t\, \mathrm{sigmoid}(\alpha_t x)
        (1 - \mathrm{sigmoid}(\alpha_t x))

DS-ATGO (Jiang et al., AAAI 2026) uses the rectangle; the readings (one width
formula for the source's two branches, the other shapes as an extension) are in
``docs/methods.md``, DS-ATGO.

Every class here is a :class:`spikingjelly.activation_based.surrogate.SurrogateFunctionBase`
and is called as ``sg(x, sigma=None)``; ``x`` is ``h - V_th`` of any shape,
``sigma`` a tensor broadcastable to ``x`` (a 0-d tensor for layer-wide
statistics, ``[1, C, 1, ...]`` for per-channel ones).

Registered in :data:`sj_ext.registry.SURROGATES`: ``dynamic_rect``,
``dynamic_atan``, ``dynamic_sigmoid``, and SpikingJelly's fixed-width ``sigmoid``,
``atan``, ``rect`` and ``piecewise_quadratic``.
"""

import math

import torch
from spikingjelly.activation_based import surrogate

from .registry import SURROGATES

__all__ = ["DynamicSurrogateBase", "DynamicRect", "DynamicATan", "DynamicSigmoid"]

SURROGATES.register("sigmoid", surrogate.Sigmoid)
SURROGATES.register("atan", surrogate.ATan)
SURROGATES.register("rect", surrogate.Rect)
SURROGATES.register("piecewise_quadratic", surrogate.PiecewiseQuadratic)


class _DynamicSpike(torch.autograd.Function):
    """Heaviside forward, ``grad * derivative(x, width)`` backward."""

    @staticmethod
    def forward(x, width, derivative):
        return surrogate.heaviside(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, width, derivative = inputs
        ctx.save_for_backward(x, torch.as_tensor(width, dtype=x.dtype, device=x.device))
        ctx.derivative = derivative

    @staticmethod
    def backward(ctx, grad_output):
        x, width = ctx.saved_tensors
        return grad_output * ctx.derivative(x, width), None, None


class DynamicSurrogateBase(surrogate.SurrogateFunctionBase):
    r"""Base of the surrogates whose width follows :math:`\sigma_t`.

    Subclasses define :meth:`derivative` (the surrogate gradient
    :math:`g'(x; a)` for width :math:`a`) and :meth:`primitive` (its
    primitive :math:`g(x; a)`, used when ``spiking=False``).

    :param a0: base width :math:`a_0`
    :param v0: reference spread :math:`v_0`
    :param spiking: Heaviside forward (``True``) or the primitive (``False``)
    """

    def __init__(self, a0: float = 1.0, v0: float = 1.0, spiking: bool = True, **params):
        if not a0 > 0:
            raise ValueError(f"a0 must be > 0, got {a0}")
        super().__init__(spiking=spiking, a0=float(a0), v0=float(v0), **params)

    def width(self, sigma: torch.Tensor | None) -> torch.Tensor | float:
        r""":math:`a_t = a_0 (1 + \tanh(\sigma_t - v_0))`; :math:`a_0` when ``sigma`` is None."""
        if sigma is None:
            return self.a0
        return self.a0 * (1.0 + torch.tanh(sigma - self.v0))

    def derivative(self, x: torch.Tensor, width) -> torch.Tensor:
        """Surrogate gradient :math:`g'(x; a)` elementwise (``width`` broadcasts to ``x``)."""
        raise NotImplementedError

    def primitive(self, x: torch.Tensor, width) -> torch.Tensor:
        """The smooth function whose derivative is :meth:`derivative`."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        width = self.width(sigma)
        if self.spiking:
            return _DynamicSpike.apply(x, width, self.derivative)
        return self.primitive(x, width)


@SURROGATES.register("dynamic_rect")
class DynamicRect(DynamicSurrogateBase):
    r"""Rectangular surrogate of dynamic width (DS-ATGO, the paper's choice).

    .. math::
        g'(x) = \frac{1}{a_t} \mathbb{1}\left[|x| < \frac{a_t}{2}\right],
        \qquad g(x) = \mathrm{clamp}\left(\frac{x}{a_t} + \frac12, 0, 1\right)

    At a fixed width :math:`a` it equals SpikingJelly's ``Rect(alpha=1/a)``.
    """

    def derivative(self, x, width):
        return (x.abs() < 0.5 * width).to(x.dtype) / width

    def primitive(self, x, width):
        return torch.clamp(x / width + 0.5, 0.0, 1.0)


@SURROGATES.register("dynamic_atan")
class DynamicATan(DynamicSurrogateBase):
    r"""Arctan surrogate whose sharpness is scaled by :math:`1/a_t`.

    With :math:`\alpha_t = \alpha / a_t`:

    .. math::
        g'(x) = \frac{\alpha_t}{2 (1 + (\frac{\pi}{2} \alpha_t x)^2)},
        \qquad g(x) = \frac{1}{\pi} \arctan(\frac{\pi}{2} \alpha_t x) + \frac12

    At :math:`a_t = 1` it equals SpikingJelly's ``ATan(alpha)``.
    """

    def __init__(self, alpha: float = 2.0, a0: float = 1.0, v0: float = 1.0, spiking=True):
        super().__init__(a0=a0, v0=v0, spiking=spiking, alpha=float(alpha))

    def derivative(self, x, width):
        alpha = self.alpha / width
        return 0.5 * alpha / (1.0 + (0.5 * math.pi * alpha * x) ** 2)

    def primitive(self, x, width):
        return torch.atan(0.5 * math.pi * (self.alpha / width) * x) / math.pi + 0.5


@SURROGATES.register("dynamic_sigmoid")
class DynamicSigmoid(DynamicSurrogateBase):
    r"""Sigmoid surrogate whose sharpness is scaled by :math:`1/a_t`.

    With :math:`\alpha_t = \alpha / a_t`:

    .. math::
        g'(x) = \alpha_t \, \mathrm{sigmoid}(\alpha_t x) (1 - \mathrm{sigmoid}(\alpha_t x)),
        \qquad g(x) = \mathrm{sigmoid}(\alpha_t x)

    At :math:`a_t = 1` it equals SpikingJelly's ``Sigmoid(alpha)``.
    """

    def __init__(self, alpha: float = 4.0, a0: float = 1.0, v0: float = 1.0, spiking=True):
        super().__init__(a0=a0, v0=v0, spiking=spiking, alpha=float(alpha))

    def derivative(self, x, width):
        alpha = self.alpha / width
        s = torch.sigmoid(alpha * x)
        return alpha * s * (1.0 - s)

    def primitive(self, x, width):
        return torch.sigmoid((self.alpha / width) * x)
