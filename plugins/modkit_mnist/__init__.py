"""MNIST (or Fashion-MNIST, same format) from its idx files in a local directory; nothing is downloaded.

Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte`` (each optionally ``.gz``; ``-idx3-ubyte`` or ``.idx3-ubyte``) from
``data.root`` (or ``data.root/<dir>``). Fields: ``image`` (1, 28, 28) float32 in [0, 1], ``label`` int64.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
from pydantic import Field

from modkit import ArrayRecords, DataError, DatasetConfig, DatasetSource, hookimpl

#: idx type code → numpy big-endian dtype
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


MAX_IDX_BYTES = 2**31  # 2 GiB of data: MNIST's largest file holds 47 MB; anything near this is not an idx file


def _read_bounded(path: Path) -> bytes:
    """The file's bytes, a ``.gz`` inflated no further than its idx header declares (plus one byte, to see that
    nothing follows): a small gzip that expands to gigabytes is refused after reading the header."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        head = handle.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_TYPES:
            raise DataError(f"{path} is not an idx file (magic bytes {head.hex() or 'missing'})")
        sizes = handle.read(4 * head[3])
        if len(sizes) < 4 * head[3]:
            raise DataError(f"{path}: truncated idx header")
        shape = tuple(int(d) for d in np.frombuffer(sizes, ">u4"))
        expected = int(np.prod(shape, dtype=np.float64)) * np.dtype(IDX_TYPES[head[2]]).itemsize
        if expected > MAX_IDX_BYTES:
            raise DataError(f"{path}: its header declares shape {shape} ({expected:,} bytes), more than {MAX_IDX_BYTES:,}; "
                            f"not an MNIST file")
        return head + sizes + handle.read(expected + 1)


def read_idx(path: Path) -> np.ndarray:
    """An idx file (magic 0 0 TYPE NDIM, NDIM big-endian uint32 sizes, then the data) → array."""
    try:
        raw = _read_bounded(path)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        more = len(raw) - header > expected
        raise DataError(f"{path}: header says shape {shape} ({expected} bytes of data), file has "
                        f"{'more' if more else len(raw) - header}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx(folder: Path, stem: str, kind: str) -> Path:
    """``train-images-idx3-ubyte`` as published, or ``train-images.idx3-ubyte`` as some mirrors name it."""
    head, tail = kind.split("-", 1)
    names = [f"{stem}-{kind}", f"{stem}-{head}.{tail}"]
    for name in names:
        for suffix in ("", ".gz"):
            if (folder / (name + suffix)).is_file():
                return folder / (name + suffix)
    raise DataError(f"MNIST file {names[0]}[.gz] not found in {folder}")


def load_split(folder: Path, prefix: str) -> ArrayRecords:
    images_path = find_idx(folder, prefix, "images-idx3-ubyte")
    labels_path = find_idx(folder, prefix, "labels-idx1-ubyte")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: expected 3 dimensions (n, rows, cols), got shape {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{labels_path} has {labels.shape} labels for the {len(images)} images of {images_path}")
    return ArrayRecords({"image": (images.astype(np.float32) / 255.0)[:, None], "label": labels.astype(np.int64)})


class MnistConfig(DatasetConfig):
    dir: str | None = Field(None, description="folder under data.root holding the idx files (default: data.root, then data.root/mnist)")


class Mnist(DatasetSource):
    """MNIST idx files (train + t10k) from a local folder: image (1, 28, 28) in [0, 1] and label."""

    Config = MnistConfig

    def folder(self) -> Path:
        return self.find_folder(["mnist", Path("MNIST") / "raw"], lambda f: any(f.glob("train-images*")), "MNIST idx files (train-images-idx3-ubyte[.gz])")

    def load(self):
        folder = self.folder()
        return {"train": load_split(folder, "train"), "test": load_split(folder, "t10k")}


@hookimpl
def modkit_register(registry):
    registry.add_dataset("mnist", Mnist)
