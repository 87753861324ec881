"""The manifest dataset: users' own data as JSONL or CSV rows, one field per modality.

A value is a file path (relative to the manifest; images and masks), a string, a number or a
list. An empty value (``""``, ``null``, ``[]``, an absent JSONL key, an empty CSV cell) is a
missing modality. Each column's kind is the kind of its first non-empty value; a row that
disagrees (a string where the column holds numbers, a list of another length, a file that does
not exist, a CSV row with too few cells) is a bad row, named by file and line: an error, or
skipped and counted with ``data.on_bad_sample: skip``.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from modkit import ColumnRecords, DataError, DatasetConfig, DatasetSource, hookimpl, read_text_file

#: appended to the "files not found" errors of the datasets that read a fixed layout: the way in for any other layout
MANIFEST_HINT = ("or list your files in a manifest (dataset: {type: manifest, path: FILE}; "
                 "docs/datasets.md, section manifest)")


def with_manifest_hint(error: DataError) -> DataError:
    """The same "not found" error, naming the manifest route as the alternative."""
    return DataError(f"{error}; {MANIFEST_HINT}")


FILE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".npy"}


class ManifestConfig(DatasetConfig):
    path: str = Field(..., description="the manifest file: absolute, relative to data.root, or to the working directory")
    test_path: str | None = Field(None, description="a second manifest for the test split")
    format: Literal["auto", "jsonl", "csv"] = "auto"
    files: list[str] | None = Field(None, description="columns holding file paths (default: values with an image/.npy suffix); "
                                                         "once set, every column of file paths must be listed")
    split_field: str = Field("split", description="if the manifest has this column (train/test), it splits the rows")


def find(path: str, root: Path) -> Path:
    candidates = [Path(path)] if Path(path).is_absolute() else [root / path, Path(path)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(f"manifest not found: {' or '.join(str(c) for c in candidates)}")


def read_rows(path: Path, fmt: str) -> list[tuple[int, dict[str, Any] | str]]:
    """(line number, row or error message) for every data line."""
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() in (".csv", ".tsv") else "jsonl"
    text = read_text_file(path, "manifest")  # utf-8-sig: Excel's byte-order mark is not part of the first column's name
    rows: list[tuple[int, dict[str, Any] | str]] = []
    if fmt == "jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                rows.append((number, f"not valid JSON: {exc.msg} at column {exc.colno}"))
                continue
            rows.append((number, row if isinstance(row, dict) else f"is a JSON {type(row).__name__}, not an object of fields"))
        return rows
    reader = csv.reader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    header = next(reader, None)
    if not header:
        raise DataError(f"{path}: empty CSV manifest (the first line must name the fields)")
    header = [h.strip() for h in header]
    if len(set(header)) != len(header) or not all(header):
        raise DataError(f"{path} line 1: field names must be unique and non-empty (got {header})")
    for cells in reader:
        number = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            rows.append((number, f"has {len(cells)} cells, the header has {len(header)} ({', '.join(header)})"))
            continue
        rows.append((number, {h: (c.strip() or None) for h, c in zip(header, cells)}))
    typed = {h: cell_type([row[h] for _, row in rows if isinstance(row, dict)]) for h in header}
    return [(number, {h: typed[h](v) if v is not None else None for h, v in row.items()} if isinstance(row, dict) else row)
            for number, row in rows]


def as_number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def as_list(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # stays a string: the row is flagged as inconsistent with the column


def cell_type(cells: list[str | None]):
    """A CSV column's parser: numbers if every cell is one, JSON lists if the first cell is ``[…]``, else text."""
    present = [c for c in cells if c is not None]
    if not present:
        return str
    try:
        for c in present:
            as_number(c)
        return as_number
    except ValueError:
        pass
    return as_list if present[0].startswith("[") else str


def is_empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, list) and not value)


def kind_of(value: Any, field: str, files: set[str] | None) -> str:
    if isinstance(value, bool):
        return "number"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        is_file = field in files if files is not None else Path(value).suffix.lower() in FILE_SUFFIXES
        return "file" if is_file else "string"
    return type(value).__name__


