"""MNIST (or Fashion-MNIST, same format) from its idx files in a local directory; nothing is downloaded.

Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte`` (each optionally ``.gz``; ``-idx3-ubyte`` or ``.idx3-ubyte``) from
``data.root`` (or ``data.root/<dir>``). Fields: ``image`` (1, 28, 28) float32 in [0, 1], ``label`` int64.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

import torch
from torch import Tensor

from modkit import ArrayRecords, DataError, DatasetConfig, DatasetSource, Records, hookimpl
from modkit_manifest import MANIFEST_HINT, with_manifest_hint  # noqa: F401 - re-exported for the datasets built on MNIST


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


def write_idx(path: Path, array: np.ndarray) -> None:
    """A uint8 array written as an idx file (type 0x08), the layout :func:`read_idx` reads; for stand-ins and fixtures."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.write(header)
        out.write(array.tobytes())


class GatheredRecords(ArrayRecords):
    """Rows gathered per batch from uint8 image arrays through row-index arrays; nothing per row is materialised.

    ``images`` maps a field to ``(pixels, index)``: ``pixels`` a (M, C, H, W) uint8 array (a view of any
    strides), ``index`` the (N,) rows of ``pixels`` that the N records use (None: the identity). A batch
    gathers its rows and scales them to float32 in [0, 1]; ``labels`` are (N,) int64 arrays. Paired
    datasets whose pairs are index files (MNIST-SVHN's million pairs over 133k images) stay as small as
    their images this way. ``in_memory`` is False so that the build checks a few rows, not every pair.
    :meth:`concat` joins splits without copying their pixels, so train and test stay one fast-path view.
    """

    in_memory = False

    def __init__(self, images: dict[str, tuple[np.ndarray, np.ndarray | None]], labels: dict[str, np.ndarray]):
        sizes = {k: (len(index) if index is not None else len(pixels)) for k, (pixels, index) in images.items()}
        sizes.update({k: len(v) for k, v in labels.items()})
        if len(set(sizes.values())) != 1:
            raise DataError(f"fields have different lengths: {sizes}")
        self.n = next(iter(sizes.values()))
        # each field as parts [(pixels, index)] stacked row-wise; one part until splits are joined
        self.parts = {k: [(pixels, None if index is None else np.asarray(index, dtype=np.int64))] for k, (pixels, index) in images.items()}
        self.starts = np.zeros(1, dtype=np.int64)
        self.labels = {k: np.asarray(v, dtype=np.int64) for k, v in labels.items()}
        self.present = {}
        self.objects = {}
        self.fields = [*images, *self.labels]

    def concat(self, other: "GatheredRecords") -> "GatheredRecords":
        """These rows followed by ``other``'s (same fields), sharing both pixel arrays."""
        if self.fields != other.fields:
            raise DataError(f"cannot join splits with fields {self.fields} and {other.fields}")
        joined = GatheredRecords.__new__(GatheredRecords)
        joined.n = self.n + other.n
        joined.parts = {k: self.parts[k] + other.parts[k] for k in self.parts}
        joined.starts = np.concatenate([self.starts, other.starts + self.n])
        joined.labels = {k: np.concatenate([self.labels[k], other.labels[k]]) for k in self.labels}
        joined.present, joined.objects, joined.fields = {}, {}, list(self.fields)
        return joined

    @property
    def arrays(self) -> dict[str, Any]:  # type: ignore[override]
        """Each field as a column that gathers the rows it is indexed with (``arrays[f][index]``, as ArrayRecords'
        tensors answer): what the fast path and the evaluation's attribute reader look up."""
        return {name: GatheredColumn(self, name) for name in self.fields}

    def _gather(self, name: str, rows: np.ndarray) -> Tensor:
        if name in self.labels:
            return torch.from_numpy(self.labels[name][rows])
        parts = self.parts[name]
        if len(parts) == 1:
            pixels, index = parts[0]
            picked = np.ascontiguousarray(pixels[rows if index is None else index[rows]])
        else:
            which = np.searchsorted(self.starts, rows, side="right") - 1
            picked = np.empty((len(rows), *parts[0][0].shape[1:]), dtype=np.uint8)
            for p in np.unique(which):
                pixels, index = parts[p]
                local = rows[which == p] - self.starts[p]
                picked[which == p] = pixels[local if index is None else index[local]]
        return torch.from_numpy(picked).float().div_(255.0)

    def get(self, i: int) -> dict[str, Any]:
        return {name: self._gather(name, np.asarray([i]))[0] for name in self.fields}

    def take(self, index: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        rows = index.cpu().numpy()
        ones = torch.ones(len(rows), dtype=torch.bool)
        return {name: (self._gather(name, rows), ones) for name in self.fields}

    def with_fields(self, fields: dict[str, Any]) -> Records:
        return Records.with_fields(self, fields)  # added fields are read per row; the images are never copied


class GatheredColumn:
    """One field of :class:`GatheredRecords`, indexed like a tensor: ``column[rows]`` gathers those rows."""

    def __init__(self, records: GatheredRecords, name: str):
        self.records, self.name = records, name

    def __len__(self) -> int:
        return self.records.n

    def __getitem__(self, index: Any) -> Tensor:
        rows = index.cpu().numpy() if isinstance(index, Tensor) else np.asarray(index)
        if rows.ndim == 0:
            return self.records._gather(self.name, rows[None])[0]
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return self.records._gather(self.name, rows.astype(np.int64))


def find_idx(folder: Path, stem: str, kind: str) -> Path:
    """``train-images-idx3-ubyte`` as published, or ``train-images.idx3-ubyte`` as some mirrors name it."""
    head, tail = kind.split("-", 1)
    names = [f"{stem}-{kind}", f"{stem}-{head}.{tail}"]
    for name in names:
        for suffix in ("", ".gz"):
            if (folder / (name + suffix)).is_file():
                return folder / (name + suffix)
    raise with_manifest_hint(DataError(f"MNIST file {names[0]}[.gz] not found in {folder}"))


def load_split_uint8(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """One split's idx pair → ((n, rows, cols) images as stored (uint8 for MNIST), (n,) int64 labels), checked against each other."""
    images_path = find_idx(folder, prefix, "images-idx3-ubyte")
    labels_path = find_idx(folder, prefix, "labels-idx1-ubyte")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: expected 3 dimensions (n, rows, cols), got shape {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{labels_path} has {labels.shape} labels for the {len(images)} images of {images_path}")
    return images, labels.astype(np.int64)


def load_split(folder: Path, prefix: str) -> ArrayRecords:
    images, labels = load_split_uint8(folder, prefix)
    return ArrayRecords({"image": (images.astype(np.float32) / 255.0)[:, None], "label": labels})


class MnistConfig(DatasetConfig):
    dir: str | None = Field(None, description="folder under data.root holding the idx files (default: data.root, then data.root/mnist)")


class Mnist(DatasetSource):
    """MNIST idx files (train + t10k) from a local folder: image (1, 28, 28) in [0, 1] and label."""

    Config = MnistConfig

    def folder(self) -> Path:
        try:
            return self.find_folder(["mnist", Path("MNIST") / "raw"], lambda f: any(f.glob("train-images*")),
                                    "MNIST idx files (train-images-idx3-ubyte[.gz])")
        except DataError as exc:
            raise with_manifest_hint(exc) from None

    def load(self):
        folder = self.folder()
        return {"train": load_split(folder, "train"), "test": load_split(folder, "t10k")}


@hookimpl
def modkit_register(registry):
    registry.add_dataset("mnist", Mnist)
