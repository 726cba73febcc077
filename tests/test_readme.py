"""README.md and docs/*.md as a newcomer follows them.

Every ```python block runs as written, each in a fresh interpreter, on CPU; a README
example prints the shapes that its comments state; the README's set-up commands are
the ones CI (``.ci/run``) runs, with versions that setup.cfg allows.
"""

import json
import re
import shlex
import subprocess
import sys

import pytest
from helpers import PROCESS_ENV, ROOT, setup_cfg
from packaging.requirements import Requirement

README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SHELL = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
README_BLOCKS = FENCE.findall(README)
DOCS_BLOCKS = {
    f"{page.name}-{number}": block
    for page in sorted((ROOT / "docs").glob("*.md"))
    for number, block in enumerate(FENCE.findall(page.read_text()), 1)
}
#: a shape stated in a comment: a list of whole numbers such as ``[2, 3, 16, 8]``
SHAPE = re.compile(r"\[(\d+(?:, \d+)*)\]")
PIN = re.compile(r"\b([A-Za-z][\w.-]*)==(\d+(?:\.\w+)*)")

#: runs the block argv[1] as a script; writes argv[2]: per print() of the block, its line
#: and the shape of each value printed (a torch.Size is its own shape; None: no shape)
RECORDER = """
import builtins, json, sys

block, record = sys.argv[1], sys.argv[2]
shown, show = [], builtins.print


def shape_of(value):
    if isinstance(value, tuple) and all(isinstance(d, int) for d in value):
        return list(value)
    shape = getattr(value, "shape", None)
    return None if shape is None else list(shape)


def recording_print(*args, **kwargs):
    caller = sys._getframe(1)
    if caller.f_code.co_filename == "<block>":
        shown.append([caller.f_lineno, [shape_of(a) for a in args]])
    show(*args, **kwargs)


builtins.print = recording_print
exec(compile(block, "<block>", "exec"), {"__name__": "__main__"})
with open(record, "w") as f:
    json.dump(shown, f)
"""


def run_block(block: str, tmp_path) -> list:
    """Run ``block`` on CPU in a fresh interpreter; ``[[line, [shape, ...]], ...]`` it printed."""
    env = {**PROCESS_ENV, "CUDA_VISIBLE_DEVICES": ""}
    record = tmp_path / "shown.json"
    argv = [sys.executable, "-c", RECORDER, block, str(record)]
    out = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"this block fails:\n{block}\n{out.stderr}"
    return json.loads(record.read_text())


def stated_shapes(block: str) -> dict[int, set[tuple[int, ...]]]:
    """Per line of ``block`` that calls print(): the shapes its comment states."""
    return {
        number: {tuple(map(int, s.split(", "))) for s in SHAPE.findall(line.partition("#")[2])}
        for number, line in enumerate(block.splitlines(), 1)
        if line.lstrip().startswith("print(")
    }


def commands(text: str) -> list[str]:
    """The shell commands of ``text`` (lines and ``&&`` parts), as CI would run them.

    ``python3 -m`` / ``python -m`` and pip's ``--quiet`` are dropped, quotes resolved, so that
    ``python3 -m pip install --quiet -e ".[test]"`` reads ``pip install -e .[test]``; the
    shell's ``set`` and ``cd`` are left out.
    """
    found = []
    for line in text.splitlines():
        for part in line.partition("#")[0].split("&&"):
            words = [w for w in shlex.split(part) if w != "--quiet"]
            if words[:2] in (["python3", "-m"], ["python", "-m"]):
                words = words[2:]
            if words and words[0] not in ("set", "cd"):
                found.append(" ".join(words))
    return found


def readme_commands() -> list[str]:
    """The README's commands: its bash blocks and its inline ``pip``/``ruff``/``sj-ext`` spans."""
    spans = [
        " ".join(s.split()) for s in re.findall(r"`((?:pip|ruff|sj-ext|python) [^`]+)`", README)
    ]
    return commands("\n".join(SHELL.findall(README) + spans))


def pins(text: str) -> dict[str, str]:
    """``{package: version}`` of every ``package==version`` in ``text`` (one version each)."""
    found = set(PIN.findall(text))
    assert len({name for name, _ in found}) == len(found), f"two versions of one package: {found}"
    return dict(found)


