"""Tiny datasets written in the real on-disk formats, for the tests.

Each ``write_*`` function puts a few random samples under ``root`` exactly
where and how the dataset builders of :mod:`sj_ext.app.data` (through torchvision
and tonic) read the real data, so a recipe can run end to end without the
real files::

    from helpers import fixtures          # tests/ on sys.path, as pytest puts it
    fixtures.write_cifar(root, num_classes=10)
    # sj-ext train recipes/dsatgo_cifar10.yaml --set data.root=ROOT ...

Formats: MNIST idx files (big-endian header, uint8 data); CIFAR python
pickles; image-folder trees (PNG/JPEG); N-MNIST ``.bin`` (5 bytes per
event); DVS128 Gesture ``.npy`` as tonic's preprocessed release (rows
``x, y, p, t`` with ``t`` in ms); CIFAR10-DVS ``.aedat4`` (see
:func:`write_aedat4`). The contents are random: only the formats are real.
"""

import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "write_mnist",
    "write_cifar",
    "write_image_folder",
    "write_tinyimagenet",
    "write_imagenet",
    "write_nmnist",
    "write_dvsgesture",
    "write_cifar10dvs",
    "write_aedat4",
    "CIFAR10DVS_CLASSES",
]

CIFAR10DVS_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def _idx(path: Path, array: np.ndarray) -> None:
    """An idx file: magic ``0x00 0x00 0x08 ndim``, the dims as big-endian int32, uint8 data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}i", *array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(
    root, folder: str = "MNIST", n_train: int = 20, n_test: int = 10, seed: int = 0
) -> Path:
    """torchvision's raw MNIST files (``folder='FashionMNIST'`` for Fashion-MNIST)."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        _idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
    return raw


