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


class Pushforward:
    """The distribution of z = T⁻¹(u), u ~ ``base``: a posterior that is a base distribution carried through an invertible
    map, as a normalizing-flow posterior is (JNF's q(z | x_m): an encoder's Gaussian through the modality's flow).

    ``to_base`` is the map from the latent to the base space, T: z ↦ u, the direction in which a density is scored
    (a masked autoregressive flow computes it in one pass); it follows :class:`torch.distributions.Transform`'s
    interface (``to_base(z)``, ``to_base.inv(u)``, ``log_abs_det_jacobian(z, u)``) and acts on the last dimension,
    its Jacobian term summed over it (event dimension 1, as zuko's flows are). A ``call_and_ladj`` method (zuko's)
    is used when there is one: the value and its log-determinant from one pass. The map is shared by every batch
    entry and broadcasts over leading dimensions, so ``z`` shaped (*lead, *batch, D) is scored against ``base``'s
    batch (change of variables: log q(z) = log base(T(z)) + log |det ∂T/∂z|).

    ``mean`` is T⁻¹(base.mean), the image of the base distribution's mean (what MultiVae's ``return_mean``
    gives for a flow posterior): a point of high density, not E[z], which has no closed form.
    """

    def __init__(self, base, to_base):
        self.base, self.to_base = base, to_base

    @property
    def mean(self) -> Tensor:
        return self.to_base.inv(self.base.mean)

    def rsample(self, n: int | None = None) -> Tensor:
        return self.to_base.inv(self.base.rsample(n))

    def log_prob(self, z: Tensor) -> Tensor:
        if hasattr(self.to_base, "call_and_ladj"):
            u, ladj = self.to_base.call_and_ladj(z)
        else:
            u = self.to_base(z)
            ladj = self.to_base.log_abs_det_jacobian(z, u)
        if ladj.dim() == u.dim():  # an element-wise map (event dimension 0): its terms add over the vector
            ladj = ladj.sum(-1)
        return self.base.log_prob(u) + ladj


class Stacked:
    """Distributions of the same batch shape side by side, as one distribution whose batch gains a leading axis.

    ``parts`` each have batch shape ``batch`` and event (D,); the stack has batch (M, *batch): ``mean`` is
    (M, *batch, D), ``rsample(n)`` (n, M, *batch, D) (``rsample()`` drops the n axis), and ``log_prob(z)`` of a
    ``z`` shaped (*lead, M or 1, *batch, D) is (*lead, M, *batch), part m scoring its own slice (or the one
    slice, broadcast). Distributions of different kinds (a Gaussian, flow posteriors, the prior) then form one
    :class:`WeightedMixture`'s ``components``, or one row each of a posterior over subsets.
    """

    def __init__(self, parts):
        self.parts = list(parts)
        if not self.parts:
            raise ValueError("Stacked needs at least one distribution")

    @property
    def batch_ndim(self) -> int:
        return self.parts[0].mean.dim() - 1

    @property
    def mean(self) -> Tensor:
        return torch.stack([p.mean for p in self.parts])

    def rsample(self, n: int | None = None) -> Tensor:
        return torch.stack([p.rsample(n) for p in self.parts], dim=0 if n is None else 1)

    def log_prob(self, z: Tensor) -> Tensor:
        axis = z.dim() - self.batch_ndim - 2  # the stacked axis of z
        if z.shape[axis] not in (1, len(self.parts)):
            raise ValueError(f"z has {z.shape[axis]} rows on the stacked axis, the stack {len(self.parts)}")
        rows = [z.select(axis, m if z.shape[axis] > 1 else 0) for m in range(len(self.parts))]
        return torch.stack([p.log_prob(r) for p, r in zip(self.parts, rows)], dim=axis)
