"""The pieces of MEME's objective as plain tensor functions, so each can be tested on its own.

Notation (Joy et al., ICLR 2022): ``s`` is the modality encoded, ``t`` the other(s), which act as
the label of a semi-supervised VAE: the t-encoder is the conditional prior p(z|t), and the
t-decoder is the "classifier" q(t|z).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from modkit.distributions import gaussian_log_prob


def log_marginal_from_samples(log_q: Tensor, include_posterior: bool = True) -> Tensor:
    """log q(t|s) = log E_{q(z|s)} q(t|z) from per-sample values ``log_q`` (1 + K, ...).

    Row 0 is log q(t|z) at the posterior sample z that the rest of the objective uses; rows 1..K are
    extra draws. With ``include_posterior`` (their Appendix D) row 0 is inside the log-sum-exp, so
    log q(t|z) − log q(t|s) ≤ log(1 + K) always: the weight ratio cannot overflow.
    """
    used = log_q if include_posterior else log_q[1:]
    return torch.logsumexp(used, dim=0) - math.log(used.shape[0])


def supervised_term(log_ps_z: Tensor, log_qt_z: Tensor, kl: Tensor, log_qt_s: Tensor,
                    supervision: float, beta: float = 1.0) -> tuple[Tensor, Tensor]:
    """One direction's bound for a paired sample: w·(log p(s|z) − log q(t|z) − β·KL) + c·log q(t|s).

    w = q(t|z)/q(t|s) enters under stop-gradient (their Appendix B: the gradient through the ratio
    is dropped, the one through the log-probabilities kept). ``kl`` is KL(q(z|s) ‖ p(z|t)).
    ``supervision`` is c, the classifier scale (10 in the authors' code). Returns (term, w).
    """
    w = torch.exp(log_qt_z - log_qt_s).detach()
    return w * (log_ps_z - log_qt_z - beta * kl) + supervision * log_qt_s, w


def log_mixture(z: Tensor, mu: Tensor, logvar: Tensor, weights_mask: Tensor) -> Tensor:
    """log of a uniform mixture of diagonal Gaussians over the components where ``weights_mask`` holds.

    ``z`` is (..., D); ``mu``/``logvar`` are (..., C, D) and broadcast against ``z.unsqueeze(-2)``;
    ``weights_mask`` (..., C) bool picks the components (at least one per row).
    """
    comp = gaussian_log_prob(z.unsqueeze(-2), mu, logvar)  # (..., C)
    comp = torch.where(weights_mask, comp, torch.finfo(comp.dtype).min)
    return torch.logsumexp(comp, dim=-1) - torch.log(weights_mask.sum(-1).clamp_min(1).to(comp.dtype))


def vamp_kl(z: Tensor, mu: Tensor, logvar: Tensor, prior_mu: Tensor, prior_logvar: Tensor) -> Tensor:
    """One-sample estimate of KL(q(z|s) ‖ (1/P) Σ_i p_i(z)) at z ~ q(z|s): log q(z|s) − log mixture(z).

    ``z``, ``mu``, ``logvar`` are (..., D); the P prior components ``prior_mu``/``prior_logvar`` are
    (..., P, D) (broadcasting). The VampPrior has no closed-form KL, so the estimate is Monte Carlo.
    """
    mask = torch.ones(prior_mu.shape[:-1], dtype=torch.bool, device=z.device)
    mask = mask.expand(*torch.broadcast_shapes(z.shape[:-1] + (1,), prior_mu.shape[:-1]))
    return gaussian_log_prob(z, mu, logvar) - log_mixture(z, prior_mu, prior_logvar, mask)
