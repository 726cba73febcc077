"""Fixtures shared by the test modules (pytest finds them here; no test imports another).

The paths, files and helper code the modules share are in the ``helpers`` package beside it.
"""

import os
import socket
import subprocess
import sys

import pytest
import torchvision.datasets.cifar


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


class NetworkBlocked(OSError):
    """What a connection attempt raises under :func:`no_network`."""


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails (and is recorded): no test may download anything.

    Returns the list of attempts. A module uses it for every test with
    ``pytestmark = pytest.mark.usefixtures("no_network")``.
    """
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise NetworkBlocked("network access is blocked in the tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.fixture
def cifar_files_without_md5(monkeypatch):
    """torchvision checks the md5 of the real CIFAR files; ours are random: check presence."""
    monkeypatch.setattr(
        torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path)
    )
