"""``train.compile``: the model through ``torch.compile`` whole, compiled before training.

:func:`compile_model` wraps the model with ``torch.compile(fullgraph=True)`` and
compiles it at once on one batch of zeros of the training input's shape, in
training mode (forward and backward) and in evaluation mode, so that the epochs
do not pay for it and the log reports it apart. The warm-up leaves nothing
behind: parameters, buffers (BatchNorm statistics, running thresholds),
gradients, the neurons' state and every RNG are as they were. A model that
breaks the graph is refused with a :class:`~.errors.TrainingError` that names
the recipe key. The checkpoints hold the model's own ``state_dict`` (no
``_orig_mod.`` prefix), so a compiled run resumes eager and the other way round.
"""

import time
from collections.abc import Callable

import torch
import torch.nn as nn

from .checkpoint import rng_state, set_rng_state
from .errors import TrainingError

__all__ = ["compile_model"]


def compile_model(
    model: nn.Module, backend: str, example: torch.Tensor, reset: Callable[[nn.Module], None]
) -> tuple[nn.Module, float]:
    """``(compiled module, seconds spent compiling)`` (see the module docstring).

    :param model: the module the steps train (the model, or its DDP wrapper)
    :param example: one input batch (``[T, N, ...]``) of the shape training feeds
    :param reset: resets the neurons' state (``functional.reset_net``)
    :raises TrainingError: the backend is unknown or the model does not compile whole
    """
    saved = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    rng, training = rng_state(), model.training
    start = time.perf_counter()
    try:
        compiled = torch.compile(model, backend=backend, fullgraph=True)
        model.train()
        compiled(example).float().sum().backward()
        reset(model)
        model.eval()
        with torch.no_grad():
            compiled(example)
    except Exception as e:  # Dynamo's Unsupported, InvalidBackend, BackendCompilerFailed
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainingError(
            f"train.compile: the model does not compile whole with backend {backend!r} "
            f"({type(e).__name__}: {first}); set train.compile=null to train it eager"
        ) from e
    seconds = time.perf_counter() - start
    reset(model)
    model.zero_grad(set_to_none=True)
    model.load_state_dict(saved)
    model.train(training)
    set_rng_state(rng)
    return compiled, seconds
