"""A modkit plugin for the benchmark only: the synthetic datasets, registered through the public hook."""
from __future__ import annotations

from pydantic import Field

from bench_common import synthetic_data
from modkit import ArrayRecords, DatasetConfig, DatasetSource, hookimpl


class SyntheticConfig(DatasetConfig):
    n_modalities: int = Field(2, ge=1)
    n_rows: int = Field(1024, ge=1)
    seed: int = 0
    side: list[int] = Field([1, 28, 28], description="each modality's shape (PolyMNIST: [3, 28, 28])")


class Synthetic(DatasetSource):
    """N binary modalities (fields m0, m1, …; 1 × 28 × 28 unless ``side`` says), identical to what the MultiVae worker trains on."""

    Config = SyntheticConfig

    def load(self):
        c = self.config
        arrays = synthetic_data(c.n_modalities, c.n_rows, c.seed, tuple(c.side))
        train = ArrayRecords({f"m{i}": a for i, a in enumerate(arrays)})
        test = ArrayRecords({f"m{i}": a[:8] for i, a in enumerate(arrays)})
        return {"train": train, "test": test}


class Shapes19(DatasetSource):
    """The shapes scenes as MVAE's CelebA-19 shape: the image and the first 18 of its 48 attributes
    (the top-left quadrant's 12 and the top-right's first 6), for a 19-modality model (``split: true``)."""

    ATTRIBUTES = 18

    def load(self):
        from modkit_shapes import generate

        records, _ = generate(self.config)
        arrays = records.arrays
        return {"all": ArrayRecords({"image": arrays["image"], "attributes": arrays["attributes"][:, : self.ATTRIBUTES]})}


def _shapes19_class():
    from modkit_shapes import ShapesConfig

    return type("Shapes19", (Shapes19,), {"Config": ShapesConfig})


@hookimpl
def modkit_register(registry):
    registry.add_dataset("bench-synthetic", Synthetic)
    registry.add_dataset("bench-shapes19", _shapes19_class())
