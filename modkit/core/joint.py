"""A joint encoder: q(z | the present modalities) from their features, as one fusion-owned network.

JMVAE's q(z | x_1, …, x_N) and CVAE's q(z | x, y) are encoders that read several modalities at once,
beside (not instead of) each modality's own encoder. The engine's encoders already give each modality's
deterministic features (``Modality.features``, via ``Engine.encode_with_features`` in the same pass as the
experts), so the joint encoder is a network over those: the features side by side, zeros where a
modality is absent (or left out of a subset), and the presence bits, so "absent" and "all-zero features"
differ. A mask with leading subset axes gives every subset's joint posterior in one pass.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from modkit.core.gaussian import DiagGaussian, Experts, product_of_experts
from modkit.core.nn import GaussianHead, mlp


class JointEncoder(nn.Module):
    """features of N modalities (each (B, F_m)) and a (..., B, N) mask → Gaussian (mu, logvar), each (..., B, D)."""

    def __init__(self, feature_dims: Sequence[int], latent_dim: int, hidden: Sequence[int]):
        super().__init__()
        if not hidden:
            raise ValueError("a joint encoder needs at least one hidden layer")
        self.feature_dims = list(feature_dims)
        self.net = mlp([sum(self.feature_dims) + len(self.feature_dims), *hidden], final_activation=True)
        self.head = GaussianHead(hidden[-1], latent_dim)

    def forward(self, features: Sequence[Tensor], mask: Tensor) -> tuple[Tensor, Tensor]:
        if len(features) != len(self.feature_dims):
            raise ValueError(f"joint encoder built for {len(self.feature_dims)} modalities, given {len(features)}")
        mask = mask.to(torch.bool)
        parts = [torch.where(mask[..., i:i + 1], f.float(), 0.0) for i, f in enumerate(features)]
        lead = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
        parts = [p.expand(*lead, p.shape[-1]) for p in parts]
        return self.head(self.net(torch.cat([*parts, mask.expand(*lead, mask.shape[-1]).to(parts[0].dtype)], dim=-1)))

    def subset_posterior(self, experts: Experts, subsets: Tensor, features: Sequence[Tensor]) -> DiagGaussian:
        """The posterior rule JMVAE and TELBO share (MultiVae's): this joint encoder where every modality is given
        (and present), the product of the given unimodal experts (no prior expert) where some but not all are,
        N(0, I) where none is. ``subsets`` is (S, N) or (S, B, N); the result has batch shape (S, B)."""
        mask = subsets.to(torch.bool)
        mask = (mask.unsqueeze(1) if mask.dim() == 2 else mask) & experts.present.unsqueeze(0)  # (S, B, N)
        count = mask.sum(-1, keepdim=True)  # (S, B, 1)
        mu, logvar = product_of_experts(experts, mask, prior=False)  # (S, B, D)
        everything = count == len(self.feature_dims)
        if bool(everything.any()):  # evaluation only: the joint pass is skipped when no row gives every modality
            joint_mu, joint_logvar = self(features, mask)
            mu, logvar = torch.where(everything, joint_mu, mu), torch.where(everything, joint_logvar, logvar)
        some = count > 0
        return DiagGaussian(torch.where(some, mu, 0.0), torch.where(some, logvar, 0.0))
