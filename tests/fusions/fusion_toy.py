"""A linear-Gaussian toy modality and model, small enough to recompute everything by hand in numpy."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from modkit.core.batch import Batch
from modkit.core.engine import MultimodalVAE
from modkit.core.likelihoods import Gaussian
from modkit.core.modality import Modality, ModalityConfig


class ToyConfig(ModalityConfig):
    size: int = 2


class ToyModality(Modality):
    """x ∈ R^size; q(z|x) = N(A x + b, exp(logvar)); p(x|z) = N(W z + c, I)."""

    Config = ToyConfig

    def __init__(self, name: str, config: ToyConfig, latent_dim: int, seed: int = 0):
        super().__init__(name, config, latent_dim)
        g = torch.Generator().manual_seed(seed)
        self.enc = nn.Linear(config.size, latent_dim)
        self.logvar = nn.Parameter(0.3 * torch.randn(latent_dim, generator=g) - 0.5)
        self.dec = nn.Linear(latent_dim, config.size)
        with torch.no_grad():
            for p in (*self.enc.parameters(), *self.dec.parameters()):
                p.copy_(0.7 * torch.randn(p.shape, generator=g))
        self.likelihood = Gaussian(event_dims=1, scale=1.0)
        self.feature_dim = config.size

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu = self.enc(x)
        return mu, self.logvar.expand_as(mu)

    def decoder_net(self, z: Tensor) -> Tensor:
        return self.dec(z)


def toy_model(fusion_cls, config, n_modalities: int = 2, latent_dim: int = 2, size: int = 2) -> MultimodalVAE:
    modalities = {f"m{i}": ToyModality(f"m{i}", ToyConfig(type="toy", size=size), latent_dim, seed=i) for i in range(n_modalities)}
    fusion = fusion_cls(modalities, latent_dim, config)
    return MultimodalVAE(modalities, fusion, latent_dim)


def toy_batch(present: Tensor, size: int = 2, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    b, n = present.shape
    return Batch({f"m{i}": torch.randn(b, size, generator=g) for i in range(n)}, present.to(torch.bool))
