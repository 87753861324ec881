"""Product of experts with a prior expert: the MVAE fusion (Wu & Goodman, 2018)."""
from __future__ import annotations

from pydantic import Field

from modkit import Fusion, FusionConfig, LossOutput, hookimpl
from modkit.fusion import subset_gaussian_elbo
from modkit.gaussian import product_of_experts


class PoEConfig(FusionConfig):
    prior_expert: bool = Field(True, description="include the N(0, I) prior as an expert (MVAE does)")


class ProductOfExperts(Fusion):
    """MVAE: q(z|X) ∝ p(z) ∏ q(z|x_i); sums the ELBOs of the sampled subsets."""

    Config = PoEConfig

    def loss(self, model, batch, plan, beta) -> LossOutput:
        experts = model.encode(batch)
        mu, logvar = product_of_experts(experts, plan.mask, prior=self.config.prior_expert)  # (S, B, D)
        return subset_gaussian_elbo(model, batch, plan, mu, logvar, beta)

@hookimpl
def modkit_register(registry):
    registry.add_fusion("poe", ProductOfExperts)