class Manifest:
    """One manifest file parsed into columns, with its bad rows kept aside by line."""

    def __init__(self, path: Path, fmt: str, files: list[str] | None):
        self.path = path
        self.base = path.parent
        self.rows = read_rows(path, fmt)
        file_set = set(files) if files is not None else None
        self.fields: list[str] = list(dict.fromkeys(k for _, row in self.rows if isinstance(row, dict) for k in row))
        self.kinds: dict[str, tuple[str, int, Any]] = {}  # field → (kind, line that set it, list length)
        self.errors: dict[int, str] = {}
        self.values: dict[str, list[Any]] = {f: [] for f in self.fields}
        self.names = [f"{path} line {number}" for number, _ in self.rows]
        for i, (number, row) in enumerate(self.rows):
            problem = row if isinstance(row, str) else self.check(row, number, file_set)
            if problem:
                self.errors[i] = f"{path} line {number}: {problem}"
            for f in self.fields:
                value = None if problem or isinstance(row, str) or is_empty(row.get(f)) else row[f]
                self.values[f].append(self.resolve(value) if value is not None and self.kinds[f][0] == "file" else value)

    def check(self, row: dict[str, Any], number: int, files: set[str] | None) -> str | None:
        for field, value in row.items():
            if is_empty(value):
                continue
            if isinstance(value, str) and not value.strip():
                return f"field '{field}' is blank (leave it empty for a missing value)"
            kind = kind_of(value, field, files)
            if (kind == "string" and files is not None and Path(value).suffix.lower() in FILE_SUFFIXES
                    and (self.base / value).is_file()):
                # once `files:` lists a column, only the listed ones are read as paths: this one would reach its
                # modality as a bare name, relative to nothing it knows, and fail far from the cause
                listed = ", ".join(sorted(files)) or "nothing"
                return (f"field '{field}' names a file ({value!r}) but data.dataset.files lists only {listed}: "
                        f"add '{field}' to data.dataset.files (once set, it must list every column of file paths)")
            if kind not in ("number", "list", "file", "string"):
                return f"field '{field}' is a {kind}; values are file paths, strings, numbers or lists"
            length = len(value) if kind == "list" else None
            if field not in self.kinds:
                self.kinds[field] = (kind, number, length)
            expected, line, expected_length = self.kinds[field]
            if kind != expected:
                return f"field '{field}' is a {kind} ({value!r}), but a {expected} on line {line}"
            if kind == "list" and length != expected_length:
                return f"field '{field}' has {length} values, but {expected_length} on line {line}"
            if kind == "file" and not (self.base / value).is_file():
                return f"field '{field}': file not found: {self.base / value}"
        return None

    def resolve(self, value: str) -> Any:
        path = self.base / value
        return NpyFile(path) if path.suffix.lower() == ".npy" else str(path)

    def records(self, indices: list[int], drop: str | None = None) -> ColumnRecords:
        fields = [f for f in self.fields if f != drop]
        columns = {f: LazyColumn([self.values[f][i] for i in indices]) for f in fields}
        errors = {j: self.errors[i] for j, i in enumerate(indices) if i in self.errors}
        return ColumnRecords(columns, n=len(indices), names=[self.names[i] for i in indices], errors=errors)


class NpyFile:
    """A .npy path read when its row is used."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> np.ndarray:
        try:
            return np.load(self.path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read array {self.path}: {exc}") from None


class LazyColumn:
    """A column whose .npy entries load on access."""

    def __init__(self, values: list[Any]):
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> Any:
        value = self.values[i]
        return value.load() if isinstance(value, NpyFile) else value


class ManifestSource(DatasetSource):
    """Your own data: a JSONL or CSV manifest, one field per modality (file paths, strings, numbers, lists)."""

    Config = ManifestConfig

    def load(self):
        cfg = self.config
        main = Manifest(find(cfg.path, self.root), cfg.format, cfg.files)
        if not main.rows:
            raise DataError(f"{main.path}: the manifest has no rows")
        everything = list(range(len(main.rows)))
        if cfg.test_path:
            test = Manifest(find(cfg.test_path, self.root), cfg.format, cfg.files)
            return {"train": main.records(everything), "test": test.records(list(range(len(test.rows))))}
        if cfg.split_field in main.fields:
            splits: dict[str, list[int]] = {"train": [], "test": []}
            for i in everything:
                value = main.values[cfg.split_field][i]
                if value not in splits and i not in main.errors:
                    main.errors[i] = f"{main.names[i]}: field '{cfg.split_field}' is {value!r}, expected 'train' or 'test'"
                splits.get(value, splits["train"]).append(i)
            if not splits["test"] or not splits["train"]:
                raise DataError(f"{main.path}: field '{cfg.split_field}' must put rows in both 'train' and 'test'")
            return {name: main.records(rows, drop=cfg.split_field) for name, rows in splits.items()}
        return {"all": main.records(everything)}


@hookimpl
def modkit_register(registry):
    registry.add_dataset("manifest", ManifestSource)
