"""The N-modality engine: encode each present modality once, fuse, sample, decode each modality once.

:class:`MultimodalVAE` owns the modality plugins and one fusion plugin and knows nothing about
what any modality is. The fusion decides which latents to draw and which rows each decoder
sees; the engine supplies the batched encode/decode/score primitives it builds from.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from modkit.core.batch import Batch
from modkit.core.fusion import Fusion, LossOutput, SubsetPlan
from modkit.core.gaussian import DiagGaussian, Experts
from modkit.core.modality import Modality


class MultimodalVAE(nn.Module):
    def __init__(self, modalities: dict[str, Modality], fusion: Fusion, latent_dim: int):
        super().__init__()
        self.modalities = nn.ModuleDict(modalities)
        self.names: list[str] = list(modalities)
        self.fusion = fusion
        self.latent_dim = latent_dim
        #: the current training stage's objective, set by the trainer (see :meth:`Fusion.stages`); None outside staged training
        self.stage: str | None = None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- primitives fusions build on -------------------------------------------------------------
    def encode(self, batch: Batch, names: Sequence[str] | None = None) -> Experts:
        """The experts the fusion works from: :meth:`Fusion.encode`, by default :meth:`encode_experts`."""
        return self.fusion.encode(self, batch)

    def encode_experts(self, batch: Batch) -> Experts:
        """Each encoder runs once on the whole batch; absent samples are masked by ``present``, not removed."""
        mus, logvars = [], []
        for name in self.names:
            mu, logvar = self.modalities[name].encode(batch.data[name])
            mus.append(mu)
            logvars.append(logvar)
        return Experts(torch.stack(mus), torch.stack(logvars), batch.present, all_present=bool(batch.all_present))

    def encode_with_features(self, batch: Batch) -> tuple[dict[str, Tensor], Experts]:
        """Each encoder once, giving both its (B, feature_dim) features and its expert: ``({name: features},
        Experts)``. For a fusion that mixes features and experts (a gate over experts computed from features)."""
        features, mus, logvars = {}, [], []
        for name in self.names:
            features[name], mu, logvar = self.modalities[name].encode_with_features(batch.data[name])
            mus.append(mu)
            logvars.append(logvar)
        return features, Experts(torch.stack(mus), torch.stack(logvars), batch.present, all_present=bool(batch.all_present))

    def log_likelihoods(self, z: Tensor, batch: Batch, rows: Sequence[Tensor | None] | None = None,
                        counts: Sequence[int] | None = None) -> list[Tensor | None]:
        """Decode each modality once over the latent rows it needs and score its data.

        ``z`` is (R, B, D). ``rows[i]`` picks the rows of ``z`` modality i is scored on (None: all).
        Returns per modality a (R_i, B) tensor of unweighted log-likelihoods, or None if R_i = 0.
        """
        out: list[Tensor | None] = []
        for i, name in enumerate(self.names):
            if counts is not None and counts[i] == 0:
                out.append(None)
                continue
            zi = z if rows is None or rows[i] is None else z.index_select(0, rows[i])
            modality = self.modalities[name]
            out.append(modality.log_likelihood(modality.decode(zi), batch.data[name]))
        return out

    def present_reconstruction(self, lls: Sequence[Tensor | None], present: Tensor,
                               all_present: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
        """Σ_m λ_m log p(x_m | z) per row over the modalities each sample has, from :meth:`log_likelihoods`'
        (R, B) terms (a None term is left out). ``present`` is (B, N) bool; an absent modality scores exactly 0,
        whatever its decoder made of the placeholder. ``all_present`` (known on the host, see
        :attr:`Batch.all_present`) skips the masking. Returns the (R, B) float sum and the masked terms."""
        total: Tensor | float = 0.0
        per: dict[str, Tensor] = {}
        for i, (name, ll) in enumerate(zip(self.names, lls)):
            if ll is None:
                continue
            ll = ll.to(torch.promote_types(ll.dtype, torch.float32))
            per[name] = ll if all_present else torch.where(present[:, i], ll, 0.0)
            total = total + self.modalities[name].weight * per[name]
        return total, per

    def weighted_reconstruction(self, z: Tensor, batch: Batch, plan: SubsetPlan | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Σ_m λ_m log p(x_m | z) for each row of ``z`` (R, B) over the modalities each row's subset holds.

        Without a plan every modality is scored on every row. Also returns the per-modality (R_m, B) terms.
        """
        lls = self.log_likelihoods(z, batch, plan.rows if plan else None, plan.counts if plan else None)
        total = z.new_zeros(z.shape[:2], dtype=torch.float32)
        per: dict[str, Tensor] = {}
        for i, (name, ll) in enumerate(zip(self.names, lls)):
            if ll is None:
                continue
            weighted = self.modalities[name].weight * ll.float()
            total = total + weighted if plan is None else total.index_add(0, plan.rows[i], weighted)
            per[name] = ll
        return total, per

    # -- training --------------------------------------------------------------------------------
    def forward(self, batch: Batch, plan: SubsetPlan, beta: float) -> LossOutput:
        """The training objective (what DDP wraps): delegated to the fusion plugin."""
        return self.fusion.loss(self, batch, plan, beta)

    # -- inference -------------------------------------------------------------------------------
    def subset_mask(self, given: Sequence[str]) -> Tensor:
        unknown = [g for g in given if g not in self.names]
        if unknown:
            raise KeyError(f"unknown modality {unknown[0]!r} (model has {', '.join(self.names)})")
        return torch.tensor([[n in given for n in self.names]], device=self.device)

    def posterior(self, batch: Batch, given: Sequence[str] | Tensor) -> DiagGaussian:
        """q(z | the ``given`` modalities ∩ present) for each sample: batch shape (S, B) with S subsets."""
        mask = given if isinstance(given, Tensor) else self.subset_mask(given)
        return self.fusion.posterior(self.encode(batch), mask.to(self.device))

    def decode(self, z: Tensor, names: Sequence[str] | None = None) -> dict[str, Tensor]:
        return {n: self.modalities[n].decode(z) for n in (names or self.names)}

    def predict(self, z: Tensor, names: Sequence[str] | None = None) -> dict[str, object]:
        return {n: self.modalities[n].predict(out) for n, out in self.decode(z, names).items()}
