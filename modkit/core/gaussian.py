"""Diagonal-Gaussian experts and their product, the arithmetic every fusion shares.

The product of experts (MVAE) is computed in precision space as one matrix product over the
subset × modality mask, so any number of subsets costs one ``einsum``. Log-variances arrive
bounded (see :func:`modkit.core.nn.bounded_logvar`), so precisions stay finite in float32: this is
what keeps training at lr 1e-3 free of the NaNs the reference code produced.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


class Experts(NamedTuple):
    """Unimodal Gaussian experts for a batch: ``mu``/``logvar`` are (N, B, D), ``present`` is (B, N) bool.

    ``extra`` carries whatever else a fusion's ``encode`` computed that its ``posterior`` needs
    (latent mixing keeps the modality features, M2 the target's one-hot code); None when nothing.
    ``all_present`` is :attr:`Batch.all_present <modkit.core.batch.Batch.all_present>` carried along: True only
    when ``present`` is known on the host to be all True, so the products skip masking (False: mask).
    """

    mu: Tensor
    logvar: Tensor
    present: Tensor
    extra: dict[str, Any] | None = None
    all_present: bool = False


def rng(generator: torch.Generator | None) -> dict[str, torch.Generator]:
    """``generator=`` for a random-number call only when there is one: dynamo cannot trace ``torch.randn(shape,
    generator=None)`` once the batch size is symbolic (``train.compile`` meets a second batch size), while
    leaving the argument out draws from the same default generator."""
    return {} if generator is None else {"generator": generator}


class DiagGaussian:
    """A batch of diagonal Gaussians with leading shape ``mu.shape[:-1]``."""

    def __init__(self, mu: Tensor, logvar: Tensor):
        self.mu, self.logvar = mu, logvar

    @property
    def mean(self) -> Tensor:
        return self.mu

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        shape = self.mu.shape if n is None else (n, *self.mu.shape)
        eps = torch.randn(shape, device=self.mu.device, dtype=self.mu.dtype, **rng(generator))
        return self.mu + eps * self.std

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density summed over the last dim; ``z`` broadcasts against the batch shape."""
        return gaussian_log_prob(z, self.mu, self.logvar)

    def kl_to_standard_normal(self) -> Tensor:
        return kl_standard_normal(self.mu, self.logvar)


def gaussian_log_prob(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar)).sum(-1)


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, I)), summed over the last dim.

    The PoE fusions evaluate it on every sampled subset's posterior, (S, B, D) elements, so it is a
    custom autograd function: half the passes over memory of the composed version, forward and backward.
    (MoPoE's all-subset sum has its own, :func:`modkit.core.subset_kl.weighted_subset_kl`.)
    """
    return _KLStandardNormal.apply(mu, logvar)


class _KLStandardNormal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mu: Tensor, logvar: Tensor) -> Tensor:
        var = torch.exp(logvar)
        ctx.save_for_backward(mu, var)
        terms = torch.addcmul((var - logvar).sub_(1.0), mu, mu)  # var + mu² − 1 − logvar, each ≥ 0
        return terms.sum(-1).mul_(0.5)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        mu, var = ctx.saved_tensors
        grad = grad.unsqueeze(-1)
        grad_mu = grad * mu if ctx.needs_input_grad[0] else None
        grad_logvar = (var - 1.0).mul_(0.5 * grad) if ctx.needs_input_grad[1] else None
        return grad_mu, grad_logvar


def kl_gaussians(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N1 ‖ N2) for diagonal Gaussians, summed over the last dim."""
    return 0.5 * (logvar2 - logvar1 + (torch.exp(logvar1) + (mu1 - mu2) ** 2) * torch.exp(-logvar2) - 1.0).sum(-1)


def product_of_experts(experts: Experts, subsets: Tensor, prior: bool = True) -> tuple[Tensor, Tensor]:
    """Fuse experts for many subsets at once.

    ``subsets`` is (S, N) — the same subsets for every sample — or (S, B, N) per sample; it is
    ANDed with ``experts.present`` so a missing modality never contributes. With ``prior`` the
    N(0, I) prior expert is included (MVAE). Returns ``mu``, ``logvar`` of shape (S, B, D).
    An empty subset without the prior expert yields precision 0; callers must mask such rows.
    """
    with torch.autocast(experts.mu.device.type, enabled=False):  # precisions span e^±8: float32 even under AMP
        return _product_of_experts(experts, subsets, prior)


def expert_precisions(experts: Experts) -> tuple[Tensor, Tensor]:
    """Each expert's precision τ and precision-weighted mean τμ, (N, B, D), in float32 or wider.

    An absent expert is exactly zero, even if its input was garbage (NaN or inf). Call under
    autocast disabled: precisions span e^±8.
    """
    dtype = torch.promote_types(experts.mu.dtype, torch.float32)
    precision = torch.exp(-experts.logvar.to(dtype))
    if experts.all_present:  # known on the host: nothing to mask
        return precision, precision * experts.mu.to(dtype)
    present = experts.present.T.unsqueeze(-1)  # (N, B, 1)
    precision = torch.where(present, precision, 0.0)
    return precision, torch.where(present, precision * experts.mu.to(dtype), 0.0)


def _product_of_experts(experts: Experts, subsets: Tensor, prior: bool) -> tuple[Tensor, Tensor]:
    precision, weighted_mu = expert_precisions(experts)
    tiny = torch.finfo(precision.dtype).tiny
    mask = subsets.to(precision.dtype)
    if mask.dim() == 2:  # the same subsets for every sample: two plain matrix products over (N, B·D)
        n, b, d = precision.shape
        flat_precision, flat_mu = precision.reshape(n, b * d), weighted_mu.reshape(n, b * d)
        if prior:  # the prior expert's unit precision enters as the product's bias: no extra pass
            total = torch.addmm(flat_precision.new_ones(1, 1), mask, flat_precision)
        else:
            total = (mask @ flat_precision).clamp_min(tiny)
        total_mu = mask @ flat_mu
        inverse = total.reciprocal()  # the subset variance; one reciprocal serves mu and logvar
        return (total_mu * inverse).view(-1, b, d), torch.log(inverse).view(-1, b, d)
    if mask.shape[0] == 1:  # one subset per sample (a drawn mixture component): a masked sum beats a batched matmul
        pick = mask[0].T.unsqueeze(-1)  # (N, B, 1)
        total, total_mu = (pick * precision).sum(0, keepdim=True), (pick * weighted_mu).sum(0, keepdim=True)
    else:
        total = torch.einsum("sbn,nbd->sbd", mask, precision)
        total_mu = torch.einsum("sbn,nbd->sbd", mask, weighted_mu)
    if prior:
        total = total + 1.0
    else:
        total = total.clamp_min(tiny)
    mu = total_mu / total
    logvar = -torch.log(total)
    return mu, logvar


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, **rng(generator))
    return mu + eps * torch.exp(0.5 * logvar)


