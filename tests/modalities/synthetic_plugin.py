"""A tiny in-test dataset plugin: every row holds all six modality kinds as raw values (the per-item path)."""
from __future__ import annotations

import numpy as np

from modkit import DatasetConfig, DatasetSource, Records, hookimpl

COLOURS = [("red", "đỏ", (230, 40, 40)), ("green", "xanh lá", (40, 200, 40)), ("blue", "xanh dương", (40, 40, 230))]
SIDES = [("left", "trái"), ("right", "phải")]


class SixRecords(Records):
    """Row i: a coloured square on one side of an 8×8 picture, its mask, label, attributes and two captions."""

    fields = ["image", "mask", "label", "attrs", "caption", "en", "vi"]

    def __init__(self, n: int, seed: int):
        self.n = n
        self.rng = np.random.default_rng(seed)
        self.noise = (self.rng.random((n, 8, 8, 3)) * 40).astype(np.uint8)

    def __len__(self) -> int:
        return self.n

    def get(self, i: int):
        colour, side = i % 3, (i // 3) % 2
        name, vi_name, rgb = COLOURS[colour]
        image = self.noise[i].copy()
        mask = np.zeros((8, 8), dtype=np.int64)
        cols = slice(0, 4) if side == 0 else slice(4, 8)
        image[2:6, cols] = rgb
        mask[2:6, cols] = 1 + colour
        mask[0, 0] = 255  # an ignored pixel
        label = colour * 2 + side
        return {"image": image, "mask": mask, "label": label, "attrs": [int(colour == 0), side],
                "caption": f"a {name} square on the {SIDES[side][0]}",
                "en": f"{name} square {SIDES[side][0]}", "vi": f"hình vuông {vi_name} bên {SIDES[side][1]}"}


class SixConfig(DatasetConfig):
    n: int = 48


class Six(DatasetSource):
    """Synthetic six-modality rows for tests."""

    Config = SixConfig

    def load(self):
        return {"all": SixRecords(self.config.n, seed=0)}


@hookimpl
def modkit_register(registry):
    registry.add_dataset("test_six", Six)
