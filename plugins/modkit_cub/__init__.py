"""Caltech-UCSD Birds (CUB-200-2011) images with the captions of Reed et al.; nothing is downloaded.

Layout (``data.root`` or ``data.root/<dir>``, default ``CUB_200_2011``)::

    images/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg …
    images.txt              optional: "1 001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg"
    train_test_split.txt    optional: "1 1" (image id, 1 = train, 0 = test)
    text_c10/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.txt   one caption per line

Fields: ``image`` (a file path), ``caption`` (str), ``label`` (int64, the class folder's index in
sorted order). ``captions: all`` makes one row per (image, caption), as MMVAE's CUB does.

MMVAE's own layout (``layout: mmvae``; ``data.root`` or ``data.root/cub``)::

    train/<class>/<image>.jpg, test/<class>/<image>.jpg   image folders (torchvision ImageFolder order:
                                                         classes sorted, files sorted within each)
    text_trainvalclasses.txt, text_testclasses.txt       one caption per line, 10 per image in that order:
                                                         caption j belongs to image j // 10

Its rows are the captions (caption j with image j // 10). Besides ``caption`` as written, the field
``caption_mmvae`` is the caption as MMVAE's model sees it: split into words, each word outside the
vocabulary (train words seen more than 3 times) replaced by ``<exc>``, cut to 31 words (``<eos>``
makes 32); :func:`mmvae_vocabulary` and :func:`mmvae_indices` give MMVAE's index sequences themselves.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import Field

from modkit import ColumnRecords, DataError, DatasetConfig, DatasetSource, hookimpl, read_text_file
from modkit_manifest import with_manifest_hint


class CubConfig(DatasetConfig):
    dir: str | None = Field(None, description="folder under data.root (default: data.root if it holds images/, else CUB_200_2011)")
    text_dir: str = Field("text_c10", description="caption folder, relative to the dataset folder (or its parent)")
    captions: Literal["all", "first"] = Field("all", description="one row per caption, or the first caption per image")
    layout: Literal["auto", "reed", "mmvae"] = Field("auto", description="reed: CUB_200_2011 + text_c10/; mmvae: train/, test/ and "
                                                                          "text_*classes.txt; auto: whichever is there (mmvae first)")
    captions_per_image: int = Field(10, ge=1, description="mmvae layout: captions per image in the text files")
    min_count: int = Field(3, ge=0, description="mmvae layout: a word enters the vocabulary when seen more than this often in train")
    max_length: int = Field(32, ge=2, description="mmvae layout: tokens per caption, <eos> included")


MMVAE_TEXT = {"train": "text_trainvalclasses.txt", "test": "text_testclasses.txt"}
EXC, PAD, EOS = "<exc>", "<pad>", "<eos>"
WORD = re.compile(r"<exc>|<pad>|<eos>|\w+|[^\w\s]")


def mmvae_words(caption: str) -> list[str]:
    """A caption split into words and punctuation marks (MMVAE's code uses NLTK's word_tokenize; on CUB's lowercase,
    plainly punctuated captions the split is the same)."""
    return WORD.findall(caption)


def mmvae_vocabulary(captions: list[str], min_count: int = 3) -> dict[str, int]:
    """MMVAE's word → index map: ``<exc>`` 0, ``<pad>`` 1, ``<eos>`` 2, then each word seen more than ``min_count``
    times, in order of first appearance."""
    counts = Counter()
    for caption in captions:
        counts.update(mmvae_words(caption))  # Counter keeps first-appearance order
    vocabulary = {EXC: 0, PAD: 1, EOS: 2}
    for word, count in counts.items():
        if count > min_count and word not in vocabulary:
            vocabulary[word] = len(vocabulary)
    return vocabulary


def mmvae_indices(caption: str, vocabulary: dict[str, int], max_length: int = 32) -> list[int]:
    """A caption as MMVAE feeds it: the first ``max_length`` − 1 words, ``<eos>``, ``<pad>`` to ``max_length``; unknown → ``<exc>``."""
    words = mmvae_words(caption)[:max_length - 1] + [EOS]
    words += [PAD] * (max_length - len(words))
    return [vocabulary.get(w, vocabulary[EXC]) for w in words]


def mmvae_text(caption: str, vocabulary: dict[str, int], max_length: int = 32) -> str:
    """The words MMVAE's model sees, as text: unknown words as ``<exc>``, at most ``max_length`` − 1 of them."""
    return " ".join(w if w in vocabulary else EXC for w in mmvae_words(caption)[:max_length - 1])


