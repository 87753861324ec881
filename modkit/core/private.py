"""Modality-private latents beside the shared one (MMVAE+, DMVAE), as one latent vector the engine carries.

The model's latent is ``[u, w_1, …, w_N]``: the shared part u (``shared`` dims) and each modality's private part
w_m (``private`` dims each). Each modality is built at ``shared + private`` dims, so its encoder's expert is
[q(u | x_m); q(w_m | x_m)] (the private posterior is part of the modality's expert, and the engine's one
encoder pass gives both), and its decoder reads [u, w_m] through a latent view
(:meth:`Modality.set_latent_view`). Everything that decodes the carried latent — the training objective,
conditional and prior generation, coherence, likelihood estimation — then needs nothing else: a posterior or
prior over the whole vector says what each private part is (its own posterior when its modality is given,
a prior draw when not). The view is derived from the recipe, so checkpoints and exports hold no more than
the weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import torch
from torch import Tensor

from modkit.core.gaussian import Experts

if TYPE_CHECKING:
    from modkit.core.modality import Modality


@dataclass(frozen=True)
class PrivateLayout:
    """Where the shared and each modality's private dimensions sit in the carried latent."""

    shared: int
    private: int
    n: int

    @property
    def width(self) -> int:
        """The carried latent's size: shared + n · private."""
        return self.shared + self.n * self.private

    @property
    def modality_width(self) -> int:
        """What each modality is built at: shared + private."""
        return self.shared + self.private

    def view(self, i: int) -> Tensor:
        """The carried dimensions modality i's decoder reads: the shared ones, then its own private ones."""
        start = self.shared + i * self.private
        return torch.cat([torch.arange(self.shared), torch.arange(start, start + self.private)])

    def install(self, modalities: Mapping[str, "Modality"]) -> None:
        """Give every modality its view; each must have been built at :attr:`modality_width`."""
        for i, (name, modality) in enumerate(modalities.items()):
            if modality.latent_dim != self.modality_width:
                raise ValueError(f"modality '{name}' was built at latent_dim {modality.latent_dim}; with private latents it "
                                 f"must be shared + private = {self.modality_width} (build the model through the recipe builder)")
            modality.set_latent_view(self.view(i))

    def split(self, experts: Experts) -> tuple[Experts, Tensor, Tensor]:
        """The experts' shared part, and the private posteriors' (mu, logvar), each (N, B, private)."""
        d = self.shared
        shared = experts._replace(mu=experts.mu[..., :d], logvar=experts.logvar[..., :d])
        return shared, experts.mu[..., d:], experts.logvar[..., d:]

    def assemble(self, u: Tensor, w: Tensor) -> Tensor:
        """Shared (*lead, B, shared) and private (*lead, N, B, private) parts → the carried latent (*lead, B, width)."""
        w = w.movedim(-3, -2)  # (*lead, B, N, P)
        return torch.cat([u.expand(*w.shape[:-2], u.shape[-1]), w.flatten(-2)], dim=-1)
