"""The digits dataset: scikit-learn's bundled 1,797 real 8×8 handwritten digits; nothing to download."""
from __future__ import annotations

import numpy as np

from modkit import ArrayRecords, DatasetConfig, DatasetSource, hookimpl


class DigitsConfig(DatasetConfig):
    pass


class Digits(DatasetSource):
    """scikit-learn's handwritten digits (8×8 grey, 0-16 scaled to [0, 1]) with their labels."""

    Config = DigitsConfig

    def load(self):
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = (bunch.images.astype(np.float32) / 16.0)[:, None]  # (n, 1, 8, 8)
        labels = bunch.target.astype(np.int64)
        return {"all": ArrayRecords({"image": images, "label": labels})}


@hookimpl
def modkit_register(registry):
    registry.add_dataset("digits", Digits)
