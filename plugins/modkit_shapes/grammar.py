"""The shapes vocabulary and the small grammar that turns a scene into an English or Spanish caption.

A scene has up to four objects, one per quadrant ("slot"); captions list them in reading order
(top left, top right, bottom left, bottom right). :func:`parse_caption` inverts the grammar
exactly, so a generated caption can be scored against the ground truth.
"""
from __future__ import annotations

import re
from itertools import product

import numpy as np

SHAPES = ["circle", "square", "triangle", "cross"]
COLOURS = ["red", "green", "blue", "yellow", "purple", "white"]
SIZES = ["small", "large"]
SLOTS = ["top left", "top right", "bottom left", "bottom right"]
RGB = np.array([(0.90, 0.12, 0.12), (0.15, 0.75, 0.20), (0.20, 0.35, 1.00),
                (0.95, 0.88, 0.10), (0.62, 0.20, 0.85), (0.95, 0.95, 0.95)], dtype=np.float32)
LANGUAGES = ("en", "es")

# Spanish: noun gender decides the article and the adjective endings.
_ES_NOUN = {"circle": ("círculo", "m"), "square": ("cuadrado", "m"), "triangle": ("triángulo", "m"), "cross": ("cruz", "f")}
_ES_COLOUR = {"red": ("rojo", "roja"), "green": ("verde", "verde"), "blue": ("azul", "azul"),
              "yellow": ("amarillo", "amarilla"), "purple": ("morado", "morada"), "white": ("blanco", "blanca")}
_ES_SIZE = {"small": ("pequeño", "pequeña"), "large": ("grande", "grande")}
_ES_SLOT = {"top left": "arriba a la izquierda", "top right": "arriba a la derecha",
            "bottom left": "abajo a la izquierda", "bottom right": "abajo a la derecha"}


def phrase(language: str, slot: int, shape: int, colour: int, size: int) -> str:
    """One object as a noun phrase with its position."""
    s, c, z, p = SHAPES[shape], COLOURS[colour], SIZES[size], SLOTS[slot]
    if language == "en":
        return f"a {z} {c} {s} at the {p}"
    if language == "es":
        noun, gender = _ES_NOUN[s]
        g = 0 if gender == "m" else 1
        article = "un" if gender == "m" else "una"
        return f"{article} {noun} {_ES_COLOUR[c][g]} {_ES_SIZE[z][g]} {_ES_SLOT[p]}"
    raise ValueError(f"unknown language {language!r} (known: {', '.join(LANGUAGES)})")


def join(language: str, phrases: list[str]) -> str:
    last = " and " if language == "en" else " y "
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + last + phrases[-1]


def caption(language: str, shape: np.ndarray, colour: np.ndarray, size: np.ndarray) -> str:
    """A scene's caption from its per-slot arrays (shape -1 = empty slot)."""
    return join(language, [phrase(language, k, int(shape[k]), int(colour[k]), int(size[k]))
                           for k in range(len(SLOTS)) if shape[k] >= 0])


_PHRASES = {lang: {phrase(lang, *combo): combo for combo in product(range(len(SLOTS)), range(len(SHAPES)),
                                                                    range(len(COLOURS)), range(len(SIZES)))}
            for lang in LANGUAGES}


def parse_caption(text: str, language: str = "en") -> list[tuple[int, int, int, int]] | None:
    """Caption → [(slot, shape, colour, size), …], or None if any part is not a sentence of the grammar."""
    separator = r",\s*|\s+and\s+" if language == "en" else r",\s*|\s+y\s+"
    parts = [p.strip() for p in re.split(separator, text.strip()) if p.strip()]
    table = _PHRASES[language]
    found = [table.get(p) for p in parts]
    return None if not found or any(f is None for f in found) else found


# -- attributes: one block per slot, so each object's position is its block ---------------------
SLOT_KEYS = [s.replace(" ", "_") for s in SLOTS]
BLOCK = ["present", *SHAPES, *COLOURS, "large"]
ATTRIBUTE_NAMES = [f"{slot}/{name}" for slot in SLOT_KEYS for name in BLOCK]


def attributes(shape: np.ndarray, colour: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Per-slot arrays (n, 4) → multi-hot (n, 4 × 12): present, shape one-hot, colour one-hot, large."""
    n, slots = shape.shape
    out = np.zeros((n, slots, len(BLOCK)), dtype=np.float32)
    present = shape >= 0
    rows, cols = np.nonzero(present)
    out[rows, cols, 0] = 1
    out[rows, cols, 1 + shape[rows, cols]] = 1
    out[rows, cols, 1 + len(SHAPES) + colour[rows, cols]] = 1
    out[rows, cols, -1] = size[rows, cols] == 1
    return out.reshape(n, -1)


def objects_from_attributes(vector: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int, int, int]]:
    """Multi-hot (or probabilities) → [(slot, shape, colour, size), …] for slots whose ``present`` is on."""
    blocks = np.asarray(vector, dtype=np.float32).reshape(len(SLOTS), len(BLOCK))
    found = []
    for k, block in enumerate(blocks):
        if block[0] >= threshold:
            shape = int(block[1 : 1 + len(SHAPES)].argmax())
            colour = int(block[1 + len(SHAPES) : 1 + len(SHAPES) + len(COLOURS)].argmax())
            found.append((k, shape, colour, int(block[-1] >= threshold)))
    return found
