"""Fully convolutional M2 for segmentation (Zammit, seed 003): y is a K×H×W map that stays spatial.

The classifier q(y|x) is a convolutional network from the image to per-pixel logits; q(z_c | x, y) convolves
the image with the (relaxed) one-hot map concatenated on channels; p(x | z_c, y) upsamples z_c to the image
grid and concatenates y there before its last convolutions. No dense layer ever sees the K·H·W map, so the
cost grows with the pixels, not with their square. In the latent vector z = [z_c, y] the map is only carried
(flattened), for the engine's generic posteriors and decoders; :class:`ReadMap` is the target's decoder.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from modkit import GaussianHead


def _block(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    """A 3×3 convolution and SiLU, no normalisation: a norm over the map would make every pixel depend on all
    others, and the per-pixel networks must stay local and translation-equivariant."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation), nn.SiLU())


class PixelClassifier(nn.Module):
    """(M, C, H, W) → (M, K, H, W) logits: 3×3 convolutions at full resolution with growing dilation
    (receptive field 2·Σ dilations + 1), then a 1×1 convolution to K. Translation-equivariant."""

    def __init__(self, in_channels: int, num_classes: int, channels: Sequence[int]):
        super().__init__()
        layers, c = [], in_channels
        for i, width in enumerate(channels):
            layers.append(_block(c, width, dilation=2 ** i))
            c = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x))


class MapEncoder(nn.Module):
    """q(z_c | x, y): (M, C + K, H, W) → stride-2 convolutions → (mu, logvar) of z_c."""

    def __init__(self, in_channels: int, height: int, width: int, channels: Sequence[int], zc_dim: int):
        super().__init__()
        layers, c, h, w = [], in_channels, height, width
        for width_c in channels:
            layers += [nn.Conv2d(c, width_c, 3, stride=2, padding=1), nn.GroupNorm(min(8, width_c), width_c), nn.SiLU()]
            c, h, w = width_c, (h + 1) // 2, (w + 1) // 2
        self.body = nn.Sequential(*layers, nn.Flatten(1))
        self.head = GaussianHead(c * h * w, zc_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.body(x))


class MapDecoder(nn.Module):
    """p(x | z_c, y) as the input modality's decoder: z = [z_c, y flat] (M, D) → (M, C_out, H, W) parameters.

    z_c goes through a linear layer to a coarse grid and transposed convolutions up to H×W; there the map y is
    concatenated on channels and two convolutions give the output.
    """

    def __init__(self, zc_dim: int, num_classes: int, out_channels: int, height: int, width: int, channels: Sequence[int]):
        super().__init__()
        self.zc_dim, self.y_shape = zc_dim, (num_classes, height, width)
        channels = list(channels)
        sizes = [(height, width)]
        for _ in channels:
            sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
        self.sizes = sizes
        self.grid = (channels[-1], *sizes[-1])
        self.linear = nn.Sequential(nn.Linear(zc_dim, math.prod(self.grid)), nn.SiLU())
        ups, rev = [], list(reversed(channels))
        for i, c in enumerate(rev):
            out = rev[i + 1] if i + 1 < len(rev) else rev[-1]
            ups.append(nn.ConvTranspose2d(c, out, 3, stride=2, padding=1))
        self.ups = nn.ModuleList(ups)
        self.norms = nn.ModuleList(nn.Sequential(nn.GroupNorm(min(8, u.out_channels), u.out_channels), nn.SiLU()) for u in ups)
        self.fuse = nn.Sequential(_block(rev[-1] + num_classes, rev[-1]), nn.Conv2d(rev[-1], out_channels, 3, padding=1))

    def forward(self, z: Tensor) -> Tensor:
        zc, y = z[:, : self.zc_dim], z[:, self.zc_dim:].reshape(-1, *self.y_shape)
        h = self.linear(zc).view(-1, *self.grid)
        for up, norm, size in zip(self.ups, self.norms, reversed(self.sizes[:-1])):
            h = norm(up(h, output_size=list(size)))
        return self.fuse(torch.cat([h, y.to(h.dtype)], 1))


class ReadMap(nn.Module):
    """The target's decoder: its logits are log y, read from the y block of z (no parameters)."""

    def __init__(self, zc_dim: int, y_shape: Sequence[int]):
        super().__init__()
        self.zc_dim, self.y_shape = zc_dim, tuple(y_shape)

    def forward(self, z: Tensor) -> Tensor:
        return z[:, self.zc_dim:].reshape(-1, *self.y_shape).clamp_min(1e-6).log()
