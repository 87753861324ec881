"""A learnable mixture prior p(z) = Σ_c π_c p(z | c) over a latent block, for clustering models (CMVAE, VaDE-style).

The components are diagonal Gaussians or Laplaces (the families of :mod:`modkit.core.distributions`) with
learnable locations, optionally learnable scales, and learnable weights π = softmax(logits). Everything is one
tensor over the C components: ``log p(z | c)`` for every component is one broadcast over a (C, D) table, so a
(K, N, B, D) block of draws is scored against every cluster at once, with no loop over clusters or samples.

What a model needs of it:

* the density, for KL and likelihood estimates: :meth:`MixturePrior.log_prob` (log-sum-exp over components),
  and :meth:`MixturePrior.kl_estimate`, the Monte-Carlo KL(q ‖ p) from draws of q (a mixture has no closed form);
* sampling: :meth:`MixturePrior.distribution` is a :class:`WeightedMixture`, the object a fusion's ``prior()``
  returns (``rsample``/``log_prob``/``mean``); :meth:`MixturePrior.sample` also says which cluster each draw came from;
* the cluster read-out: :meth:`MixturePrior.cluster_log_posterior`, log p(c | z) ∝ log π_c + log p(z | c), and
  :meth:`MixturePrior.assign`, its argmax (what the clustering metric scores through
  :class:`modkit.core.capabilities.ClusteredPrior`);
* post-hoc selection of the number of clusters: :attr:`MixturePrior.active` switches components off (their weight
  becomes exactly 0) and is part of the state, so a selection is saved with the weights.

Scales are read from raw parameters as the latent families of the MMVAE line read an encoder's log-scale output
(``scale``): ``exp`` — std = exp(raw / 2), raw a log-variance; ``softplus`` — softplus(raw) + 1e-6;
``softmax`` — softmax(raw over the D dims) · D + 1e-6 (the Laplace parameterisation of MMVAE+ and CMVAE).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modkit.core.distributions import DiagLaplace, Family, WeightedMixture
from modkit.core.gaussian import DiagGaussian

Scale = Literal["exp", "softplus", "softmax"]


def scale_from_raw(raw: Tensor, kind: Scale) -> Tensor:
    """A raw (log-scale) parameter → a positive scale (std), as ``kind`` says (see the module's docstring)."""
    if kind == "softmax":
        return F.softmax(raw, dim=-1) * raw.shape[-1] + 1e-6
    if kind == "softplus":
        return F.softplus(raw) + 1e-6
    return torch.exp(0.5 * raw)


class MixturePrior(nn.Module):
    """p(z) = Σ_c π_c p(z | c) over ``dim`` latent dimensions, with ``n_components`` components of ``family``.

    Locations start uniform in (−1, 1) and weights equal (as CMVAE initialises them); raw scales start at 0.
    ``learn_loc``/``learn_scale``/``learn_weights`` say which are trained (CMVAE: locations and weights, not the
    scales). Any leading shape of ``z`` is scored at once: ``z`` (*lead, D) → (*lead) or (*lead, C).
    """

    def __init__(self, n_components: int, dim: int, family: Family = "gaussian", scale: Scale = "exp",
                 learn_loc: bool = True, learn_scale: bool = False, learn_weights: bool = True):
        super().__init__()
        if n_components < 1 or dim < 1:
            raise ValueError(f"a mixture prior needs at least one component and one dimension (got {n_components}, {dim})")
        self.family, self.scale_kind = family, scale
        self.loc = nn.Parameter(2 * torch.rand(n_components, dim) - 1, requires_grad=learn_loc)
        self.raw_scale = nn.Parameter(torch.zeros(n_components, dim), requires_grad=learn_scale)
        self.logits = nn.Parameter(torch.zeros(n_components), requires_grad=learn_weights)
        #: which components take part (a post-hoc selection switches some off); saved with the weights
        self.register_buffer("active", torch.ones(n_components, dtype=torch.bool))

    @property
    def n_components(self) -> int:
        return self.loc.shape[0]

    @property
    def dim(self) -> int:
        return self.loc.shape[1]

    # -- parameters ---------------------------------------------------------------------------------
    def scales(self) -> Tensor:
        """Every component's scale (std for a Gaussian, b for a Laplace): (C, D)."""
        return scale_from_raw(self.raw_scale, self.scale_kind)

    def log_weights(self) -> Tensor:
        """log π_c, normalised over the active components; −inf for a switched-off one: (C,)."""
        return torch.log_softmax(torch.where(self.active, self.logits, float("-inf")), dim=-1)

    def components(self):
        """The C components as one distribution of batch shape (C,)."""
        scale = self.scales()
        if self.family == "laplace":
            return DiagLaplace(self.loc, scale)
        return DiagGaussian(self.loc, 2.0 * torch.log(scale))

    def distribution(self) -> WeightedMixture:
        """p(z) as a distribution of batch shape () over (D,): ``rsample(n)`` → (n, D), ``log_prob``, ``mean``."""
        return WeightedMixture(self.components(), self.log_weights())

    # -- densities ----------------------------------------------------------------------------------
    def joint_log_prob(self, z: Tensor) -> Tensor:
        """log π_c + log p(z | c) for every component: ``z`` (*lead, D) → (*lead, C)."""
        return self.components().log_prob(z.unsqueeze(-2)) + self.log_weights()

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) = log Σ_c π_c p(z | c): ``z`` (*lead, D) → (*lead)."""
        return torch.logsumexp(self.joint_log_prob(z), dim=-1)

    def kl_estimate(self, z: Tensor, log_q: Tensor) -> Tensor:
        """The Monte-Carlo estimate log q(z) − log p(z) of KL(q ‖ p) from draws ``z`` ~ q and their ``log_q`` (*lead)."""
        return log_q - self.log_prob(z)

    # -- clusters -----------------------------------------------------------------------------------
    def cluster_log_posterior(self, z: Tensor) -> Tensor:
        """log p(c | z) = log π_c + log p(z | c) − log p(z): ``z`` (*lead, D) → (*lead, C); −inf for switched-off c."""
        return torch.log_softmax(self.joint_log_prob(z), dim=-1)

    def assign(self, z: Tensor) -> Tensor:
        """The most probable cluster of each ``z``: (*lead,) long (a switched-off cluster is never chosen)."""
        return self.joint_log_prob(z).argmax(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` draws of (z, c): a cluster c ~ π, then z ~ p(z | c) (reparameterised within it): (n, D) and (n,)."""
        kw = {} if generator is None else {"generator": generator}
        c = torch.multinomial(self.log_weights().exp(), n, replacement=True, **kw)
        components = self.components()
        if isinstance(components, DiagLaplace):
            picked = DiagLaplace(components.loc[c], components.scale[c])
        else:
            picked = DiagGaussian(components.mu[c], components.logvar[c])
        z = picked.rsample(generator=generator)
        return z, c

    def switch_off(self, c: int) -> None:
        """Leave component ``c`` out from now on (its weight becomes 0); at least one must stay."""
        if int(self.active.sum()) <= 1 and bool(self.active[c]):
            raise ValueError("cannot switch off the last active component of a mixture prior")
        self.active[c] = False

    @property
    def n_active(self) -> int:
        return int(self.active.sum())
