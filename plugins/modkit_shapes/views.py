"""Image views for MVAE's vision-transforms case study (Wu & Goodman 2018, §5.4), derived from the scenes.

The paper trains one model on six views of a CelebA face — the colour image, grayscale, Canny edges,
a facial-landmark mask, the image with a half blacked out, and a watermarked one — and reads each
translation (edges → image, grayscale → colour, half → whole, watermark removal) off the shared
latent. Here the same transforms apply to shapes scenes, and the segmentation mask plays the
landmark mask's part. Each view is a function of the colour image alone, vectorised over scenes.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

#: the views a dataset can add, each as a field ``image_<view>``
VIEWS = ("grayscale", "edges", "half", "watermark")
#: ITU-R BT.601 luma weights: what Pillow's ``convert("L")`` uses
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
EDGE_THRESHOLD = 0.2  # of the Sobel magnitude on [0, 1] colour channels: every shape border on easy to hard scenes, 1 % stray pixels (tests/data/test_shapes_views.py)
WATERMARK_ALPHA = 0.5


def grayscale(images: np.ndarray) -> np.ndarray:
    """(n, 3, H, W) → (n, 1, H, W) luma."""
    return np.einsum("c,nchw->nhw", LUMA, images)[:, None].astype(np.float32)


def edges(images: np.ndarray, threshold: float = EDGE_THRESHOLD) -> np.ndarray:
    """(n, 3, H, W) → (n, 1, H, W) binary edge map: the largest Sobel gradient magnitude over the colour
    channels above ``threshold`` (Canny's first stage, without non-maximum suppression; per channel, so
    a red shape on a background of the same brightness still has its border). The paper's edges are a
    fixed, deterministic function of the image, which is all the case study needs."""
    g = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    gx = (g[..., :-2, 2:] + 2 * g[..., 1:-1, 2:] + g[..., 2:, 2:]) - (g[..., :-2, :-2] + 2 * g[..., 1:-1, :-2] + g[..., 2:, :-2])
    gy = (g[..., 2:, :-2] + 2 * g[..., 2:, 1:-1] + g[..., 2:, 2:]) - (g[..., :-2, :-2] + 2 * g[..., :-2, 1:-1] + g[..., :-2, 2:])
    magnitude = np.hypot(gx, gy).max(1) / 4  # a unit step between flat regions gives 1
    return (magnitude > threshold).astype(np.float32)[:, None]


def half(images: np.ndarray) -> np.ndarray:
    """The bottom half blacked out (the paper blacks out half of the face)."""
    out = images.copy()
    out[:, :, images.shape[2] // 2:, :] = 0
    return out


@lru_cache(maxsize=8)
def watermark_pattern(size: int) -> np.ndarray:
    """A fixed (H, W) 0/1 mark: the text "modkit" in Pillow's built-in font, tiled diagonally."""
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    step = max(8, size // 3)
    for k, y in enumerate(range(-step, size + step, step)):
        draw.text(((k * step // 2) % step - step // 2, y), "modkit " * 4, fill=255, font=font)
    return (np.asarray(canvas, dtype=np.float32) > 127).astype(np.float32)


def watermark(images: np.ndarray, alpha: float = WATERMARK_ALPHA) -> np.ndarray:
    """The image with a white text watermark blended in at ``alpha`` where the mark is."""
    mark = watermark_pattern(images.shape[-1])[None, None]
    return (images * (1 - alpha * mark) + alpha * mark).astype(np.float32)


TRANSFORMS = {"grayscale": grayscale, "edges": edges, "half": half, "watermark": watermark}


def derive_views(images: np.ndarray, views: tuple[str, ...] | list[str]) -> dict[str, np.ndarray]:
    """``{"image_<view>": array}`` for each requested view of (n, 3, H, W) images."""
    return {f"image_{v}": TRANSFORMS[v](images) for v in views}
