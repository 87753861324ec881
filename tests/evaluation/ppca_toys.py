"""Models whose answers are known in closed form, built from the real modkit classes.

``LinearGaussian`` is probabilistic PCA as a modality: x = W z + b + ε, ε ~ N(0, σ² I), so
log p(x) = log N(x; b, W Wᵀ + σ² I) exactly. Its encoder returns the least-squares expert
N((WᵀW)⁻¹Wᵀ(x − b), σ² / diag(WᵀW)), which with the prior expert is the exact posterior when
W's columns are orthogonal; ``mu_shift``/``logvar_shift`` spoil it on purpose.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from modkit.core.batch import Batch
from modkit.core.engine import MultimodalVAE
from modkit.core.fusion import Fusion, FusionConfig
from modkit.core.likelihoods import Gaussian
from modkit.core.modality import Modality, ModalityConfig


class LinearGaussian(Modality):
    """PPCA: a linear decoder with a fixed-scale Gaussian likelihood."""

    def __init__(self, name: str, W: Tensor, b: Tensor, sigma: float, mu_shift: float = 0.0, logvar_shift: float = 0.0):
        super().__init__(name, ModalityConfig(type="ppca"), W.shape[1])
        self.W = torch.nn.Parameter(W.float(), requires_grad=False)  # a parameter, so model.device works
        self.register_buffer("b", b.float())
        self.sigma, self.mu_shift, self.logvar_shift = sigma, mu_shift, logvar_shift
        self.likelihood = Gaussian(event_dims=1, scale=sigma)
        self.feature_dim = W.shape[0]

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        gram = self.W.T @ self.W
        mu = torch.linalg.solve(gram, self.W.T @ (x - self.b).T).T + self.mu_shift
        logvar = torch.log(self.sigma**2 / torch.diagonal(gram)).expand_as(mu) + self.logvar_shift
        return mu, logvar

    def decoder_net(self, z: Tensor) -> Tensor:
        return z @ self.W.T + self.b

    def placeholder(self) -> Tensor:
        return torch.zeros(self.W.shape[0])


def orthogonal_loadings(p: int, d: int, scales: list[float], seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(p, d, generator=g, dtype=torch.float64))
    return q * torch.tensor(scales, dtype=torch.float64)


def ppca_model(blocks: dict[str, int], d: int = 2, sigma: float = 0.5, scales=(1.5, 1.0), mu_shift: float = 0.0,
               logvar_shift: float = 0.0, seed: int = 0):
    """A multimodal PPCA: one loading matrix with orthogonal columns, its row blocks the modalities."""
    W = orthogonal_loadings(sum(blocks.values()), d, list(scales), seed)
    g = torch.Generator().manual_seed(seed + 1)
    b = torch.randn(W.shape[0], generator=g, dtype=torch.float64) * 0.3
    modalities, start = {}, 0
    for name, p in blocks.items():
        modalities[name] = LinearGaussian(name, W[start:start + p], b[start:start + p], sigma, mu_shift, logvar_shift)
        start += p
    fusion = Fusion(modalities, d, FusionConfig(type="poe"))  # the base posterior: PoE with the prior expert
    return MultimodalVAE(modalities, fusion, d), W, b


def ppca_data(W: Tensor, b: Tensor, sigma: float, n: int, seed: int = 2) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, W.shape[1], generator=g, dtype=torch.float64)
    return z @ W.T + b + sigma * torch.randn(n, W.shape[0], generator=g, dtype=torch.float64)


def exact_log_p(x: Tensor, W: Tensor, b: Tensor, sigma: float) -> Tensor:
    """log N(x; b, W Wᵀ + σ² I) in float64."""
    cov = W @ W.T + sigma**2 * torch.eye(W.shape[0], dtype=torch.float64)
    return torch.distributions.MultivariateNormal(b, covariance_matrix=cov).log_prob(x)


def split_batch(x: Tensor, blocks: dict[str, int]) -> Batch:
    data, start = {}, 0
    for name, p in blocks.items():
        data[name] = x[:, start:start + p].float()
        start += p
    return Batch(data, torch.ones(len(x), len(blocks), dtype=torch.bool))


LOG_2PI = math.log(2 * math.pi)
