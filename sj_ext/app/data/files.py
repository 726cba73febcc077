"""Where a dataset's files must lie, and the errors when they do not.

Every dataset builder resolves ``data.root`` with :func:`require_root`, reports
missing files with :class:`DatasetNotFoundError` (a ``FileNotFoundError``
naming the folder, the files expected there and how to obtain them) from a
check registered with :func:`file_check` (so ``sj-ext validate`` runs the same
check, :func:`check_files`, without loading anything), and
attempts a download only when the library behind it supports one and the
recipe asked for it (``data.args.download: true``), through
:func:`download_or_raise`, which reports a failure as a
:class:`DatasetDownloadError` (a ``RuntimeError``).
"""

from collections.abc import Callable
from pathlib import Path

__all__ = [
    "FILE_CHECKS",
    "check_files",
    "file_check",
    "DatasetNotFoundError",
    "DatasetDownloadError",
    "require_root",
    "not_found",
    "download_or_raise",
]


#: dataset name -> ``check(root, download)``: raises :class:`DatasetNotFoundError` when the
#: dataset's files are not under ``root`` (and no download was asked), without reading them
FILE_CHECKS: dict[str, Callable] = {}


def file_check(name: str):
    """Register the decorated ``check(root, download)`` as dataset ``name``'s file check."""

    def add(fn):
        FILE_CHECKS[name] = fn
        return fn

    return add


def check_files(name: str, root, download: bool = False) -> None:
    """Dataset ``name``'s file check (the one its builder runs); nothing for a dataset without."""
    check = FILE_CHECKS.get(name)
    if check is not None:
        check(root, download)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where the recipe says."""


class DatasetDownloadError(RuntimeError):
    """A download was attempted and failed."""


def require_root(root, dataset: str) -> Path:
    """``data.root`` as a ``Path``; a :class:`DatasetNotFoundError` when it is unset."""
    if root is None:
        raise DatasetNotFoundError(
            f"dataset {dataset!r}: data.root is not set; pass --set data.root=DIR, the folder "
            "that holds (or will hold) the dataset's files"
        )
    return Path(root).expanduser()


def not_found(dataset: str, where: Path, expected: str, how: str) -> DatasetNotFoundError:
    """The error for missing files: where they must be, what is expected, how to get them."""
    return DatasetNotFoundError(
        f"dataset {dataset!r}: the folder {where} does not hold its files (expected {expected}). "
        f"{how}"
    )


def download_or_raise(dataset: str, where: Path, fetch: Callable[[], object], how: str):
    """``fetch()`` (a library's download); any failure becomes a :class:`DatasetDownloadError`."""
    try:
        return fetch()
    except Exception as e:
        raise DatasetDownloadError(
            f"dataset {dataset!r}: the download into {where} failed "
            f"({type(e).__name__}: {e}). {how}"
        ) from e
