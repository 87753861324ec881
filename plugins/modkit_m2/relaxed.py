"""Discrete-latent helpers for M2: one-hot codes with a class axis anywhere, Gumbel-softmax, entropy."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def one_hot(labels: Tensor, num_classes: int, class_axis: int) -> Tensor:
    """Class ids (B, *spatial) → float one-hot codes with the class axis at ``class_axis`` of the result."""
    codes = F.one_hot(labels.long().clamp(0, num_classes - 1), num_classes).float()
    return codes.movedim(-1, class_axis)


def relaxed_one_hot(logits: Tensor, tau: Tensor | float, class_axis: int, hard: bool = False) -> Tensor:
    """A Gumbel-softmax (Concrete) sample along ``class_axis``: one per position, so per pixel for masks.

    As τ → 0 samples become one-hot with class frequencies softmax(logits); as τ → ∞ they tend to uniform.
    ``hard`` gives straight-through one-hot samples. Uses ``torch.nn.functional.gumbel_softmax``.
    """
    return F.gumbel_softmax(logits, tau=tau, hard=hard, dim=class_axis)


def entropy(logits: Tensor, class_axis: int) -> Tensor:
    """H(q(y|x)) summed over every non-batch position: (B, ...) logits → (B,)."""
    logp = torch.log_softmax(logits.float(), dim=class_axis)
    h = -(logp.exp() * logp).sum(class_axis)
    return h.flatten(1).sum(-1) if h.dim() > 1 else h


def annealed_temperature(step: Tensor, start: float, minimum: float, rate: float) -> Tensor:
    """τ = max(τ_min, τ_0 · exp(−rate · step)), the schedule of Jang et al. (2017); stays on the device."""
    return torch.clamp(start * torch.exp(-rate * step.float()), min=minimum)


def uniform_log_prior(num_positions: int, num_classes: int) -> float:
    """log p(y) for a uniform prior over ``num_classes`` classes at each of ``num_positions`` positions."""
    return -num_positions * math.log(num_classes)
