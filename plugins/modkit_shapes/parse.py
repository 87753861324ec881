"""Read a scene back off an image: the ground-truth parser that judges generated images.

A generated image is judged by what a person would read off it, not by a classifier fitted on real
images (which can score an image by cues no person would call the shape). Each quadrant holds at most
one object and an object never reaches its quadrant's border (:func:`modkit_shapes.render.draw`), so per
quadrant: the border ring is background; an object is there if some pixel stands out from it by more than
:data:`PRESENT`; its pixels are those above half the quadrant's largest difference (half maximum: robust
to the blur and faded colours of decoded images); its colour is the palette colour nearest their mean;
its shape is the template (the renderer's own :func:`~modkit_shapes.render.shape_masks`, fitted to the
pixels' bounding box) that overlaps them best; its size compares the box with the midpoint between the
small and the large radius. Vectorised over images; loops over the four quadrants and a few dozen templates.
"""
from __future__ import annotations

from itertools import product

import numpy as np

from modkit_shapes.grammar import RGB, SHAPES, SLOTS
from modkit_shapes.render import RADIUS, shape_masks

#: an object's pixels differ from the background by at least this much in some channel (objects: ≥ 0.45)
PRESENT = 0.25
#: fewer pixels than this fraction of a small circle's area is noise, not an object
MIN_AREA = 0.25
#: (height, width) of each template's box in units of its radius: circle, square, triangle, cross
BOX = {0: (2.0, 2.0), 1: (1.7, 1.7), 2: (1.8, 2.0), 3: (2.0, 2.0)}
#: where a template's centre sits below the top of its box, in radii (the triangle spans −r … 0.8 r)
TOP = {0: 1.0, 1: 0.85, 2: 1.0, 3: 1.0}


def parse_images(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, H, W, 3) RGB in [0, 1] → per-slot (n, 4) shape, colour and size ids, −1 where a slot is empty."""
    images = np.asarray(images, dtype=np.float32)
    n, size = len(images), images.shape[1]
    half = size // 2
    shape = np.full((n, len(SLOTS)), -1)
    colour, large = np.full_like(shape, -1), np.full_like(shape, -1)
    pix = np.arange(half, dtype=np.float32) + 0.5
    small_area = np.pi * (RADIUS[0] * half) ** 2
    for k in range(len(SLOTS)):
        top, left = (k // 2) * half, (k % 2) * half
        quad = images[:, top:top + half, left:left + half]  # (n, h, w, 3)
        ring = np.concatenate([quad[:, 0], quad[:, -1], quad[:, 1:-1, 0], quad[:, 1:-1, -1]], axis=1)
        diff = np.abs(quad - np.median(ring, axis=1)[:, None, None]).max(-1)  # (n, h, w)
        peak = diff.reshape(n, -1).max(1)
        pixels = diff >= 0.5 * peak[:, None, None]
        area = pixels.sum((1, 2))
        present = (peak > PRESENT) & (area >= MIN_AREA * small_area)
        if not present.any():
            continue
        rows, cols = pixels.any(2), pixels.any(1)  # (n, h), (n, w)
        y0, y1 = rows.argmax(1), half - rows[:, ::-1].argmax(1)
        x0, x1 = cols.argmax(1), half - cols[:, ::-1].argmax(1)
        height, width = (y1 - y0).astype(np.float32), (x1 - x0).astype(np.float32)
        best, best_iou = np.zeros(n, dtype=np.int64), np.full(n, -1.0)
        radius = np.zeros(n, dtype=np.float32)
        for s, which, (dx, dy) in product(range(len(SHAPES)), range(3), ((0, 0), (-0.5, 0), (0.5, 0), (0, -0.5), (0, 0.5))):
            # a pixelated box is a pixel off the template's either way: try its height, width and mean, and half-pixel shifts
            bh, bw = BOX[s]
            r = (height / bh, width / bw, (height / bh + width / bw) / 2)[which][:, None, None]
            cx = ((x0 + x1) / 2)[:, None, None] + dx
            cy = y0[:, None, None] + TOP[s] * r + dy
            template = shape_masks(pix[None, None, :] - cx, pix[None, :, None] - cy, r, np.full((n, 1, 1), s))
            iou = (template & pixels).sum((1, 2)) / np.maximum((template | pixels).sum((1, 2)), 1)
            better = iou > best_iou
            best[better], best_iou[better], radius[better] = s, iou[better], r[better, 0, 0]
        mean = (quad * pixels[..., None]).sum((1, 2)) / np.maximum(area, 1)[:, None]
        nearest = ((mean[:, None] - RGB[None]) ** 2).sum(-1).argmin(1)
        shape[present, k] = best[present]
        colour[present, k] = nearest[present]
        large[present, k] = (radius[present] > (RADIUS[0] + RADIUS[1]) / 2 * half).astype(np.int64)
    return shape, colour, large
