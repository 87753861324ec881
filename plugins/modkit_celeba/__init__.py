"""CelebA from its published files in a local directory; nothing is downloaded.

Layout (``data.root`` or ``data.root/<dir>``, default ``celeba``), as the authors publish it::

    img_align_celeba/000001.jpg …
    list_attr_celeba.txt        line 1: image count; line 2: the 40 attribute names;
                                then "000001.jpg -1  1  1 …" (one ±1 per attribute)
    list_eval_partition.txt     optional: "000001.jpg 0" (0 train, 1 validation, 2 test)

or as the Kaggle copy most people download today::

    img_align_celeba/img_align_celeba/000001.jpg …   (the images one folder deeper)
    list_attr_celeba.csv        header "image_id,5_o_Clock_Shadow,…", then "000001.jpg,-1,1,…"
    list_eval_partition.csv     optional: header "image_id,partition", then "000001.jpg,0"

``attributes`` picks the attributes: a list of names, or ``mvae18``, the 18 that MVAE (Wu & Goodman
2018) keeps for CelebA-19 (its code's ``ATTR_IX_TO_KEEP``, after Perarnau et al.'s IcGAN selection).

Fields: ``image`` (a file path), ``attributes`` (float32 0/1 over the chosen attributes), and each
chosen attribute as its own 0/1 field under its CelebA name (``Smiling``, …), for recipes that
make every attribute a modality (the MVAE paper's CelebA-19).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from modkit import ColumnRecords, DataError, DatasetConfig, DatasetSource, hookimpl, read_text_file
from modkit_manifest import with_manifest_hint

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
ATTR_CSV = "list_attr_celeba.csv"
PARTITION_CSV = "list_eval_partition.csv"
IMAGE_DIR = "img_align_celeba"

#: MVAE's CelebA-19 attributes: its code keeps the 40-attribute columns 4, 5, 8, 9, 11, 12, 15, 17, 18, 20, 21, 22,
#: 26, 28, 31, 32, 33, 35 (0-based, CelebA's order), "the more visually distinctive" ones
MVAE18 = ["Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Bushy_Eyebrows", "Eyeglasses", "Gray_Hair",
          "Heavy_Makeup", "Male", "Mouth_Slightly_Open", "Mustache", "Pale_Skin", "Receding_Hairline", "Smiling",
          "Straight_Hair", "Wavy_Hair", "Wearing_Hat"]
#: named attribute selections for the ``attributes`` option
ATTRIBUTE_SETS = {"mvae18": MVAE18}


class CelebAConfig(DatasetConfig):
    dir: str | None = Field(None, description="folder under data.root (default: data.root if it holds list_attr_celeba.txt, else celeba)")
    attributes: list[str] | Literal["mvae18"] | None = Field(None, description="attribute names to keep, in this order, or mvae18: "
                                                                               "MVAE's 18 (default: all 40)")
    validation: Literal["train", "test", "drop"] = Field("drop", description="where partition 1 (validation) goes")


def read_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray, dict[int, str], list[int]]:
    """(attribute names, image names, (n, A) 0/1 array, bad rows by index, line number of each row)."""
    try:
        lines = read_text_file(path).splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise DataError(f"{path} line 1: expected the number of images, got {lines[0][:40] if lines else 'an empty file'!r}")
    count, names = int(lines[0]), lines[1].split()
    body = [(number, line) for number, line in enumerate(lines[2:], 3) if line.strip()]
    if len(body) != count:
        raise DataError(f"{path}: line 1 says {count} images, the file lists {len(body)}")
    files, values, errors, numbers = [], np.zeros((count, len(names)), dtype=np.float32), {}, []
    for i, (number, line) in enumerate(body):
        parts = line.split()
        files.append(parts[0])
        numbers.append(number)
        if len(parts) != len(names) + 1 or any(p not in ("1", "-1") for p in parts[1:]):
            errors[i] = f"{path} line {number}: expected an image name and {len(names)} values of 1 or -1, got {len(parts) - 1} values"
            continue
        values[i] = np.array(parts[1:], dtype=np.float32) > 0
    return names, files, values, errors, numbers


def read_attributes_csv(path: Path) -> tuple[list[str], list[str], np.ndarray, dict[int, str], list[int]]:
    """The Kaggle copy's ``list_attr_celeba.csv`` (header ``image_id,<40 names>``; ±1 values): as :func:`read_attributes`."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # Excel and Kaggle write a byte-order mark
            lines = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not lines or not lines[0] or lines[0][0].strip() != "image_id":
        got = ",".join(lines[0])[:40] if lines else "an empty file"
        raise DataError(f"{path} line 1: expected the header 'image_id,<attribute names>', got {got!r}")
    names = [n.strip() for n in lines[0][1:]]
    body = [(number, row) for number, row in enumerate(lines[1:], 2) if any(cell.strip() for cell in row)]
    files, values, errors, numbers = [], np.zeros((len(body), len(names)), dtype=np.float32), {}, []
    for i, (number, row) in enumerate(body):
        cells = [c.strip() for c in row]
        files.append(cells[0])
        numbers.append(number)
        if len(cells) != len(names) + 1 or any(c not in ("1", "-1") for c in cells[1:]):
            errors[i] = f"{path} line {number}: expected an image name and {len(names)} values of 1 or -1, got {len(cells) - 1} values"
            continue
        values[i] = np.array(cells[1:], dtype=np.float32) > 0
    return names, files, values, errors, numbers


