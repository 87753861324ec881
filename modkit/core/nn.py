"""Small building blocks shared by modality plugins (first- and third-party alike)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

LOGVAR_BOUND = 8.0


def bounded_logvar(raw: Tensor, bound: float = LOGVAR_BOUND) -> Tensor:
    """Softly squash a log-variance into (-bound, bound): precision stays below e^bound, gradients stay alive."""
    return bound * torch.tanh(raw / bound)


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.SiLU, final_activation: bool = False) -> nn.Sequential:
    """Linear layers between consecutive ``sizes`` with Swish (SiLU, as in the MVAE code) between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(activation())
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """Features → (mu, logvar) of a Gaussian expert over the shared latent."""

    def __init__(self, in_features: int, latent_dim: int, bound: float = LOGVAR_BOUND):
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * latent_dim)
        self.bound = bound

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        mu, raw = self.linear(h).chunk(2, dim=-1)
        return mu, bounded_logvar(raw, self.bound)


def over_leading(fn, z: Tensor, event_dims: int = 1) -> Tensor:
    """Apply ``fn`` (which takes (M, *event)) to ``z`` of shape (*lead, *event) and restore ``lead``."""
    lead = z.shape[: z.dim() - event_dims]
    out = fn(z.reshape(-1, *z.shape[z.dim() - event_dims :]))
    return out.reshape(*lead, *out.shape[1:])
