"""The fusion arithmetic on CUDA, in float32, against float64 references computed on the CPU from the
textbook formulas (precision sums, the closed-form KL, the Gaussian log-density), values and gradients.

Tolerances. A float32 sum of terms t_1 … t_m computed in any order is within about m · u · Σ|t_i| of
the exact sum (u = 2^-24, the unit roundoff); a product, quotient, exp or log adds a few u relative.
Each check therefore bounds |got − want| by ``SLACK · u · scale``, where ``scale`` is the sum of the
absolute values of the terms that make up that entry (computed in float64 from the reference), and
SLACK = 64 covers the few tens of roundings along each path (the terms have at most 32 summands in these
cases) with a margin of a few. A bound relative to the answer alone would be wrong both ways: too tight
where terms cancel, too loose where they do not. The test also pins torch's default float32 matmul
precision ("highest", no TF32): TF32 keeps 10 mantissa bits and would break these bounds by ~1000×.
"""
from __future__ import annotations

import math

import pytest
import torch

import modkit.core.subset_kl as subset_kl
from cuda_helpers import CUDA, DEVICE
from modkit import all_subsets
from modkit.distributions import Experts, cross_log_prob, product_of_experts, weighted_subset_kl

pytestmark = CUDA

U = 2.0 ** -24
SLACK = 64
LOG_2PI = math.log(2 * math.pi)


def within(got: torch.Tensor, want: torch.Tensor, scale: torch.Tensor, what: str) -> None:
    err = (got.detach().double().cpu() - want.detach()).abs()
    bound = SLACK * U * scale.detach()
    worst = torch.where(err == 0, 0.0, err / bound).max().item()  # an exact zero (an empty subset's mean) passes
    assert worst <= 1.0, f"{what}: error {err.max().item():.3g} is {worst:.2f}× the float32 bound"


@pytest.fixture(autouse=True)
def no_tf32():
    assert torch.get_float32_matmul_precision() == "highest", "TF32 matmuls would void the float32 bounds"


def experts64(n: int, b: int, d: int, seed: int, partial: bool = True) -> Experts:
    """Random experts in float64 on the CPU; log-variances within ±8, the bound first-party heads keep."""
    g = torch.Generator().manual_seed(seed)
    mu = 2.0 * torch.randn(n, b, d, generator=g, dtype=torch.float64)
    logvar = (3.0 * torch.randn(n, b, d, generator=g, dtype=torch.float64)).clamp(-8.0, 8.0)
    present = torch.rand(b, n, generator=g) < 0.7 if partial else torch.ones(b, n, dtype=torch.bool)
    present[:, 0] |= ~present.any(1)  # every sample has one modality
    return Experts(mu, logvar, present, all_present=not partial)


def on_device(e: Experts, grad: bool = False) -> Experts:
    mu = e.mu.float().to(DEVICE).requires_grad_(grad)
    logvar = e.logvar.float().to(DEVICE).requires_grad_(grad)
    return Experts(mu, logvar, e.present.to(DEVICE), all_present=e.all_present)


def reference_sums(e: Experts, mask: torch.Tensor, prior: bool):
    """T = [1 +] Σ_{i∈S, present} τ_i and M = Σ τ_i μ_i per subset, (S, B, D), float64, with the sums of
    |terms| that bound their rounding."""
    tau = torch.exp(-e.logvar) * e.present.T.unsqueeze(-1)
    m = mask.double()
    total = torch.einsum("sn,nbd->sbd", m, tau) + (1.0 if prior else 0.0)
    weighted = torch.einsum("sn,nbd->sbd", m, tau * e.mu)
    weighted_abs = torch.einsum("sn,nbd->sbd", m, (tau * e.mu).abs())
    return total, weighted, weighted_abs


