"""Likelihoods p(x | decoder output): per-sample log-probabilities for the ELBO.

Each takes the decoder output ``out`` of shape (*lead, *event) — for categorical, a class axis
too — and data ``x`` of shape (B, *event) that broadcasts against it (lead ends with B), and
returns the log-probability summed over the ``event_dims`` trailing data dims.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modkit.errors import RecipeError

LOG_2 = math.log(2.0)


class Likelihood(nn.Module):
    name = "likelihood"
    #: True when ``log_prob`` is the log of a probability (Bernoulli, categorical), so never positive; a
    #: positive estimate of it (an importance-sampled conditional, say) is an estimator artefact
    mass: bool = False

    def __init__(self, event_dims: int):
        super().__init__()
        self.event_dims = event_dims

    def elementwise(self, out: Tensor, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, out: Tensor, x: Tensor) -> Tensor:
        lp = self.elementwise(out, x)
        return lp.flatten(lp.dim() - self.event_dims).sum(-1) if self.event_dims else lp

    def mean(self, out: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, out: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Bernoulli(Likelihood):
    """``out`` are logits; ``x`` in [0, 1] (grey values are treated as soft targets, as MNIST VAEs do)."""

    name = "bernoulli"
    mass = True

    def elementwise(self, out: Tensor, x: Tensor) -> Tensor:
        x = x.to(out.dtype).expand_as(out)
        return -F.binary_cross_entropy_with_logits(out, x, reduction="none")

    def log_prob(self, out: Tensor, x: Tensor) -> Tensor:
        """As the base class, but negated after the sum: one pass less over (and back through) the largest tensor."""
        out = out.float()  # under autocast the logits may be half precision; the 784-term sum is not
        bce = F.binary_cross_entropy_with_logits(out, x.to(out.dtype).expand_as(out), reduction="none")
        return -(bce.flatten(bce.dim() - self.event_dims).sum(-1) if self.event_dims else bce)

    def mean(self, out: Tensor) -> Tensor:
        return torch.sigmoid(out)

    def sample(self, out: Tensor) -> Tensor:
        return torch.bernoulli(torch.sigmoid(out))


class _LocationScale(Likelihood):
    """Gaussian or Laplace with a fixed scale or one learned log-scale per modality."""

    def __init__(self, event_dims: int, scale: float | Literal["learned"] = 1.0):
        super().__init__(event_dims)
        if scale == "learned":
            self.log_scale = nn.Parameter(torch.zeros(()))
        else:
            self.register_buffer("log_scale", torch.tensor(math.log(float(scale))))

    def mean(self, out: Tensor) -> Tensor:
        return out


class Gaussian(_LocationScale):
    name = "gaussian"

    def elementwise(self, out: Tensor, x: Tensor) -> Tensor:
        ls = self.log_scale
        return -0.5 * ((x - out) * torch.exp(-ls)) ** 2 - ls - 0.5 * math.log(2 * math.pi)

    def sample(self, out: Tensor) -> Tensor:
        return out + torch.randn_like(out) * torch.exp(self.log_scale)


class Laplace(_LocationScale):
    name = "laplace"

    def elementwise(self, out: Tensor, x: Tensor) -> Tensor:
        ls = self.log_scale
        return -(x - out).abs() * torch.exp(-ls) - ls - LOG_2

    def sample(self, out: Tensor) -> Tensor:
        return torch.distributions.Laplace(out, torch.exp(self.log_scale)).sample()


class Categorical(Likelihood):
    """``out`` holds logits with the class axis at ``class_dim`` (default last); ``x`` holds class ids."""

    name = "categorical"
    mass = True

    def __init__(self, event_dims: int, class_dim: int = -1):
        super().__init__(event_dims)
        self.class_dim = class_dim

    def elementwise(self, out: Tensor, x: Tensor) -> Tensor:
        logp = torch.log_softmax(out.float(), dim=self.class_dim)
        target_shape = list(logp.shape)
        target_shape[self.class_dim] = 1
        idx = x.long().unsqueeze(self.class_dim).expand(target_shape)
        return torch.gather(logp, self.class_dim, idx).squeeze(self.class_dim)

    def mean(self, out: Tensor) -> Tensor:
        return out.argmax(self.class_dim)

    def sample(self, out: Tensor) -> Tensor:
        logits = out.movedim(self.class_dim, -1)
        return torch.distributions.Categorical(logits=logits).sample()


CONTINUOUS = {"bernoulli": Bernoulli, "gaussian": Gaussian, "laplace": Laplace}


def make_likelihood(name: str, event_dims: int, scale: float | str = 1.0, key: str = "likelihood") -> Likelihood:
    """Build a likelihood by name for modalities with real-valued data."""
    if name == "bernoulli":
        return Bernoulli(event_dims)
    if name in ("gaussian", "laplace"):
        if scale != "learned" and (not isinstance(scale, (int, float)) or scale <= 0):
            raise RecipeError(key.rsplit(".", 1)[0] + ".scale", "must be a positive number or 'learned'")
        return CONTINUOUS[name](event_dims, scale)
    raise RecipeError(key, f"unknown likelihood '{name}' (allowed: {', '.join(CONTINUOUS)})")
