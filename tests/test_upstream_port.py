"""The upstream port (upstream/port.py) inside a copy of SpikingJelly's own package.

The installed ``spikingjelly`` is copied to a temporary folder, the port is
written into the copy, and the ported tests run there in a fresh interpreter,
with the copy first on the path and ``sj_ext`` unimportable (the ported
``conftest.py``). They pass; deleting a ported file, or a drift of a ported
equation from sj_ext's, makes them fail.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import spikingjelly

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("port", ROOT / "upstream" / "port.py")
port = importlib.util.module_from_spec(spec)
spec.loader.exec_module(port)


@pytest.fixture(scope="module")
def ported(tmp_path_factory) -> Path:
    """A copy of the installed spikingjelly with the port laid into it; the copy's parent."""
    root = tmp_path_factory.mktemp("sj_tree")
    shutil.copytree(
        Path(spikingjelly.__file__).parent,
        root / "spikingjelly",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    port.port(root / "spikingjelly")
    return root


def run_ported_tests(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test"]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)


def test_the_port_passes_its_tests_inside_spikingjelly_without_sj_ext(ported):
    written = sorted(p.relative_to(ported).as_posix() for p in ported.rglob("sj_methods/**/*.py"))
    assert "spikingjelly/activation_based/sj_methods/neuron/adaptive.py" in written
    assert "spikingjelly/activation_based/sj_methods/functional/adaptive_lif.py" in written
    out = run_ported_tests(ported)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "9 passed" in out.stdout


def test_the_ported_tests_fail_when_a_ported_file_is_gone(ported, tmp_path):
    copy = tmp_path / "tree"
    shutil.copytree(ported, copy)
    (copy / "spikingjelly/activation_based/sj_methods/neuron/dilated_window.py").unlink()
    out = run_ported_tests(copy)
    assert out.returncode != 0
    assert "dilated_window" in out.stdout + out.stderr


def test_the_ported_tests_fail_when_a_ported_equation_drifts(ported, tmp_path):
    copy = tmp_path / "tree"
    shutil.copytree(ported, copy)
    charge = copy / "spikingjelly/activation_based/sj_methods/functional/adaptive_lif.py"
    text = charge.read_text()
    exact = "return v + (x - (v - v_rest)) * k\n"
    assert exact in text
    charge.write_text(text.replace(exact, "return v + (x - (v - v_rest)) * k * 1.001\n"))
    out = run_ported_tests(copy)
    assert out.returncode != 0
    assert "test_the_ported_methods_give_sj_exts_outputs_and_gradients" in out.stdout


def test_the_port_refuses_the_installed_package():
    with pytest.raises(SystemExit, match="installed spikingjelly"):
        port.main([str(Path(spikingjelly.__file__).parent)])