@pytest.mark.parametrize("n,b,d", [(3, 64, 16), (6, 256, 32)])
@pytest.mark.parametrize("partial", [False, True])
def test_product_of_experts(n, b, d, partial):
    e = experts64(n, b, d, seed=n + b, partial=partial)
    mask = all_subsets(n)
    mu, logvar = product_of_experts(on_device(e), mask.to(DEVICE), prior=True)
    total, weighted, weighted_abs = reference_sums(e, mask, prior=True)
    want_mu, want_logvar = weighted / total, -torch.log(total)
    assert mu.dtype == torch.float32 and mu.device.type == torch.device(DEVICE).type
    within(mu, want_mu, weighted_abs / total + want_mu.abs(), "PoE mean")
    within(logvar, want_logvar, 1.0 + want_logvar.abs(), "PoE log-variance")


def test_product_of_experts_per_sample_subsets():
    """The (S, B, N) per-sample path (an einsum, not the shared-mask matmul)."""
    e = experts64(4, 128, 16, seed=7)
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(3, 128, 4, generator=g) < 0.5
    mu, logvar = product_of_experts(on_device(e), mask.to(DEVICE), prior=True)
    tau = torch.exp(-e.logvar) * e.present.T.unsqueeze(-1)
    m = mask.double()
    total = torch.einsum("sbn,nbd->sbd", m, tau) + 1.0
    weighted_abs = torch.einsum("sbn,nbd->sbd", m, (tau * e.mu).abs())
    want_mu = torch.einsum("sbn,nbd->sbd", m, tau * e.mu) / total
    within(mu, want_mu, weighted_abs / total + want_mu.abs(), "PoE mean (per-sample subsets)")
    within(logvar, -torch.log(total), 1.0 + torch.log(total).abs(), "PoE log-variance (per-sample subsets)")


def reference_subset_kl(e: Experts, mask: torch.Tensor, weights: torch.Tensor, prior: bool):
    """Σ_s w[s, b] · ½ Σ_d (1/T + M²/T² − 1 + log T), in float64 with autograd, and the sum of |terms|."""
    total, weighted, _ = reference_sums(e, mask, prior)
    total = torch.where(total == 0, 1.0, total)  # subsets of absent experts only carry weight 0
    terms = 0.5 * (1.0 / total + (weighted / total) ** 2 - 1.0 + torch.log(total))
    kl = (weights.unsqueeze(-1) * terms).sum((0, 2))
    scale = (weights.unsqueeze(-1) * 0.5 * (1.0 / total + (weighted / total) ** 2 + 1.0 + torch.log(total).abs())).sum((0, 2))
    return kl, scale


def subset_case(n: int, b: int, d: int, seed: int, partial: bool, shared: bool, complete: bool):
    e = experts64(n, b, d, seed, partial=partial)
    mask = all_subsets(n)
    if not complete:  # the general path: any subsets in any order (here every other one, reversed)
        mask = mask.flip(0)[::2].contiguous()
    g = torch.Generator().manual_seed(seed + 1)
    if shared:
        weights = torch.rand(len(mask), 1, generator=g, dtype=torch.float64)
    else:
        valid = (mask.unsqueeze(1) <= e.present.unsqueeze(0)).all(-1) & mask.any(-1, keepdim=True)
        weights = valid * torch.rand(valid.shape, generator=g, dtype=torch.float64)
    return e, mask, weights


