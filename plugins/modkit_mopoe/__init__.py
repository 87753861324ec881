"""Mixture of products of experts: the MoPoE fusion (Sutter, Daunhawer & Vogt, 2021).

q(z | X) = Σ_S w_S PoE(q(z | x_m) : m ∈ S) over the subsets S the sampler gives. Each sample draws
ONE mixture component among the subsets whose modalities it has, reconstructs every present
modality from that single latent, and pays the w-weighted KL of all its valid subsets.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from modkit import (Batch, Engine, Fusion, FusionConfig, LossOutput, RecipeError, SubsetPlan, all_subsets, hookimpl,  # noqa: F401
                    subset_validity)  # subset_validity: this plugin's API before it moved
from modkit.distributions import (DiagGaussian, Experts, UniformMixture, kl_standard_normal, product_of_experts, reparameterize,
                                  weighted_subset_kl)

#: the evaluation posterior enumerates every subset of the present modalities up to this many modalities
MAX_ENUMERATED = 12


class MoPoEConfig(FusionConfig):
    prior_expert: bool = Field(True, description="include the N(0, I) prior expert in each subset's product (as the authors' code does)")
    private_dim: int = Field(0, ge=0, description="the last private_dim latent dimensions are modality-specific (each "
                             "decoder reads its own modality's), the rest shared through the mixture")
    kl: Literal["exact", "sampled"] = Field("exact", description="exact: the weighted KL of every valid subset (the "
                                            "paper's objective); sampled: the drawn component's KL alone, an unbiased "
                                            "one-sample estimate of it whose cost does not grow with the number of subsets")


def sample_components(valid: Tensor) -> Tensor:
    """One component index per sample, uniform among its valid subsets: (S, B) → (B,).

    Inverse CDF: the k-th valid subset with k = ⌊u · count⌋, found by a search in the running count.
    A sample with no valid subset gets an arbitrary index; callers mask it out. ``valid`` may be an (S, 1)
    column expanded over the batch (every sample has the same valid subsets: a batch known to be complete);
    the running count is then taken once, and the draws are the same as for the materialised (S, B).
    """
    same = valid.dim() == 2 and valid.shape[1] > 0 and valid.stride(1) == 0
    running = valid[:, :1].T.to(torch.int32).cumsum(-1) if same else valid.T.to(torch.int32).cumsum(-1)  # (B or 1, S)
    count = running[:, -1:]
    k = (torch.rand((valid.shape[1], 1), device=valid.device) * count).floor().to(torch.int32)  # in [0, count)
    if same:
        return torch.searchsorted(running[0], k.squeeze(-1), right=True).clamp_max(valid.shape[0] - 1)
    return torch.searchsorted(running, k, right=True).squeeze(-1).clamp_max(valid.shape[0] - 1)


class MixtureOfProductsOfExperts(Fusion):
    """MoPoE: a uniform mixture over subset products; the component is drawn per sample among present subsets."""

    Config = MoPoEConfig

    def __init__(self, modalities, latent_dim: int, config: MoPoEConfig):
        super().__init__(modalities, latent_dim, config)
        if config.private_dim >= latent_dim:
            raise RecipeError("model.fusion.private_dim", f"must be smaller than model.latent_dim ({latent_dim}) to leave shared dimensions")
        self.shared_dim = latent_dim - config.private_dim

    def split(self, experts: Experts) -> tuple[Experts, Tensor, Tensor]:
        """The experts' shared part (first ``shared_dim`` dims) and their private (mu, logvar), (N, B, private_dim)."""
        d = self.shared_dim
        shared = Experts(experts.mu[..., :d], experts.logvar[..., :d], experts.present, all_present=experts.all_present)
        return shared, experts.mu[..., d:], experts.logvar[..., d:]

    def loss(self, model: Engine, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        experts, private_mu, private_logvar = self.split(model.encode(batch))
        present = batch.present
        # a batch known complete on the host, with a non-empty subset in the plan: every sample has the same valid
        # subsets and at least one, so no presence mask is needed anywhere below (the numbers are the masked ones)
        complete = experts.all_present and any(plan.counts)
        valid = subset_validity(plan.mask, present, complete)  # (S, B); complete: an (S, 1) column expanded
        pick = sample_components(valid)  # (B,)
        # only the drawn component's product is formed: (1, B, D_shared), the subset per sample
        mu_b, logvar_b = product_of_experts(experts, plan.mask[pick].unsqueeze(0), prior=self.config.prior_expert)
        mu_b, logvar_b = mu_b.squeeze(0), logvar_b.squeeze(0)
        if complete:
            has_subset, used = None, present
        else:
            has_subset = valid.any(0)  # (B,)
            mu_b = torch.where(has_subset.unsqueeze(-1), mu_b, 0.0)
            logvar_b = torch.where(has_subset.unsqueeze(-1), logvar_b, 0.0)
            used = present & has_subset.unsqueeze(1)  # (B, N): the modalities scored
        z = reparameterize(mu_b, logvar_b).unsqueeze(0)  # (1, B, D): each decoder runs once on B rows
        if self.config.private_dim:
            # decoder m reads [shared z ; modality m's own private draw]: row m of an (N, B, D) latent
            n = len(model.names)
            own = reparameterize(private_mu, private_logvar)  # (N, B, P)
            z = torch.cat([z.expand(n, -1, -1), own], -1)
            rows = torch.arange(n, device=z.device).unsqueeze(1)
            lls = model.log_likelihoods(z, batch, rows=list(rows), counts=[1] * n)
        else:
            lls = model.log_likelihoods(z, batch)
        rec, per = model.present_reconstruction([ll[0] for ll in lls], used, complete)  # (B,)
        if self.config.kl == "sampled":  # S_b ~ w, so E[KL(PoE_{S_b} ‖ prior)] = Σ_S w_S KL(PoE_S ‖ prior)
            kl = kl_standard_normal(mu_b, logvar_b)
            kl = kl if complete else torch.where(has_subset, kl, 0.0)
        else:  # Σ_S w_S KL(PoE_S ‖ prior) over every valid subset, without forming the (S, B, D) posteriors
            if complete:  # the same weights for every sample: an (S, 1) column
                column = valid[:, :1].to(mu_b.dtype)
                weights = column / column.sum()
            else:
                weights = valid / valid.sum(0, keepdim=True).clamp_min(1)  # (S, B): uniform over each sample's valid subsets
            kl = weighted_subset_kl(experts, plan.mask, weights, prior=self.config.prior_expert,
                                    complete=plan.complete)  # (B,)
        if self.config.private_dim:  # + Σ_{m present} KL(q(w_m | x_m) ‖ N(0, I))
            private = kl_standard_normal(private_mu, private_logvar)  # (N, B)
            kl = kl + (private if complete else torch.where(used.T, private, 0.0)).sum(0)
        n = len(batch)
        loss = -(rec - beta * kl).sum() / n
        terms = {"loss": loss.detach(), "kl": (kl.sum() / n).detach()}
        terms.update({f"rec/{name}": (ll.sum() / n).detach() for name, ll in per.items()})
        return LossOutput(loss, terms)

    def posterior(self, experts: Experts, subsets: Tensor) -> UniformMixture | DiagGaussian:
        """q(z | row ∩ present) = uniform mixture of the PoEs of every non-empty subset of the row's present modalities.

        Rows with nothing present fall back to the prior. Beyond ``MAX_ENUMERATED`` modalities the
        2^N − 1 components are too many to enumerate, and the row's own PoE is returned instead.
        Private dimensions are the prior's: one latent serves every decoder, so none has its own.
        """
        experts, _, _ = self.split(experts)
        n, b, d = experts.mu.shape
        if n > MAX_ENUMERATED:
            return DiagGaussian(*self.pad_private(*product_of_experts(experts, subsets, prior=self.config.prior_expert)))
        rows = subsets.to(torch.bool)
        rows = rows.unsqueeze(1).expand(-1, b, -1) if rows.dim() == 2 else rows  # (S, B, N)
        available = rows & experts.present.unsqueeze(0)
        components = all_subsets(n).to(experts.mu.device)  # (C, N)
        mu, logvar = product_of_experts(experts, components, prior=self.config.prior_expert)  # (C, B, D)
        valid = (components.view(-1, 1, 1, n) <= available.unsqueeze(0)).all(-1)  # (C, S, B)
        s = valid.shape[1]
        fallback = ~valid.any(0, keepdim=True)
        zeros = mu.new_zeros(1, s, b, d)
        mu = torch.cat([mu.unsqueeze(1).expand(-1, s, b, d), zeros])
        logvar = torch.cat([logvar.unsqueeze(1).expand(-1, s, b, d), zeros])
        return UniformMixture(DiagGaussian(*self.pad_private(mu, logvar)), torch.cat([valid, fallback]))

    def pad_private(self, mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
        """Append the private dimensions as the prior N(0, I)."""
        pad = mu.new_zeros(*mu.shape[:-1], self.config.private_dim)
        return torch.cat([mu, pad], -1), torch.cat([logvar, pad], -1)


@hookimpl
def modkit_register(registry):
    registry.add_fusion("mopoe", MixtureOfProductsOfExperts)
