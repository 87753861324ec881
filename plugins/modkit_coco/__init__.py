"""COCO captions (and optionally instance masks) from the official JSON files; nothing is downloaded.

Layout (``data.root`` or ``data.root/<dir>``, default ``coco``)::

    annotations/captions_train2017.json   {"images": [{"id", "file_name", "height", "width"}],
    annotations/captions_val2017.json      "annotations": [{"id", "image_id", "caption"}]}
    annotations/instances_train2017.json  optional, for masks: "categories" and "annotations" with
                                          polygon or uncompressed-RLE "segmentation"
    train2017/000000000009.jpg …          (or images/train2017/)

Splits: every ``captions_*.json``; names with ``train`` are the training split, the others
(``val``, ``test``) the test split. Fields: ``image`` (a file path), ``caption`` (str) and, with
``masks: true``, ``mask`` (int64 (H, W): 0 background, 1 + the category's index in sorted-id order).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from modkit import ColumnRecords, DataError, DatasetConfig, DatasetSource, hookimpl
from modkit_manifest import with_manifest_hint


class CocoConfig(DatasetConfig):
    dir: str | None = Field(None, description="folder under data.root (default: data.root if it holds annotations/, else coco)")
    captions: Literal["all", "first"] = Field("all", description="one row per caption, or the first caption per image")
    masks: bool = Field(False, description="add a 'mask' field from instances_<split>.json")
    mask_size: tuple[int, int] | None = Field(None, description="height, width to resize masks to (nearest), as the "
                                              "image modality resizes images; set it to the mask modality's shape")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} line {exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise DataError(f"{path}: expected a COCO annotation file with 'images' and 'annotations' lists")
    return data


def check_size(path: Path, image_id: Any, height: int, width: int) -> None:
    """An annotation's image size within Pillow's decompression-bomb bound, checked before a mask of that size is
    allocated (a file claiming 60000 × 60000 would otherwise take 27 GiB)."""
    from PIL import Image

    bound = Image.MAX_IMAGE_PIXELS or 2**31
    if height < 1 or width < 1 or height * width > bound:
        raise DataError(f"{path}: image {image_id} claims {height} × {width} pixels (at most {bound:,} in all); "
                        f"the annotation file is damaged or crafted")


def decode_rle(counts: list[int], height: int, width: int) -> np.ndarray:
    """Uncompressed COCO RLE (alternating 0/1 run lengths, column-major, starting with 0s) → (H, W) bool."""
    flat = np.repeat(np.arange(len(counts)) % 2 == 1, counts)
    if flat.size != height * width:
        raise ValueError(f"RLE covers {flat.size} pixels, the image has {height * width}")
    return flat.reshape(width, height).T


def rasterize(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons [[x1, y1, x2, y2, …], …] or RLE) → (H, W) bool."""
    if isinstance(segmentation, dict):
        if not isinstance(segmentation.get("counts"), list):
            raise ValueError("compressed RLE (a counts string) is not supported; ground-truth files use polygons or count lists")
        return decode_rle(segmentation["counts"], height, width)
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in segmentation:
        if len(polygon) >= 6:
            draw.polygon([(float(polygon[i]), float(polygon[i + 1])) for i in range(0, len(polygon) - 1, 2)], fill=1)
    return np.asarray(canvas, dtype=bool)