def read_partition_csv(path: Path) -> dict[str, int]:
    """The Kaggle copy's ``list_eval_partition.csv``: header ``image_id,partition``, then ``000001.jpg,0``."""
    lines = read_text_file(path).splitlines()
    if not lines or lines[0].replace(" ", "") != "image_id,partition":
        raise DataError(f"{path} line 1: expected the header 'image_id,partition', got {lines[0][:40] if lines else 'an empty file'!r}")
    return read_partition(path, lines[1:], first=2, sep=",")


def read_partition(path: Path, lines: list[str] | None = None, first: int = 1, sep: str | None = None) -> dict[str, int]:
    partition = {}
    for number, line in enumerate(read_text_file(path).splitlines() if lines is None else lines, first):
        parts = [p.strip() for p in line.split(sep)] if line.strip() else []
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path} line {number}: expected 'IMAGE 0|1|2', got {line[:60]!r}")
        partition[parts[0]] = int(parts[1])
    return partition


class CelebA(DatasetSource):
    """CelebA aligned faces with their 40 binary attributes (img_align_celeba/ + list_attr_celeba.txt)."""

    Config = CelebAConfig

    def folder(self) -> Path:
        try:
            return self.find_folder(["celeba", "CelebA"], lambda f: (f / ATTR_FILE).is_file() or (f / ATTR_CSV).is_file(),
                                    f"{ATTR_FILE} or {ATTR_CSV}")
        except DataError as exc:
            raise with_manifest_hint(exc) from None

    def load(self):
        folder = self.folder()
        csv_layout = not (folder / ATTR_FILE).is_file()
        attr_file = folder / (ATTR_CSV if csv_layout else ATTR_FILE)
        names, files, values, errors, numbers = (read_attributes_csv if csv_layout else read_attributes)(attr_file)
        chosen = ATTRIBUTE_SETS.get(self.config.attributes, self.config.attributes) if isinstance(self.config.attributes, str) \
            else (self.config.attributes or names)
        unknown = [a for a in chosen if a not in names]
        if unknown:
            raise DataError(f"{attr_file} has no attribute {unknown[0]!r} (attributes: {', '.join(names)})")
        columns = [names.index(a) for a in chosen]
        self.attribute_names = list(chosen)
        table = values[:, columns]
        csv_partition = (folder / PARTITION_CSV).is_file() and not (folder / PARTITION_FILE).is_file()
        partition_file = folder / (PARTITION_CSV if csv_partition else PARTITION_FILE)
        if not partition_file.is_file():
            partition = None
        else:
            partition = read_partition_csv(partition_file) if partition_file.suffix == ".csv" else read_partition(partition_file)
        images = folder / IMAGE_DIR
        if (images / IMAGE_DIR).is_dir() and not any(images.glob("*.jpg")):
            images = images / IMAGE_DIR  # the Kaggle copy nests the folder in itself
        if not images.is_dir():
            raise with_manifest_hint(DataError(f"no image folder {IMAGE_DIR}/ beside {attr_file}"))

        def records(rows: list[int]) -> ColumnRecords:
            fields = {"image": [str(images / files[i]) for i in rows],
                      "attributes": [table[i] for i in rows]}
            fields.update({a: [int(table[i, j]) for i in rows] for j, a in enumerate(chosen)})
            return ColumnRecords(fields, n=len(rows), names=[f"{attr_file} line {numbers[i]} ({files[i]})" for i in rows],
                                 errors={k: errors[i] for k, i in enumerate(rows) if i in errors})

        if partition is None:
            return {"all": records(list(range(len(files))))}
        missing = [f for f in files if f not in partition]
        if missing:
            raise DataError(f"{partition_file} has no partition for {missing[0]} ({len(missing)} images missing)")
        target = {0: "train", 1: self.config.validation, 2: "test"}
        splits: dict[str, list[int]] = {"train": [], "test": [], "drop": []}
        for i, f in enumerate(files):
            splits[target[partition[f]]].append(i)
        return {"train": records(splits["train"]), "test": records(splits["test"])}


