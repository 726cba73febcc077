"""torchrun integration: process group set-up and metric reduction."""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "setup", "teardown", "all_reduce_sum", "average_buffers"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_type: str) -> DistInfo:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU), if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        # torchrun keeps its store across restarts (--max-restarts): without a prefix per
        # restart, the new group would read the previous group's addresses and fail
        store, rank, world = next(dist.rendezvous("env://"))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group(
            "nccl" if device_type == "cuda" else "gloo",
            store=dist.PrefixStore(f"sj_ext/attempt_{attempt}", store),
            rank=rank,
            world_size=world,
        )
    return info


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], info: DistInfo, device) -> list[float]:
    """Sum a few scalars over every process (identity in a single process)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def average_buffers(model: torch.nn.Module, info, device) -> None:
    """Average floating buffers (BN statistics, running thresholds) over processes."""
    if not info.enabled:
        return
    for buf in model.buffers():
        if buf.is_floating_point() and buf.numel():
            torch.distributed.all_reduce(buf)
            buf.div_(info.world_size)
