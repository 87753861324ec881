"""An offline MNIST-SVHN-like set from scikit-learn's digits, written in the real formats (idx and SVHN's .mat).

Two differently rendered views of the ten digits, drawn from disjoint handwritten instances so that
a pair shares only its class, as MNIST-SVHN's pairs do: an MNIST-like view (white strokes on black,
28×28 grey, idx files in ``MNIST/raw``) and an SVHN-like view (32×32 colour: a thicker digit in one
colour on a background of another, with parts of neighbouring digits at the edges, as SVHN's house
numbers have; ``train_32x32.mat``/``test_32x32.mat`` with X (32, 32, 3, N) and y (N, 1), 10 for zero).
The two sets have different sizes, so the per-class matching has real work to do.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from modkit_mnist import write_idx
from modkit_polymnist.standin import digit_images, split_pools


def svhn_like(digit: np.ndarray, neighbours: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """(28, 28) strokes → (32, 32, 3) uint8: a coloured digit, thickened, between cut-off neighbours on a coloured ground."""
    from PIL import Image, ImageFilter

    def stroke(image: np.ndarray, size: int) -> np.ndarray:
        grown = Image.fromarray(image).filter(ImageFilter.MaxFilter(3)).resize((size, size), Image.BILINEAR)
        return np.asarray(grown, dtype=np.float64) / 255.0

    ink = np.zeros((32, 32))
    for side, other in zip((-1, 1), neighbours):  # neighbouring house-number digits, cut by the crop
        shifted = np.zeros((32, 32))
        part = stroke(other, 30)
        offset = 1 + side * 21
        lo, hi = max(0, offset), min(32, offset + 30)
        shifted[1:31, lo:hi] = part[:, lo - offset:hi - offset]
        ink = np.maximum(ink, 0.8 * shifted)
    dy, dx = rng.integers(-2, 3, 2)
    centre = np.zeros((32, 32))
    centre[2 + dy:30 + dy, 2 + dx:30 + dx] = stroke(digit, 28)
    ink = np.maximum(ink, centre)
    ground, colour = rng.random(3), rng.random(3)
    if np.abs(ground - colour).sum() < 0.9:  # keep the digit readable
        colour = 1.0 - ground
    image = ground * (1 - ink[..., None]) + colour * ink[..., None] + rng.normal(0, 0.03, (32, 32, 3))
    return np.uint8(np.clip(np.rint(image * 255), 0, 255))


def make_mnist_svhn(root: str | Path, n_mnist: tuple[int, int] = (600, 200), n_svhn: tuple[int, int] = (700, 260),
                    seed: int = 0) -> Path:
    """Write MNIST-like idx files (``root/MNIST/raw``) and SVHN-like ``.mat`` files (``root``); returns ``root``.

    ``n_mnist``/``n_svhn``: (train, test) sizes of each set. The MNIST-like view draws from one half of
    each class's scikit-learn digits, the SVHN-like view from the other half.
    """
    from scipy.io import savemat

    root = Path(root)
    digits, labels = digit_images()
    pools = split_pools(labels, seed)
    rng = np.random.default_rng(seed + 2)
    for split, prefix, m, s in (("train", "train", n_mnist[0], n_svhn[0]), ("test", "t10k", n_mnist[1], n_svhn[1])):
        halves = {d: (rows[: len(rows) // 2], rows[len(rows) // 2:]) for d, rows in pools[split].items()}
        mnist_labels = rng.integers(0, 10, m)
        mnist = np.stack([digits[rng.choice(halves[int(d)][0])] for d in mnist_labels]) if m else np.zeros((0, 28, 28), np.uint8)
        write_idx(root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte", mnist)
        write_idx(root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", mnist_labels)
        svhn_labels = rng.integers(0, 10, s)
        svhn = np.zeros((32, 32, 3, s), dtype=np.uint8)
        for i, d in enumerate(svhn_labels):
            neighbours = [digits[rng.integers(len(digits))] for _ in range(2)]
            svhn[..., i] = svhn_like(digits[rng.choice(halves[int(d)][1])], neighbours, rng)
        y = np.where(svhn_labels == 0, 10, svhn_labels).astype(np.uint8)[:, None]  # SVHN writes the digit 0 as 10
        root.mkdir(parents=True, exist_ok=True)
        savemat(root / f"{split}_32x32.mat", {"X": svhn, "y": y})
    return root
