"""Convolutional encoder/decoder pairs sized from an input shape (8×8 up to 224×224, any channel count).

Each stage halves the spatial size (3×3 stride-2 convolution, ceil rounding) until it is at most
``min_size`` (or the given channel list runs out); the decoder mirrors the encoder with transposed
convolutions told the exact output size, so odd sizes (28 → 14 → 7 → 4 → … → 28) round-trip.
Other plugins (segmentation masks) import these, as a third-party package could.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn


def stage_sizes(height: int, width: int, stages: int) -> list[tuple[int, int]]:
    """Spatial sizes after 0..stages stride-2 stages (ceil halving)."""
    sizes = [(height, width)]
    for _ in range(stages):
        h, w = sizes[-1]
        sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return sizes


def auto_channels(height: int, width: int, base: int = 32, cap: int = 256, min_size: int = 4) -> list[int]:
    """One stage per halving until the smaller side is ≤ ``min_size``: base, 2·base, … capped at ``cap``."""
    stages, side = 0, min(height, width)
    while side > min_size:
        side = math.ceil(side / 2)
        stages += 1
    stages = max(stages, 1)
    return [min(base * 2**i, cap) for i in range(stages)]


class ConvEncoder(nn.Module):
    """(B, C, H, W) → (B, out_features): stride-2 conv stages, then a linear layer on the flattened grid."""

    def __init__(self, in_channels: int, height: int, width: int, channels: Sequence[int], out_features: int):
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for c in channels:
            layers += [nn.Conv2d(previous, c, 3, stride=2, padding=1), nn.GroupNorm(min(8, c), c), nn.SiLU()]
            previous = c
        self.convs = nn.Sequential(*layers)
        h, w = stage_sizes(height, width, len(channels))[-1]
        self.linear = nn.Sequential(nn.Linear(previous * h * w, out_features), nn.SiLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.convs(x).flatten(1))


class ConvDecoder(nn.Module):
    """(M, in_features) → (M, out_channels, H, W): a linear layer to the smallest grid, then transposed convs."""

    def __init__(self, in_features: int, out_channels: int, height: int, width: int, channels: Sequence[int]):
        super().__init__()
        channels = list(channels)
        self.sizes = stage_sizes(height, width, len(channels))
        self.grid = (channels[-1], *self.sizes[-1])
        self.linear = nn.Sequential(nn.Linear(in_features, math.prod(self.grid)), nn.SiLU())
        ups: list[nn.ConvTranspose2d] = []
        norms: list[nn.Module] = []
        reversed_channels = list(reversed(channels))
        for i, c in enumerate(reversed_channels):
            out = reversed_channels[i + 1] if i + 1 < len(reversed_channels) else out_channels
            ups.append(nn.ConvTranspose2d(c, out, 3, stride=2, padding=1))
            last = i + 1 == len(reversed_channels)
            norms.append(nn.Identity() if last else nn.Sequential(nn.GroupNorm(min(8, out), out), nn.SiLU()))
        self.ups = nn.ModuleList(ups)
        self.norms = nn.ModuleList(norms)

    def forward(self, z: Tensor) -> Tensor:
        h = self.linear(z).view(-1, *self.grid)
        targets = list(reversed(self.sizes[:-1]))
        for up, norm, size in zip(self.ups, self.norms, targets):
            h = norm(up(h, output_size=list(size)))
        return h


def patch_mask(batch: int, height: int, width: int, patch: int, ratio: float, device: torch.device,
               generator: torch.Generator | None = None) -> Tensor:
    """MAE-style random patch mask (B, 1, H, W), 1 = keep: exactly round(ratio · patches) patches dropped per image.

    Patches tile the image from the top-left; a partial patch at the border counts as one patch.
    Vectorised: one argsort of uniform noise per image, no loop over samples.
    """
    gh, gw = math.ceil(height / patch), math.ceil(width / patch)
    n = gh * gw
    n_drop = int(round(ratio * n))
    noise = torch.rand(batch, n, device=device, **({} if generator is None else {"generator": generator}))  # None: traceable by dynamo
    rank = noise.argsort(dim=1).argsort(dim=1)
    keep = (rank >= n_drop).float().view(batch, 1, gh, gw)
    keep = keep.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)
    return keep[:, :, :height, :width]
