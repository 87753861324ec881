"""The dataset contract a modality sees: a split's rows (:class:`Records`) and one field of them (:class:`Column`)."""
from __future__ import annotations

from typing import Any, ClassVar, Iterator, Sequence

from modkit.errors import DataError


class Records:
    """A split's rows: ``get(i)`` returns ``{field: raw value or None}``; None means missing."""

    fields: list[str] = []
    #: True when every value is already in memory, so reading all rows is cheap (checked whole at build)
    in_memory: ClassVar[bool] = False

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def get(self, i: int) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self, i: int) -> str:
        """How to name row ``i`` in an error message (a file and line, a path)."""
        return f"row {i}"

    def problems(self) -> list[str]:
        """Rows already known to be bad when the dataset was read (``get`` raises DataError for them).

        With ``data.on_bad_sample: error`` the build stops on the first one before training starts;
        with ``skip`` they are skipped, and counted, like any other bad sample.
        """
        return []


class Column:
    """One field of some rows, read lazily: what ``Modality.prepare`` fits on.

    With ``skip_bad`` a row whose record is bad (``get`` raises DataError) reads as missing.
    """

    def __init__(self, records: Records, field: str, rows: Sequence[int], skip_bad: bool = False):
        self.records, self.field, self.rows, self.skip_bad = records, field, rows, skip_bad

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Any]:
        for r in self.rows:
            try:
                record = self.records.get(int(r))
            except DataError:
                if not self.skip_bad:
                    raise
                yield None
                continue
            yield record.get(self.field)
