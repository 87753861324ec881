"""Datasets larger than memory: MemmapRecords reads the rows a batch needs, never the whole file."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from modkit.data.dataset import EpochBatchSampler, ModalityView, make_loader
from modkit.errors import DataError
from modkit.data.streaming import MemmapRecords

ROWS, WIDTH = 100_000, 512  # 200 MB of float32 on disk


def resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def big(tmp_path):
    """A 200 MB .npy file (sparse on disk: only the rows written take space) and a small label file."""
    features = np.lib.format.open_memmap(tmp_path / "features.npy", mode="w+", dtype=np.float32, shape=(ROWS, WIDTH))
    for row in (0, 7, ROWS // 2, ROWS - 1):
        features[row] = row
    features.flush()
    del features
    np.save(tmp_path / "labels.npy", np.arange(ROWS) % 10)
    return tmp_path


def test_a_batch_reads_its_rows_and_not_the_file(big):
    start = resident_bytes()
    records = MemmapRecords({"features": big / "features.npy", "label": big / "labels.npy"})
    view = ModalityView(records, {"x": None, "y": None}, {"x": "features", "y": "label"})
    batch = view.__getitems__([ROWS - 1, 7, ROWS // 2, 3])
    grown = resident_bytes() - start
    assert grown < 20 * 2**20, grown  # the file is 200 MB; a few rows and the 0.8 MB label file are read
    assert batch.data["x"].shape == (4, WIDTH) and batch.data["x"].dtype == torch.float32
    assert batch.data["x"][:, 0].tolist() == [ROWS - 1, 7, ROWS // 2, 0]
    assert batch.data["y"].tolist() == [(ROWS - 1) % 10, 7, (ROWS // 2) % 10, 3]
    assert len(records) == ROWS and records.get(7)["features"][0] == 7


def test_workers_receive_file_names_not_data(big):
    records = MemmapRecords({"features": np.load(big / "features.npy", mmap_mode="r"), "label": big / "labels.npy"})
    assert len(pickle.dumps(records)) < 4096  # a DataLoader worker gets paths and reopens the maps
    view = ModalityView(records, {"x": None, "y": None}, {"x": "features", "y": "label"})
    sampler = EpochBatchSampler(ROWS, 4096, seed=0)
    expected = [view.__getitems__(b).data["x"] for b in list(sampler)[:3]]
    loader = make_loader(view, sampler, num_workers=2)
    got = [batch.data["x"] for _, batch in zip(range(3), loader)]
    assert all(torch.equal(a, b) for a, b in zip(expected, got))


def test_bad_files_are_named(tmp_path):
    np.save(tmp_path / "short.npy", np.zeros(3))
    np.save(tmp_path / "long.npy", np.zeros(4))
    with pytest.raises(DataError, match="different lengths"):
        MemmapRecords({"a": tmp_path / "short.npy", "b": tmp_path / "long.npy"})
    with pytest.raises(DataError, match="missing.npy"):
        MemmapRecords({"a": tmp_path / "missing.npy"})
