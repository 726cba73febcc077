"""The files around the code: licence, contributing guide, ignored folders, install spellings."""

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT, setup_cfg

from sj_ext.app.preflight import CUPY_EXTRAS
from sj_ext.fused_lif import INSTALL_HINT

#: SHA-256 of the Apache License 2.0 as https://www.apache.org/licenses/LICENSE-2.0.txt gives it
APACHE_2 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
#: where an install command may be written: the docs, the code's messages, the scripts, CI
SCANNED = ("README.md", "CONTRIBUTING.md", "setup.cfg", "docs", "sj_ext", "benchmarks", "tests")
SUFFIXES = {".md", ".py", ".cfg", ".sh", ".txt"}


def scanned_texts() -> dict[Path, str]:
    texts = {}
    for top in (ROOT / name for name in SCANNED):
        for path in [top] if top.is_file() else sorted(top.rglob("*")):
            if path.suffix in SUFFIXES and path.is_file():
                texts[path] = path.read_text(errors="replace")
    return texts


def test_the_licence_is_the_standard_apache_2_text_setup_cfg_names():
    assert setup_cfg()["metadata"]["license"] == "Apache-2.0"
    assert hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest() == APACHE_2


def test_contributing_says_how_to_set_up_test_style_and_go_upstream():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings == ["Set-up", "Tests", "Style", "From here to SpikingJelly upstream"]
    ci = (ROOT / ".ci" / "run").read_text()
    for command in ("ruff check .", "pytest -q", 'torchvision==0.29.1 -e ".[test]"'):
        assert command in ci and command in text, command
    assert "https://github.com/fangwei123456/spikingjelly" in text


def _ignored(path: str) -> bool:
    out = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, capture_output=True)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode == 0


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git work tree"
)
def test_data_and_runs_are_ignored_by_git_and_the_package_is_not():
    """The datasets' and the runs' folders are ignored; no file of the package is (a
    ``data/`` pattern once hid ``sj_ext/app/data/``'s new module from a commit)."""
    assert _ignored("data/MNIST/raw/train-images-idx3-ubyte")
    assert _ignored("runs/sweep/x/metrics.json")
    package = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "sj_ext").rglob("*.py"))
    assert "sj_ext/app/data/tonic_datasets.py" in package
    assert [p for p in package if "__pycache__" not in p and _ignored(p)] == []


def test_one_install_spelling_of_the_cupy_extras_everywhere():
    """Every ``[cupy-cudaNN]`` reads ``pip install -e ".[cupy-cudaNN]"``, a setup.cfg extra."""
    extras = {name for name in setup_cfg()["options.extras_require"] if name.startswith("cupy-")}
    spelled = re.compile(r'pip\s+install\s+-e\s+"\.\[(cupy-cuda\d+)\]"')  # may wrap
    texts = {**scanned_texts(), Path("CUPY_EXTRAS"): CUPY_EXTRAS}
    named = {path: re.findall(r"\[(cupy-cuda\d+)\]", text) for path, text in texts.items()}
    wrong = {
        str(path): names
        for path, names in named.items()
        if names and sorted(spelled.findall(texts[path])) != sorted(names)
    }
    assert wrong == {}
    assert set(spelled.findall(CUPY_EXTRAS)) == extras == {n for v in named.values() for n in v}


def test_the_plugin_names_the_cupy_wheels_the_extras_install():
    """The plugin's hint names CuPy's wheels (a plugin user has no clone to install -e)."""
    wheels = {
        line.split(">")[0].strip()
        for name, lines in setup_cfg()["options.extras_require"].items()
        if name.startswith("cupy-")
        for line in lines.split("\n")
        if line.strip()
    }
    assert set(re.findall(r"pip install (cupy-cuda\d+x)\b", INSTALL_HINT)) == wheels
