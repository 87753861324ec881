"""CMVAE (Palumbo, Manduchi, Laguna, Chopard & Vogt, 2024): MMVAE+ with a mixture prior over the shared latent, for
clustering.

The generative model is MMVAE+'s with the shared latent drawn from a cluster: c ~ π, u ~ p(u | c), w_m ~ p(w_m),
x_m ~ p(x_m | u, w_m). Everything else is the ``mmvae_plus`` fusion's, which this one extends (the mixture of
unimodal posteriors over u, the private latents w_m with learned auxiliary priors r_m for cross-modal
reconstruction, K draws per present source, the IWAE bound or its DReG gradient). Each draw's log weight is

    log w = Σ_d λ_d log p(x_d | u, w_d) + β (log p(u) + log p(w_m) − log (1/|X|) Σ_j q(u | x_j) − log q(w_m | x_m)),
    log p(u) = log Σ_c π_c p(u | c)

MultiVae writes the prior term as the expectation over the cluster posterior q(c | u) = p(c | u) of
log p(c) p(u | c) / q(c | u); with the exact posterior every term of that expectation is log p(u), so the two are
the same function of the weights (the cross-check measures it). The mixture is :class:`modkit.distributions.MixturePrior`:
C components of the posterior's family (Laplace for ``laplace_with_softmax``), locations uniform in (−1, 1) and
weights learned, scales fixed (as MultiVae and the authors' code keep them); p(w_m) is fixed too.

The cluster of a latent is argmax_c p(c | u) (:meth:`CMVAE.cluster_log_posterior`, which the clustering metric
reads); :meth:`CMVAE.predict_clusters` is MultiVae's vote among the modalities, and :meth:`CMVAE.select_clusters`
its post-hoc choice of the number of clusters.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from modkit import Batch, Engine, hookimpl
from modkit.distributions import Concatenated, Experts, MixturePrior, WeightedMixture, uniform_log_weights
from modkit_mmvae_plus import MMVAEPlus, MMVAEPlusConfig

#: MMVAE+'s names of the latent families → the mixture prior's scale parameterisation
SCALES = {"laplace_with_softmax": "softmax", "normal_with_softplus": "softplus", "normal": "exp"}


class CMVAEConfig(MMVAEPlusConfig):
    number_of_clusters: int = Field(10, ge=1, description="C, the components of the mixture prior over the shared latent "
                                                         "(MultiVae's number_of_clusters)")
    learn_shared_prior: Literal[False] = Field(False, description="not a CMVAE option: its prior over the shared latent is "
                                               "the cluster mixture (locations and weights learned), p(w_m) stays fixed, as in MultiVae")


class CMVAE(MMVAEPlus):
    """CMVAE: MMVAE+ whose shared latent has a learned mixture prior; clusters read out as argmax_c p(c | u)."""

    Config = CMVAEConfig

    @classmethod
    def example(cls) -> dict:
        return {"modalities_specific_dim": 2, "K": 2, "number_of_clusters": 3}

    def __init__(self, modalities, latent_dim: int, config: CMVAEConfig):
        super().__init__(modalities, latent_dim, config)
        self.clusters = MixturePrior(config.number_of_clusters, self.layout.shared, family="laplace" if self.laplace else "gaussian",
                                     scale=SCALES[config.prior_and_posterior_dist], learn_loc=True, learn_scale=False, learn_weights=True)

    # -- the prior ------------------------------------------------------------------------------
    def private_prior_scale(self) -> Tensor:
        """The scale of p(w_m), the same for every modality: (private,)."""
        return self.prior_scale()[self.layout.shared:]

    def log_prior(self, u: Tensor, w: Tensor) -> Tensor:
        """log p(u) + log p(w_m): the cluster mixture over u, the fixed p(w) over w."""
        p_w = self.private_prior_scale()
        return self.clusters.log_prob(u) + self.log_prob(w, torch.zeros_like(p_w), p_w)

    def prior(self) -> Concatenated:
        """p(u) ∏_m p(w_m): the cluster mixture beside the private priors."""
        p_w = self.private_prior_scale().repeat(self.layout.n)
        return Concatenated([self.clusters.distribution(), self.distribution(torch.zeros_like(p_w), p_w)])

    def shared_posterior(self, mu: Tensor, scale: Tensor, valid: Tensor) -> WeightedMixture:
        """The uniform mixture of the given modalities' shared posteriors; the cluster mixture p(u) where none is given."""
        n, s, b = valid.shape
        d, clusters = mu.shape[-1], self.clusters
        c = clusters.n_components
        fallback = ~valid.any(0, keepdim=True)  # (1, S, B)
        loc = torch.cat([mu.unsqueeze(1).expand(n, s, b, d), clusters.loc[:, None, None].expand(c, s, b, d)])
        scale = torch.cat([scale.unsqueeze(1).expand(n, s, b, d), clusters.scales()[:, None, None].expand(c, s, b, d)])
        prior = torch.where(fallback, clusters.log_weights()[:, None, None], float("-inf"))  # (C, S, B)
        return WeightedMixture(self.distribution(loc, scale), torch.cat([uniform_log_weights(valid, mu.dtype), prior]))

    # -- clusters -------------------------------------------------------------------------------
    def cluster_log_posterior(self, z: Tensor) -> Tensor:
        """log p(c | u) for carried latents ``z`` (*lead, latent_dim) → (*lead, C) (the clustering metric's read-out)."""
        return self.clusters.cluster_log_posterior(z[..., :self.layout.shared])

    def _draw_clusters(self, experts: Experts) -> tuple[Tensor, Tensor, Tensor]:
        """One draw u ~ q(u | x_m) per modality (N, B, D), log p(c | u) (N, B, C), and the vote among the present
        modalities (B,): each modality's argmax_c, the most frequent one, ties to the lower cluster."""
        shared, _, _ = self.layout.split(experts)
        u = self.distribution(shared.mu, self.scale(shared.logvar)).rsample()
        log_post = self.clusters.cluster_log_posterior(u)
        votes = (F.one_hot(log_post.argmax(-1), self.clusters.n_components) * experts.present.T.unsqueeze(-1)).sum(0)  # (B, C)
        return votes.argmax(-1), log_post, u

    @torch.no_grad()
    def predict_clusters(self, experts: Experts) -> tuple[Tensor, Tensor]:
        """MultiVae's ``predict_clusters``: one draw u ~ q(u | x_m) per present modality, its cluster argmax_c p(c | u),
        and the majority among the modalities. Returns the clusters (B,) and each modality's log p(c | u) (N, B, C)."""
        clusters, log_post, _ = self._draw_clusters(experts)
        return clusters, log_post

    @torch.no_grad()
    def select_clusters(self, model: Engine, batches: Iterable[Batch] | Callable[[], Iterable[Batch]],
                        beta: float = 1.0) -> dict[int, float]:
        """MultiVae's post-hoc choice of the number of clusters (``prune_clusters``), on ``batches`` (say the training set).

        With the clusters still in play, each pass scores every item by β · H − ℓ: H is the entropy of p(c | u),
        normalised by the log of the number of clusters it gives mass to, and ℓ is log p(u) / D, both from one draw
        u ~ q(u | x_m) per modality and averaged over the item's modalities; the pass then switches off the cluster
        the vote (:meth:`predict_clusters`) gives the fewest items. From C clusters down to 2; the prior keeps the
        set whose mean score was lowest (saved with the weights: ``Run.export`` carries it). ``batches`` is read once
        per pass: a list or a loader, or a callable returning a fresh iterable (``lambda: run.data("train").batches()``).
        β is MultiVae's CMVAE ``beta`` (the run's final ``model.beta`` here). Returns {number of clusters: score}.
        """
        prior, device = self.clusters, self.clusters.loc.device
        if not callable(batches) and iter(batches) is batches:  # a one-shot iterator: keep it for the later passes
            batches = list(batches)
        passes = batches if callable(batches) else (lambda: batches)
        scores, kept = {}, {}
        while prior.n_active >= 2:
            mass = torch.zeros(prior.n_components, device=device)
            total, count = 0.0, 0
            for batch in passes():
                batch = batch.to(device)
                experts = model.encode(batch)
                clusters, log_post, u = self._draw_clusters(experts)
                present = batch.present.T  # (N, B)
                some = present.any(0)
                mass += torch.bincount(clusters[some], minlength=prior.n_components).to(mass.dtype)
                p = log_post.exp()
                entropy = -torch.where(p > 0, p * log_post, 0.0).sum(-1)  # (N, B)
                spread = torch.log((p > 0).sum(-1).to(p.dtype))
                normalised = torch.where(spread > 0, entropy / spread, 0.0)
                llik = prior.log_prob(u) / self.layout.shared  # (N, B)
                per_item = torch.where(present, beta * normalised - llik, 0.0).sum(0) / present.sum(0).clamp_min(1)
                total += float(per_item[some].sum())
                count += int(some.sum())
            scores[prior.n_active] = total / max(count, 1)
            kept[prior.n_active] = prior.active.clone()
            mass[~prior.active] = math.inf
            prior.switch_off(int(mass.argmin()))
        if scores:
            prior.active.copy_(kept[min(scores, key=scores.get)])
        return scores


@hookimpl
def modkit_register(registry):
    registry.add_fusion("cmvae", CMVAE)
