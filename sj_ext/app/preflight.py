"""What this machine lacks for a recipe: ``sj-ext validate`` says it before ``train`` fails.

:func:`missing_here` checks a resolved recipe against the machine, without
building anything: CUDA for ``train.device: cuda`` and for the CuPy backend,
CuPy itself for ``neuron.backend: cupy``, the packages of the ``neuromorphic`` extra
for an event-camera dataset, and the dataset's files under
``data.root`` (the very check the dataset's builder runs first,
:func:`sj_ext.app.data.files.check_files`; skipped when ``data.args.download`` is set).
"""

import importlib.util

import torch

from .data.files import DatasetNotFoundError, check_files
from .data.tonic_datasets import missing_packages

__all__ = ["CUPY_EXTRAS", "missing_here"]

#: how this project's install takes CuPy, by torch's CUDA major
CUPY_EXTRAS = (
    'pip install -e ".[cupy-cuda13]" (CUDA 13 builds of torch) '
    'or pip install -e ".[cupy-cuda12]" (CUDA 12)'
)


def _device_problems(recipe: dict) -> list[str]:
    cuda = torch.cuda.is_available()
    device, backend = recipe["train"]["device"], recipe["neuron"]["backend"]
    problems = []
    if device == "cuda" and not cuda:
        problems.append(
            f"train.device: 'cuda', but this machine has no CUDA device torch "
            f"{torch.__version__} can use; set train.device=auto (or cpu) to run on the CPU"
        )
    if backend == "cupy" and importlib.util.find_spec("cupy") is None:
        problems.append(f"neuron.backend: 'cupy' needs CuPy, not installed here: {CUPY_EXTRAS}")
    if backend == "cupy" and (device == "cpu" or not cuda):
        problems.append(
            "neuron.backend: 'cupy' runs on CUDA only and this run would be on the CPU; "
            "set neuron.backend=torch"
        )
    return problems


def _data_problems(recipe: dict) -> list[str]:
    d = recipe["data"]
    missing = missing_packages(d["name"])
    if missing:
        return [f"data.name: {missing}"]
    try:
        check_files(d["name"], d["root"], bool(d["args"].get("download", False)))
    except DatasetNotFoundError as e:
        return [f"data.root: {e}"]
    return []


def missing_here(recipe: dict) -> list[str]:
    """``'key: what is missing'`` for everything ``recipe`` needs that this machine lacks."""
    return _device_problems(recipe) + _data_problems(recipe)
