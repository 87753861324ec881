"""MEME: multimodal VAEs through mutual supervision (Joy et al., ICLR 2022).

Each modality's encoder is the conditional prior for the others and each decoder is the "classifier"
q(t|z) of the other direction; both directions are trained together (weight sharing, their App. C).
A sample whose other modalities are missing uses a VampPrior over learnable pseudo-samples instead.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from modkit import Batch, Engine, Fusion, FusionConfig, LossOutput, RecipeError, SubsetPlan, hookimpl
from modkit.distributions import DiagGaussian, Experts, kl_gaussians, kl_standard_normal, product_of_experts, reparameterize

from modkit_meme.objective import log_marginal_from_samples, log_mixture, supervised_term, vamp_kl


class MemeConfig(FusionConfig):
    samples: int = Field(10, ge=0, description="extra draws from q(z|s) that estimate log q(t|s) (the authors use 10)")
    include_posterior_sample: bool = Field(True, description="put the posterior sample inside the log-sum-exp (App. D)")
    supervision: float = Field(10.0, ge=0, description="c, the weight of log q(t|s) (the authors' classifier scale 10)")
    pseudo_samples: int = Field(64, ge=0, description="learnable pseudo-samples per modality for the VampPrior (0: N(0, I))")
    combine: Literal["poe", "moe"] = Field("poe", description="explicit combination of several modalities' priors (App. E)")


class Meme(Fusion):
    """MEME: each encoder is the conditional prior of the others; the ratio q(t|z)/q(t|s) under stop-gradient."""

    Config = MemeConfig
    uses_sampler = False

    def __init__(self, modalities, latent_dim: int, config: MemeConfig):
        super().__init__(modalities, latent_dim, config)
        if len(modalities) < 2:
            raise RecipeError("model.fusion", "meme needs at least two modalities (one supervises the other)")
        self.register_buffer("weights", torch.tensor([[m.weight] for m in modalities.values()], dtype=torch.float32), persistent=False)
        self.pseudo = nn.ParameterDict()
        if config.pseudo_samples:
            for name, modality in modalities.items():
                try:
                    raw = modality.pseudo_sample_init(config.pseudo_samples)
                except NotImplementedError:
                    raise RecipeError("model.fusion.pseudo_samples", f"modality '{name}' ({type(modality).__name__}) cannot make "
                                      "pseudo-samples; set pseudo_samples: 0 to use N(0, I) as the prior of unpaired samples") from None
                self.pseudo[name] = nn.Parameter(raw.float())

    # -- the objective --------------------------------------------------------------------------
    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        cfg = self.config
        experts = model.encode(batch)
        mu, logvar, present = experts.mu, experts.logvar, experts.present  # (N, B, D), (N, B, D), (B, N)
        n, b = present.shape[1], present.shape[0]
        eye = torch.eye(n, dtype=torch.bool, device=present.device)
        # others[s, b, t]: t ≠ s is observed alongside s in sample b — the "labels" of direction s
        others = present.unsqueeze(0) & present.T.unsqueeze(-1) & ~eye.unsqueeze(1)
        has_others = others.any(-1)  # (N, B)

        z0 = reparameterize(mu, logvar)  # the posterior sample of every direction at once
        extra = DiagGaussian(mu, logvar).rsample(cfg.samples)
        z = torch.cat([z0.unsqueeze(0), extra])  # (1 + K, N, B, D)
        ll = torch.stack([ll.float() for ll in model.log_likelihoods(z, batch)])  # (N_t, 1 + K, N_s, B)
        rec = torch.diagonal(ll[:, 0], dim1=0, dim2=1).T  # (N, B): log p(x_s | z_s)

        # q(t|z) = Π_{t ∈ others} p(x_t | z): the decoders of the other modalities classify z
        log_qt = torch.where(others.permute(2, 0, 1).unsqueeze(1), ll, 0.0).sum(0)  # (1 + K, N, B)
        log_qt_s = log_marginal_from_samples(log_qt, cfg.include_posterior_sample)
        cond_kl = self._conditional_kl(experts, others, has_others, z0)
        sup, w = supervised_term(self.weights * rec, log_qt[0], cond_kl, log_qt_s, cfg.supervision, beta)

        prior_kl = self._unpaired_kl(model, mu, logvar, z0)
        unsup = self.weights * rec - beta * prior_kl

        valid = present.T  # (N, B): direction s exists where s is observed
        bound = torch.where(has_others, sup, unsup)
        loss = -torch.where(valid, bound, 0.0).sum() / b
        paired = valid & has_others
        kl = torch.where(has_others, cond_kl, prior_kl)
        terms = {"loss": loss.detach(), "kl": (torch.where(valid, kl, 0.0).sum() / b).detach(),
                 "log_qt_s": (torch.where(paired, log_qt_s, 0.0).sum() / b).detach(),
                 "w": (torch.where(paired, w, 0.0).sum() / b).detach(),  # mean ratio = w / paired
                 "paired": (paired.sum() / b).detach()}
        for i, name in enumerate(model.names):
            terms[f"rec/{name}"] = (torch.where(valid[i], rec[i], 0.0).sum() / b).detach()
        return LossOutput(loss, terms)

    def _conditional_kl(self, experts: Experts, others: Tensor, has_others: Tensor, z0: Tensor) -> Tensor:
        """KL(q(z|s) ‖ p(z|t)) with p(z|t) the others' encoders combined: closed form for PoE, one-sample MC for MoE."""
        if self.config.combine == "poe":
            prior_mu, prior_logvar = product_of_experts(experts, others, prior=False)  # (N_s, B, D)
            keep = has_others.unsqueeze(-1)
            prior_mu, prior_logvar = torch.where(keep, prior_mu, 0.0), torch.where(keep, prior_logvar, 0.0)
            return kl_gaussians(experts.mu, experts.logvar, prior_mu, prior_logvar)
        comp_mu = experts.mu.permute(1, 0, 2).unsqueeze(0)  # (1, B, N_t, D)
        comp_logvar = experts.logvar.permute(1, 0, 2).unsqueeze(0)
        mask = torch.where(has_others.unsqueeze(-1), others, True)  # rows without others: any finite value, masked later
        log_q = DiagGaussian(experts.mu, experts.logvar).log_prob(z0)
        return log_q - log_mixture(z0, comp_mu, comp_logvar, mask)

    def _unpaired_kl(self, model: Engine, mu: Tensor, logvar: Tensor, z0: Tensor) -> Tensor:
        """KL to the VampPrior (1/P) Σ_i p(z | u_i), u_i pseudo-samples of the other modalities (one-sample MC)."""
        if not self.config.pseudo_samples:
            return kl_standard_normal(mu, logvar)
        u_mu, u_logvar = [], []
        for name in model.names:
            modality = model.modalities[name]
            m, lv = modality.encode(modality.pseudo_sample_data(self.pseudo[name]))
            u_mu.append(m)
            u_logvar.append(lv)
        u_mu, u_logvar = torch.stack(u_mu), torch.stack(u_logvar)  # (N_t, P, D)
        n, p = u_mu.shape[:2]
        not_self = ~torch.eye(n, dtype=torch.bool, device=mu.device)
        if self.config.combine == "poe":
            # pseudo-sample i is one pseudo data point with every modality: p(z | u_i) = Π_{t ≠ s} q(z | u_i^t)
            ones = torch.ones(p, n, dtype=torch.bool, device=mu.device)
            pm, plv = product_of_experts(Experts(u_mu, u_logvar, ones), not_self, prior=False)  # (N_s, P, D)
            return vamp_kl(z0, mu, logvar, pm.unsqueeze(1), plv.unsqueeze(1))
        comp_mu, comp_logvar = u_mu.reshape(1, 1, n * p, -1), u_logvar.reshape(1, 1, n * p, -1)
        mask = not_self.unsqueeze(-1).expand(n, n, p).reshape(n, 1, n * p)
        return DiagGaussian(mu, logvar).log_prob(z0) - log_mixture(z0, comp_mu, comp_logvar, mask)

    # -- inference ------------------------------------------------------------------------------
    def prior(self):
        """None with pseudo-samples: MEME has no unconditional p(z) (each modality's prior is the
        other's encoder, a VampPrior when it is missing). Without them N(0, I) is the prior of an
        unpaired sample, and is returned."""
        return None if self.config.pseudo_samples else super().prior()

    def posterior(self, experts: Experts, subsets: Tensor) -> DiagGaussian:
        """Each modality's own encoder (unchanged by what else is present); several given: their product.

        MEME has no joint encoder; the product (without a prior expert) of the given modalities' encoders
        is what its conditional priors use. Rows with nothing present fall back to N(0, I).
        """
        mu, logvar = product_of_experts(experts, subsets, prior=False)
        mask = subsets.to(torch.bool)
        mask = mask.unsqueeze(1) if mask.dim() == 2 else mask  # (S, 1|B, N)
        some = (mask & experts.present.unsqueeze(0)).any(-1, keepdim=True)
        return DiagGaussian(torch.where(some, mu, 0.0), torch.where(some, logvar, 0.0))


@hookimpl
def modkit_register(registry):
    registry.add_fusion("meme", Meme)
