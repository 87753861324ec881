"""MMVAE+ (Palumbo, Daunhawer & Vogt, 2023): a mixture of experts over a shared latent u, beside private latents w_m
with auxiliary priors r_m for cross-modal generation.

Each modality's encoder gives [q(u | x_m); q(w_m | x_m)] and its decoder reads [u, w_m] (the engine's private
latents, :class:`modkit.PrivateLayout`). For every present source modality m, K draws u ~ q(u | x_m) and
w_m ~ q(w_m | x_m); modality d is reconstructed from [u, w_m] when d = m and from [u, w̃_d], w̃_d ~ r_d(w), when
not (the auxiliary prior, whose scale is learned), so u alone must carry what modalities share. Each draw's
log weight is

    log w = Σ_d λ_d log p(x_d | u, w_d) + β (log p(u, w_m) − log (1/|X|) Σ_j q(u | x_j) − log q(w_m | x_m))

and the objective is the mean over present sources of the K-sample IWAE bound (``iwae_looser``) or its DReG
gradient estimator (``dreg_looser``, the paper's). The scale parameterisation (``prior_and_posterior_dist``)
follows the paper: Laplace with a softmax over the encoder's log-scale outputs.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from modkit import Batch, Engine, Fusion, FusionConfig, LossOutput, SubsetPlan, hookimpl
from modkit.distributions import Concatenated, DiagGaussian, DiagLaplace, Experts, UniformMixture, gaussian_log_prob, laplace_log_prob

Dist = Literal["laplace_with_softmax", "normal_with_softplus", "normal"]


class MMVAEPlusConfig(FusionConfig):
    modalities_specific_dim: int = Field(..., ge=1, description="the size of each modality's private latent w_m "
                                                                "(model.latent_dim is the shared latent's)")
    K: int = Field(10, ge=1, description="draws from each unimodal posterior per step (MultiVae's K)")
    prior_and_posterior_dist: Dist = Field("laplace_with_softmax", description="laplace_with_softmax: Laplace, scale = "
                                           "softmax(encoder output)·dim + 1e-6 (the paper's); normal_with_softplus: Gaussian, "
                                           "std = softplus(output) + 1e-6; normal: Gaussian, std = exp(output / 2)")
    learn_shared_prior: bool = Field(False, description="learn the scale of the prior p(u, w)")
    learn_modality_prior: bool = Field(True, description="learn the scale of each auxiliary prior r_m(w) (key to the method)")
    reconstruction_option: Literal["single_prior", "joint_prior"] = Field(
        "joint_prior", description="where a private latent comes from when its modality is not given at inference: "
                                   "joint_prior: p(w) (the paper's), single_prior: its auxiliary prior r_m")
    loss: Literal["dreg_looser", "iwae_looser"] = Field("dreg_looser", description="dreg_looser: IWAE bound with the DReG "
                                                        "gradient (the paper's); iwae_looser: the IWAE bound")


class MMVAEPlus(Fusion):
    """MMVAE+: mixture of experts over u, private w_m with auxiliary priors, IWAE/DReG objective."""

    Config = MMVAEPlusConfig
    uses_sampler = False

    @classmethod
    def private_latents(cls, config: MMVAEPlusConfig) -> int:
        return config.modalities_specific_dim

    @classmethod
    def example(cls) -> dict:
        return {"modalities_specific_dim": 2, "K": 2}

    def __init__(self, modalities, latent_dim: int, config: MMVAEPlusConfig):
        super().__init__(modalities, latent_dim, config)
        layout = self.layout
        self.laplace = config.prior_and_posterior_dist == "laplace_with_softmax"
        # the prior p(u, w) and the auxiliary priors r_m(w): zero locations, scales from these (as MultiVae keeps them)
        self.shared_prior_logvar = nn.Parameter(torch.zeros(1, layout.modality_width), requires_grad=config.learn_shared_prior)
        self.modality_prior_logvar = nn.ParameterDict({name: nn.Parameter(torch.zeros(1, layout.private),
                                                                          requires_grad=config.learn_modality_prior)
                                                       for name in self.names})

    # -- distributions --------------------------------------------------------------------------
    def scale(self, raw: Tensor) -> Tensor:
        """An encoder's (or a prior's) log-scale output → the distribution's scale (std), as ``prior_and_posterior_dist`` says."""
        kind = self.config.prior_and_posterior_dist
        if kind == "laplace_with_softmax":
            return F.softmax(raw, dim=-1) * raw.shape[-1] + 1e-6
        if kind == "normal_with_softplus":
            return F.softplus(raw) + 1e-6
        return torch.exp(0.5 * raw)

    def log_prob(self, z: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
        if self.laplace:
            return laplace_log_prob(z, loc, scale)
        return gaussian_log_prob(z, loc, 2.0 * torch.log(scale))

    def distribution(self, loc: Tensor, scale: Tensor):
        return DiagLaplace(loc, scale) if self.laplace else DiagGaussian(loc, 2.0 * torch.log(scale))

    def noise(self, *shape: int, like: Tensor) -> Tensor:
        """Standard Laplace or normal draws (a method, so a cross-check can hand both implementations the same ones)."""
        if self.laplace:
            tiny = torch.finfo(like.dtype).eps
            u = (torch.rand(shape, device=like.device, dtype=like.dtype) - 0.5).clamp(-0.5 + tiny, 0.5 - tiny)
            return -torch.sign(u) * torch.log1p(-2.0 * u.abs())
        return torch.randn(shape, device=like.device, dtype=like.dtype)

    def prior_scale(self) -> Tensor:
        """The scale of p(u, w): (shared + private,)."""
        return self.scale(self.shared_prior_logvar)[0]

    def prior(self):
        """p(u) ∏_m p(w_m) over the model's whole latent: each private part has p's private scale."""
        layout, scale = self.layout, self.prior_scale()
        full = torch.cat([scale[:layout.shared], scale[layout.shared:].repeat(layout.n)])
        return self.distribution(torch.zeros_like(full), full)

    def log_prior(self, u: Tensor, w: Tensor) -> Tensor:
        """log p(u, w_m) of draws u (*lead, shared) and w (*lead, private) (CMVAE puts its cluster mixture over u here)."""
        p_scale = self.prior_scale()
        return self.log_prob(torch.cat([u, w], -1), torch.zeros_like(p_scale), p_scale)

    def shared_posterior(self, mu: Tensor, scale: Tensor, valid: Tensor):
        """q(u | the given modalities): the uniform mixture of the shared posteriors (``mu``, ``scale`` (N, B, D)) that
        ``valid`` (N, S, B) marks given for each subset row; p's shared part where none is (CMVAE: its cluster mixture)."""
        n, s, b = valid.shape
        d = mu.shape[-1]
        fallback = ~valid.any(0, keepdim=True)
        loc = torch.cat([mu.unsqueeze(1).expand(n, s, b, d), mu.new_zeros(1, s, b, d)])
        scale = torch.cat([scale.unsqueeze(1).expand(n, s, b, d), self.prior_scale()[:d].expand(1, s, b, d)])
        return UniformMixture(self.distribution(loc, scale), torch.cat([valid, fallback]))

    # -- the objective --------------------------------------------------------------------------
    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        cfg, layout = self.config, self.layout
        shared, w_mu, w_raw = layout.split(model.encode(batch))
        present, b, n, k = batch.present, len(batch), len(self.names), cfg.K
        u_mu, u_scale, w_scale = shared.mu, self.scale(shared.logvar), self.scale(w_raw)  # (N, B, ·)
        u = u_mu.unsqueeze(1) + u_scale.unsqueeze(1) * self.noise(n, k, b, layout.shared, like=u_mu)  # (N, K, B, D)
        w = w_mu.unsqueeze(1) + w_scale.unsqueeze(1) * self.noise(n, k, b, layout.private, like=w_mu)  # (N, K, B, P)
        r_scale = self.scale(torch.cat(list(self.modality_prior_logvar.values())))  # (N, P)
        drawn = r_scale[None, :, None, None, :] * self.noise(n, n, k, b, layout.private, like=w_mu)  # (source, target, K, B, P)
        own = torch.eye(n, dtype=torch.bool, device=u.device)[:, :, None, None, None]
        blocks = torch.where(own, w.unsqueeze(1), drawn)  # target d reads the source's own w when d = source, r_d's draw if not
        z = layout.assemble(u, blocks.transpose(1, 2))  # (N, K, B, width)
        lls = model.log_likelihoods(z.reshape(n * k, b, layout.width), batch)  # each decoder once over all N·K draws
        rec, per = model.present_reconstruction(lls, present, bool(batch.all_present))
        rec = rec.view(n, k, b)
        dreg = cfg.loss == "dreg_looser"
        q_u_mu, q_u_scale, q_w_mu, q_w_scale = ((t.detach() for t in (u_mu, u_scale, w_mu, w_scale)) if dreg
                                                else (u_mu, u_scale, w_mu, w_scale))
        per_component = self.log_prob(u.unsqueeze(2), q_u_mu[None, None], q_u_scale[None, None])  # (N, K, N_j, B)
        valid = present.T[None, None]  # (1, 1, N_j, B)
        n_present = present.sum(1).clamp_min(1).to(rec.dtype)  # (B,)
        log_q_u = torch.logsumexp(torch.where(valid, per_component, float("-inf")), dim=2) - torch.log(n_present)
        log_q_w = self.log_prob(w, q_w_mu.unsqueeze(1), q_w_scale.unsqueeze(1))  # (N, K, B)
        log_p = self.log_prior(u, w)
        source = present.T.unsqueeze(1)  # (N, 1, B)
        lw = torch.where(source, rec + beta * (log_p - log_q_u - log_q_w), 0.0)  # (N, K, B)
        if dreg:
            with torch.no_grad():
                weights = torch.softmax(lw, dim=1)
            if u.requires_grad:  # DReG: the gradient through the draws is weighted once more (Tucker et al.)
                u.register_hook(lambda grad: (grad * weights.unsqueeze(-1)).to(grad.dtype))  # autocast: keep the gradient's dtype
                w.register_hook(lambda grad: (grad * weights.unsqueeze(-1)).to(grad.dtype))
            surrogate = (weights * lw).sum(1)  # (N, B)
        else:
            surrogate = torch.logsumexp(lw, dim=1) - math.log(k)
        loss = -(surrogate.sum(0) / n_present).sum() / b
        bound = (torch.where(present.T, torch.logsumexp(lw, dim=1) - math.log(k), 0.0).sum(0) / n_present).sum() / b
        draw_weight = source / (k * n_present)  # averages over present sources and their draws
        terms = {f"rec/{name}": ((ll.view(n, k, b) * draw_weight).sum() / b).detach() for name, ll in per.items()}
        terms.update(loss=(-bound).detach(), kl=((torch.where(source, log_q_u + log_q_w - log_p, 0.0) * draw_weight).sum() / b).detach())
        return LossOutput(loss, terms)

    # -- inference ------------------------------------------------------------------------------
    def posterior(self, experts: Experts, subsets: Tensor) -> Concatenated:
        """u: the uniform mixture of the subset's present shared posteriors (p's shared part when none is); w_m: modality
        m's own private posterior when m is given, else p's private part (``joint_prior``) or r_m (``single_prior``)."""
        layout = self.layout
        shared, w_mu, w_raw = layout.split(experts)
        n, b, d = shared.mu.shape
        rows = subsets.to(torch.bool)
        rows = rows.unsqueeze(1).expand(-1, b, -1) if rows.dim() == 2 else rows  # (S, B, N)
        given = rows & experts.present.unsqueeze(0)
        p_scale = self.prior_scale()
        u = self.shared_posterior(shared.mu, self.scale(shared.logvar), given.permute(2, 0, 1))
        if self.config.reconstruction_option == "joint_prior":
            other = p_scale[d:].expand(n, layout.private)
        else:
            other = self.scale(torch.cat(list(self.modality_prior_logvar.values())))
        mine = given.permute(0, 2, 1).unsqueeze(-1)  # (S, N, B, 1)
        w_loc = torch.where(mine, w_mu, 0.0)
        w_scale = torch.where(mine, self.scale(w_raw), other.unsqueeze(1))
        w = self.distribution(w_loc.transpose(1, 2).flatten(-2), w_scale.transpose(1, 2).flatten(-2))  # (S, B, N·P)
        return Concatenated([u, w])


@hookimpl
def modkit_register(registry):
    registry.add_fusion("mmvae_plus", MMVAEPlus)
