"""Pascal VOC segmentation from its published folders; nothing is downloaded.

Layout (``data.root``, ``data.root/VOC2012`` or ``data.root/VOCdevkit/VOC2012``, or ``dir``)::

    JPEGImages/2007_000032.jpg …
    SegmentationClass/2007_000032.png    palette PNG: pixel = class index 0-20, 255 = boundary (ignore)
    ImageSets/Segmentation/train.txt     one image id per line (val.txt likewise)

Fields: ``image`` and ``mask`` (file paths). Each mask is checked when its row is read: a class
outside 0-20 (other than 255) or a PNG that is not palette-indexed is a DataError naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from modkit import ColumnRecords, DataError, DatasetConfig, DatasetSource, hookimpl, read_text_file

CLASS_NAMES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]
IGNORE = 255


class VocConfig(DatasetConfig):
    dir: str | None = Field(None, description="the VOC year folder under data.root (default: found automatically)")
    train_list: str = Field("train", description="ImageSets/Segmentation/<name>.txt for training")
    test_list: str = Field("val", description="ImageSets/Segmentation/<name>.txt for testing")
    check_masks: bool = Field(True, description="read each mask when used and check its class ids")


def check_mask(path: str) -> str:
    """Raise DataError unless ``path`` is a palette PNG whose indices are VOC classes or 255."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise DataError(f"{path}: mask is a {img.mode} image; VOC masks store class ids as palette indices (mode P)")
            if img.width * img.height > (Image.MAX_IMAGE_PIXELS or 2**31):  # the header's size, before decoding
                raise Image.DecompressionBombError(f"{img.width} × {img.height} pixels")
            values = np.unique(np.asarray(img))
    except FileNotFoundError:
        raise DataError(f"mask file not found: {path}") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"mask {path} declares {exc}; larger than any real mask (a decompression bomb?). Remove it") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read mask {path}: {exc}") from None
    bad = [int(v) for v in values if v >= len(CLASS_NAMES) and v != IGNORE]
    if bad:
        raise DataError(f"{path}: mask class {bad[0]} is out of range (VOC classes are 0-{len(CLASS_NAMES) - 1}, {IGNORE} = ignore)")
    return path


class CheckedMasks:
    """A lazy column: mask path ``i``, checked when read (a class, not a lambda, so DataLoader workers can pickle it)."""

    def __init__(self, paths: list[str]):
        self.paths = paths

    def __call__(self, i: int) -> str:
        return check_mask(self.paths[i])


class Voc(DatasetSource):
    """Pascal VOC semantic segmentation: JPEG images and palette-PNG class masks (21 classes, 255 ignored)."""

    Config = VocConfig
    class_names = CLASS_NAMES

    def folder(self) -> Path:
        return self.find_folder(["VOC2012", Path("VOCdevkit") / "VOC2012"], lambda f: (f / "SegmentationClass").is_dir() and (f / "JPEGImages").is_dir(), "JPEGImages/ and SegmentationClass/")

    def load(self):
        folder = self.folder()
        return {"train": self.split(folder, self.config.train_list), "test": self.split(folder, self.config.test_list)}

    def split(self, folder: Path, name: str) -> ColumnRecords:
        listing = folder / "ImageSets" / "Segmentation" / f"{name}.txt"
        if not listing.is_file():
            raise DataError(f"split list not found: {listing}")
        entries = [(n, line.strip()) for n, line in enumerate(read_text_file(listing, "split list").splitlines(), 1) if line.strip()]
        images = [str(folder / "JPEGImages" / f"{i}.jpg") for _, i in entries]
        masks = [str(folder / "SegmentationClass" / f"{i}.png") for _, i in entries]
        errors = {}
        for k, (number, image_id) in enumerate(entries):
            missing = [p for p in (images[k], masks[k]) if not Path(p).is_file()]
            if missing:
                errors[k] = f"{listing} line {number} ({image_id}): file not found: {missing[0]}"
        mask_column = CheckedMasks(masks) if self.config.check_masks else masks
        return ColumnRecords({"image": images, "mask": mask_column}, n=len(entries),
                             names=[f"{listing} line {n} ({i})" for n, i in entries], errors=errors)


@hookimpl
def modkit_register(registry):
    registry.add_dataset("voc", Voc)
