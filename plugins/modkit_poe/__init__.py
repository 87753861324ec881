"""Product of experts with a prior expert: the MVAE fusion (Wu & Goodman, 2018)."""
from __future__ import annotations

from pydantic import Field

from modkit import Fusion, FusionConfig, LossOutput, hookimpl
from modkit.gaussian import kl_standard_normal, product_of_experts, reparameterize


class PoEConfig(FusionConfig):
    prior_expert: bool = Field(True, description="include the N(0, I) prior as an expert (MVAE does)")


class ProductOfExperts(Fusion):
    """MVAE: q(z|X) ∝ p(z) ∏ q(z|x_i); sums the ELBOs of the sampled subsets."""

    Config = PoEConfig

    def loss(self, model, batch, plan, beta) -> LossOutput:
        experts = model.encode(batch)
        mu, logvar = product_of_experts(experts, plan.mask, prior=self.config.prior_expert)  # (S, B, D)
        # a subset's ELBO counts for a sample only if every modality in it is present
        valid = (plan.mask.unsqueeze(1) <= batch.present.unsqueeze(0)).all(-1).float()  # (S, B)
        z = reparameterize(mu, logvar)
        rec, per = model.weighted_reconstruction(z, batch, plan)
        kl = kl_standard_normal(mu, logvar)
        elbo = rec - beta * kl
        n = len(batch)
        loss = -(elbo * valid).sum() / n
        terms = {"loss": loss.detach(), "kl": ((kl * valid).sum() / n).detach()}
        for i, name in enumerate(model.names):
            if name in per:
                terms[f"rec/{name}"] = ((per[name] * valid[plan.rows[i]]).sum() / n).detach()
        return LossOutput(loss, terms)


@hookimpl
def modkit_register(registry):
    registry.add_fusion("poe", ProductOfExperts)