@pytest.mark.parametrize("complete", [True, False], ids=["doubling", "matmul"])
@pytest.mark.parametrize("partial,shared", [(False, True), (True, False)], ids=["complete-batch", "partial-batch"])
@pytest.mark.parametrize("prior", [True, False])
@pytest.mark.parametrize("blocks", ["one", "many"])
def test_weighted_subset_kl(complete, partial, shared, prior, blocks, monkeypatch):
    """Both ways of forming the subsets' sums (doubling over a complete mask, one matrix product otherwise), with
    shared and per-sample weights, in one block (an accelerator's usual case) and in many (its memory bound)."""
    if blocks == "many":  # 32 samples per block over 255 subsets × D = 16
        monkeypatch.setattr(subset_kl, "ACCEL_BLOCK_FLOATS", 255 * 16 * 32)
        monkeypatch.setattr(subset_kl, "CPU_BLOCK_FLOATS", 255 * 16 * 32)
    n, b, d = 8, 256, 16
    e, mask, weights = subset_case(n, b, d, seed=3, partial=partial, shared=shared, complete=complete)
    dev = on_device(e, grad=True)
    got = weighted_subset_kl(dev, mask.to(DEVICE), weights.float().to(DEVICE), prior=prior, complete=complete)
    assert got.shape == (b,) and got.device.type == torch.device(DEVICE).type
    ref = Experts(e.mu.clone().requires_grad_(), e.logvar.clone().requires_grad_(), e.present, all_present=e.all_present)
    want, scale = reference_subset_kl(ref, mask, weights, prior)
    within(got, want, scale, "weighted subset KL")
    upstream = torch.randn(b, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got_grads = torch.autograd.grad((got * upstream.float().to(DEVICE)).sum(), (dev.mu, dev.logvar))
    want_grads = torch.autograd.grad((want * upstream).sum(), (ref.mu, ref.logvar))
    # ∂KL_s/∂μ_i = τ_i·a·r and ∂KL_s/∂logvar_i = −τ_i·½r(1 − r − 2a²) − τ_iμ_i·a·r (r = 1/T, a = M/T, τ_i·r ≤ 1): each
    # entry sums, over the subsets holding i, terms bounded by |u_b|·w·(1 + |a|) and |u_b|·w·(1 + r + 2a² + |μ_i||a|)
    total, weighted, _ = reference_sums(e, mask, prior)
    r = 1.0 / torch.where(total == 0, 1.0, total)
    a = (weighted * r).abs()
    w = weights.expand(len(mask), b) * upstream.abs()  # (S, B)
    m = mask.double()
    mu_scale = torch.einsum("sn,sb,sbd->nbd", m, w, 1.0 + a)
    logvar_scale = torch.einsum("sn,sb,sbd->nbd", m, w, 1.0 + r + 2 * a * a) + e.mu.abs() * torch.einsum("sn,sb,sbd->nbd", m, w, a)
    for name, g, want_g, s in zip(("mu", "logvar"), got_grads, want_grads, (mu_scale, logvar_scale)):
        within(g, want_g, s, f"weighted subset KL: gradient of {name}")


def test_cross_log_prob_values_and_gradients():
    n, k, b, d = 5, 4, 128, 32
    g = torch.Generator().manual_seed(11)
    z = 2.0 * torch.randn(n, k, b, d, generator=g, dtype=torch.float64)
    mu = 2.0 * torch.randn(n, b, d, generator=g, dtype=torch.float64)
    logvar = (2.0 * torch.randn(n, b, d, generator=g, dtype=torch.float64)).clamp(-8.0, 8.0)
    upstream = torch.randn(n, k, n, b, generator=g, dtype=torch.float64)
    leaves = [t.float().to(DEVICE).requires_grad_() for t in (z, mu, logvar)]
    got = cross_log_prob(*leaves, stop_own=False)
    ref = [t.clone().requires_grad_() for t in (z, mu, logvar)]
    delta2 = (ref[0].unsqueeze(2) - ref[1]) ** 2 * torch.exp(-ref[2])  # (N, K, N_j, B, D)
    want = -0.5 * (LOG_2PI + ref[2] + delta2).sum(-1)
    scale = 0.5 * (LOG_2PI + ref[2].abs() + delta2).sum(-1).detach()
    within(got, want, scale, "cross log-prob")
    got_grads = torch.autograd.grad((got * upstream.float().to(DEVICE)).sum(), leaves)
    want_grads = torch.autograd.grad((want * upstream).sum(), ref)
    # z's gradient sums N_j terms, mu's and logvar's N·K terms, each bounded by |upstream| · (1 + δ²/σ² + |δ|/σ²)
    term = upstream.abs().unsqueeze(-1) * (1.0 + delta2.detach() + (z.unsqueeze(2) - mu).abs() * torch.exp(-logvar))
    scales = (term.sum(2), term.sum((0, 1)), term.sum((0, 1)))
    for name, gg, w, s in zip(("z", "mu", "logvar"), got_grads, want_grads, scales):
        within(gg, w, s, f"cross log-prob: gradient of {name}")
