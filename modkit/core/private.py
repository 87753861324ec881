"""Modality-private latents beside the shared one (MMVAE+, DMVAE) or under it (Nexus), as one latent vector the engine carries.

The model's latent is ``[u, w_1, …, w_N]``: the shared part u (``shared`` dims) and each modality's private part
w_m (``private`` dims each). Each modality is built at ``shared + private`` dims, so its encoder's expert is
[q(u | x_m); q(w_m | x_m)] (the private posterior is part of the modality's expert, and the engine's one
encoder pass gives both), and its decoder reads [u, w_m] through a latent view
(:meth:`Modality.set_latent_view`). Everything that decodes the carried latent — the training objective,
conditional and prior generation, coherence, likelihood estimation — then needs nothing else: a posterior or
prior over the whole vector says what each private part is (its own posterior when its modality is given,
a prior draw when not). The view is derived from the recipe, so checkpoints and exports hold no more than
the weights.

A hierarchical layout (``hierarchical=True``, Nexus) carries the same vector [u, w_1, …, w_N], but the parts are
levels: w_m is modality m's own latent (its encoder's expert is q(w_m | x_m) alone, its decoder reads w_m alone)
and u is the top latent over them, reached only through the fusion's own networks (bottom-up from the given
modalities' w, top-down to the others'). Its posterior is therefore not a product of independent blocks but drawn in
order (:class:`TopDown`): the given modalities' parts from their own posteriors, u from those draws, every other
part from u. Decoding the carried latent then gives generation from the prior (u ~ p(u), every w_m from u) and
cross-modal generation (u inferred from the given subset, the targets decoded through their w_m = g_m(u)) with
nothing else, as for the flat layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

import torch
from torch import Tensor

from modkit.core.gaussian import Experts, rng

if TYPE_CHECKING:
    from modkit.core.modality import Modality


@dataclass(frozen=True)
class PrivateLayout:
    """Where the shared and each modality's private dimensions sit in the carried latent.

    ``hierarchical``: the private parts are each modality's own latent under the shared (top) one, so a modality is
    built at ``private`` dims and reads only its own part; else beside it, read together with it."""

    shared: int
    private: int
    n: int
    hierarchical: bool = False

    @property
    def width(self) -> int:
        """The carried latent's size: shared + n · private."""
        return self.shared + self.n * self.private

    @property
    def modality_width(self) -> int:
        """What each modality is built at: shared + private (private alone when hierarchical)."""
        return self.private if self.hierarchical else self.shared + self.private

    def view(self, i: int) -> Tensor:
        """The carried dimensions modality i's decoder reads: the shared ones, then its own private ones (its own
        private ones alone when hierarchical)."""
        start = self.shared + i * self.private
        own = torch.arange(start, start + self.private)
        return own if self.hierarchical else torch.cat([torch.arange(self.shared), own])

    def install(self, modalities: Mapping[str, "Modality"]) -> None:
        """Give every modality its view; each must have been built at :attr:`modality_width`."""
        for i, (name, modality) in enumerate(modalities.items()):
            if modality.latent_dim != self.modality_width:
                what = "private" if self.hierarchical else "shared + private"
                raise ValueError(f"modality '{name}' was built at latent_dim {modality.latent_dim}; with private latents it "
                                 f"must be {what} = {self.modality_width} (build the model through the recipe builder)")
            modality.set_latent_view(self.view(i))

    def split(self, experts: Experts) -> tuple[Experts, Tensor, Tensor]:
        """The experts' shared part, and the private posteriors' (mu, logvar), each (N, B, private). A hierarchical
        layout's experts are wholly private: their shared part is empty."""
        d = 0 if self.hierarchical else self.shared
        shared = experts._replace(mu=experts.mu[..., :d], logvar=experts.logvar[..., :d])
        return shared, experts.mu[..., d:], experts.logvar[..., d:]

    def assemble(self, u: Tensor, w: Tensor) -> Tensor:
        """Shared (*lead, B, shared) and private (*lead, N, B, private) parts → the carried latent (*lead, B, width)."""
        w = w.movedim(-3, -2)  # (*lead, B, N, P)
        return torch.cat([u.expand(*w.shape[:-2], u.shape[-1]), w.flatten(-2)], dim=-1)