class Coco(DatasetSource):
    """COCO images with their captions (captions_*.json), optionally with instance-mask class maps."""

    Config = CocoConfig

    def folder(self) -> Path:
        return self.find_folder(["coco"], lambda f: any((f / "annotations").glob("captions_*.json")), "annotations/captions_*.json")

    def load(self):
        try:
            folder = self.folder()
        except DataError as exc:  # no annotations folder where it was looked for
            raise with_manifest_hint(exc) from None
        splits: dict[str, list] = {"train": [], "test": []}
        self.mask_class_names: list[str] | None = None
        for path in sorted((folder / "annotations").glob("captions_*.json")):
            name = path.stem.removeprefix("captions_")
            splits["train" if "train" in name else "test"].append((name, path))
        if not splits["train"] or not splits["test"]:
            return {"all": self.records(folder, splits["train"] + splits["test"])}
        return {split: self.records(folder, files) for split, files in splits.items()}

    def image_dir(self, folder: Path, name: str) -> Path:
        for candidate in (folder / name, folder / "images" / name, folder / "images"):
            if candidate.is_dir():
                return candidate
        raise with_manifest_hint(DataError(f"image folder for {name} not found: {folder / name} or {folder / 'images' / name}"))

    def records(self, folder: Path, files: list[tuple[str, Path]]) -> ColumnRecords:
        images, captions, names, errors, masks = [], [], [], {}, []
        for name, path in files:
            data = read_json(path)
            image_dir = self.image_dir(folder, name)
            try:
                by_id = {im["id"]: im for im in data["images"]}
                if not all(isinstance(ann, dict) for ann in data["annotations"]):
                    raise TypeError("an annotation is not an object")
            except (KeyError, TypeError) as exc:
                raise DataError(f"{path}: not COCO captions ('images' with 'id', 'annotations' objects): {exc!r}") from None
            painter = self.mask_painter(folder, name) if self.config.masks else None
            seen: set[int] = set()
            for ann in data["annotations"]:
                where = f"{path} annotation {ann.get('id', '?')} (image {ann.get('image_id')})"
                image = by_id.get(ann.get("image_id"))
                if self.config.captions == "first" and ann.get("image_id") in seen:
                    continue
                seen.add(ann.get("image_id"))
                text = ann.get("caption")
                if image is None:
                    errors[len(names)] = f"{where}: no image with that id in 'images'"
                elif not isinstance(text, str) or not text.strip():
                    errors[len(names)] = f"{where}: empty caption"
                if image is not None and not isinstance(image.get("file_name"), str):
                    errors[len(names)] = f"{where}: its image has no 'file_name'"
                    image = None
                images.append(str(image_dir / image["file_name"]) if image else None)
                captions.append(text.strip() if isinstance(text, str) else None)
                names.append(where)
                masks.append((painter, image) if painter and image else None)
        columns: dict[str, Any] = {"image": images, "caption": captions}
        if self.config.masks:
            columns["mask"] = LazyMasks(masks)
        return ColumnRecords(columns, n=len(names), names=names, errors=errors)

    def mask_painter(self, folder: Path, name: str) -> "MaskPainter":
        path = folder / "annotations" / f"instances_{name}.json"
        if not path.is_file():
            raise DataError(f"masks: true needs {path}")
        painter = MaskPainter(path, read_json(path), self.config.mask_size)
        self.mask_class_names = painter.class_names
        return painter


class MaskPainter:
    """Draws one image's instance annotations as a class map (picklable, for DataLoader workers)."""

    def __init__(self, path: Path, data: dict[str, Any], size: tuple[int, int] | None):
        self.path, self.size = path, size
        self.by_image: dict[int, list] = {}
        try:
            categories = sorted(data.get("categories", []), key=lambda c: c["id"])
            self.index = {c["id"]: k + 1 for k, c in enumerate(categories)}
            self.class_names = ["background", *[c["name"] for c in categories]]
            for ann in data["annotations"]:
                self.by_image.setdefault(ann["image_id"], []).append(ann)
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{path}: not COCO instances ('categories' with 'id' and 'name', 'annotations' with "
                            f"'image_id'): {exc!r}") from None

    def __call__(self, image: dict[str, Any]) -> np.ndarray:
        """Large objects first, so small ones stay visible on top."""
        try:
            h, w = int(image["height"]), int(image["width"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{self.path}: image {image.get('id')} has no integer 'height' and 'width'") from None
        check_size(self.path, image.get("id"), h, w)
        mask = np.zeros((h, w), dtype=np.int64)
        for ann in sorted(self.by_image.get(image["id"], []), key=lambda a: -float(a.get("area", 0))):
            if ann.get("category_id") not in self.index:
                raise DataError(f"{self.path} annotation {ann.get('id')}: category {ann.get('category_id')} is not in 'categories'")
            try:
                mask[rasterize(ann["segmentation"], h, w)] = self.index[ann["category_id"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{self.path} annotation {ann.get('id')}: bad segmentation: {exc}") from None
        if self.size is not None and mask.shape != tuple(self.size):
            from PIL import Image

            resized = Image.fromarray(mask.astype(np.int32), mode="I").resize((self.size[1], self.size[0]), Image.NEAREST)
            mask = np.asarray(resized, dtype=np.int64)
        return mask


class LazyMasks:
    """The mask column: row ``i``'s mask, drawn when the row is read."""

    def __init__(self, rows: list):
        self.rows = rows

    def __call__(self, i: int) -> np.ndarray | None:
        return self.rows[i][0](self.rows[i][1]) if self.rows[i] else None


@hookimpl
def modkit_register(registry):
    registry.add_dataset("coco", Coco)
