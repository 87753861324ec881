"""JMVAE (Suzuki, Nakayama & Matsuo, 2016): a joint encoder q(z | X) beside the unimodal ones, tied by KL terms.

The ELBO is taken under the joint posterior, and JMVAE-kl adds α Σ_m KL(q(z|X) ‖ q(z|x_m)), which pulls each
unimodal encoder towards the joint one so that a single modality can stand in for all of them at test time:

    L = E_q(z|X)[Σ_m λ_m log p(x_m|z)] − β [KL(q(z|X) ‖ p(z)) + α Σ_m KL(q(z|X) ‖ q(z|x_m))]

β is the run's schedule (``model.beta``): JMVAE anneals the whole regulariser, as MultiVae's ``warmup`` does.
The joint encoder (:class:`modkit.JointEncoder`) reads every modality's features, from the same encoder pass
that gives the unimodal experts.
"""
from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from modkit import Batch, Engine, Fusion, FusionConfig, JointEncoder, LossOutput, RecipeError, SubsetPlan, hookimpl
from modkit.distributions import DiagGaussian, Experts, kl_gaussians, kl_standard_normal, reparameterize


class JMVAEConfig(FusionConfig):
    alpha: float = Field(0.1, ge=0, description="α, the weight of Σ_m KL(q(z|X) ‖ q(z|x_m)) (MultiVae's alpha; the paper's α)")
    hidden: list[int] = Field([512, 512], min_length=1, description="hidden sizes of the joint encoder over the concatenated "
                                                                    "features (MultiVae's default joint encoder: 2 × 512)")


class JMVAE(Fusion):
    """JMVAE-kl: the ELBO under a joint encoder, and α-weighted KLs from it to each unimodal posterior."""

    Config = JMVAEConfig
    uses_sampler = False

    def __init__(self, modalities, latent_dim: int, config: JMVAEConfig):
        super().__init__(modalities, latent_dim, config)
        dims = []
        for name, modality in modalities.items():
            if not isinstance(getattr(modality, "feature_dim", None), int):
                raise RecipeError(f"modalities.{name}", f"{type(modality).__name__} has no feature_dim; jmvae's joint encoder reads features")
            dims.append(modality.feature_dim)
        self.joint = JointEncoder(dims, latent_dim, config.hidden)

    # -- the objective --------------------------------------------------------------------------
    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        """The JMVAE-kl bound. A sample with missing modalities (which the paper does not train on) is encoded
        jointly from the ones it has, and only those are reconstructed and tied to the joint posterior."""
        features, experts = model.encode_with_features(batch)
        present, n = batch.present, len(batch)
        mu, logvar = self.joint([features[name] for name in model.names], present)  # (B, D)
        z = reparameterize(mu, logvar)
        lls = model.log_likelihoods(z.unsqueeze(0), batch)
        rec, per = model.present_reconstruction([ll[0] for ll in lls], present, bool(batch.all_present))
        kl = kl_standard_normal(mu, logvar)  # (B,)
        tie = kl_gaussians(mu.unsqueeze(0), logvar.unsqueeze(0), experts.mu, experts.logvar)  # (N, B)
        tie = (tie if batch.all_present else torch.where(present.T, tie, 0.0)).sum(0)
        some = present.any(-1)
        bound = rec - beta * (kl + self.config.alpha * tie)
        loss = -torch.where(some, bound, 0.0).sum() / n
        terms = {f"rec/{name}": (ll.sum() / n).detach() for name, ll in per.items()}
        terms.update(loss=loss.detach(), kl=(torch.where(some, kl, 0.0).sum() / n).detach(),
                     kl_unimodal=(torch.where(some, tie, 0.0).sum() / n).detach())
        return LossOutput(loss, terms)

    # -- inference ------------------------------------------------------------------------------
    def encode(self, model: Engine, batch: Batch) -> Experts:
        """The unimodal experts, carrying the features the joint encoder reads in ``posterior``."""
        features, experts = model.encode_with_features(batch)
        return experts._replace(extra={"features": [features[name] for name in model.names]})

    def posterior(self, experts: Experts, subsets: Tensor) -> DiagGaussian:
        """As MultiVae's JMVAE infers: the joint encoder when every modality is given (and present), the modality's own
        encoder when one is, the product of the given unimodal experts (no prior expert) when several but not all
        are, and the prior N(0, I) when none is."""
        if not experts.extra or "features" not in experts.extra:
            raise TypeError("jmvae posteriors need the features from JMVAE.encode (use model.encode)")
        return self.joint.subset_posterior(experts, subsets, experts.extra["features"])


@hookimpl
def modkit_register(registry):
    registry.add_fusion("jmvae", JMVAE)
