"""Fixtures shared by the test modules (pytest finds them here; no test imports another)."""

import subprocess
import sys

import pytest


@pytest.fixture
def run_python():
    """``run_python(code)``: run ``code`` in a fresh interpreter and return its stdout.

    The calling test fails, showing stderr, when the interpreter exits non-zero.
    """

    def run(code: str) -> str:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    return run