class TopDown:
    """q(u, w_1, …, w_N | the given modalities) over a hierarchical layout's carried latent, batch shape (*S, B).

    Drawn in the order the model infers: each given (and present) modality's part w_m from its own posterior
    N(``mu``, ``logvar``) (each (B, N, P), all modalities; the others are ignored), then the top latent from those
    draws, u ~ N(``top(w, given)``), then every other modality's part w_m = ``down(u)`` (deterministic, as the model
    decodes through it). ``given`` is (*S, B, N) bool; ``top`` maps w (*lead, *S, B, N, P) and ``given`` to the top
    posterior's (mu, logvar), each (*lead, *S, B, D), and must give the prior N(0, I) where nothing is given;
    ``down`` maps u (*lead, D) to (*lead, N, P). The means (:attr:`mean`) go the same way with means for draws.

    A part that is a function of u has no density beside u's, so :meth:`log_prob` is refused: a fusion with this
    posterior sets :attr:`~modkit.core.fusion.Fusion.no_likelihood_reason`.
    """

    def __init__(self, layout: PrivateLayout, given: Tensor, mu: Tensor, logvar: Tensor,
                 top: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], down: Callable[[Tensor], Tensor], reason: str):
        self.layout, self.given, self.mu, self.logvar = layout, given.to(torch.bool), mu, logvar
        self.top, self.down, self.reason = top, down, reason

    @property
    def batch_shape(self) -> torch.Size:
        return self.given.shape[:-1]

    def _assemble(self, u: Tensor, w: Tensor) -> Tensor:
        w = torch.where(self.given.unsqueeze(-1), w, self.down(u))  # (*lead, *S, B, N, P)
        return torch.cat([u, w.flatten(-2)], dim=-1)

    @property
    def mean(self) -> Tensor:
        w = self.mu.expand(*self.batch_shape, *self.mu.shape[-2:])
        u, _ = self.top(w, self.given)
        return self._assemble(u, w)

    def rsample(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        lead = () if n is None else (n,)
        shape = (*lead, *self.batch_shape, *self.mu.shape[-2:])
        w = self.mu + torch.randn(shape, device=self.mu.device, dtype=self.mu.dtype, **rng(generator)) * torch.exp(0.5 * self.logvar)
        mu, logvar = self.top(w, self.given)
        u = mu + torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, **rng(generator)) * torch.exp(0.5 * logvar)
        return self._assemble(u, w)

    def log_prob(self, z: Tensor) -> Tensor:
        raise NotImplementedError(self.reason)


class TopDownPrior:
    """p(u, w_1, …, w_N): u ~ N(0, I) over the ``shared`` top dimensions, every w_m = ``down(u)``; samples are
    (n, width), as :meth:`Fusion.prior`'s are. :meth:`log_prob` is refused, as for :class:`TopDown`."""

    def __init__(self, zeros: Tensor, down: Callable[[Tensor], Tensor], reason: str):
        self.zeros, self.down, self.reason = zeros, down, reason

    def _assemble(self, u: Tensor) -> Tensor:
        return torch.cat([u, self.down(u).flatten(-2)], dim=-1)

    @property
    def mean(self) -> Tensor:
        return self._assemble(self.zeros)

    def rsample(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        shape = self.zeros.shape if n is None else (n, *self.zeros.shape)
        return self._assemble(torch.randn(shape, device=self.zeros.device, dtype=self.zeros.dtype, **rng(generator)))

    def log_prob(self, z: Tensor) -> Tensor:
        raise NotImplementedError(self.reason)
