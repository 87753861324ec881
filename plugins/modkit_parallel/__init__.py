"""A parallel corpus: one sentence per line per language, aligned by line; nothing is downloaded.

Layout (``data.root`` or ``data.root/<dir>``)::

    train.en  train.vi      line i of one is the translation of line i of the other
    test.en   test.vi       (IWSLT'15 en-vi names its test sets tst2012/tst2013: set ``test: tst2013``)

Fields: one string per language, named by its code (``en``, ``vi``). Files of different lengths
are an error naming both; an empty line is a bad row naming its file and line.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from modkit import ColumnRecords, DataError, DatasetConfig, DatasetSource, hookimpl
from modkit_manifest import with_manifest_hint


class ParallelConfig(DatasetConfig):
    dir: str | None = Field(None, description="folder under data.root holding the files (default: data.root)")
    languages: list[str] = Field(["en", "vi"], min_length=2, description="file suffixes, also the field names")
    train: str = Field("train", description="file prefix of the training split")
    test: str = Field("test", description="file prefix of the test split")


def read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise with_manifest_hint(DataError(f"parallel text file not found: {path}")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path} as UTF-8 text: {exc}") from None
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


class ParallelText(DatasetSource):
    """Sentence-aligned text in two or more languages (train.en / train.vi, …): one field per language."""

    Config = ParallelConfig

    def load(self):
        folder = self.root / self.config.dir if self.config.dir else self.root
        return {"train": self.split(folder, self.config.train), "test": self.split(folder, self.config.test)}

    def split(self, folder: Path, prefix: str) -> ColumnRecords:
        paths = {lang: folder / f"{prefix}.{lang}" for lang in self.config.languages}
        lines = {lang: read_lines(path) for lang, path in paths.items()}
        counts = {lang: len(v) for lang, v in lines.items()}
        if len(set(counts.values())) != 1:
            listed = ", ".join(f"{paths[lang]} has {n}" for lang, n in counts.items())
            raise DataError(f"parallel files are not aligned: {listed} lines")
        n = next(iter(counts.values()))
        errors = {}
        for lang, values in lines.items():
            for i, line in enumerate(values):
                if not line.strip() and i not in errors:
                    errors[i] = f"{paths[lang]} line {i + 1}: empty sentence"
        first = paths[self.config.languages[0]]
        return ColumnRecords({lang: [v.strip() for v in values] for lang, values in lines.items()}, n=n,
                             names=[f"{first} line {i + 1}" for i in range(n)], errors=errors)


@hookimpl
def modkit_register(registry):
    registry.add_dataset("parallel_text", ParallelText)
