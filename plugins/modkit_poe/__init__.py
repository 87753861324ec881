"""Product of experts with a prior expert: the MVAE fusion (Wu & Goodman, 2018)."""
from __future__ import annotations

from pydantic import Field
from torch import Tensor

from modkit import Batch, Engine, Fusion, FusionConfig, LossOutput, SubsetPlan, hookimpl, subset_gaussian_elbo
from modkit.distributions import DiagGaussian, Experts, product_of_experts


class PoEConfig(FusionConfig):
    prior_expert: bool = Field(True, description="include the N(0, I) prior as an expert (MVAE does)")


class ProductOfExperts(Fusion):
    """MVAE: q(z|X) ∝ p(z) ∏ q(z|x_i); sums the ELBOs of the sampled subsets."""

    Config = PoEConfig

    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        posterior = self.posterior(model.encode(batch), plan.mask)  # (S, B, D)
        return subset_gaussian_elbo(model, batch, plan, posterior.mu, posterior.logvar, beta)

    def posterior(self, experts: Experts, subsets: Tensor) -> DiagGaussian:
        """The product the model was trained with: with or without the prior expert (``prior_expert``)."""
        return DiagGaussian(*product_of_experts(experts, subsets, prior=self.config.prior_expert))

@hookimpl
def modkit_register(registry):
    registry.add_fusion("poe", ProductOfExperts)
