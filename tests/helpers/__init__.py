"""Helpers shared by test modules (imported as ``helpers``: pytest puts tests/ on the path).

The paths every test module uses are defined here once; the modules of this package
are the tests' fixtures in real file formats, reference computations and the scripts
that the engine tests run as separate processes.
"""

import configparser
import os
import struct
from pathlib import Path

#: this package, where the scripts the tests run as processes live (kill_run.py, ...)
HELPERS = Path(__file__).resolve().parent
#: the repository's root
ROOT = HELPERS.parents[1]
#: the sj_ext package's source
PACKAGE = ROOT / "sj_ext"
#: the recipe folder and the recipe most tests train
RECIPES = ROOT / "recipes"
QUICKSTART = RECIPES / "digits_quickstart.yaml"
#: the environment of the processes the tests start (scripts, torchrun workers, examples):
#: this checkout's sj_ext first on the path, one thread
PROCESS_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    "OMP_NUM_THREADS": "1",
}


def setup_cfg() -> configparser.ConfigParser:
    """The repository's setup.cfg, parsed."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk of a complete PNG file (asserts it is one)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND", f"{path} is truncated"
    return struct.unpack(">II", data[16:24])
