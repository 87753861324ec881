"""CelebA from its published files in a local directory; nothing is downloaded.

Layout (``data.root`` or ``data.root/<dir>``, default ``celeba``)::

    img_align_celeba/000001.jpg …
    list_attr_celeba.txt        line 1: image count; line 2: the 40 attribute names;
                                then "000001.jpg -1  1  1 …" (one ±1 per attribute)
    list_eval_partition.txt     optional: "000001.jpg 0" (0 train, 1 validation, 2 test)

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

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_DIR = "img_align_celeba"


class CelebAConfig(DatasetConfig):
    dir: str | None = Field(None, description="folder under data.root (default: data.root if it holds list_attr_celeba.txt, else celeba)")
    attributes: list[str] | None = Field(None, description="attribute names to keep, in this order (default: all 40)")
    validation: Literal["train", "test", "drop"] = Field("drop", description="where partition 1 (validation) goes")


def read_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray, dict[int, str], list[int]]:
    """(attribute names, image names, (n, A) 0/1 array, bad rows by index, line number of each row)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
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


def read_partition(path: Path) -> dict[str, int]:
    partition = {}
    for number, line in enumerate(read_text_file(path).splitlines(), 1):
        parts = line.split()
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
        return self.find_folder(["celeba"], lambda f: (f / ATTR_FILE).is_file(), ATTR_FILE)

    def load(self):
        folder = self.folder()
        names, files, values, errors, numbers = read_attributes(folder / ATTR_FILE)
        chosen = self.config.attributes or names
        unknown = [a for a in chosen if a not in names]
        if unknown:
            raise DataError(f"{folder / ATTR_FILE} has no attribute {unknown[0]!r} (attributes: {', '.join(names)})")
        columns = [names.index(a) for a in chosen]
        self.attribute_names = list(chosen)
        table = values[:, columns]
        partition = read_partition(folder / PARTITION_FILE) if (folder / PARTITION_FILE).is_file() else None

        def records(rows: list[int]) -> ColumnRecords:
            fields = {"image": [str(folder / IMAGE_DIR / files[i]) for i in rows],
                      "attributes": [table[i] for i in rows]}
            fields.update({a: [int(table[i, j]) for i in rows] for j, a in enumerate(chosen)})
            return ColumnRecords(fields, n=len(rows), names=[f"{folder / ATTR_FILE} line {numbers[i]} ({files[i]})" for i in rows],
                                 errors={k: errors[i] for k, i in enumerate(rows) if i in errors})

        if partition is None:
            return {"all": records(list(range(len(files))))}
        missing = [f for f in files if f not in partition]
        if missing:
            raise DataError(f"{folder / PARTITION_FILE} has no partition for {missing[0]} ({len(missing)} images missing)")
        target = {0: "train", 1: self.config.validation, 2: "test"}
        splits: dict[str, list[int]] = {"train": [], "test": [], "drop": []}
        for i, f in enumerate(files):
            splits[target[partition[f]]].append(i)
        return {"train": records(splits["train"]), "test": records(splits["test"])}


@hookimpl
def modkit_register(registry):
    registry.add_dataset("celeba", CelebA)
