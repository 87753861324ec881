"""Caltech-UCSD Birds (CUB-200-2011) images with the captions of Reed et al.; nothing is downloaded.

Layout (``data.root`` or ``data.root/<dir>``, default ``CUB_200_2011``)::

    images/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg …
    images.txt              optional: "1 001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg"
    train_test_split.txt    optional: "1 1" (image id, 1 = train, 0 = test)
    text_c10/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.txt   one caption per line

Fields: ``image`` (a file path), ``caption`` (str), ``label`` (int64, the class folder's index in
sorted order). ``captions: all`` makes one row per (image, caption), as MMVAE's CUB does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from modkit import ColumnRecords, DataError, DatasetConfig, DatasetSource, hookimpl, read_text_file


class CubConfig(DatasetConfig):
    dir: str | None = Field(None, description="folder under data.root (default: data.root if it holds images/, else CUB_200_2011)")
    text_dir: str = Field("text_c10", description="caption folder, relative to the dataset folder (or its parent)")
    captions: Literal["all", "first"] = Field("all", description="one row per caption, or the first caption per image")


def read_pairs(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate(read_text_file(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{path} line {number}: expected 'ID VALUE', got {line[:60]!r}")
        pairs.append((parts[0], parts[1].strip()))
    return pairs


class Cub(DatasetSource):
    """CUB-200-2011 bird images with one caption per row (Reed et al.'s text_c10) and the species label."""

    Config = CubConfig

    def folder(self) -> Path:
        return self.find_folder(["CUB_200_2011"], lambda f: (f / "images").is_dir(), "images/ folder")

    def load(self):
        folder = self.folder()
        text = next((t for t in (folder / self.config.text_dir, folder.parent / self.config.text_dir) if t.is_dir()), None)
        if text is None:
            raise DataError(f"caption folder {self.config.text_dir}/ not found in {folder} or {folder.parent}")
        if (folder / "images.txt").is_file():
            images = read_pairs(folder / "images.txt")
        else:
            files = sorted(p.relative_to(folder / "images").as_posix() for p in (folder / "images").glob("*/*") if p.is_file())
            images = [(str(i + 1), f) for i, f in enumerate(files)]
        if not images:
            raise DataError(f"no images in {folder / 'images'}")
        self.class_names = sorted({f.split("/")[0] for _, f in images})
        split = dict(read_pairs(folder / "train_test_split.txt")) if (folder / "train_test_split.txt").is_file() else None
        rows: dict[str, list[tuple[str, str | None, int, str, str | None]]] = {"train": [], "test": [], "all": []}
        for image_id, relative in images:
            label = self.class_names.index(relative.split("/")[0])
            caption_file = text / Path(relative).with_suffix(".txt")
            target = "all" if split is None else ("train" if split.get(image_id) == "1" else "test")
            if split is not None and image_id not in split:
                raise DataError(f"{folder / 'train_test_split.txt'} has no entry for image id {image_id} ({relative})")
            image = str(folder / "images" / relative)
            if not caption_file.is_file():
                rows[target].append((image, None, label, f"{relative}", f"{relative}: no caption file {caption_file}"))
                continue
            lines = read_text_file(caption_file, "caption file").splitlines()
            while lines and not lines[-1].strip():
                lines.pop()
            if self.config.captions == "first":
                lines = lines[:1]
            if not lines:
                rows[target].append((image, None, label, relative, f"{caption_file}: no captions"))
            for number, line in enumerate(lines, 1):
                where = f"{caption_file} line {number}"
                rows[target].append((image, line.strip(), label, where, None if line.strip() else f"{where}: empty caption"))

        def records(part):
            return ColumnRecords({"image": [r[0] for r in part], "caption": [r[1] for r in part], "label": [r[2] for r in part]},
                                 n=len(part), names=[r[3] for r in part], errors={i: r[4] for i, r in enumerate(part) if r[4]})

        if split is None:
            return {"all": records(rows["all"])}
        return {"train": records(rows["train"]), "test": records(rows["test"])}


@hookimpl
def modkit_register(registry):
    registry.add_dataset("cub", Cub)
