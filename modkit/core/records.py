"""The dataset contract a modality sees: a split's rows (:class:`Records`) and one field of them (:class:`Column`)."""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

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

    def with_fields(self, fields: Mapping[str, Any]) -> "Records":
        """These rows with more fields (or some replaced): ``{name: values}``, where values are a sequence or
        array of ``len(self)`` raw values (``None``: missing) or a function of one row's ``get`` dict.

        How a dataset derived from another adds a field (:class:`modkit.DerivedDataset`); the rows are not
        copied. In-memory records (``ArrayRecords``) override this to stay in memory and batch fast.
        """
        return ExtendedRecords(self, fields)


def check_field_lengths(fields: Mapping[str, Any], n: int) -> None:
    """A DataError naming every added field whose length is not the number of rows (functions are per row)."""
    wrong = {k: len(v) for k, v in fields.items() if not callable(v) and len(v) != n}
    if wrong:
        raise DataError(f"added fields have lengths {wrong}; the dataset has {n} rows")


class ExtendedRecords(Records):
    """Rows of ``base`` with the fields of :meth:`Records.with_fields` added, computed when a row is read."""

    def __init__(self, base: Records, fields: Mapping[str, Sequence[Any] | Callable[[dict[str, Any]], Any]]):
        check_field_lengths(fields, len(base))
        self.base, self.added = base, dict(fields)
        self.fields = [*(f for f in base.fields if f not in self.added), *self.added]

    def __len__(self) -> int:
        return len(self.base)

    def get(self, i: int) -> dict[str, Any]:
        row = self.base.get(i)
        extra = {k: (v(row) if callable(v) else v[i]) for k, v in self.added.items()}
        return {**row, **extra}

    def describe(self, i: int) -> str:
        return self.base.describe(i)

    def problems(self) -> list[str]:
        return self.base.problems()


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
