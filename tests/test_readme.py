"""Every ```python block of README.md and docs/*.md runs as written, each in a fresh
interpreter, on CPU."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
BLOCKS = [block for page in PAGES for block in FENCE.findall(page.read_text())]
README_BLOCKS = FENCE.findall((ROOT / "README.md").read_text())


@pytest.mark.parametrize(
    "name", ["AdaptiveThresholdLIF(", "DilatedWindowLIF", 'set_backend(node, "cupy")']
)
def test_the_front_page_shows_each_neuron_and_the_cupy_backend(name):
    assert any(name in block for block in README_BLOCKS), f"no README example uses {name}"


def test_the_loss_and_the_monitors_have_examples_in_the_docs():
    for name in ("ConfidenceAwareLoss(", "Monitor("):
        assert any(name in block for block in BLOCKS), f"no example in README or docs uses {name}"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_a_readme_python_block_runs_as_written(tmp_path, index):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", BLOCKS[index]], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, (
        f"block {index + 1} of README.md and docs/:\n{BLOCKS[index]}\n{out.stderr}"
    )
