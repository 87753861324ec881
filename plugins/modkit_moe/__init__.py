"""Mixture of experts: the MMVAE fusion (Shi et al., 2019), with stratified ELBO, IWAE and DReG objectives.

q(z | X) = (1/|X|) Σ_{m∈X} q(z | x_m) over the modalities present in each sample. Every step draws
K reparameterised samples from each unimodal posterior (stratified sampling), decodes every
modality from all N·K latents at once, and scores them against the mixture.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from modkit import Fusion, FusionConfig, LossOutput, hookimpl
from modkit.distributions import Family, UniformMixture, family_log_prob, from_expert, uniform_log_weights
from modkit.gaussian import Experts


class MoEConfig(FusionConfig):
    objective: Literal["elbo", "iwae", "dreg"] = Field(
        "elbo", description="elbo: stratified ELBO; iwae: looser IWAE bound; dreg: the same bound with doubly reparameterised gradients")
    k: int = Field(1, ge=1, description="samples drawn from each unimodal posterior per step")
    family: Literal["gaussian", "laplace"] = Field("gaussian", description="distribution of the posteriors and the prior")
    learn_prior: bool = Field(False, description="learn the prior's per-dimension scale (location stays 0), as MMVAE does")


class MixtureOfExperts(Fusion):
    """MMVAE: a uniform mixture of the present unimodal posteriors; elbo / iwae / dreg objectives."""

    Config = MoEConfig
    uses_sampler = False

    def __init__(self, modalities, latent_dim: int, config: MoEConfig):
        super().__init__(modalities, latent_dim, config)
        self.family: Family = config.family
        self.register_buffer("prior_mu", torch.zeros(latent_dim))
        if config.learn_prior:
            self.prior_logvar = nn.Parameter(torch.zeros(latent_dim))
        else:
            self.register_buffer("prior_logvar", torch.zeros(latent_dim))

    # -- the distributions ----------------------------------------------------------------------
    def prior_log_prob(self, z: Tensor) -> Tensor:
        return family_log_prob(self.family, z, self.prior_mu, self.prior_logvar)

    def posterior(self, experts: Experts, subsets: Tensor) -> UniformMixture:
        """Uniform mixture over the present experts of each subset row: batch (S, B).

        A row with no present expert falls back to the prior (as the PoE's prior expert does).
        """
        n, b, d = experts.mu.shape
        rows = subsets.to(torch.bool)
        rows = rows.unsqueeze(1).expand(-1, b, -1) if rows.dim() == 2 else rows  # (S, B, N)
        valid = (rows & experts.present.unsqueeze(0)).permute(2, 0, 1)  # (N, S, B)
        s = valid.shape[1]
        fallback = ~valid.any(0, keepdim=True)  # (1, S, B)
        mu = torch.cat([experts.mu.unsqueeze(1).expand(n, s, b, d), self.prior_mu.expand(1, s, b, d)])
        logvar = torch.cat([experts.logvar.unsqueeze(1).expand(n, s, b, d), self.prior_logvar.expand(1, s, b, d)])
        return UniformMixture(from_expert(self.family, mu, logvar), torch.cat([valid, fallback]))

    # -- the objective --------------------------------------------------------------------------
    def log_weights(self, model, batch, experts: Experts, beta: float) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """log w = Σ_d λ_d log p(x_d|z) + β (log p(z) − log q(z|X)) for z (N, K, B, D): K draws from each expert.

        Returns log w (N, K, B), z, the KL integrand log q − log p (N, K, B) and the per-modality
        log-likelihoods (N, K, B), zero where a modality is absent. With ``dreg`` the
        posterior's parameters are detached inside log q, so only the path through z carries gradient.
        """
        n, b, d = experts.mu.shape
        k = self.config.k
        present = experts.present  # (B, N)
        z = from_expert(self.family, experts.mu, experts.logvar).rsample(k).transpose(0, 1)  # (N, K, B, D)
        mu_q, logvar_q = experts.mu, experts.logvar
        if self.config.objective == "dreg":
            mu_q, logvar_q = mu_q.detach(), logvar_q.detach()
        per_expert = family_log_prob(self.family, z.unsqueeze(2), mu_q, logvar_q)  # (N, K, N_j, B)
        log_q = torch.logsumexp(per_expert + uniform_log_weights(present.T), dim=2)  # (N, K, B)
        log_p = self.prior_log_prob(z)
        lls = model.log_likelihoods(z.reshape(n * k, b, d), batch)  # one decode per modality over all N·K rows
        rec = z.new_zeros(n, k, b)
        per: dict[str, Tensor] = {}
        for i, name in enumerate(model.names):
            ll = lls[i].view(n, k, b).float()
            ll = torch.where(present[:, i], ll, 0.0)  # an absent modality is not scored
            per[name] = ll
            rec = rec + model.modalities[name].weight * ll
        return rec + beta * (log_p - log_q), z, log_q - log_p, per

    def loss(self, model, batch, plan, beta) -> LossOutput:
        experts = model.encode(batch)
        lw, z, kl, per = self.log_weights(model, batch, experts, beta)
        n, k, b = lw.shape
        source = experts.present.T.unsqueeze(1).float()  # (N, 1, B): only present experts are mixture components
        n_present = experts.present.sum(1).clamp_min(1).float()  # (B,)
        objective = self.config.objective
        lw_valid = torch.where(source.bool(), lw, 0.0)
        if objective == "elbo":
            per_source = lw_valid.mean(1)  # (N, B)
        else:
            per_source = torch.logsumexp(lw_valid, 1) - torch.log(torch.tensor(float(k)))
        bound = (per_source * source.squeeze(1)).sum(0) / n_present  # (B,): mean over present modalities, outside the log
        if objective == "dreg":
            with torch.no_grad():
                weights = torch.softmax(lw_valid, dim=1)  # normalised importance weights per source modality
            if z.requires_grad:
                z.register_hook(lambda grad: grad * weights.unsqueeze(-1))
            surrogate = ((weights * lw_valid).sum(1) * source.squeeze(1)).sum(0) / n_present
            loss = -surrogate.sum() / b
        else:
            loss = -bound.sum() / b
        # logging: the bound itself, and per-sample means of KL and reconstructions over the stratified draws
        draw_weight = source / (k * n_present)  # (N, 1, B): averages over present sources and draws
        terms = {"loss": (-bound.sum() / b).detach(), "kl": ((torch.where(source.bool(), kl, 0.0) * draw_weight).sum() / b).detach()}
        for name, ll in per.items():
            terms[f"rec/{name}"] = ((ll * draw_weight).sum() / b).detach()
        return LossOutput(loss, terms)


@hookimpl
def modkit_register(registry):
    registry.add_fusion("moe", MixtureOfExperts)