def image_folder(folder: Path) -> list[tuple[str, Path]]:
    """torchvision ImageFolder's order: (class, file) with classes sorted and files sorted within each class."""
    return [(c.name, f) for c in sorted(p for p in folder.iterdir() if p.is_dir())
            for f in sorted(p for p in c.iterdir() if p.is_file() and not p.name.startswith("."))]


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
        try:
            return self.find_folder(["CUB_200_2011"], lambda f: (f / "images").is_dir(), "images/ folder")
        except DataError as exc:
            raise with_manifest_hint(exc) from None

    def mmvae_folder(self) -> Path | None:
        named = self.config.dir
        candidates = [self.root / named] if named else [self.root, self.root / "cub"]
        found = next((f for f in candidates if (f / MMVAE_TEXT["train"]).is_file()), None)
        if found is None and self.config.layout == "mmvae":
            raise with_manifest_hint(DataError(f"no MMVAE CUB captions {MMVAE_TEXT['train']} in {' or '.join(map(str, candidates))}"))
        return found

    def load_mmvae(self, folder: Path):
        texts = {}
        for split, name in MMVAE_TEXT.items():
            path = folder / name
            if not path.is_file():
                raise with_manifest_hint(DataError(f"MMVAE CUB captions {path} not found"))
            lines = read_text_file(path, "caption file").splitlines()
            while lines and not lines[-1].strip():
                lines.pop()
            texts[split] = lines
        vocabulary = mmvae_vocabulary(texts["train"], self.config.min_count)
        self.vocabulary = vocabulary
        per = self.config.captions_per_image
        listings = {}
        for split in MMVAE_TEXT:
            if not (folder / split).is_dir():
                raise DataError(f"no image folder {folder / split} beside {folder / MMVAE_TEXT[split]}")
            listings[split] = image_folder(folder / split)
        self.class_names = sorted({c for listing in listings.values() for c, _ in listing})
        splits = {}
        for split, listing in listings.items():
            lines, path = texts[split], folder / MMVAE_TEXT[split]
            if len(lines) != per * len(listing):
                raise DataError(f"{path} has {len(lines)} captions for the {len(listing)} images of {folder / split} "
                                f"({per} per image expected, caption j belonging to image j // {per})")
            splits[split] = ColumnRecords(
                {"image": [str(listing[j // per][1]) for j in range(len(lines))], "caption": [line.strip() for line in lines],
                 "caption_mmvae": [mmvae_text(line, vocabulary, self.config.max_length) for line in lines],
                 "label": [self.class_names.index(listing[j // per][0]) for j in range(len(lines))]},
                n=len(lines), names=[f"{path} line {j + 1}" for j in range(len(lines))],
                errors={j: f"{path} line {j + 1}: empty caption" for j, line in enumerate(lines) if not line.strip()})
        return splits

    def load(self):
        if self.config.layout != "reed":
            mmvae = self.mmvae_folder()
            if mmvae is not None:
                return self.load_mmvae(mmvae)
        folder = self.folder()
        text = next((t for t in (folder / self.config.text_dir, folder.parent / self.config.text_dir) if t.is_dir()), None)
        if text is None:
            raise with_manifest_hint(DataError(f"caption folder {self.config.text_dir}/ not found in {folder} or {folder.parent}"))
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


COLOURS = {"red": (200, 40, 40), "blue": (40, 70, 200), "yellow": (230, 200, 40), "black": (25, 25, 25), "white": (240, 240, 240),
           "brown": (130, 80, 40)}


def make_cub(root: str | Path, classes: tuple[int, int] = (4, 2), per_class: int = 6, seed: int = 0, size: int = 48) -> Path:
    """Write a tiny CUB-like set in MMVAE's layout under ``root/cub`` (offline; for tests and recipe tiers).

    ``classes``: (train, test) species; as in MMVAE's split the test species are not the training ones. Each
    species is a body and a crown colour; an image is the bird drawn in them over a random sky, with ten
    captions naming its colours in varied words, so the captions and the images share what they show.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    folder = Path(root) / "cub"
    names = list(COLOURS)
    species = [(names[i % len(names)], names[(i * 2 + 1) % len(names)]) for i in range(sum(classes))]
    templates = ["this bird has a {b} body and a {c} crown .", "a {b} bird with a {c} head .", "the bird is {b} with a {c} crown .",
                 "this small bird is mostly {b} .", "a bird with {b} wings and a {c} crown .", "this bird has {b} feathers .",
                 "the crown of this bird is {c} .", "a {b} and {c} bird perched on a branch .", "this is a {b} bird with a short beak .",
                 "a small {b} bird with a {c} head ."]
    offset = {"train": 0, "test": classes[0]}
    for split, count in zip(("train", "test"), classes):
        lines = []
        for k in range(offset[split], offset[split] + count):
            body, crown = species[k]
            klass = folder / split / f"{k + 1:03d}.Species_{k + 1}"
            klass.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(120, 220, 3)))
                draw = ImageDraw.Draw(img)
                x, y = rng.integers(4, size // 4, 2)
                draw.ellipse([x, y + size // 4, x + size // 2, y + size // 2 + size // 6], fill=COLOURS[body])
                draw.ellipse([x + size // 3, y + size // 6, x + size // 2 + 4, y + size // 3 + 2], fill=COLOURS[crown])
                img.save(klass / f"Species_{k + 1}_{i:04d}.jpg", "JPEG", quality=90)
                lines += [t.format(b=body, c=crown) for t in templates]
        (folder / MMVAE_TEXT[split]).write_text("\n".join(lines) + "\n")
    return folder


@hookimpl
def modkit_register(registry):
    registry.add_dataset("cub", Cub)
