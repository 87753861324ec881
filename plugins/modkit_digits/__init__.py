"""The digits dataset: scikit-learn's bundled 1,797 real 8×8 handwritten digits; nothing to download.

``image`` and ``label`` are the data. The other fields are DERIVED from the label alone, so they
carry no information the label does not (useful for testing many-modality models, not as new data):

- ``caption``: "a handwritten seven";
- ``translation``: the number word in a second language (``language``: es, fr or de), "siete";
- ``attributes``: multi-hot over :data:`ATTRIBUTE_NAMES` (odd, prime, ≥5, …); every digit has a
  distinct code, so the attributes determine the label.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from modkit import ArrayRecords, DatasetConfig, DatasetSource, hookimpl

ENGLISH = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
NUMBER_WORDS = {
    "es": ["cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"],
    "fr": ["zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"],
    "de": ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"],
}
ATTRIBUTES = {
    "odd": lambda d: d % 2 == 1,
    "prime": lambda d: d in (2, 3, 5, 7),
    "at_least_five": lambda d: d >= 5,
    "square": lambda d: d in (0, 1, 4, 9),
    "power_of_two": lambda d: d in (1, 2, 4, 8),
    "multiple_of_three": lambda d: d % 3 == 0,
    "multiple_of_five": lambda d: d % 5 == 0,
}
#: names of the ``attributes`` columns, in order
ATTRIBUTE_NAMES = list(ATTRIBUTES)
#: label id → class name (as recipes/digits.yaml writes them)
CLASS_NAMES = ENGLISH


def caption_of(digit: int) -> str:
    return f"a handwritten {ENGLISH[digit]}"


def attributes_of(digit: int) -> np.ndarray:
    return np.array([float(rule(digit)) for rule in ATTRIBUTES.values()], dtype=np.float32)


class DigitsConfig(DatasetConfig):
    language: Literal["es", "fr", "de"] = "es"


class Digits(DatasetSource):
    """scikit-learn's handwritten digits (8×8 grey in [0, 1]) with labels, and derived caption, translation, attributes."""

    Config = DigitsConfig
    attribute_names = ATTRIBUTE_NAMES
    class_names = CLASS_NAMES

    def load(self):
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = (bunch.images.astype(np.float32) / 16.0)[:, None]  # (n, 1, 8, 8)
        labels = bunch.target.astype(np.int64)
        table = np.stack([attributes_of(d) for d in range(10)])
        words = NUMBER_WORDS[self.config.language]
        return {"all": ArrayRecords(
            {"image": images, "label": labels, "attributes": table[labels]},
            objects={"caption": [caption_of(int(d)) for d in labels], "translation": [words[int(d)] for d in labels]},
        )}


@hookimpl
def modkit_register(registry):
    registry.add_dataset("digits", Digits)