# ---------------------------------------------------------------------------- the examples
@pytest.mark.parametrize(
    "name", ["AdaptiveThresholdLIF(", "DilatedWindowLIF", 'set_backend(node, "cupy")']
)
def test_the_front_page_shows_each_neuron_and_the_cupy_backend(name):
    assert any(name in block for block in README_BLOCKS), f"no README example uses {name}"


def test_the_loss_and_the_monitors_have_examples_in_the_docs():
    blocks = [*README_BLOCKS, *DOCS_BLOCKS.values()]
    for name in ("ConfidenceAwareLoss(", "Monitor("):
        assert any(name in block for block in blocks), f"no example in README or docs uses {name}"


def test_every_print_of_a_readme_example_states_the_shapes_it_prints():
    assert stated_shapes("print(x.shape)  # [T, N, L, D] = [2, 3, 16, 8]\ny = 1  # [3]") == {
        1: {(2, 3, 16, 8)}
    }
    stated = [stated_shapes(block) for block in README_BLOCKS]
    silent = [
        (n, line)
        for n, lines in enumerate(stated, 1)
        for line, shapes in lines.items()
        if not shapes
    ]
    assert silent == [], (
        f"README print() lines (block, line) with no shape in the comment: {silent}"
    )
    assert sum(map(len, stated)) >= 5


@pytest.mark.parametrize("index", range(len(README_BLOCKS)), ids=lambda i: f"README.md-{i + 1}")
def test_a_readme_example_runs_and_prints_the_shapes_it_states(tmp_path, index):
    block = README_BLOCKS[index]
    printed: dict[int, set] = {}
    for line, shapes in run_block(block, tmp_path):
        printed.setdefault(line, set()).update(tuple(s) for s in shapes if s is not None)
    assert printed == stated_shapes(block), "printed shapes (by line) against the comments"


@pytest.mark.parametrize("name", DOCS_BLOCKS)
def test_a_docs_python_block_runs_as_written(tmp_path, name):
    run_block(DOCS_BLOCKS[name], tmp_path)


# ------------------------------------------------------------------------------ the set-up
def test_the_readme_shows_what_ci_runs_with_the_same_pins():
    ci = commands(CI)
    assert {"ruff check .", "pytest -q"} <= set(ci) and len(ci) >= 4
    shown = readme_commands()
    assert [c for c in ci if c not in shown] == [], "CI runs what the README does not show"
    assert pins(README) == pins(CI)
    assert pins((ROOT / "setup.cfg").read_text()).items() <= pins(CI).items()
    quickstart = [c for c in shown if c.startswith("sj-ext train")]
    assert quickstart and all((ROOT / c.split()[2]).is_file() for c in quickstart)
    assert "sj-ext = sj_ext.app.cli:main" in setup_cfg()["options.entry_points"]["console_scripts"]


def test_the_pinned_versions_are_ones_setup_cfg_allows():
    required = {
        Requirement(line).name: Requirement(line).specifier
        for line in setup_cfg()["options"]["install_requires"].split("\n")
        if line.strip()
    }
    pinned = pins(CI)
    assert {"torch", "torchvision"} <= pinned.keys() & required.keys()
    refused = {n: v for n, v in pinned.items() if n in required and v not in required[n]}
    assert refused == {}, f"pins outside setup.cfg's install_requires {required}"
    for name, version in pinned.items():  # "Both commands install torch 2.14.1 / ..."
        said = re.findall(rf"\b{re.escape(name)} (\d+(?:\.\d+)+)\b", README)
        assert set(said) <= {version}, f"README says {name} {said}, CI pins {version}"
    python = re.search(r"^Python (\d+\.\d+)", README.split("## Set-up")[1], re.M).group(1)
    assert setup_cfg()["options"]["python_requires"] == f">={python}"


def test_the_quickstart_recipe_and_the_readme_give_the_same_time():
    said = re.compile(r"took\s+(\d+) s on the\s+(?:#\s*)?quiet 2-core")
    recipe = (ROOT / "recipes" / "digits_quickstart.yaml").read_text()
    assert said.findall(recipe) == said.findall(README.split("## Quick example")[0]) == ["8"]