def cross_log_prob(z: Tensor, mu: Tensor, logvar: Tensor, stop_own: bool = False) -> Tensor:
    """log N(z[i, k, b]; mu[j, b], exp(logvar[j, b])) summed over D, for every source i and component j.

    ``z`` is (N, K, B, D) — K draws from each of N sources — and ``mu``, ``logvar`` are (N_j, B, D);
    returns (N, K, N_j, B). This is a mixture-of-experts posterior's density at every expert's draws
    (MMVAE). Written with broadcasting, autograd keeps several (N, K, N_j, B, D) tensors for the
    backward; here nothing that size is kept: the backward recomputes it one source at a time.
    With ``stop_own`` no gradient reaches ``mu[i]``, ``logvar[i]`` through the draws of source i
    (the DReG estimator moves that score term onto the path through z). Sources and components may
    differ in number only when ``stop_own`` is off.
    """
    return _CrossLogProb.apply(z, mu, logvar, stop_own)


def _cross_terms(z_i: Tensor, mu: Tensor, precision: Tensor) -> tuple[Tensor, Tensor]:
    """For one source: (z − mu) and (z − mu)·precision, (K, N_j, B, D)."""
    delta = z_i.unsqueeze(1) - mu
    return delta, delta * precision


class _CrossLogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, mu: Tensor, logvar: Tensor, stop_own: bool) -> Tensor:
        precision = torch.exp(-logvar)
        constant = -0.5 * (LOG_2PI * mu.shape[-1] + logvar.sum(-1))  # (N_j, B)
        out = z.new_empty(z.shape[0], z.shape[1], mu.shape[0], z.shape[2])
        for i in range(z.shape[0]):  # one source at a time: (K, N_j, B, D) temporaries, not (N, K, N_j, B, D)
            delta, scaled = _cross_terms(z[i], mu, precision)
            torch.add(constant, (delta * scaled).sum(-1), alpha=-0.5, out=out[i])
        ctx.save_for_backward(z, mu, logvar, precision)
        ctx.stop_own = stop_own
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, mu, logvar, precision = ctx.saved_tensors
        need_z, need_mu, need_logvar = ctx.needs_input_grad[:3]
        grad_z = torch.empty_like(z) if need_z else None
        grad_mu = torch.zeros_like(mu) if need_mu else None
        grad_logvar = torch.zeros_like(logvar) if need_logvar else None
        for i in range(z.shape[0]):
            g = grad[i].unsqueeze(-1)  # (K, N_j, B, 1)
            delta, scaled = _cross_terms(z[i], mu, precision)
            weighted = g * scaled  # ∂/∂mu = (z − mu)·precision, ∂/∂z = −that
            if need_z:
                torch.sum(weighted, 1, out=grad_z[i]).neg_()
            if ctx.stop_own:
                weighted[:, i] = 0.0
                g = g.clone()
                g[:, i] = 0.0
            if need_mu:
                grad_mu += weighted.sum(0)
            if need_logvar:  # ∂/∂logvar = −½ (1 − (z − mu)² precision)
                grad_logvar += 0.5 * (weighted * delta - g).sum(0)
        return grad_z, grad_mu, grad_logvar, None
