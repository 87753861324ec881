"""Text files a dataset reads (lists, captions, manifests): UTF-8, with or without the byte-order mark that
Excel and Notepad write, and any other encoding one line naming the file and where it stops being UTF-8."""
from __future__ import annotations

from pathlib import Path

from modkit.errors import DataError


def read_text_file(path: Path | str, what: str = "file") -> str:
    """The text of ``path``; a byte-order mark is dropped (a CSV header's first name would otherwise carry it),
    and a file that is not UTF-8 (Latin-1, say) or cannot be read is a DataError naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{what} {path} is not UTF-8 text (line {line}, byte {exc.start}: {data[exc.start:exc.start + 1]!r}); "
                        f"save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