@hookimpl
def modkit_register(registry):
    registry.add_dataset("celeba", CelebA)


#: CelebA's 40 attributes in its files' column order
CELEBA_ATTRIBUTES = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
                     "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
                     "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
                     "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
                     "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
                     "Wearing_Necklace", "Wearing_Necktie", "Young"]


def make_celeba(root: str | Path, n: int = 120, seed: int = 0, size: tuple[int, int] = (44, 54)) -> Path:
    """Write a tiny CelebA-like set in the Kaggle layout under ``root/celeba`` (offline; for tests and recipe tiers).

    Images are ``size`` (width, height; CelebA's aligned faces are 178×218) JPEGs whose hair, skin and mouth
    colours follow a few of the attributes (Black_Hair, Blond_Hair, Pale_Skin, Smiling, Eyeglasses), so the
    attribute modalities have something to learn; the partition puts 3/4 of the images in train, 1/8 in each other.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    folder = Path(root) / "celeba"
    images = folder / IMAGE_DIR / IMAGE_DIR
    images.mkdir(parents=True, exist_ok=True)
    table = np.where(rng.random((n, len(CELEBA_ATTRIBUTES))) < 0.3, 1, -1)
    w, h = size
    for i in range(n):
        on = {a: table[i, j] > 0 for j, a in enumerate(CELEBA_ATTRIBUTES)}
        img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(60, 200, 3)))
        draw = ImageDraw.Draw(img)
        hair = (20, 20, 20) if on["Black_Hair"] else (230, 200, 90) if on["Blond_Hair"] else (120, 80, 40)
        draw.ellipse([w * 0.15, h * 0.05, w * 0.85, h * 0.6], fill=hair)
        draw.ellipse([w * 0.22, h * 0.2, w * 0.78, h * 0.9], fill=(250, 225, 215) if on["Pale_Skin"] else (200, 150, 120))
        draw.rectangle([w * 0.38, h * 0.68, w * 0.62, h * (0.78 if on["Smiling"] else 0.71)], fill=(150, 30, 40))
        if on["Eyeglasses"]:
            draw.rectangle([w * 0.28, h * 0.42, w * 0.72, h * 0.5], outline=(0, 0, 0), width=2)
        img.save(images / f"{i + 1:06d}.jpg", "JPEG", quality=90)
    lines = ["image_id," + ",".join(CELEBA_ATTRIBUTES)] + [f"{i + 1:06d}.jpg," + ",".join(map(str, row)) for i, row in enumerate(table)]
    (folder / ATTR_CSV).write_text("\n".join(lines) + "\n")
    part = np.where(np.arange(n) < n * 3 // 4, 0, np.where(np.arange(n) < n * 7 // 8, 1, 2))
    (folder / PARTITION_CSV).write_text("image_id,partition\n" + "".join(f"{i + 1:06d}.jpg,{p}\n" for i, p in enumerate(part)))
    return folder
