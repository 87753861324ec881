"""Datasets larger than memory: fields kept on disk as memory-mapped ``.npy`` files, read a batch at a time.

:class:`MemmapRecords` is an :class:`~modkit.data.dataset.ArrayRecords` (so :class:`~modkit.data.dataset.ModalityView`
takes its one-index-per-batch fast path) whose arrays stay on disk: building it reads only the
``.npy`` headers, a batch reads only its rows, and the operating system's page cache decides what
stays in memory. It pickles as file names, so DataLoader workers (``data.num_workers``) open their
own maps instead of receiving a copy of the data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from modkit.data.dataset import ArrayRecords
from modkit.errors import DataError


def open_npy(path: str | Path) -> np.memmap:
    """A read-only memory map of a ``.npy`` file (nothing is read but the header)."""
    path = Path(path)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot memory-map as a .npy array: {exc}") from None
    if not isinstance(array, np.memmap):
        raise DataError(f"{path}: not a plain .npy array (an .npz or object array cannot be memory-mapped)")
    return array


class MemmapRecords(ArrayRecords):
    """Fields as ``.npy`` files (or ``np.memmap`` arrays backed by ``.npy`` files), read lazily, never copied whole.

    ``present`` optionally gives per-field boolean masks (small: one byte per row) for missing values.
    """

    in_memory = False  # build checks a few rows, not the whole file

    def __init__(self, files: dict[str, str | Path | np.memmap], present: dict[str, Any] | None = None):
        self.paths: dict[str, Path] = {}
        for name, source in files.items():
            if isinstance(source, np.memmap):
                if source.filename is None:
                    raise DataError(f"field '{name}': the memmap has no file behind it")
                source = source.filename
            self.paths[name] = Path(source)
        self._maps: dict[str, np.memmap] | None = None
        lengths = {name: len(array) for name, array in self.maps.items()}
        if len(set(lengths.values())) != 1:
            raise DataError(f"fields have different lengths: {lengths}")
        self.n = next(iter(lengths.values()))
        self.present = {k: torch.as_tensor(np.asarray(v), dtype=torch.bool) for k, v in (present or {}).items()}
        self.fields = list(self.paths)

    @property
    def maps(self) -> dict[str, np.memmap]:
        """The open memory maps (opened on first use in each process)."""
        if self._maps is None:
            self._maps = {name: open_npy(path) for name, path in self.paths.items()}
        return self._maps

    @property
    def arrays(self) -> dict[str, np.memmap]:  # type: ignore[override]
        return self.maps

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_maps"] = None  # workers reopen the files; the data never travels through a pipe
        return state

    def _rows(self, name: str, index: np.ndarray) -> Tensor:
        values = self.maps[name][index]  # reads only these rows from disk
        return torch.from_numpy(np.ascontiguousarray(values))

    def get(self, i: int) -> dict[str, Any]:
        out = {}
        for name in self.fields:
            missing = name in self.present and not self.present[name][i]
            out[name] = None if missing else self._rows(name, np.asarray([i]))[0]
        return out

    def take(self, index: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        rows = index.cpu().numpy()
        ones = torch.ones(len(rows), dtype=torch.bool)
        return {name: (self._rows(name, rows), self.present[name][index] if name in self.present else ones)
                for name in self.fields}

