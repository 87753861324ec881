"""PolyMNIST (MoPoE, MMVAE+, MultiVae): five views of one digit, read from a local folder; nothing is downloaded.

Two layouts of the same data, both under ``data.root`` (or ``data.root/<dir>``, default ``MMNIST``):

- the PNG trees MoPoE publishes: ``{train,test}/m0 … m4/{i}.{digit}.png`` — a tuple is the five files
  with the same ``i`` (paired by name, never by listing order) and its label is the ``digit`` in the name;
- the tensor form MultiVae and the comparison toolkit save: ``{train,test}/m0.pt … m4.pt`` (uint8 or
  float in [0, 1], (N, 3, 28, 28) or (N, 28, 28, 3)) and ``labels.pt`` — loaded with
  ``torch.load(weights_only=True)``, which refuses pickled objects.

``standin: {train: N, test: M}`` reads no folder: the offline stand-in (:mod:`modkit_polymnist.standin`) is drawn
in memory, the same tuples :func:`make_polymnist` would write, so a recipe runs where nothing is on disk.

Fields: ``m0`` … ``m4`` (only the ``views`` chosen), each (C, 28, 28) float32 in [0, 1] with the
channel count of the files (3 for PolyMNIST: a 1-channel recipe is refused at build, never trained on
grey), and ``label`` int64. The images are kept as uint8 and scaled a batch at a time.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from modkit import DataError, DatasetConfig, DatasetSource, hookimpl
from modkit_manifest import with_manifest_hint
from modkit_mnist import GatheredRecords
from modkit_polymnist.standin import make_polymnist, standin_arrays

__all__ = ["PolyMnist", "PolyMnistConfig", "StandinConfig", "make_polymnist", "read_png_views", "read_tensor_views",
           "standin_arrays"]

NAME = re.compile(r"^(\d+)\.(\d)\.png$")
SPLITS = ("train", "test")


class StandinConfig(BaseModel):
    """The offline stand-in drawn in memory (scikit-learn's digits over five procedural textures)."""
    model_config = ConfigDict(extra="forbid")
    train: int = Field(600, ge=1, description="training tuples")
    test: int = Field(200, ge=1, description="test tuples (their digits are images the training tuples never use)")
    seed: int = Field(0, description="the stand-in's own seed: which digits, crops and labels")


class PolyMnistConfig(DatasetConfig):
    dir: str | None = Field(None, description="folder under data.root holding train/ and test/ "
                                              "(default: data.root, then MMNIST, then PolyMNIST/MMNIST)")
    views: list[int] = Field([0, 1, 2, 3, 4], min_length=1, description="which views m<k> to read, each a field of its own")
    layout: Literal["auto", "png", "tensor"] = Field("auto", description="png: m<k>/<i>.<digit>.png trees; tensor: m<k>.pt + "
                                                                         "labels.pt; auto: the tensors when every view asked has "
                                                                         "one, else the PNG trees")
    save_tensors: bool = Field(False, description="after reading the PNG trees, write the views read as m<k>.pt + labels.pt "
                                                  "beside them, so later runs load in seconds")
    standin: StandinConfig | None = Field(None, description="read nothing from disk: draw the offline stand-in in memory "
                                                            "(what make_polymnist writes), e.g. {train: 3000, test: 500}")

    @field_validator("views")
    @classmethod
    def _distinct(cls, views: list[int]) -> list[int]:
        if len(set(views)) != len(views) or min(views) < 0:
            raise ValueError(f"views must be distinct view numbers ≥ 0 (got {views})")
        return views


def _decode(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB") if img.mode in ("P", "RGBA", "LA", "CMYK") else img)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise DataError(f"{path}: expected an 8-bit grey or RGB image, got mode {array.dtype} shape {array.shape}")
    return array[:, :, None] if array.ndim == 2 else array


def _listing(folder: Path) -> dict[int, tuple[int, Path]]:
    """``{i: (digit, path)}`` of one view's folder; a file not named ``<i>.<digit>.png`` is an error."""
    files = {}
    for path in folder.iterdir():
        if path.name.startswith("."):
            continue
        match = NAME.match(path.name)
        if not match:
            raise DataError(f"{path}: PolyMNIST files are named <index>.<digit>.png")
        i = int(match.group(1))
        if i in files:
            raise DataError(f"{folder}: two files for tuple {i}: {files[i][1].name} and {path.name}")
        files[i] = (int(match.group(2)), path)
    return files


def read_png_views(split: Path, views: list[int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One split's PNG trees → ({"m<k>": (N, C, H, W) uint8}, (N,) labels), tuples paired by file name."""
    listings = {}
    for k in views:
        if not (split / f"m{k}").is_dir():
            raise DataError(f"{split} has no view folder m{k} (views asked: {', '.join(f'm{v}' for v in views)})")
        listings[k] = _listing(split / f"m{k}")
    first = views[0]
    keys = sorted(listings[first])
    for k in views[1:]:
        lacking = sorted(set(listings[first]) - set(listings[k]))
        extra = sorted(set(listings[k]) - set(listings[first]))
        if lacking or extra:
            i, has, lacks = (lacking[0], first, k) if lacking else (extra[0], k, first)
            digit = listings[has][i][0]
            raise DataError(f"{split}: m{has} has {i}.{digit}.png but m{lacks} has no tuple {i} "
                            f"(m{first}: {len(listings[first])} files, m{k}: {len(listings[k])}); every view needs the same indices")
    labels = np.array([listings[first][i][0] for i in keys], dtype=np.int64)
    for k in views[1:]:
        for i, label in zip(keys, labels):
            if listings[k][i][0] != label:
                raise DataError(f"{split}: tuple {i} is digit {label} in m{first} but {listings[k][i][1].name} in m{k}")
    images = {}
    for k in views:
        decoded = [_decode(listings[k][i][1]) for i in keys]
        shapes = {a.shape for a in decoded}
        if len(shapes) != 1:
            i, odd = next((i, a) for i, a in zip(keys, decoded) if a.shape != decoded[0].shape)
            raise DataError(f"{listings[k][i][1]}: (H, W, C) {odd.shape} differs from the {decoded[0].shape} of m{k}'s first file")
        images[f"m{k}"] = np.stack(decoded).transpose(0, 3, 1, 2) if decoded else np.zeros((0, 3, 28, 28), np.uint8)
    return images, labels


def _load_tensor(path: Path) -> np.ndarray:
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path} not found") from None
    except Exception as exc:  # noqa: BLE001 - a pickled object or a damaged file: say which file and why
        raise DataError(f"cannot load {path} as a tensor (weights_only): {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(value, torch.Tensor):
        raise DataError(f"{path} holds a {type(value).__name__}, not a tensor")
    return value.numpy()


def _as_uint8_chw(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise DataError(f"{path}: expected images (N, C, H, W) or (N, H, W, C), got shape {array.shape}")
    if array.shape[1] not in (1, 3) and array.shape[-1] in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "f":
        if array.size and (array.min() < 0 or array.max() > 1):
            raise DataError(f"{path}: float images must lie in [0, 1] (found {array.min():.3g} to {array.max():.3g})")
        return np.rint(array * 255).astype(np.uint8)
    raise DataError(f"{path}: images must be uint8 or float, got {array.dtype}")


def read_tensor_views(split: Path, views: list[int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One split's ``m<k>.pt`` + ``labels.pt`` → ({"m<k>": (N, C, H, W) uint8}, (N,) labels)."""
    labels = _load_tensor(split / "labels.pt")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{split / 'labels.pt'}: expected (N,) integer labels, got {labels.dtype} {labels.shape}")
    images = {}
    for k in views:
        path = split / f"m{k}.pt"
        if not path.is_file():
            raise DataError(f"{split} has no m{k}.pt (views asked: {', '.join(f'm{v}' for v in views)})")
        images[f"m{k}"] = array = _as_uint8_chw(_load_tensor(path), path)
        if len(array) != len(labels):
            raise DataError(f"{path} has {len(array)} images for the {len(labels)} labels of labels.pt")
    return images, labels.astype(np.int64)


def _layout(split: Path, views: list[int] | None = None) -> str | None:
    tensors = (split / "labels.pt").is_file()
    pngs = any(p.is_dir() for p in split.glob("m*")) if split.is_dir() else False
    if tensors and (views is None or not pngs or all((split / f"m{k}.pt").is_file() for k in views)):
        return "tensor"
    return "png" if pngs else None


def save_tensor_views(split: Path, images: dict[str, np.ndarray], labels: np.ndarray) -> None:
    """The views read, in MultiVae's tensor form: ``m<k>.pt`` (N, C, H, W) uint8 and ``labels.pt`` (N,) int64."""
    for name, array in images.items():
        torch.save(torch.from_numpy(np.ascontiguousarray(array)), split / f"{name}.pt")
    torch.save(torch.from_numpy(labels), split / "labels.pt")


class PolyMnist(DatasetSource):
    """PolyMNIST's five views of a digit (PNG trees or m<k>.pt tensors) and the digit label."""

    Config = PolyMnistConfig
    attributes = ["label"]

    def folder(self) -> Path:
        try:
            return self.find_folder(["MMNIST", Path("PolyMNIST") / "MMNIST", "PolyMNIST"],
                                    lambda f: _layout(f / "train") is not None, "PolyMNIST train/m0…m4 (PNG folders or m<k>.pt)")
        except DataError as exc:
            raise with_manifest_hint(exc) from None

    def load(self):
        if self.config.standin is not None:
            return self.standin()
        folder = self.folder()
        splits = {}
        for split in SPLITS:
            where = folder / split
            layout = _layout(where, self.config.views) if self.config.layout == "auto" else self.config.layout
            if layout is None or not where.is_dir():
                raise with_manifest_hint(DataError(f"no PolyMNIST {split} split in {where}"))
            read = read_tensor_views if layout == "tensor" else read_png_views
            images, labels = read(where, self.config.views)
            shapes = {name: a.shape[1:] for name, a in images.items()}
            if len(set(shapes.values())) != 1:
                raise DataError(f"{where}: the views differ in shape: " + ", ".join(f"{n} {list(s)}" for n, s in shapes.items()))
            if layout == "png" and self.config.save_tensors:
                save_tensor_views(where, images, labels)
            splits[split] = GatheredRecords({name: (a, None) for name, a in images.items()}, {"label": labels})
        return splits

    def standin(self):
        """The stand-in's splits drawn in memory, the views asked for (five views drawn, as make_polymnist draws
        them by default, so the tuples are the ones it writes; a sixth view and on reuse the five textures)."""
        spec = self.config.standin
        drawn = standin_arrays(spec.train, spec.test, spec.seed, views=max(5, max(self.config.views) + 1))
        return {split: GatheredRecords({f"m{k}": (np.ascontiguousarray(images[k].transpose(0, 3, 1, 2)), None)
                                        for k in self.config.views}, {"label": labels})
                for split, (images, labels) in drawn.items()}


@hookimpl
def modkit_register(registry):
    registry.add_dataset("polymnist", PolyMnist)
