"""Run-directory I/O. Every file is written to a temporary sibling, fsynced, then renamed:
a crash leaves either the old file or the new one, never half of one."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from modkit.errors import ModkitError

RECIPE = "recipe.yaml"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
SUMMARY = "summary.json"
SAMPLES_PNG = "samples.png"
SAMPLES_MD = "samples.md"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() would give; mkstemp alone gives 0600


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` so that it is either complete or untouched: temp file, fsync, rename, fsync the folder.

    Any failure (disk full, read-only folder, an interrupt) removes the temporary file; an ``OSError``
    becomes a :class:`ModkitError` that names the file and the reason.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ModkitError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise ModkitError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> list[str]:
    """Strict JSON: a NaN or infinite number is written as ``null`` (JSON has no such number; Python's
    ``Infinity`` breaks other readers). Returns the keys that were not finite, for the caller to warn about."""
    bad: list[str] = []
    atomic_write_text(path, json.dumps(finite(obj, bad), indent=2, sort_keys=False, default=_jsonable, allow_nan=False) + "\n")
    return bad


def finite(value: Any, bad: list[str], key: str = "") -> Any:
    """``value`` with every non-finite float replaced by None; the dotted keys of those go in ``bad``."""
    if isinstance(value, dict):
        return {k: finite(v, bad, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v, bad, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if hasattr(value, "item") and not isinstance(value, torch.Tensor) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        bad.append(key or "value")
        return None
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    bad: list[str] = []
    atomic_write_text(run_dir / METRICS_JSONL, "".join(json.dumps(finite(r, bad), default=_jsonable, allow_nan=False) + "\n"
                                                       for r in rows))
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run_dir / METRICS_CSV, out.getvalue())


def check_regular(path: Path) -> None:
    """Refuse, before opening it, a run file that is not a regular file: a FIFO would block the read forever, a
    device would never end, a symbolic link would read (or, exported, copy) a file from elsewhere. Missing
    files are left to the caller."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ModkitError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        what = ("a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode) else
                "a named pipe" if stat.S_ISFIFO(mode) else "a socket or device")
        raise ModkitError(f"{path} is {what}, not a regular file; modkit reads run files only as regular files. "
                          f"Replace it with the file itself")


def read_json(path: Path) -> Any:
    """A JSON file of a run directory; a missing or corrupt one is a ModkitError naming it (no traceback)."""
    check_regular(path)
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise ModkitError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModkitError(f"{path} is not valid JSON ({exc}); delete it to have it written again") from None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS_JSONL
    check_regular(path)
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ModkitError(f"{path} is not UTF-8 text (not a metrics file modkit wrote)") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ModkitError(f"{path}, line {number}: not valid JSON ({exc})") from None
            if not isinstance(rows[-1], dict) or not isinstance(rows[-1].get("epoch"), int):
                raise ModkitError(f"{path}, line {number}: not a metrics row (a JSON object with an integer 'epoch')")
    return rows


def unique_run_dir(runs_dir: Path, name: str, stamp: str) -> Path:
    base = runs_dir / f"{name}-{stamp}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def ensure_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # a probe of this process's own: sweep workers check one folder at once, and a shared name lets
        # one worker delete the probe another is about to delete (FileNotFoundError, a false "not writable")
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".modkit-write-test-"):
            pass
    except OSError as exc:
        raise ModkitError(f"run directory {folder} is not writable: {exc.strerror or exc}") from None

