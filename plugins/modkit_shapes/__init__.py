"""The shapes benchmark: procedurally drawn scenes (CdSprites+/CLEVR-like) that need no download.

Each sample is an RGB image of 1–3 coloured shapes on a textured background (one shape per
quadrant), its segmentation mask, an English caption and its Spanish translation from a small
grammar, a multi-hot attribute vector (shape, colour, size of the object in each quadrant — the
quadrant is its position) and a label. Deterministic from ``seed``; any ``n`` and ``image_size``.

Fields: ``image`` (3, S, S) float32 in [0, 1]; ``mask`` (S, S) int64; ``caption`` and
``translation`` str; ``attributes`` (48,) float32 0/1; ``label`` int64; with ``views``, the
vision-transform images ``image_grayscale``, ``image_edges``, ``image_half``, ``image_watermark``
(:mod:`modkit_shapes.views`). :func:`generate` also returns
the per-slot ground truth (:class:`~modkit_shapes.render.Scenes`);
:func:`~modkit_shapes.grammar.parse_caption` reads a caption back and
:func:`~modkit_shapes.parse.parse_images` an image.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from modkit import ArrayRecords, DatasetConfig, DatasetSource, hookimpl
from modkit_shapes.grammar import ATTRIBUTE_NAMES, COLOURS, SHAPES, SLOTS, attributes, caption, parse_caption
from modkit_shapes.render import DIFFICULTIES, Difficulty, Scenes, draw, sample_scenes
from modkit_shapes.parse import parse_images
from modkit_shapes.views import VIEWS, derive_views

__all__ = ["Shapes", "ShapesConfig", "generate", "parse_caption", "ATTRIBUTE_NAMES", "SHAPES", "COLOURS", "SLOTS", "VIEWS"]

LABEL_CLASSES = {"main_shape": SHAPES, "main_colour": COLOURS, "count": ["one", "two", "three", "four"]}


class ShapesConfig(DatasetConfig):
    n: int = Field(5000, ge=1, description="number of scenes (split by data.test_fraction)")
    image_size: int = Field(32, ge=8, le=512)
    seed: int = Field(0, description="the same seed draws the same scenes")
    difficulty: Literal["easy", "medium", "hard"] = "medium"
    min_objects: int | None = Field(None, ge=1, le=4, description="override the difficulty's object count")
    max_objects: int | None = Field(None, ge=1, le=4)
    label: Literal["main_shape", "main_colour", "count"] = Field("main_shape", description="main = first object in reading order")
    mask_classes: Literal["shape", "shape_colour"] = Field("shape", description="0 = background; 1 + shape, or 1 + shape·6 + colour")
    views: list[Literal["grayscale", "edges", "half", "watermark"]] = Field(
        [], description="extra image fields image_<view> for MVAE's vision-transforms study: grayscale and edges (1, S, S), "
                        "half (bottom half black) and watermark (3, S, S)")

    @model_validator(mode="after")
    def _counts(self):
        level = self.level()
        if level.min_objects > level.max_objects:
            raise ValueError(f"min_objects {level.min_objects} > max_objects {level.max_objects}")
        return self

    def level(self) -> Difficulty:
        base = DIFFICULTIES[self.difficulty]
        return Difficulty(self.min_objects or base.min_objects, self.max_objects or max(base.max_objects, self.min_objects or 0),
                          base.texture, base.jitter, base.size_jitter, base.colour_jitter)


def mask_class_names(mode: str) -> list[str]:
    if mode == "shape":
        return ["background", *SHAPES]
    return ["background", *[f"{c} {s}" for s in SHAPES for c in COLOURS]]


def generate(config: ShapesConfig) -> tuple[ArrayRecords, Scenes]:
    """Draw ``config.n`` scenes; returns the records and their ground truth."""
    rng = np.random.default_rng(config.seed)
    level = config.level()
    scenes = sample_scenes(config.n, config.image_size, level, rng)
    if config.mask_classes == "shape":
        mask_class = scenes.shape + 1
    else:
        mask_class = np.where(scenes.shape >= 0, 1 + scenes.shape * len(COLOURS) + scenes.colour, 0)
    images, masks = draw(scenes, config.image_size, level.texture, rng, mask_class)
    main = scenes.main
    rows = np.arange(config.n)
    label = {"main_shape": scenes.shape[rows, main], "main_colour": scenes.colour[rows, main], "count": scenes.count - 1}[config.label]
    english = [caption("en", s, c, z) for s, c, z in zip(scenes.shape, scenes.colour, scenes.size)]
    spanish = [caption("es", s, c, z) for s, c, z in zip(scenes.shape, scenes.colour, scenes.size)]
    records = ArrayRecords(
        {"image": images, "mask": masks, "attributes": attributes(scenes.shape, scenes.colour, scenes.size),
         "label": label.astype(np.int64), **derive_views(images, config.views)},
        objects={"caption": english, "translation": spanish},
    )
    return records, scenes


class Shapes(DatasetSource):
    """Procedural scenes of 1–3 coloured shapes: image, mask, English/Spanish captions, attributes, label."""

    Config = ShapesConfig
    attribute_names = ATTRIBUTE_NAMES

    @property
    def class_names(self) -> list[str]:
        return LABEL_CLASSES[self.config.label]

    @property
    def mask_class_names(self) -> list[str]:
        return mask_class_names(self.config.mask_classes)

    def load(self):
        records, _ = generate(self.config)
        return {"all": records}

    def judge(self, field: str, samples: list) -> dict[str, np.ndarray] | None:
        """Ground truth for generated captions and images (``modkit eval`` coherence): parse a caption with the
        grammar, read an image with :func:`modkit_shapes.parse.parse_images` (what a person would read off it).

        Returns the 48 ``attributes[k]`` and the ``label`` each sample shows; a caption outside the grammar
        states nothing, so it gets −1 (never right). Other fields (a mask, a derived view): None (a classifier
        judges them).
        """
        if field == "image" and samples and isinstance(samples[0], np.ndarray) and samples[0].ndim == 3:
            return self._scored(*parse_images(np.stack(samples)), np.ones(len(samples), dtype=bool))
        language = {"caption": "en", "translation": "es"}.get(field)
        if language is None or not samples or not isinstance(samples[0], str):
            return None
        n = len(samples)
        shape = np.full((n, len(SLOTS)), -1)
        colour, size = np.zeros_like(shape), np.zeros_like(shape)
        parsed = np.ones(n, dtype=bool)
        for i, text in enumerate(samples):
            objects = parse_caption(text, language)
            if objects is None:
                parsed[i] = False
                continue
            for slot, s, c, z in objects:
                shape[i, slot], colour[i, slot], size[i, slot] = s, c, z
        return self._scored(shape, colour, size, parsed)

    def _scored(self, shape: np.ndarray, colour: np.ndarray, size: np.ndarray, parsed: np.ndarray) -> dict[str, np.ndarray]:
        """Per-slot ids (n, 4) read off samples → the attributes and label they show (−1 where unread)."""
        n = len(shape)
        vector = attributes(shape, colour, size).astype(np.int64)
        vector[~parsed] = -1
        out = {f"attributes[{k}]": vector[:, k] for k in range(vector.shape[1])}
        rows, main = np.arange(n), (shape >= 0).argmax(1)
        label = {"main_shape": shape[rows, main], "main_colour": colour[rows, main], "count": (shape >= 0).sum(1) - 1}[self.config.label]
        out["label"] = np.where(parsed & (shape >= 0).any(1), label, -1)
        return out


@hookimpl
def modkit_register(registry):
    registry.add_dataset("shapes", Shapes)
