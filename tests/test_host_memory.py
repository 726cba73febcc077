"""The engine's CPU allocator setting: freed large blocks stay in the process (glibc)."""

import ctypes
import subprocess
import sys

import pytest
from helpers import PROCESS_ENV

#: allocates and frees a 64 MiB tensor ten times (above glibc's largest mmap
#: threshold) and prints the page faults of the ten; with argument ``keep`` after
#: :func:`keep_freed_memory`
CHILD = """
import resource, sys, torch
from sj_ext.app.engine.host_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.ones(16 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(16 << 20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = (64 << 20) // 4096  # the 4 KiB pages of one 64 MiB block

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "gnu_get_libc_version"),
    reason="glibc on Linux only",
)


def faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode],
        env=PROCESS_ENV,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return int(out.stdout)


@glibc
def test_freed_blocks_are_not_faulted_in_again():
    """By default every 64 MiB block is mapped and faulted in anew; kept, at most the first is."""
    assert faults("default") >= 8 * PAGES
    assert faults("keep") <= 2 * PAGES


@glibc
def test_trainer_keeps_freed_memory_on_the_cpu(monkeypatch, tmp_path):
    """A CPU run of the engine sets it before it builds anything."""
    from helpers import QUICKSTART

    from sj_ext.app.engine import trainer
    from sj_ext.app.recipe import load_recipe

    calls = []
    monkeypatch.setattr(trainer, "keep_freed_memory", lambda: calls.append(1) or True)
    recipe = load_recipe(
        QUICKSTART, ["train.epochs=1", "data.train_samples=64", "data.test_samples=64"]
    )
    trainer.train(recipe, tmp_path / "run")
    assert calls == [1]
