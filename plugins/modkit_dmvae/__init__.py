"""DMVAE (Lee & Pavlovic, 2021): a shared latent u beside a private latent w_m per modality.

Each modality's encoder gives [q(u | x_m); q(w_m | x_m)] and its decoder reads [u, w_m] (the engine's private
latents, :class:`modkit.PrivateLayout`). The objective is the joint ELBO, with u from the product of the
present shared experts and the prior expert, plus one cross ELBO per present modality k, with u from k's own
shared expert — every ELBO reconstructs every present modality d from [u, w_d], w_d ~ q(w_d | x_d):

    L = Σ_{q_u ∈ {PoE(X), q(u|x_1), …, q(u|x_N)}} ( Σ_d λ_d E log p(x_d | u, w_d) − β KL(q_u ‖ N(0, I))
                                                    − Σ_d β_d KL(q(w_d | x_d) ‖ N(0, I)) )

β is the run's schedule (``model.beta``, MultiVae's beta), β_d MultiVae's ``modalities_specific_betas`` (default 1).
Every ELBO draws its own u and its own private samples, all (1 + N) · (1 + N) draws at once.
"""
from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from modkit import Batch, Engine, Fusion, FusionConfig, LossOutput, RecipeError, SubsetPlan, hookimpl
from modkit.distributions import DiagGaussian, Experts, kl_standard_normal, product_of_experts


class DMVAEConfig(FusionConfig):
    modalities_specific_dim: int = Field(2, ge=1, description="the size of each modality's private latent w_m (MultiVae's "
                                                               "modalities_specific_dim, there one per modality); "
                                                               "model.latent_dim is the shared latent's")
    modalities_specific_betas: dict[str, float] | None = Field(None, description="β_m, the weight of each private KL "
                                                                                "(default 1 for every modality)")


class DMVAE(Fusion):
    """DMVAE: PoE over the shared parts with a prior expert; joint and cross ELBOs; private latents per modality."""

    Config = DMVAEConfig
    uses_sampler = False

    @classmethod
    def private_latents(cls, config: DMVAEConfig) -> int:
        return config.modalities_specific_dim

    def __init__(self, modalities, latent_dim: int, config: DMVAEConfig):
        super().__init__(modalities, latent_dim, config)
        betas = config.modalities_specific_betas or {}
        unknown = [name for name in betas if name not in self.names]
        if unknown:
            raise RecipeError("model.fusion.modalities_specific_betas", f"'{unknown[0]}' is not a modality of this recipe ({', '.join(self.names)})")
        self.register_buffer("private_betas", torch.tensor([float(betas.get(n, 1.0)) for n in self.names]), persistent=False)

    def noise(self, *shape: int, like: Tensor) -> Tensor:
        """Standard normal noise (a method, so a cross-check can hand both implementations the same draws)."""
        return torch.randn(shape, device=like.device, dtype=like.dtype)

    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        layout = self.layout
        shared, w_mu, w_logvar = layout.split(model.encode(batch))
        present, n, count = batch.present, len(batch), len(self.names)
        everything = torch.ones(1, count, dtype=torch.bool, device=present.device)
        joint_mu, joint_logvar = product_of_experts(shared, everything, prior=True)  # (1, B, D)
        u_mu, u_logvar = torch.cat([joint_mu, shared.mu]), torch.cat([joint_logvar, shared.logvar])  # (1 + N, B, D): joint, then each k
        u = u_mu + self.noise(count + 1, n, layout.shared, like=u_mu) * torch.exp(0.5 * u_logvar)
        w = w_mu + self.noise(count + 1, count, n, layout.private, like=w_mu) * torch.exp(0.5 * w_logvar)  # (1 + N, N, B, P)
        lls = model.log_likelihoods(layout.assemble(u, w), batch)  # each decoder once over the 1 + N ELBOs' rows
        rec, per = model.present_reconstruction(lls, present, bool(batch.all_present))  # (1 + N, B)
        kl_u = kl_standard_normal(u_mu, u_logvar)  # (1 + N, B)
        kl_w = kl_standard_normal(w_mu, w_logvar)  # (N, B)
        kl_w = (self.private_betas.unsqueeze(1) * (kl_w if batch.all_present else torch.where(present.T, kl_w, 0.0))).sum(0)
        elbo = rec - beta * kl_u - kl_w  # (1 + N, B)
        counted = torch.cat([present.any(-1, keepdim=True), present], -1).T  # the joint ELBO, then modality k's if present
        elbo = torch.where(counted, elbo, 0.0)
        loss = -elbo.sum() / n
        terms = {f"rec/{name}": (ll[0].sum() / n).detach() for name, ll in per.items()}
        terms.update(loss=loss.detach(), kl=(torch.where(counted[0], kl_u[0], 0.0).sum() / n).detach(),
                     kl_private=(kl_w.sum() / n).detach(), elbo_joint=(elbo[0].sum() / n).detach())
        return LossOutput(loss, terms)

    def posterior(self, experts: Experts, subsets: Tensor) -> DiagGaussian:
        """As MultiVae's DMVAE infers: u from the product of the subset's present shared experts and the prior
        expert; w_m from modality m's own private posterior when m is given, else the prior N(0, I)."""
        layout = self.layout
        shared, w_mu, w_logvar = layout.split(experts)
        u_mu, u_logvar = product_of_experts(shared, subsets, prior=True)  # (S, B, D)
        mask = subsets.to(torch.bool)
        mask = (mask.unsqueeze(1) if mask.dim() == 2 else mask) & experts.present.unsqueeze(0)  # (S, B, N)
        given = mask.permute(0, 2, 1).unsqueeze(-1)  # (S, N, B, 1)
        w_mu = torch.where(given, w_mu, 0.0)
        w_logvar = torch.where(given, w_logvar, 0.0)
        return DiagGaussian(layout.assemble(u_mu, w_mu), layout.assemble(u_logvar, w_logvar))


@hookimpl
def modkit_register(registry):
    registry.add_fusion("dmvae", DMVAE)
