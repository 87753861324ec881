"""A modkit plugin for the benchmark only: the synthetic dataset, registered through the public hook."""
from __future__ import annotations

from pydantic import Field

from bench_common import synthetic_data
from modkit import ArrayRecords, DatasetConfig, DatasetSource, hookimpl


class SyntheticConfig(DatasetConfig):
    n_modalities: int = Field(2, ge=1)
    n_rows: int = Field(1024, ge=1)
    seed: int = 0


class Synthetic(DatasetSource):
    """N binary 784-d modalities (fields m0, m1, …), identical to what the MultiVae worker trains on."""

    Config = SyntheticConfig

    def load(self):
        c = self.config
        arrays = synthetic_data(c.n_modalities, c.n_rows, c.seed)
        train = ArrayRecords({f"m{i}": a for i, a in enumerate(arrays)})
        test = ArrayRecords({f"m{i}": a[:8] for i, a in enumerate(arrays)})
        return {"train": train, "test": test}


@hookimpl
def modkit_register(registry):
    registry.add_dataset("bench-synthetic", Synthetic)
