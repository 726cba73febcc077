"""Step guards: every process stops alike, before the backward pass, for a signal, a
non-finite output or loss, and after a step that left NaN or inf in the model's state."""

import signal

import torch
from torch.nn.utils import get_total_norm

from . import distributed
from .build import Run
from .errors import Preempted, TrainingError
from .signals import StopSignals

__all__ = ["checked_loss", "check_step", "check_state"]


def checked_loss(run: Run, out, y, info, device, stop: StopSignals, where: str):
    """The batch loss, once every process agrees that the step may go on.

    Every process stops alike, before the backward pass, for a signal
    (:class:`Preempted`), a non-finite model output or a non-finite (or refused)
    loss (:class:`TrainingError`).
    """
    on = " on {} process(es)" if info.enabled else ""
    n_bad = out.numel() - int(torch.isfinite(out).sum())
    bad_out, stops = distributed.all_reduce_sum(
        [float(n_bad > 0), float(stop.signum is not None)], info, device
    )
    if stops:
        signum = stop.signum or signal.SIGTERM
        raise Preempted(f"stopped by {signal.Signals(signum).name} during {where}", signum)
    if bad_out:
        raise TrainingError(
            f"non-finite model output ({n_bad} of {out.numel()} values) at {where}"
            + on.format(int(bad_out))
        )
    try:
        loss = run.loss(out, y)
        fault = None if torch.isfinite(loss) else f"non-finite training loss ({loss.item()})"
    except ValueError as e:  # a loss that checks its own inputs (e.g. non-finite per-sample)
        loss, fault = None, f"the loss refused the batch ({e})"
    bad = distributed.all_reduce_sum([float(fault is not None)], info, device)[0]
    if bad:
        raise TrainingError(f"{fault or 'a fault'} at {where}" + on.format(int(bad)))
    return loss


def _floating_state(run: Run):
    """``(name, tensor)`` for every non-empty floating tensor the model and loss save."""
    for owner, module in (("model", run.model), ("loss", run.loss)):
        for name, value in module.state_dict(keep_vars=True).items():
            if value.is_floating_point() and value.numel():
                yield f"{owner}.{name}", value


def _non_finite(run: Run) -> str:
    """The parameters and buffers holding NaN or inf, listed (the first four); '' if none."""
    bad = [name for name, value in _floating_state(run) if not torch.isfinite(value).all()]
    more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
    return ", ".join(bad[:4]) + more


def check_step(run: Run, info, device, where: str) -> None:
    """Stop at the step that left NaN or inf in a parameter or buffer, every process alike.

    One fused reduction screens the step: the L2 norm of every tensor together (a fast
    reduction on every device, fused on GPUs) is finite unless a tensor holds NaN or inf,
    or finite values too large to square; only then is each tensor checked exactly, and
    those holding NaN or inf named. One sync per step.
    """
    norm = get_total_norm([value for _, value in _floating_state(run)], 2.0)
    names = "" if torch.isfinite(norm) else _non_finite(run)
    bad = distributed.all_reduce_sum([float(bool(names))], info, device)[0]
    if bad:
        on = f" on {int(bad)} process(es)" if info.enabled else ""
        raise TrainingError(f"non-finite values{f' in {names}' if names else ''} at {where}{on}")


def check_state(run: Run, epoch: int) -> None:
    """Refuse to save NaN or inf in the model's or loss's parameters and buffers."""
    names = _non_finite(run)
    if names:
        raise TrainingError(f"non-finite values in {names} after epoch {epoch}")
