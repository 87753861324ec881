"""Latent distributions beyond the diagonal Gaussian: Laplace experts and (weighted or uniform) mixtures of experts.

They share :class:`modkit.core.gaussian.DiagGaussian`'s interface (``rsample(n)`` → (n, *batch, D),
``log_prob(z)`` summed over the last dim, ``mean``), so evaluation code that calls a fusion's
``posterior`` works the same whether the posterior is a product (MVAE) or a mixture (MMVAE, MoPoE).
"""
from __future__ import annotations

import math
from typing import Literal, Protocol, Union

import torch
from torch import Tensor

from modkit.core.gaussian import DiagGaussian, gaussian_log_prob, rng

LOG_2 = math.log(2.0)


class DiagLaplace:
    """A batch of factorised Laplace distributions with leading shape ``loc.shape[:-1]``."""

    def __init__(self, loc: Tensor, scale: Tensor):
        self.loc, self.scale = loc, scale

    @property
    def mean(self) -> Tensor:
        return self.loc

    def rsample(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Inverse-CDF reparameterisation: z = loc − scale · sign(u) · log(1 − 2|u|), u ~ U(−½, ½)."""
        shape = self.loc.shape if n is None else (n, *self.loc.shape)
        tiny = torch.finfo(self.loc.dtype).eps
        u = torch.rand(shape, device=self.loc.device, dtype=self.loc.dtype, **rng(generator)) - 0.5
        u = u.clamp(-0.5 + tiny, 0.5 - tiny)
        return self.loc - self.scale * torch.sign(u) * torch.log1p(-2.0 * u.abs())

    def log_prob(self, z: Tensor) -> Tensor:
        return laplace_log_prob(z, self.loc, self.scale)


def laplace_log_prob(z: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """Log-density of a factorised Laplace, summed over the last dim."""
    return (-LOG_2 - torch.log(scale) - (z - loc).abs() / scale).sum(-1)


Family = Literal["gaussian", "laplace"]
Component = Union[DiagGaussian, DiagLaplace]


class LatentDistribution(Protocol):
    """What evaluation code may call on a fusion's posterior."""

    @property
    def mean(self) -> Tensor: ...

    def rsample(self, n: int | None = None) -> Tensor: ...

    def log_prob(self, z: Tensor) -> Tensor: ...


def from_expert(family: Family, mu: Tensor, logvar: Tensor) -> Component:
    """An encoder's (mu, logvar) as a distribution of ``family``; for Laplace, scale = exp(logvar / 2).

    The modality contract yields Gaussian-style heads; reading logvar as 2·log(scale) keeps the
    same bounded range (see :func:`modkit.core.nn.bounded_logvar`) for either family.
    """
    if family == "gaussian":
        return DiagGaussian(mu, logvar)
    return DiagLaplace(mu, torch.exp(0.5 * logvar))


def family_log_prob(family: Family, z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log q(z) for an expert given as (mu, logvar), summed over the last dim."""
    if family == "gaussian":
        return gaussian_log_prob(z, mu, logvar)
    return laplace_log_prob(z, mu, torch.exp(0.5 * logvar))


def uniform_log_weights(valid: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """log of uniform weights over the ``True`` entries along dim 0 (−inf elsewhere; rows with none stay −inf)."""
    count = valid.sum(0, keepdim=True).clamp_min(1).to(dtype)
    return torch.where(valid, -torch.log(count), float("-inf"))  # a Python scalar: no host-to-device copy per call


class WeightedMixture:
    """A mixture Σ_m w_m q_m over dim 0 of ``components``' batch shape: ``components`` has batch shape (M, *batch).

    ``log_weights`` (M, *batch) are log-weights per batch entry, normalised here over dim 0 (so any
    log-scores will do: a gate's logits, say); −inf leaves a component out. Every batch entry needs at
    least one finite weight. The mixture's batch shape is ``batch``: ``mean`` is (*batch, D),
    ``rsample(n)`` is (n, *batch, D) (``rsample()`` drops the n axis), ``log_prob(z)`` of a ``z`` shaped
    (*lead, *batch, D) is (*lead, *batch). Sampling picks a component per draw (Gumbel-max over the
    log-weights, so no gradient reaches the weights through the pick) and reparameterises within it.
    """

    def __init__(self, components: Component, log_weights: Tensor):
        self.components = components
        self.log_weights = log_weights - torch.logsumexp(log_weights, 0, keepdim=True)
        self.valid = log_weights > float("-inf")

    @classmethod
    def from_weights(cls, components: Component, weights: Tensor) -> "WeightedMixture":
        """From non-negative weights (M, *batch) instead of log-weights; a zero leaves a component out."""
        return cls(components, torch.log(weights))

    @property
    def weights(self) -> Tensor:
        """The normalised weights (M, *batch)."""
        return torch.exp(self.log_weights)

    @property
    def batch_ndim(self) -> int:
        return self.valid.dim() - 1

    @property
    def mean(self) -> Tensor:
        """Σ_m w_m mean_m: with a single valid component, that component's mean."""
        weights = torch.exp(self.log_weights).unsqueeze(-1)
        return torch.where(self.valid.unsqueeze(-1), weights * self.components.mean, 0.0).sum(0)

    def component_samples(self, n: int) -> Tensor:
        """``n`` reparameterised draws from every component: (n, M, *batch, D) — stratified sampling."""
        return self.components.rsample(n)

    def rsample(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Draw a component per sample (Gumbel-max over the log-weights), then reparameterise within it."""
        k = 1 if n is None else n
        draws = self.components.rsample(k)  # (k, M, *batch, D)
        gumbel = -torch.log(-torch.log(torch.rand((k, *self.valid.shape), device=self.valid.device, **rng(generator)).clamp_min(1e-20)))
        pick = (self.log_weights.unsqueeze(0) + gumbel).argmax(1, keepdim=True)  # (k, 1, *batch)
        index = pick.unsqueeze(-1).expand(k, 1, *draws.shape[2:])
        z = draws.gather(1, index).squeeze(1)  # (k, *batch, D)
        return z.squeeze(0) if n is None else z

    def component_log_prob(self, z: Tensor) -> Tensor:
        """log q_m(z) for every component: ``z`` (*lead, *batch, D) → (*lead, M, *batch)."""
        return self.components.log_prob(z.unsqueeze(-(self.batch_ndim + 2)))

    def log_prob(self, z: Tensor) -> Tensor:
        """log Σ_m w_m q_m(z) by log-sum-exp; ``z`` (*lead, *batch, D) broadcasts against the batch shape."""
        per = self.component_log_prob(z)
        return torch.logsumexp(per + self.log_weights, dim=-(self.batch_ndim + 1))


class UniformMixture(WeightedMixture):
    """A uniform mixture over the valid components: a :class:`WeightedMixture` with equal weights.

    ``valid`` is (M, *batch) bool; every batch entry must have at least one valid component (callers add
    a fallback component, e.g. the prior).
    """

    def __init__(self, components: Component, valid: Tensor):
        self.components = components
        self.valid = valid
        self.log_weights = uniform_log_weights(valid, components.mean.dtype)  # (M, *batch), already normalised


class Concatenated:
    """Independent distributions over consecutive blocks of the latent, as one distribution over their concatenation.

    A posterior over a latent with private parts ([u, w_1, …, w_N]: a mixture over u beside Laplace or Gaussian
    private posteriors) is one of these; ``parts`` share their leading (batch) shape.
    """

    def __init__(self, parts):
        self.parts = list(parts)

    @property
    def mean(self) -> Tensor:
        return torch.cat([p.mean for p in self.parts], dim=-1)

    def rsample(self, n: int | None = None) -> Tensor:
        return torch.cat([p.rsample(n) for p in self.parts], dim=-1)

    def log_prob(self, z: Tensor) -> Tensor:
        total, start = 0.0, 0
        for part in self.parts:
            width = part.mean.shape[-1]
            total = total + part.log_prob(z[..., start:start + width])
            start += width
        return total
