"""A worked dataset plugin: digits, plus fields derived from each row, without copying how digits stores them.

``DerivedDataset`` loads the registered ``digits`` dataset (with the options under ``base:``) and adds what
``add_fields`` returns to every split. docs/plugin-api.md walks through it;
tests/docs/test_plugin_api_examples.py trains on it.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from modkit import DerivedDataset, DerivedDatasetConfig, hookimpl


class DigitsParityConfig(DerivedDatasetConfig):
    """``base`` (from DerivedDatasetConfig) holds the digits options, e.g. ``{language: fr}``."""

    blur: float = Field(0.0, ge=0, le=1, description="mix each image with its mean: a harder 'image' field")


class DigitsParity(DerivedDataset):
    """digits with ``parity`` (0 even, 1 odd), ``ink`` (mean brightness) and, with ``blur``, a blurred ``image``."""

    Config = DigitsParityConfig
    base = "digits"  # the registered name; the class itself also works

    def add_fields(self, records, split: str):
        fields = {"parity": lambda row: int(row["label"]) % 2,          # a function of one row …
                  "ink": lambda row: np.float32(np.asarray(row["image"]).mean())}
        if self.config.blur:
            images = np.stack([np.asarray(records.get(i)["image"]) for i in range(len(records))])  # … or all values
            fields["image"] = (1 - self.config.blur) * images + self.config.blur * images.mean((1, 2, 3), keepdims=True)
        return fields


@hookimpl
def modkit_register(registry):
    registry.add_dataset("digits_parity", DigitsParity)
