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

Named in :data:`sj_ext.app.components.SURROGATES` (the application's): ``dynamic_rect``,
``dynamic_atan``, ``dynamic_sigmoid``, and SpikingJelly's fixed-width ``sigmoid``,
``atan``, ``rect`` and ``piecewise_quadratic``.

**Closed-form derivatives.** The adjoint backward of the multi-step loop
(:func:`sj_ext.functional.lif_multi_step`) needs :math:`g'(x)` as a function,
not as an autograd graph (``torch.autograd.grad`` inside a backward cannot be
traced by ``torch.compile``). :func:`spike_derivative` gives it: a dynamic
surrogate's own :meth:`~DynamicSurrogateBase.derivative`, and for
SpikingJelly's surrogates the entry of :data:`DERIVATIVES`, keyed by the exact
class (a subclass may change the maths) and called with the surrogate's
parameters (``_sg_params``, e.g. ``alpha``):

.. math::
    \text{Sigmoid:}\quad & \alpha\, s (1 - s),\; s = \mathrm{sigmoid}(\alpha x) &
    \text{ATan:}\quad & \frac{\alpha}{2 (1 + (\frac{\pi}{2} \alpha x)^2)} \\
    \text{Rect:}\quad & \alpha\, \mathbb{1}[|x| < \tfrac{1}{2\alpha}] &
    \text{PiecewiseQuadratic:}\quad & \max(0, \alpha - \alpha^2 |x|) \\
    \text{PiecewiseExp:}\quad & \tfrac{\alpha}{2} e^{-\alpha |x|} &
    \text{SoftSign:}\quad & \frac{1}{2 \alpha (1/\alpha + |x|)^2} \\
    \text{SuperSpike:}\quad & \frac{\alpha}{(1 + |x|)^2} &
    \text{NonzeroSignLogAbs:}\quad & \frac{1}{1/\alpha + |x|} \\
    \text{Erf:}\quad & \tfrac{\alpha}{\sqrt{\pi}} e^{-(\alpha x)^2} &
    \text{PiecewiseLeakyReLU:}\quad & \tfrac{1}{2w} \;(|x| < w), \quad c \;\text{else} \\
    \text{SquarewaveFourierSeries:}\quad & \tfrac{4}{T} \textstyle\sum_{i=1}^{n-1}
        \cos((2i - 1) \tfrac{2\pi}{T} x) &
    \text{S2NN:}\quad & \alpha s (1 - s) \;(x < 0), \quad \tfrac{\beta}{x + 1}
        \;\text{else} \\
    \text{QPseudoSpike:}\quad & (1 + \tfrac{2}{\alpha - 1} |x|)^{-\alpha} &
    \text{LeakyKReLU:}\quad & k \;(x \ge 0), \quad \text{leak} \;\text{else} \\
    \text{FakeNumericalGradient:}\quad & \min(\mathrm{sgn}(x) / x,\, \alpha) &
    \text{LogTailedReLU:}\quad & \alpha \;(x \le 0), \; 1 \;(0 < x \le 1), \;
        \tfrac{1}{x} \;(x > 1) \\
    \text{DeterministicPass:}\quad & 1

(:math:`\mathrm{sgn}(0) = 1`). Each is checked against the autograd of the
surrogate itself in ``tests/test_surrogate.py``. SpikingJelly's
``PoissonPass`` and ``MultiLevelSpikeCount`` are not Heaviside spikes and have
no entry, nor has a surrogate of a user's own until it is registered with
:func:`register_derivative`. Without an entry the multi-step loop is
differentiated step by step through the surrogate's own autograd function
(with a one-time warning naming it).
"""

import math
from collections.abc import Callable

import torch
from spikingjelly.activation_based import surrogate

__all__ = [
    "DERIVATIVES",
    "DynamicATan",
    "DynamicRect",
    "DynamicSigmoid",
    "DynamicSurrogateBase",
    "NoClosedFormError",
    "has_closed_form",
    "register_derivative",
    "spike_derivative",
]


#: ``{SpikingJelly surrogate class: g'(x, **params)}``, the closed forms of the module docstring
DERIVATIVES: dict[type, Callable[..., torch.Tensor]] = {}


class NoClosedFormError(LookupError):
    """A surrogate without a closed-form derivative (no entry in :data:`DERIVATIVES`)."""


def register_derivative(cls: type):
    r"""Decorator: register ``fn(x, **params) -> g'(x)`` as the closed form of surrogate ``cls``.

    ``params`` are the surrogate's own (SpikingJelly's ``_sg_params``, e.g.
    ``alpha``); ``cls`` must fire with SpikingJelly's Heaviside
    :math:`\Theta(x)` in spiking mode, since the adjoint backward takes its spikes
    to be :math:`\Theta(h_t - V_{th}(t))`.
    """

    def register(fn):
        DERIVATIVES[cls] = fn
        return fn

    return register


def has_closed_form(fn) -> bool:
    """Whether :func:`spike_derivative` has surrogate ``fn``'s derivative in closed form."""
    return isinstance(fn, DynamicSurrogateBase) or type(fn) in DERIVATIVES