def write_cifar(
    root, num_classes: int = 10, n_train: int = 20, n_test: int = 10, seed: int = 0
) -> Path:
    """torchvision's CIFAR10 (5 training batches) or CIFAR100 python pickles."""
    rng = np.random.default_rng(seed)

    def batch(n: int, key: str) -> dict:
        data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        return {"data": data, key: [i % num_classes for i in range(n)]}

    def dump(path: Path, obj) -> None:
        path.write_bytes(pickle.dumps(obj))

    if num_classes == 10:
        folder = Path(root) / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, 6):
            dump(folder / f"data_batch_{i}", batch(max(1, n_train // 5), "labels"))
        dump(folder / "test_batch", batch(n_test, "labels"))
        dump(folder / "batches.meta", {"label_names": list(CIFAR10DVS_CLASSES)})
    elif num_classes == 100:
        folder = Path(root) / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        dump(folder / "train", batch(n_train, "fine_labels"))
        dump(folder / "test", batch(n_test, "fine_labels"))
        dump(folder / "meta", {"fine_label_names": [f"class{i}" for i in range(100)]})
    else:
        raise ValueError(f"num_classes must be 10 or 100, got {num_classes}")
    return folder


def _image(path: Path, size: int, rng) -> None:
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_image_folder(
    folder, classes, per_class: int, size: int, ext: str = ".png", seed: int = 0
) -> Path:
    """``folder/<class>/<class>_<i><ext>``: one sub-folder of images per class."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    for c in classes:
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _image(folder / c / f"{c}_{i}{ext}", size, rng)
    return folder


def write_tinyimagenet(
    root, num_classes: int = 3, train_per_class: int = 4, val_per_class: int = 2, seed: int = 0
) -> Path:
    """TinyImageNet's layout: ``train/<wnid>/images/``, ``val/images/`` + ``val_annotations.txt``.

    The wnids are written in reverse sorted order to ``wnids.txt`` (the real
    file is unsorted too); the annotation file lists the validation images
    class after class, in interleaved order.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    wnids = [f"n{index:08d}" for index in range(num_classes)]
    for wnid in wnids:
        folder = root / "train" / wnid / "images"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(train_per_class):
            _image(folder / f"{wnid}_{i}.JPEG", 64, rng)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    (root / "val" / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(val_per_class * num_classes):
        wnid = wnids[i % num_classes]
        _image(root / "val" / "images" / f"val_{i}.JPEG", 64, rng)
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (root / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")
    return root


def write_imagenet(
    root, num_classes: int = 3, per_class: int = 2, size: int = 80, seed: int = 0
) -> Path:
    """ImageNet's layout: ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``."""
    wnids = [f"n{index:08d}" for index in range(num_classes)]
    for offset, split in enumerate(("train", "val")):
        write_image_folder(Path(root) / split, wnids, per_class, size, ".JPEG", seed + offset)
    return Path(root)


def _events(rng, n: int, width: int, height: int, duration_us: int):
    """``n`` random events sorted by time: ``(t, x, y, p)`` arrays."""
    t = np.sort(rng.integers(0, duration_us, n))
    return t, rng.integers(0, width, n), rng.integers(0, height, n), rng.integers(0, 2, n)


def write_nmnist(
    root, train_per_class: int = 2, test_per_class: int = 1, events: int = 60, seed: int = 0
) -> Path:
    """N-MNIST ``.bin`` files: ``NMNIST/{Train,Test}/<digit>/<i>.bin``, 34 x 34 sensor.

    One event is 40 bits: ``x`` (8), ``y`` (8), polarity (1), timestamp in us (23).
    """
    rng = np.random.default_rng(seed)
    for split, per_class in (("Train", train_per_class), ("Test", test_per_class)):
        for digit in range(10):
            folder = Path(root) / "NMNIST" / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                t, x, y, p = _events(rng, events, 34, 34, 300_000)
                raw = np.stack(
                    [x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF], axis=1
                )
                (folder / f"{i:05d}.bin").write_bytes(raw.astype(np.uint8).tobytes())
    return Path(root) / "NMNIST"


def write_dvsgesture(
    root,
    train_users=(1, 2),
    test_users=(24,),
    labels=tuple(range(11)),
    events: int = 80,
    seed: int = 0,
) -> Path:
    """DVS128 Gesture as tonic's preprocessed release.

    ``DVSGesture/ibmGesture{Train,Test}/userNN_<lighting>/<label>.npy``, each an
    int64 array ``[n, 4]`` of rows ``x, y, p, t`` (``t`` in ms; tonic scales to us).
    """
    rng = np.random.default_rng(seed)
    for split, users in (("ibmGestureTrain", train_users), ("ibmGestureTest", test_users)):
        for user in users:
            folder = Path(root) / "DVSGesture" / split / f"user{user:02d}_fluorescent"
            folder.mkdir(parents=True, exist_ok=True)
            for label in labels:
                t, x, y, p = _events(rng, events, 128, 128, 6000)
                np.save(folder / f"{label}.npy", np.stack([x, y, p, t], axis=1).astype(np.int64))
    return Path(root) / "DVSGesture"


def write_cifar10dvs(root, per_class: int = 10, events: int = 60, seed: int = 0) -> Path:
    """CIFAR10-DVS: ``CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat4``, 128 x 128 sensor."""
    rng = np.random.default_rng(seed)
    for name in CIFAR10DVS_CLASSES:
        folder = Path(root) / "CIFAR10DVS" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            write_aedat4(
                folder / f"cifar10_{name}_{i}.aedat4", *_events(rng, events, 128, 128, 10_000)
            )
    return Path(root) / "CIFAR10DVS"


# ------------------------------------------------------------------------------ AEDAT4
def write_aedat4(path, t, x, y, p, width: int = 128, height: int = 128) -> None:
    """An uncompressed AEDAT4 file with one event stream (the ``aedat`` decoder's format).

    Layout: the magic ``#!AER-DAT4.0\\r\\n``; a little-endian uint32 length and
    the IOHeader flatbuffer (table ``{compression: int32 = 0, file_data_position:
    int64 = -1, description: string}``, only ``description`` stored: the DV XML
    naming stream 0 as ``EVTS`` of ``width x height``); then one packet:
    uint32 stream id 0, uint32 length, a size-prefixed ``EventPacket``
    flatbuffer (identifier ``EVTS``, ``elements``: structs ``{t: int64, x:
    int16, y: int16, on: bool}`` of 16 bytes, aligned to 8).
    """
    description = (
        '<dv version="2.0"><node name="outInfo" path="/mainloop/output/outInfo/">'
        '<node name="0" path="/mainloop/output/outInfo/0/">'
        '<attr key="compression" type="string">NONE</attr>'
        '<attr key="typeIdentifier" type="string">EVTS</attr>'
        '<node name="info" path="/mainloop/output/outInfo/0/info/">'
        f'<attr key="sizeX" type="int">{width}</attr>'
        f'<attr key="sizeY" type="int">{height}</attr>'
        "</node></node></node></dv>"
    ).encode()

    # IOHeader: [root uoffset][IOHE][vtable 10 B + 2 pad][table: soffset, description uoffset]
    # [string: length, bytes, NUL]
    vtable = struct.pack("<5H", 10, 8, 0, 0, 4)  # compression, file_data_position absent
    table_pos = 4 + 4 + 12
    string_pos = table_pos + 8
    header = (
        struct.pack("<I", table_pos)
        + b"IOHE"
        + vtable
        + b"\0\0"
        + struct.pack("<iI", table_pos - 8, string_pos - (table_pos + 4))
        + struct.pack("<I", len(description))
        + description
        + b"\0"
    )
    header += b"\0" * (-len(header) % 4)

    # EventPacket, size-prefixed: [size][root uoffset][EVTS][vtable 6 B + 2 pad]
    # [table: soffset, elements uoffset][vector: length, structs at an 8-aligned position]
    events = np.zeros(
        len(t),
        dtype=np.dtype(
            {
                "names": ["t", "x", "y", "on"],
                "formats": ["<i8", "<i2", "<i2", "?"],
                "offsets": [0, 8, 10, 12],
                "itemsize": 16,
            }
        ),
    )
    events["t"], events["x"], events["y"], events["on"] = t, x, y, p
    table_pos, vector_pos = 20, 28  # the structs start at 32
    packet = (
        struct.pack("<I", table_pos - 4)
        + b"EVTS"
        + struct.pack("<3H", 6, 8, 4)
        + b"\0\0"
        + struct.pack("<iI", table_pos - 12, vector_pos - (table_pos + 4))
        + struct.pack("<I", len(events))
        + events.tobytes()
    )
    packet = struct.pack("<I", len(packet)) + packet
    Path(path).write_bytes(
        b"#!AER-DAT4.0\r\n"
        + struct.pack("<I", len(header))
        + header
        + struct.pack("<II", 0, len(packet))
        + packet
    )
