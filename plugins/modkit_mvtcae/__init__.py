"""MVTCAE (Hwang, Kim, Kim & Kim, 2021): a total-correlation objective on the product-of-experts posterior.

The joint posterior q(z|X) is the product of the unimodal experts (without a prior expert). Its objective
weighs reconstruction, the conditional KLs to each unimodal posterior (the cross-view information terms) and
the KL to the prior (the information bottleneck) by α, over N modalities:

    L = (N − α)/N · Σ_m λ_m E_q(z|X) log p(x_m|z) − β [α/N · Σ_m KL(q(z|X) ‖ q(z|x_m)) + (1 − α) KL(q(z|X) ‖ p(z))]

as MultiVae and the authors' code compute it. β is the run's schedule (``model.beta``; MultiVae's default 2.5).
A missing modality is neither reconstructed nor tied (N stays the number of modalities, as in MultiVae).
"""
from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from modkit import Batch, Engine, Fusion, FusionConfig, LossOutput, SubsetPlan, hookimpl
from modkit.distributions import DiagGaussian, Experts, kl_gaussians, kl_standard_normal, product_of_experts, reparameterize


class MVTCAEConfig(FusionConfig):
    alpha: float = Field(0.1, ge=0, le=1, description="α, the weight of the conditional (cross-view) KLs against the prior KL "
                                                      "(MultiVae's alpha, default 0.1)")


class MVTCAE(Fusion):
    """MVTCAE: PoE posterior (no prior expert) under the α-weighted total-correlation objective."""

    Config = MVTCAEConfig
    uses_sampler = False

    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        experts = model.encode(batch)
        present, n, alpha = batch.present, len(batch), self.config.alpha
        everything = torch.ones(1, len(self.names), dtype=torch.bool, device=present.device)
        posterior = self.posterior(experts, everything)
        mu, logvar = posterior.mu[0], posterior.logvar[0]  # (B, D)
        z = reparameterize(mu, logvar)
        lls = model.log_likelihoods(z.unsqueeze(0), batch)
        rec, per = model.present_reconstruction([ll[0] for ll in lls], present, bool(batch.all_present))
        kl = kl_standard_normal(mu, logvar)
        conditional = kl_gaussians(mu.unsqueeze(0), logvar.unsqueeze(0), experts.mu, experts.logvar)  # (N, B)
        conditional = (conditional if batch.all_present else torch.where(present.T, conditional, 0.0)).sum(0)
        count = len(self.names)
        some = present.any(-1)
        bound = (count - alpha) / count * rec - beta * (alpha / count * conditional + (1 - alpha) * kl)
        loss = -torch.where(some, bound, 0.0).sum() / n
        terms = {f"rec/{name}": (ll.sum() / n).detach() for name, ll in per.items()}
        terms.update(loss=loss.detach(), kl=(torch.where(some, kl, 0.0).sum() / n).detach(),
                     kl_conditional=(torch.where(some, conditional, 0.0).sum() / n).detach())
        return LossOutput(loss, terms)

    def posterior(self, experts: Experts, subsets: Tensor) -> DiagGaussian:
        """The product of the subset's present experts without a prior expert (MVTCAE's q(z|X)); N(0, I) when none is."""
        mu, logvar = product_of_experts(experts, subsets, prior=False)
        mask = subsets.to(torch.bool)
        mask = (mask.unsqueeze(1) if mask.dim() == 2 else mask) & experts.present.unsqueeze(0)
        some = mask.any(-1, keepdim=True)
        return DiagGaussian(torch.where(some, mu, 0.0), torch.where(some, logvar, 0.0))


@hookimpl
def modkit_register(registry):
    registry.add_fusion("mvtcae", MVTCAE)
