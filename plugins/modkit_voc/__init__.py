"""Pascal VOC segmentation from its published folders; nothing is downloaded.

Layout (``data.root``, ``data.root/VOC2012`` or ``data.root/VOCdevkit/VOC2012``, or ``dir``)::

    JPEGImages/2007_000032.jpg …
    SegmentationClass/2007_000032.png    palette PNG: pixel = class index 0-20, 255 = boundary (ignore)
    ImageSets/Segmentation/train.txt     one image id per line (val.txt likewise)

With SBD's augmented masks (the "VOC aug" set most segmentation papers train on: 10,582 images)::

    SegmentationClassAug/2007_000032.png  grey or palette PNG: pixel = class index, 255 = ignore
    ImageSets/Segmentation/train_aug.txt  (or train_aug.txt beside JPEGImages/) one id per line, or
                                          DeepLab's "/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png"

``train_list: train_aug`` selects them; the masks are then read from ``SegmentationClassAug/``
(``mask_dir`` overrides the folder).

Fields: ``image`` and ``mask`` (file paths). Each mask is checked when its row is read: a class
outside 0-20 (other than 255) or a PNG that is not palette-indexed is a DataError naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from modkit import ColumnRecords, DataError, DatasetConfig, DatasetSource, hookimpl, read_text_file
from modkit_manifest import with_manifest_hint

CLASS_NAMES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]
IGNORE = 255


class VocConfig(DatasetConfig):
    dir: str | None = Field(None, description="the VOC year folder under data.root (default: found automatically)")
    train_list: str = Field("train", description="ImageSets/Segmentation/<name>.txt for training")
    test_list: str = Field("val", description="ImageSets/Segmentation/<name>.txt for testing")
    check_masks: bool = Field(True, description="read each mask when used and check its class ids")
    mask_dir: str | None = Field(None, description="mask folder (default: SegmentationClassAug when a list is *_aug and it exists, "
                                                   "else SegmentationClass)")


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
        def holds(f: Path) -> bool:
            return ((f / "SegmentationClass").is_dir() or (f / "SegmentationClassAug").is_dir()) and (f / "JPEGImages").is_dir()

        try:
            return self.find_folder(["VOC2012", Path("VOCdevkit") / "VOC2012"], holds,
                                    "JPEGImages/ and SegmentationClass/ (or SBD's SegmentationClassAug/)")
        except DataError as exc:
            raise with_manifest_hint(exc) from None

    def masks_folder(self, folder: Path) -> str:
        if self.config.mask_dir:
            return self.config.mask_dir
        aug = "aug" in self.config.train_list.lower() or not (folder / "SegmentationClass").is_dir()
        return "SegmentationClassAug" if aug and (folder / "SegmentationClassAug").is_dir() else "SegmentationClass"

    def load(self):
        folder = self.folder()
        mask_dir = self.masks_folder(folder)
        if not (folder / mask_dir).is_dir():
            raise with_manifest_hint(DataError(f"mask folder {folder / mask_dir} not found"))
        return {"train": self.split(folder, self.config.train_list, mask_dir), "test": self.split(folder, self.config.test_list, mask_dir)}

    def split(self, folder: Path, name: str, mask_dir: str = "SegmentationClass") -> ColumnRecords:
        places = [folder / "ImageSets" / "Segmentation" / f"{name}.txt", folder / f"{name}.txt"]
        listing = next((p for p in places if p.is_file()), None)
        if listing is None:
            raise with_manifest_hint(DataError(f"split list not found: {' or '.join(map(str, places))}"))
        entries = []
        for n, line in enumerate(read_text_file(listing, "split list").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) > 2:
                raise DataError(f"{listing} line {n}: expected an image id or 'IMAGE MASK' paths, got {line[:80]!r}")
            entries.append((n, Path(parts[0]).stem))  # DeepLab's "/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png" → <id>
        images = [str(folder / "JPEGImages" / f"{i}.jpg") for _, i in entries]
        masks = [str(folder / mask_dir / f"{i}.png") for _, i in entries]
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
