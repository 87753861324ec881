"""Structural similarity (SSIM, Wang et al. 2004) of images reconstructed or translated from each subset's posterior mean.

SSIM as the paper defines it: a Gaussian window (σ = 1.5, 11 pixels, or the largest odd size that fits a
smaller image: 7 on 8×8 digits), K1 = 0.01, K2 = 0.03, data range 1 (images in [0, 1]), population moments
under the window, averaged over the window positions that lie wholly inside the image ("valid"), then over
the test items. The decoded image is the likelihood's mean (pixel probabilities for a Bernoulli image).
The pixel MSE of the same reconstructions is in ``reconstruction``.

Not torchmetrics' SSIM: with a Gaussian window it ignores ``kernel_size`` (always 11 pixels at σ = 1.5), pads by
reflection and averages over every position, so on 8×8 images most of each window is reflected border and the
index differs from the valid-window definition above (docs/evaluation.md, SSIM).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from modkit.evaluation.metric import BaseMetric, Block, Decoded, EvalContext, PosteriorBatch, Table, Text

SIGMA, WINDOW, K1, K2 = 1.5, 11, 0.01, 0.03


def window_size(height: int, width: int) -> int:
    size = min(WINDOW, height, width)
    return size if size % 2 else size - 1


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image SSIM of (B, C, H, W) images (the mean over channels and valid window positions): (B,)."""
    x, y = x.double(), y.double()
    channels = x.shape[1]
    k = window_size(x.shape[-2], x.shape[-1])
    axis = torch.arange(k, dtype=torch.float64, device=x.device) - (k - 1) / 2
    g = torch.exp(-axis ** 2 / (2 * SIGMA ** 2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(channels, 1, k, k)
    blur = lambda t: torch.nn.functional.conv2d(t, window, groups=channels)  # noqa: E731  (valid: no padding)
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x ** 2, blur(y * y) - mu_y ** 2, blur(x * y) - mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(1)


class SSIM(BaseMetric):
    name = "ssim"
    group = "reconstruction"
    keys = ("ssim",)
    needs = frozenset({"decoded"})
    description = ("SSIM (Wang et al. 2004; σ = 1.5 Gaussian window of 11 pixels or the largest odd size that fits, K1 = 0.01, "
                   "K2 = 0.03, data range 1) between each test image and the image decoded from each subset's posterior "
                   "mean, averaged over the test items that have the subset and the target. No sampling; 1 is identical, "
                   "0 unrelated structure.")

    def start(self, context: EvalContext) -> None:
        self.context = context
        self.sums: dict[tuple[int, str], list[float]] = {}

    def update(self, batch: PosteriorBatch, decoded: Decoded | None) -> None:
        if decoded is None:
            return
        x, pred = decoded.data, decoded.predicted
        if not (isinstance(x, Tensor) and isinstance(pred, Tensor) and x.is_floating_point() and x.dim() == 4
                and pred.shape[1:] == x.shape):
            return
        for i, s in enumerate(range(decoded.start, decoded.stop)):
            rows = decoded.valid[i]
            if rows.any():
                values = ssim(pred[i][rows].clamp(0, 1), x[rows])
                cell = self.sums.setdefault((s, decoded.target), [0.0, 0])
                cell[0] += float(values.sum())
                cell[1] += int(rows.sum())

    def compute(self) -> dict[str, Any]:
        if not self.sums:
            return {}
        labels = self.context.labels
        return {"ssim": {f"{labels[s]}->{t}": {"ssim": total / n, "items": n} for (s, t), (total, n) in sorted(self.sums.items()) if n}}

    def summary(self, result: dict, names: list[str]) -> dict[str, float]:
        out = {}
        for key, cell in result.get("ssim", {}).items():
            given = key.split("->")[0]
            if "+" not in given:
                out[f"ssim/{key}"] = cell["ssim"]
        return out

    def report(self, result: dict) -> list[Block]:
        if not result.get("ssim"):
            return []
        return [Text(["## SSIM", "", self.description, ""]),
                Table(["given->target", "SSIM", "items"], [[k, v["ssim"], v["items"]] for k, v in result["ssim"].items()])]


METRIC = SSIM
