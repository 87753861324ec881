"""An offline PolyMNIST-like set from scikit-learn's digits, written in PolyMNIST's real layouts.

PolyMNIST (Sutter et al. 2021) puts a digit over a random crop of a background texture, one texture
per view, inverting the background's colours under the digit's strokes; the five views of a tuple
are different handwritten instances of the same digit. This stand-in does the same with
scikit-learn's 1,797 bundled 8×8 digits upsampled to 28×28 and five procedural textures (stripes,
checks, smooth noise, rings, plaid) in five palettes, so tests and the small recipe tiers train on
the genuine file layout without downloading anything. Train and test draw from disjoint digit images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

TEXTURE_SIZE = 64


def digit_images(size: int = 28, inner: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (N, size, size) uint8 strokes-on-black, each upsampled to ``inner`` pixels and centred."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pad = (size - inner) // 2
    out = np.zeros((len(bunch.images), size, size), dtype=np.uint8)
    for i, image in enumerate(bunch.images):
        small = Image.fromarray(np.uint8(np.clip(image / 16.0 * 255, 0, 255)))
        out[i, pad:pad + inner, pad:pad + inner] = np.asarray(small.resize((inner, inner), Image.BILINEAR))
    return out, bunch.target.astype(np.int64)


def split_pools(labels: np.ndarray, seed: int, test_share: float = 0.25) -> dict[str, dict[int, np.ndarray]]:
    """Per split and class, the digit images it may use: disjoint between train and test."""
    rng = np.random.default_rng(seed)
    pools: dict[str, dict[int, np.ndarray]] = {"train": {}, "test": {}}
    for digit in range(10):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        cut = int(round(len(rows) * test_share))
        pools["test"][digit], pools["train"][digit] = rows[:cut], rows[cut:]
    return pools


def textures(seed: int = 0, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Five distinct RGB background textures (5, size, size, 3) in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    smooth = np.kron(rng.random((8, 8)), np.ones((size // 8, size // 8)))
    patterns = [
        0.5 + 0.5 * np.sin(2 * np.pi * 6 * (x + y)),                       # diagonal stripes
        ((np.floor(x * 8) + np.floor(y * 8)) % 2).astype(float),           # checks
        smooth,                                                            # smooth noise
        0.5 + 0.5 * np.sin(2 * np.pi * 7 * np.hypot(x - 0.5, y - 0.5)),    # rings
        0.25 * (2 + np.sin(2 * np.pi * 5 * x) + np.sin(2 * np.pi * 3 * y)), # plaid
    ]
    palettes = [((0.9, 0.2, 0.1), (1.0, 0.85, 0.2)), ((0.1, 0.2, 0.8), (0.3, 0.9, 0.9)), ((0.05, 0.4, 0.1), (0.6, 0.95, 0.4)),
                ((0.45, 0.1, 0.55), (1.0, 0.6, 0.2)), ((0.35, 0.35, 0.35), (0.95, 0.3, 0.8))]
    out = np.empty((5, size, size, 3))
    for k, (pattern, (low, high)) in enumerate(zip(patterns, palettes)):
        out[k] = np.asarray(low) + pattern[..., None] * (np.asarray(high) - np.asarray(low))
    return np.clip(out, 0, 1)


def compose(digit: np.ndarray, texture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A digit (H, W) uint8 over a random crop of ``texture``, colours inverted under the strokes → (H, W, 3) uint8."""
    h, w = digit.shape
    top, left = rng.integers(0, texture.shape[0] - h + 1), rng.integers(0, texture.shape[1] - w + 1)
    crop = texture[top:top + h, left:left + w].copy()
    strokes = digit > 127
    crop[strokes] = 1.0 - crop[strokes]
    return np.uint8(np.rint(crop * 255))


def standin_arrays(n_train: int = 600, n_test: int = 200, seed: int = 0,
                   views: int = 5) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The stand-in's tuples in memory: ``{split: (images (views, n, 28, 28, 3) uint8, labels (n,) int64)}``,
    exactly what :func:`make_polymnist` writes (it writes these arrays)."""
    digits, labels = digit_images()
    pools = split_pools(labels, seed)
    backgrounds = textures(seed)
    rng = np.random.default_rng(seed + 1)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        tuple_labels = rng.integers(0, 10, n)
        images = np.empty((views, n, 28, 28, 3), dtype=np.uint8)
        for i, digit in enumerate(tuple_labels):
            for k in range(views):  # each view a different handwritten instance of the digit
                images[k, i] = compose(digits[rng.choice(pools[split][int(digit)])], backgrounds[k % 5], rng)
        out[split] = images, tuple_labels.astype(np.int64)
    return out


def make_polymnist(root: str | Path, n_train: int = 600, n_test: int = 200, seed: int = 0,
                   form: Literal["png", "tensor", "both"] = "png", views: int = 5) -> Path:
    """Write a PolyMNIST-like set under ``root/MMNIST`` and return that folder.

    ``form``: ``png`` the PNG trees ``{train,test}/m<k>/<i>.<digit>.png``; ``tensor`` MultiVae's
    ``{train,test}/m<k>.pt`` (uint8 (N, 3, 28, 28)) and ``labels.pt``; ``both`` the two.
    """
    import torch
    from PIL import Image

    folder = Path(root) / "MMNIST"
    for split, (images, tuple_labels) in standin_arrays(n_train, n_test, seed, views).items():
        for k in range(views):
            view = folder / split / f"m{k}"
            if form in ("png", "both"):
                view.mkdir(parents=True, exist_ok=True)
                for i, digit in enumerate(tuple_labels):
                    Image.fromarray(images[k, i]).save(view / f"{i}.{digit}.png")
            if form in ("tensor", "both"):
                view.parent.mkdir(parents=True, exist_ok=True)
                torch.save(torch.from_numpy(images[k].transpose(0, 3, 1, 2).copy()), view.parent / f"m{k}.pt")
        if form in ("tensor", "both"):
            torch.save(torch.from_numpy(tuple_labels), folder / split / "labels.pt")
    return folder
