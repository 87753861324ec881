"""Mixture of experts: the MMVAE fusion (Shi et al., 2019), with stratified ELBO, IWAE and DReG objectives.

q(z | X) = (1/|X|) Σ_{m∈X} q(z | x_m) over the modalities present in each sample. Every step draws
K reparameterised samples from each unimodal posterior (stratified sampling), decodes every
modality from all N·K latents at once, and scores them against the mixture.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from modkit import Batch, Engine, Fusion, FusionConfig, LossOutput, SubsetPlan, hookimpl
from modkit.distributions import (Experts, Family, UniformMixture, cross_log_prob, family_log_prob, from_expert,
                                  uniform_log_weights)


class MoEConfig(FusionConfig):
    objective: Literal["elbo", "iwae", "dreg", "dreg_mmvae"] = Field(
        "elbo", description="elbo: stratified ELBO; iwae: looser IWAE bound; dreg: the same bound with doubly reparameterised "
        "gradients; dreg_mmvae: the MMVAE code's DReG (all of log q's parameters stopped)")
    k: int = Field(1, ge=1, description="samples drawn from each unimodal posterior per step")
    family: Literal["gaussian", "laplace"] = Field("gaussian", description="distribution of the posteriors and the prior")
    learn_prior: bool = Field(False, description="learn the prior's per-dimension scale (location stays 0), as MMVAE does")


@dataclass
class Draws:
    """The stratified draws of one step: all (N sources, K draws, B) except ``z`` (N, K, B, D)."""

    log_w: Tensor
    z: Tensor
    kl: Tensor  # log q(z|X) − log p(z)
    per: dict[str, Tensor]  # λ-free log p(x_d | z), zero where d is absent
    own_responsibility: Tensor | None  # dreg only: q_m(z) / Σ_j q_j(z) for the draws of source m, gradient through z only


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
    def prior(self):
        """The (possibly learned, possibly Laplace) prior as a distribution."""
        return from_expert(self.family, self.prior_mu, self.prior_logvar)

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
    def component_log_prob(self, z: Tensor, mu: Tensor, logvar: Tensor, stop_own: bool = False) -> Tensor:
        """log q_j(z) of every expert j at every source's draws: z (N, K, B, D) → (N, K, N_j, B).

        Gaussian experts go through :func:`modkit.core.gaussian.cross_log_prob`, which keeps no
        (N, K, N_j, B, D) tensor for the backward (the broadcast form kept several: MoE's peak memory).
        """
        if self.family == "gaussian":
            return cross_log_prob(z, mu, logvar, stop_own=stop_own)
        if stop_own:
            own = torch.eye(mu.shape[0], dtype=torch.bool, device=mu.device)[:, :, None, None]  # source == component
            mu_q, logvar_q = torch.where(own, mu.detach(), mu), torch.where(own, logvar.detach(), logvar)
            return family_log_prob(self.family, z.unsqueeze(2), mu_q.unsqueeze(1), logvar_q.unsqueeze(1))
        return family_log_prob(self.family, z.unsqueeze(2), mu, logvar)

    def log_q_components(self, z: Tensor, experts: Experts) -> Tensor:
        """The component densities log q(z|X) is made of, as the objective needs their gradients:

        ``dreg`` stops the gradient of the source's own component (its score term is moved onto the
        path through z); ``dreg_mmvae`` stops all of them, as the MMVAE code does.
        """
        objective = self.config.objective
        if objective == "dreg_mmvae":
            return self.component_log_prob(z, experts.mu.detach(), experts.logvar.detach())
        return self.component_log_prob(z, experts.mu, experts.logvar, stop_own=objective == "dreg")

    def draws(self, model: Engine, batch: Batch, experts: Experts, beta: float) -> Draws:
        """K reparameterised draws from every expert, z (N, K, B, D), and their log weights

        log w = Σ_d λ_d log p(x_d|z) + β (log p(z) − log q(z|X)), with q the mixture of the present experts.
        """
        n, b, d = experts.mu.shape
        k = self.config.k
        present = experts.present  # (B, N)
        z = from_expert(self.family, experts.mu, experts.logvar).rsample(k).transpose(0, 1)  # (N, K, B, D)
        dreg = self.config.objective in ("dreg", "dreg_mmvae")
        z_in = z.clone() if dreg and z.requires_grad else z  # its own node: the DReG hook rescales only the path through log w
        per_expert = self.log_q_components(z_in, experts)  # (N, K, N_j, B)
        log_mix = uniform_log_weights(present.T, per_expert.dtype)  # (N_j, B)
        log_q = torch.logsumexp(per_expert + log_mix, dim=2)  # (N, K, B)
        log_p = self.prior_log_prob(z_in)
        lls = model.log_likelihoods(z_in.reshape(n * k, b, d), batch)  # one decode per modality over all N·K rows
        rec, per = model.present_reconstruction(lls, present)  # an absent modality is not scored
        rec, per = rec.view(n, k, b), {name: ll.view(n, k, b) for name, ll in per.items()}
        own_responsibility = None
        if self.config.objective == "dreg":
            # r_m(z) = q_m(z) / Σ_j q_j(z) for the draws of source m, a function of z only (parameters stopped)
            detached = self.component_log_prob(z, experts.mu.detach(), experts.logvar.detach())
            responsibility = torch.softmax(detached + log_mix, dim=2)  # (N, K, N_j, B)
            own_responsibility = torch.diagonal(responsibility, dim1=0, dim2=2).permute(2, 0, 1)  # (N, K, B)
        return Draws(rec + beta * (log_p - log_q), z_in, log_q - log_p, per, own_responsibility)

    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        experts = model.encode(batch)
        draws = self.draws(model, batch, experts, beta)
        n, k, b = draws.log_w.shape
        source = experts.present.T  # (N, B): only present experts are mixture components and sources
        n_present = experts.present.sum(1).clamp_min(1).to(draws.log_w.dtype)  # (B,)
        lw = torch.where(source.unsqueeze(1), draws.log_w, 0.0)
        objective = self.config.objective
        if objective == "elbo":
            per_source = lw.mean(1)  # (N, B)
        else:
            per_source = torch.logsumexp(lw, 1) - math.log(k)
        bound = torch.where(source, per_source, 0.0).sum(0) / n_present  # (B,): mean over present sources, outside the log
        if objective in ("dreg", "dreg_mmvae"):
            surrogate = self.dreg_surrogate(draws, lw, beta)  # (N, B)
            loss = -(torch.where(source, surrogate, 0.0).sum(0) / n_present).sum() / b
        else:
            loss = -bound.sum() / b
        # logging: the bound itself, and per-sample means of KL and reconstructions over the stratified draws
        draw_weight = source.unsqueeze(1) / (k * n_present)  # (N, 1, B): averages over present sources and draws
        terms = {"loss": (-bound.sum() / b).detach(), "kl": ((torch.where(source.unsqueeze(1), draws.kl, 0.0) * draw_weight).sum() / b).detach()}
        for name, ll in draws.per.items():
            terms[f"rec/{name}"] = ((ll * draw_weight).sum() / b).detach()
        return LossOutput(loss, terms)

    def dreg_surrogate(self, draws: Draws, lw: Tensor, beta: float) -> Tensor:
        """A per-source (N, B) surrogate whose gradient is the doubly reparameterised estimator.

        With normalised weights w̃_k = softmax_k(log w) and r_k the source component's responsibility,
        the estimator is Σ_k w̃_k(1 − β r_k (1 − w̃_k)) ∂log w_k/∂z_k ∂z_k/∂φ − β Σ_k w̃_k ∂r_k/∂z_k ∂z_k/∂φ
        plus the direct gradient through the other components of log q. With one present modality
        r = 1 and this is Tucker et al.'s Σ_k w̃_k² ∂log w_k/∂z_k ∂z_k/∂φ; ``dreg_mmvae`` uses that
        form for every sample, which ignores the other components' score terms (biased when several are present).
        """
        with torch.no_grad():
            weights = torch.softmax(lw, dim=1)  # (N, K, B)
            if draws.own_responsibility is None:  # dreg_mmvae
                coefficient = weights
            else:
                coefficient = 1.0 - beta * draws.own_responsibility * (1.0 - weights)
        if draws.z.requires_grad:
            # under autocast z (and its gradient) may be bf16/fp16 while the coefficient is float32: a hook must
            # return its input's dtype
            draws.z.register_hook(lambda grad: (grad * coefficient.unsqueeze(-1)).to(grad.dtype))
        surrogate = (weights * lw).sum(1)
        if draws.own_responsibility is not None:
            surrogate = surrogate - beta * (weights * draws.own_responsibility).sum(1)
        return surrogate


@hookimpl
def modkit_register(registry):
    registry.add_fusion("moe", MixtureOfExperts)
