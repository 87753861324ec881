"""Nexus (Vasco, Yin, Melo & Paiva, 2021): modality-level latents, and a nexus-level latent over an aggregate of them.

Each modality m has its own latent w_m (its encoder's expert is q(w_m | x_m), its decoder reads w_m alone: the
engine's hierarchical private latents, :class:`modkit.PrivateLayout` with ``hierarchical=True``). Above them sits
the nexus latent u (``model.latent_dim``): each modality's top encoder turns its w_m (a draw, detached) into a
message, the messages of the modalities kept are averaged, and a joint encoder gives q(u | messages); each top
decoder maps u back to w_m. The objective is MultiVae's: the bottom ELBOs, one per present modality, and the top
ELBO over the detached w_m:

    L = Σ_m [ λ_m E log p(x_m | w_m) − β β_m KL(q(w_m | x_m) ‖ N(0, I)) ]                     (bottom)
        + Σ_m γ_m E log N(w_m; g_m(u), σ_m²) − β β_top KL(q(u | w̄) ‖ N(0, I)),  u ~ q(u | w̄)    (top)

β is the run's schedule (``model.beta``, MultiVae's ``warmup`` annealing), β_m MultiVae's ``bottom_betas``,
β_top its ``top_beta``, γ_m its ``gammas``; σ_m is 1, or for the modalities in ``adapt_top_decoder_variance`` the
root mean square of w_m − g_m(u) over the batch. Forced perceptual dropout: with probability ``dropout_rate`` a
sample with every modality keeps the messages of a random proper subset only (1 … N − 1 of them, uniform size).

Inference (:meth:`Nexus.posterior`, a :class:`modkit.TopDown`): the given modalities' w_m from their own
posteriors, u from their messages, every other modality's w_m = g_m(u) (the top decoder's output, as MultiVae's
``decode``). Unconditional samples: u ~ N(0, I), w_m = g_m(u). The model defines no density over w_m beside u,
so importance-sampled likelihoods and the test ELBO are refused, by name (MultiVae's Nexus has none either).
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from modkit import (Batch, Engine, Fusion, FusionConfig, GaussianHead, LossOutput, RecipeError, SubsetPlan, TopDown,
                    TopDownPrior, hookimpl, mlp)
from modkit.distributions import Experts, LOG_2PI, kl_standard_normal


class NexusConfig(FusionConfig):
    modalities_specific_dim: int = Field(16, ge=1, description="the size of each modality's own latent w_m (MultiVae's "
                                                                "modalities_specific_dim, there one per modality); "
                                                                "model.latent_dim is the nexus latent's")
    msg_dim: int = Field(10, ge=1, description="the size of each modality's message to the nexus (MultiVae's msg_dim)")
    aggregator: Literal["mean"] = Field("mean", description="how the messages combine (MultiVae has only the mean)")
    dropout_rate: float = Field(0.0, ge=0, le=1, description="forced perceptual dropout: the probability that a sample with "
                                                             "every modality sends a random proper subset of its messages")
    top_beta: float = Field(1.0, ge=0, description="β_top, the weight of the nexus KL")
    bottom_betas: dict[str, float] | None = Field(None, description="β_m, the weight of each modality's own KL (default 1)")
    gammas: dict[str, float] | None = Field(None, description="γ_m, the weight of each top reconstruction log N(w_m; g_m(u), σ²) (default 1)")
    adapt_top_decoder_variance: list[str] = Field([], description="modalities whose top-decoder scale σ_m is the batch's root mean "
                                                                   "square error instead of 1 (MultiVae's adapt_top_decoder_variance)")
    hidden: list[int] = Field([512, 512], min_length=1, description="hidden sizes of the top encoders and the joint encoder "
                                                                    "(MultiVae's default Encoder_VAE_MLP: 2 × 512)")
    decoder_hidden: list[int] = Field([512], min_length=1, description="hidden sizes of the top decoders g_m "
                                                                       "(MultiVae's default Decoder_AE_MLP: 1 × 512)")


class Nexus(Fusion):
    """Nexus: per-modality VAEs, and a nexus VAE over their latents' messages, with forced perceptual dropout."""

    Config = NexusConfig
    uses_sampler = False
    hierarchical = True
    no_likelihood_reason = ("decodes every modality not given through w_m = g_m(u), a function of the nexus latent u with "
                            "no density of its own, so there is no p(z) / q(z | x) to weigh importance samples or an ELBO by "
                            "(MultiVae's Nexus offers no likelihood either)")

    @classmethod
    def private_latents(cls, config: NexusConfig) -> int:
        return config.modalities_specific_dim

    def __init__(self, modalities, latent_dim: int, config: NexusConfig):
        super().__init__(modalities, latent_dim, config)
        layout = self.layout
        for option in ("bottom_betas", "gammas"):
            unknown = [n for n in (getattr(config, option) or {}) if n not in self.names]
            if unknown:
                raise RecipeError(f"model.fusion.{option}", f"'{unknown[0]}' is not a modality of this recipe ({', '.join(self.names)})")
        unknown = [n for n in config.adapt_top_decoder_variance if n not in self.names]
        if unknown:
            raise RecipeError("model.fusion.adapt_top_decoder_variance", f"'{unknown[0]}' is not a modality of this recipe ({', '.join(self.names)})")
        p, d = layout.private, layout.shared
        self.top_encoders = nn.ModuleDict({n: mlp([p, *config.hidden, config.msg_dim]) for n in self.names})
        self.joint_encoder = nn.Sequential(mlp([config.msg_dim, *config.hidden], final_activation=True), GaussianHead(config.hidden[-1], d))
        self.top_decoders = nn.ModuleDict({n: mlp([d, *config.decoder_hidden, p]) for n in self.names})
        betas, gammas = config.bottom_betas or {}, config.gammas or {}
        self.register_buffer("bottom_betas", torch.tensor([float(betas.get(n, 1.0)) for n in self.names]), persistent=False)
        self.register_buffer("gammas", torch.tensor([float(gammas.get(n, 1.0)) for n in self.names]), persistent=False)
        self.register_buffer("adapt", torch.tensor([n in config.adapt_top_decoder_variance for n in self.names]), persistent=False)

    # -- the networks over the hierarchy --------------------------------------------------------
    def messages(self, w: Tensor) -> Tensor:
        """Each modality's message from its own latent: w (*lead, N, P) → (*lead, N, msg_dim)."""
        return torch.stack([self.top_encoders[n](w[..., i, :]) for i, n in enumerate(self.names)], dim=-2)

    def down(self, u: Tensor) -> Tensor:
        """Every modality's latent from the nexus latent, g_m(u): u (*lead, D) → (*lead, N, P)."""
        return torch.stack([self.top_decoders[n](u) for n in self.names], dim=-2)

    def top(self, w: Tensor, kept: Tensor) -> tuple[Tensor, Tensor]:
        """q(u | the mean of the kept modalities' messages): w (*lead, B, N, P), ``kept`` (..., B, N) bool broadcasting
        against it → (mu, logvar) (*lead, B, D); the prior N(0, I) where nothing is kept."""
        weights = kept.to(w.dtype).unsqueeze(-1)  # (..., B, N, 1)
        count = weights.sum(-2)  # (..., B, 1)
        aggregate = (self.messages(w) * weights).sum(-2) / count.clamp_min(1)
        mu, logvar = self.joint_encoder(aggregate)
        some = count > 0
        return torch.where(some, mu, 0.0), torch.where(some, logvar, 0.0)

    # -- the objective --------------------------------------------------------------------------
    def noise(self, *shape: int, like: Tensor) -> Tensor:
        """Standard normal noise (a method, so a cross-check can hand both implementations the same draws)."""
        return torch.randn(shape, device=like.device, dtype=like.dtype)

    def dropout_keep(self, present: Tensor) -> Tensor:
        """Forced perceptual dropout, (B, N) bool: with probability ``dropout_rate`` a sample with every modality keeps
        a random proper subset of them (its size uniform in 1 … N − 1, as MultiVae draws it); other samples keep
        what they have. One draw for the whole batch, no loop over samples."""
        rate, count = self.config.dropout_rate, present.shape[1]
        if rate == 0 or count < 2:
            return present
        b = present.shape[0]
        drop = (torch.rand(b, device=present.device) < rate) & present.all(1)
        size = torch.randint(1, count, (b, 1), device=present.device)
        rank = torch.rand(b, count, device=present.device).argsort(1).argsort(1)  # a random permutation's positions
        return torch.where(drop.unsqueeze(1), rank < size, present)

    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        layout, present, n, count = self.layout, batch.present, len(batch), len(self.names)
        experts = model.encode(batch)  # q(w_m | x_m): (N, B, P)
        mu, logvar = experts.mu, experts.logvar
        w = mu + self.noise(count, n, layout.private, like=mu) * torch.exp(0.5 * logvar)  # (N, B, P)
        # the top ELBO reads the draws, detached (MultiVae's first_level_z): its gradient never reaches the bottom VAEs
        w_top = w.detach().transpose(0, 1)  # (B, N, P)
        kept = self.dropout_keep(present)
        u_mu, u_logvar = self.top(w_top, kept)  # (B, D)
        u = u_mu + self.noise(n, layout.shared, like=u_mu) * torch.exp(0.5 * u_logvar)
        lls = model.log_likelihoods(layout.assemble(u, w).unsqueeze(0), batch)  # each decoder once, on its own w_m
        rec, per = model.present_reconstruction([ll[0] for ll in lls], present, bool(batch.all_present))  # (B,)
        kl_w = kl_standard_normal(mu, logvar)  # (N, B)
        kl_w = torch.where(present.T, kl_w, 0.0)
        w_hat = self.down(u)  # (B, N, P)
        sq = (w_top - w_hat) ** 2
        scale = torch.where(self.adapt, self._rms(sq, present), 1.0) if self.config.adapt_top_decoder_variance else sq.new_ones(count)  # σ_m
        log_scale = torch.log(scale)
        top_rec = -(0.5 * LOG_2PI + log_scale.unsqueeze(-1) + 0.5 * sq / (scale ** 2).unsqueeze(-1)).sum(-1)  # (B, N)
        top_rec = torch.where(present, top_rec, 0.0)
        some = present.any(1)
        kl_u = torch.where(some, kl_standard_normal(u_mu, u_logvar), 0.0)  # (B,)
        bottom = rec - beta * (self.bottom_betas.unsqueeze(1) * kl_w).sum(0)
        top = (self.gammas * top_rec).sum(1) - beta * self.config.top_beta * kl_u
        loss = -(bottom + top).sum() / n
        terms = {f"rec/{name}": (ll.sum() / n).detach() for name, ll in per.items()}
        terms.update(loss=loss.detach(), kl=(kl_u.sum() / n).detach(), kl_modalities=(kl_w.sum() / n).detach(),
                     rec_top=(-top_rec.sum() / n).detach(), bottom=(-bottom.sum() / n).detach(), top=(-top.sum() / n).detach())
        return LossOutput(loss, terms)

    @staticmethod
    def _rms(sq: Tensor, present: Tensor) -> Tensor:
        """The root mean square over the present rows and dimensions, per modality: sq (B, N, P) → (N,)."""
        weights = present.to(sq.dtype).unsqueeze(-1)  # (B, N, 1)
        total = (sq * weights).sum((0, 2))
        return (total / (weights.sum((0, 2)) * sq.shape[-1]).clamp_min(1)).sqrt()

    # -- inference ------------------------------------------------------------------------------
    def posterior(self, experts: Experts, subsets: Tensor) -> TopDown:
        """The given (and present) modalities' w_m from their own posteriors, u from their messages, every other
        w_m = g_m(u); the prior where nothing is given. Batch shape (S, B)."""
        mask = subsets.to(torch.bool)
        mask = (mask.unsqueeze(1) if mask.dim() == 2 else mask) & experts.present.unsqueeze(0)  # (S, B, N)
        return TopDown(self.layout, mask, experts.mu.transpose(0, 1), experts.logvar.transpose(0, 1), self.top, self.down,
                       self.no_likelihood_reason)

    def prior(self) -> TopDownPrior:
        """u ~ N(0, I), every w_m = g_m(u), as MultiVae generates."""
        return TopDownPrior(self._prior_zeros[: self.layout.shared], self.down, self.no_likelihood_reason)


@hookimpl
def modkit_register(registry):
    registry.add_fusion("nexus", Nexus)