def spike_derivative(fn, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
    r"""The surrogate gradient :math:`g'(x)` of ``fn`` elementwise, in closed form.

    :param fn: a dynamic surrogate (width from ``sigma``, :meth:`DynamicSurrogateBase.width`)
        or a SpikingJelly surrogate with an entry in :data:`DERIVATIVES`
    :param x: :math:`z = h - V_{th}`, any shape
    :param sigma: :math:`\sigma_t` broadcastable to ``x`` (dynamic surrogates only), or None
    :raises NoClosedFormError: naming the surrogate, when it has no entry
    """
    if isinstance(fn, DynamicSurrogateBase):
        return fn.derivative(x, fn.width(sigma))
    closed_form = DERIVATIVES.get(type(fn))
    if closed_form is None:
        raise NoClosedFormError(
            f"sj_ext has no closed-form derivative of the surrogate {type(fn).__qualname__} "
            f"({type(fn).__module__}); register one with "
            f"@sj_ext.surrogate.register_derivative({type(fn).__qualname__})"
        )
    return closed_form(x, **fn._sg_params)


@register_derivative(surrogate.Sigmoid)
def _sigmoid(x, alpha):
    s = torch.sigmoid(alpha * x)
    return alpha * s * (1.0 - s)


@register_derivative(surrogate.ATan)
def _atan(x, alpha):
    return 0.5 * alpha / (1.0 + (0.5 * math.pi * alpha * x) ** 2)


@register_derivative(surrogate.Rect)
def _rect(x, alpha):
    return alpha * (x.abs() < 0.5 / alpha).to(x.dtype)


@register_derivative(surrogate.PiecewiseQuadratic)
def _piecewise_quadratic(x, alpha):
    return (alpha - alpha**2 * x.abs()).clamp_min(0.0)


@register_derivative(surrogate.PiecewiseExp)
def _piecewise_exp(x, alpha):
    return 0.5 * alpha * torch.exp(-alpha * x.abs())


@register_derivative(surrogate.SoftSign)
def _soft_sign(x, alpha):
    return 1.0 / (2.0 * alpha * (1.0 / alpha + x.abs()) ** 2)


@register_derivative(surrogate.SuperSpike)
def _super_spike(x, alpha):
    return alpha / (1.0 + x.abs()) ** 2


@register_derivative(surrogate.NonzeroSignLogAbs)
def _nonzero_sign_log_abs(x, alpha):
    return 1.0 / (1.0 / alpha + x.abs())


@register_derivative(surrogate.Erf)
def _erf(x, alpha):
    return alpha / math.sqrt(math.pi) * torch.exp(-((alpha * x) ** 2))


@register_derivative(surrogate.PiecewiseLeakyReLU)
def _piecewise_leaky_relu(x, w, c):
    return torch.full_like(x, c).masked_fill(x.abs() < w, 0.5 / w)


@register_derivative(surrogate.SquarewaveFourierSeries)
def _squarewave_fourier_series(x, n, T_period):
    omega = 2.0 * math.pi / T_period
    total = torch.zeros_like(x)
    for i in range(1, n):
        total = total + torch.cos((2 * i - 1.0) * omega * x)
    return 4.0 / T_period * total


@register_derivative(surrogate.S2NN)
def _s2nn(x, alpha, beta):
    return torch.where(x < 0.0, _sigmoid(x, alpha), beta / (x + 1.0))


@register_derivative(surrogate.QPseudoSpike)
def _q_pseudo_spike(x, alpha):
    return (1.0 + 2.0 / (alpha - 1.0) * x.abs()) ** -alpha


@register_derivative(surrogate.LeakyKReLU)
def _leaky_k_relu(x, leak, k):
    return torch.full_like(x, leak).masked_fill(x >= 0.0, k)


@register_derivative(surrogate.FakeNumericalGradient)
def _fake_numerical_gradient(x, alpha):
    return torch.clamp_max(torch.where(x >= 0.0, 1.0, -1.0).to(x.dtype) / x, alpha)


@register_derivative(surrogate.LogTailedReLU)
def _log_tailed_relu(x, alpha):
    return torch.where(x > 1.0, 1.0 / x, torch.ones_like(x).masked_fill(x <= 0.0, alpha))


@register_derivative(surrogate.DeterministicPass)
def _deterministic_pass(x):
    return torch.ones_like(x)


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
        return _atan(x, self.alpha / width)

    def primitive(self, x, width):
        return torch.atan(0.5 * math.pi * (self.alpha / width) * x) / math.pi + 0.5


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
        return _sigmoid(x, self.alpha / width)

    def primitive(self, x, width):
        return torch.sigmoid((self.alpha / width) * x)
