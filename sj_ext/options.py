"""The choices of sj_ext's options and their defaults, each written once (no torch).

Every choice list is a ``typing.Literal`` (for annotations) and the tuple of its
values (:func:`typing.get_args` of it). The neurons, the functional
:class:`~sj_ext.functional.LIFParameters`, the models and the recipe schema
import them from here, so a new choice or another default is a one-line change.
:func:`check_choice` is the one check of a value against its list.
"""

import difflib
from typing import Literal, get_args

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "DEFAULT_STATS",
    "DEFAULT_WINDOW",
    "PROJECTIONS",
    "STATS",
    "STEP_MODES",
    "THRESHOLDS",
    "WINDOWS",
    "Backend",
    "Projection",
    "Stats",
    "StepMode",
    "Threshold",
    "Window",
    "check_choice",
    "close_match",
    "did_you_mean",
]

#: where a multi-step forward runs: the torch functions, sj_ext's fused kernels on a GPU
#: (CUDA through CuPy) or on the CPU (the same kernels' maths, g++ and OpenMP)
Backend = Literal["torch", "cupy", "cpu"]
#: SpikingJelly's step modes: one step ``[N, *]`` or a sequence ``[T, N, *]``
StepMode = Literal["s", "m"]
#: what the membrane statistics of a step are taken over: the whole tensor, or per channel
Stats = Literal["layer", "channel"]
#: a neuron's threshold: ``v_threshold``, or DS-ATGO's adaptive one (``adaptive`` False / True)
Threshold = Literal["fixed", "adaptive"]
#: how a grouped dim is split: contiguous windows, or strided ones spanning the dim
Window = Literal["block", "dilated"]
#: the named projections of the grouped charge (a callable is also accepted)
Projection = Literal["sine", "add", "none"]

BACKENDS: tuple[Backend, ...] = get_args(Backend)
STEP_MODES: tuple[StepMode, ...] = get_args(StepMode)
STATS: tuple[Stats, ...] = get_args(Stats)
THRESHOLDS: tuple[Threshold, ...] = get_args(Threshold)
WINDOWS: tuple[Window, ...] = get_args(Window)
PROJECTIONS: tuple[Projection, ...] = get_args(Projection)

DEFAULT_BACKEND: Backend = "torch"
DEFAULT_STATS: Stats = "layer"  # the paper's
DEFAULT_WINDOW: Window = "dilated"  # DilatedWindowLIF's strided groups (docs/methods.md, Groups)


def check_choice(name: str, value, choices: tuple):
    """``value`` when it is one of ``choices``.

    :raises ValueError: naming the option, its choices and the value (and a close choice)
    """
    if value not in choices:
        raise ValueError(
            f"{name} must be one of {choices}, got {value!r}{did_you_mean(value, choices)}"
        )
    return value


def close_match(name: str, choices) -> str | None:
    """The choice closest to ``name`` (difflib ratio >= 0.5), or ``None``."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return close[0] if close else None


def did_you_mean(name: str, choices) -> str:
    close = close_match(name, choices)
    return f" (did you mean {close!r}?)" if close else ""
