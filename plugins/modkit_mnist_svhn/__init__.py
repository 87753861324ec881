"""MNIST-SVHN (MMVAE, MoPoE, MEME): MNIST and SVHN digits paired by class, from the real files; nothing is downloaded.

Files, under ``data.root`` (each folder also settable)::

    MNIST idx files           data.root, data.root/mnist or data.root/MNIST/raw (as the mnist dataset)
    train_32x32.mat           data.root, data.root/svhn or data.root/SVHN: SVHN's cropped digits,
    test_32x32.mat              X (32, 32, 3, N) uint8 and y (N, 1) with 10 meaning the digit 0
    {train,test}-ms-mnist-idx.pt   optional: MMVAE's pairing, two equal-length int64 tensors of
    {train,test}-ms-svhn-idx.pt    row numbers into MNIST and SVHN (data.root or the SVHN folder)

The pairing is MMVAE's ``rand_match_on_idx``: per class, the first ``min(#MNIST, #SVHN, max_per_class)``
images of each set (in label-sorted order) matched by ``copies`` independent random permutations —
MMVAE uses 30 copies, MoPoE 20, MultiVae 5. With ``pairing: auto`` the index files are read when
present (their pairs must agree on the digit), else built from ``seed``; ``save_index: true`` writes them.

Pairs are never materialised: the records hold the 133k images as uint8 and the two index arrays,
and a batch gathers its rows (60k + 73k images, 30 copies: ~1.1 M pairs in ~300 MB, loaded in seconds).
Fields: ``mnist`` (1, 28, 28) and ``svhn`` (3, 32, 32) float32 in [0, 1], ``label`` int64 (the shared digit).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from modkit import DataError, DatasetConfig, DatasetSource, hookimpl
from modkit_manifest import with_manifest_hint
from modkit_mnist import GatheredRecords, Mnist, MnistConfig, load_split_uint8
from modkit_mnist_svhn.standin import make_mnist_svhn

__all__ = ["MnistSvhn", "MnistSvhnConfig", "make_mnist_svhn", "match_pairs", "read_svhn", "read_pairing"]

SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
MNIST_PREFIX = {"train": "train", "test": "t10k"}


class MnistSvhnConfig(DatasetConfig):
    mnist_dir: str | None = Field(None, description="folder under data.root with the MNIST idx files (default: searched as the mnist dataset does)")
    svhn_dir: str | None = Field(None, description="folder under data.root with train_32x32.mat/test_32x32.mat (default: data.root, svhn, SVHN)")
    index_dir: str | None = Field(None, description="folder under data.root with the *-ms-*-idx.pt pairing files "
                                                    "(default: data.root, then the SVHN folder)")
    pairing: Literal["auto", "files", "build"] = Field("auto", description="files: read the index files; build: match anew; auto: files if present")
    copies: int = Field(30, ge=1, description="random matchings per class (MMVAE 30, MoPoE 20, MultiVae 5)")
    max_per_class: int = Field(10000, ge=1, description="at most this many images per class and set enter the matching (MMVAE: 10000)")
    seed: int = Field(0, description="seed of the matching when it is built")
    save_index: bool = Field(False, description="write the built matching as MMVAE's index files into the index folder")


def read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """SVHN's ``*_32x32.mat`` → ((N, 3, 32, 32) uint8 view, (N,) labels with 10 → 0)."""
    from scipy.io import loadmat

    if not path.is_file():
        raise with_manifest_hint(DataError(f"SVHN file {path} not found"))
    try:
        mat = loadmat(path, variable_names=["X", "y"])
    except Exception as exc:  # noqa: BLE001 - scipy raises ValueError/TypeError/MatReadError on damaged files
        raise DataError(f"cannot read {path} as a MATLAB file: {str(exc).splitlines()[0][:200]}") from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path} has no {'X' if 'X' not in mat else 'y'} variable (SVHN's .mat holds X (32, 32, 3, N) and y (N, 1))")
    images, labels = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if images.ndim != 4 or images.shape[2] != 3:
        raise DataError(f"{path}: X has shape {images.shape}, SVHN's is (32, 32, 3, N)")
    if images.dtype != np.uint8:
        raise DataError(f"{path}: X is {images.dtype}, SVHN's is uint8")
    if len(labels) != images.shape[3]:
        raise DataError(f"{path}: y has {len(labels)} labels for the {images.shape[3]} images of X")
    if labels.size and (labels.min() < 0 or labels.max() > 10):
        raise DataError(f"{path}: labels must be 1–10 (10 is the digit 0), found {labels.min()} to {labels.max()}")
    # (H, W, C, N) → (N, C, H, W) as a view: MATLAB's column-major order keeps each image contiguous
    return images.transpose(3, 2, 0, 1), (labels % 10).astype(np.int64)


def match_pairs(labels_a: np.ndarray, labels_b: np.ndarray, copies: int, max_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """MMVAE's per-class random matching: row numbers (into a, into b) of pairs showing the same class.

    Per class, in class order: the first ``n = min(#a, #b, max_per_class)`` rows of each set (rows in
    ascending order) and ``copies`` pairs of independent permutations of them.
    """
    rng = np.random.default_rng(seed)
    first, second = [], []
    for label in np.unique(labels_a):
        rows_a, rows_b = np.flatnonzero(labels_a == label), np.flatnonzero(labels_b == label)
        n = min(len(rows_a), len(rows_b), max_per_class)
        for _ in range(copies):
            first.append(rows_a[:n][rng.permutation(n)])
            second.append(rows_b[:n][rng.permutation(n)])
    if not first:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(first).astype(np.int64), np.concatenate(second).astype(np.int64)


def _read_index(path: Path) -> np.ndarray:
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a pickled object or a damaged file: say which and why
        raise DataError(f"cannot load {path} as a tensor (weights_only): {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(value, torch.Tensor) or value.ndim != 1 or value.dtype.is_floating_point:
        raise DataError(f"{path}: expected a 1-D integer tensor of row numbers, got {type(value).__name__} "
                        f"{getattr(value, 'dtype', '')} {tuple(getattr(value, 'shape', ()))}")
    return value.numpy().astype(np.int64)


def read_pairing(folder: Path, split: str, labels_mnist: np.ndarray, labels_svhn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MMVAE's ``{split}-ms-mnist-idx.pt`` / ``{split}-ms-svhn-idx.pt``, checked against the images they index."""
    paths = [folder / f"{split}-ms-{name}-idx.pt" for name in ("mnist", "svhn")]
    first, second = (_read_index(p) for p in paths)
    if len(first) != len(second):
        raise DataError(f"{paths[0]} has {len(first)} rows, {paths[1].name} {len(second)}: they must pair one to one")
    for path, rows, n in ((paths[0], first, len(labels_mnist)), (paths[1], second, len(labels_svhn))):
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise DataError(f"{path}: row {rows.max() if rows.max() >= n else rows.min()} is outside the {n} images it indexes")
    wrong = np.flatnonzero(labels_mnist[first] != labels_svhn[second])
    if len(wrong):
        k = wrong[0]
        raise DataError(f"{paths[0].name}/{paths[1].name} pair different digits in {len(wrong)} of {len(first)} pairs "
                        f"(pair {k}: MNIST {labels_mnist[first[k]]}, SVHN {labels_svhn[second[k]]}): built for other copies of the files?")
    return first, second


class MnistSvhn(DatasetSource):
    """MNIST and SVHN digits paired by class through index arrays (MMVAE's matching), never a per-pair list."""

    Config = MnistSvhnConfig
    attributes = ["label"]

    def mnist_folder(self) -> Path:
        return Mnist(MnistConfig(type="mnist", dir=self.config.mnist_dir), self.root).folder()

    def svhn_folder(self) -> Path:
        named = self.config.svhn_dir
        candidates = [self.root / named] if named else [self.root, self.root / "svhn", self.root / "SVHN"]
        for folder in candidates:
            if (folder / SVHN_FILES["train"]).is_file():
                return folder
        raise with_manifest_hint(DataError(f"no SVHN {SVHN_FILES['train']} in {' or '.join(map(str, candidates))}"))

    def index_folder(self, svhn: Path) -> Path | None:
        named = self.config.index_dir
        candidates = [self.root / named] if named else [self.root, svhn]
        for folder in candidates:
            if (folder / "train-ms-mnist-idx.pt").is_file():
                return folder
        if self.config.pairing == "files":
            raise with_manifest_hint(DataError(f"no pairing file train-ms-mnist-idx.pt in {' or '.join(map(str, candidates))} "
                                               "(pairing: files); pairing: build matches the digits anew"))
        return candidates[0] if self.config.save_index or named else None

    def load(self):
        mnist, svhn = self.mnist_folder(), self.svhn_folder()
        index = self.index_folder(svhn)
        reading = self.config.pairing != "build" and index is not None and (index / "train-ms-mnist-idx.pt").is_file()
        splits = {}
        for split in ("train", "test"):
            mnist_images, mnist_labels = load_split_uint8(mnist, MNIST_PREFIX[split])
            if mnist_images.dtype != np.uint8:
                raise DataError(f"{mnist}: the {MNIST_PREFIX[split]} images are {mnist_images.dtype}; MNIST's idx files hold bytes (type 0x08)")
            svhn_images, svhn_labels = read_svhn(svhn / SVHN_FILES[split])
            if reading:
                first, second = read_pairing(index, split, mnist_labels, svhn_labels)
            else:
                first, second = match_pairs(mnist_labels, svhn_labels, self.config.copies, self.config.max_per_class,
                                            self.config.seed + (split == "test"))
                if self.config.save_index and index is not None:
                    index.mkdir(parents=True, exist_ok=True)
                    torch.save(torch.from_numpy(first), index / f"{split}-ms-mnist-idx.pt")
                    torch.save(torch.from_numpy(second), index / f"{split}-ms-svhn-idx.pt")
            splits[split] = GatheredRecords({"mnist": (mnist_images[:, None], first), "svhn": (svhn_images, second)},
                                            {"label": mnist_labels[first]})
        return splits


@hookimpl
def modkit_register(registry):
    registry.add_dataset("mnist_svhn", MnistSvhn)
