"""weighted_subset_kl against a brute-force NumPy sum over subsets, and its hand-written gradient."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import modkit.core.subset_kl as subset_kl
from modkit.core.gaussian import Experts, kl_standard_normal, product_of_experts
from modkit.core.subset_kl import weighted_subset_kl
from modkit.core.subsets import all_subsets


def brute_force(mu: np.ndarray, logvar: np.ndarray, mask: np.ndarray, weights: np.ndarray, present: np.ndarray,
                prior: bool) -> np.ndarray:
    """Σ_s w[s, b] KL(PoE_s ‖ N(0, I)), one subset and one sample at a time, in float64."""
    s_count, b_count = weights.shape
    out = np.zeros(b_count)
    for b in range(b_count):
        for s in range(s_count):
            if weights[s, b] == 0:
                continue  # rows holding an absent modality carry weight 0
            members = [i for i in range(mask.shape[1]) if mask[s, i] and present[b, i]]
            precision = sum(np.exp(-logvar[i, b]) for i in members) + (1.0 if prior else 0.0)
            mean = sum(np.exp(-logvar[i, b]) * mu[i, b] for i in members) / precision
            var = 1.0 / precision
            out[b] += weights[s, b] * 0.5 * np.sum(var + mean**2 - 1.0 - np.log(var))
    return out


def random_case(n: int, b: int, d: int, seed: int, all_present: bool = False):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, b, d, generator=g, dtype=torch.float64)
    logvar = 2.0 * torch.randn(n, b, d, generator=g, dtype=torch.float64)
    present = torch.ones(b, n, dtype=torch.bool) if all_present else torch.rand(b, n, generator=g) < 0.7
    mask = all_subsets(n)
    valid = (mask.unsqueeze(1) <= present.unsqueeze(0)).all(-1) & mask.any(-1, keepdim=True)
    weights = valid * torch.rand(valid.shape, generator=g, dtype=torch.float64)  # any non-negative weights on valid rows
    return mu, logvar, present, mask, weights


@pytest.mark.parametrize("d", [3, 6, 8])  # odd, even, divisible by four: 0, 1 and 2 levels of pairwise products
@pytest.mark.parametrize("prior", [True, False])
@pytest.mark.parametrize("block_floats", [1 << 16, 40])  # one block, and blocks of one sample each
def test_matches_brute_force(d, prior, block_floats, monkeypatch):
    monkeypatch.setattr(subset_kl, "CPU_BLOCK_FLOATS", block_floats)
    mu, logvar, present, mask, weights = random_case(n=4, b=7, d=d, seed=d)
    got = weighted_subset_kl(Experts(mu, logvar, present), mask, weights, prior=prior)
    want = brute_force(mu.numpy(), logvar.numpy(), mask.numpy(), weights.numpy(), present.numpy(), prior)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)


def test_garbage_in_absent_experts_does_not_leak():
    mu, logvar, present, mask, weights = random_case(n=3, b=5, d=4, seed=1)
    clean = weighted_subset_kl(Experts(mu, logvar, present), mask, weights)
    absent = (~present).T.unsqueeze(-1)
    dirty = weighted_subset_kl(Experts(mu.masked_fill(absent, float("nan")), logvar.masked_fill(absent, float("inf")), present),
                               mask, weights)
    assert torch.equal(clean, dirty)


@pytest.mark.parametrize("d", [3, 4])  # odd: the logarithms were once taken in place on the variances the gradient needs
@pytest.mark.parametrize("prior", [True, False])
def test_gradient_is_exact(prior, d, monkeypatch):
    monkeypatch.setattr(subset_kl, "CPU_BLOCK_FLOATS", 60)  # several blocks, the last one partial
    mu, logvar, present, mask, weights = random_case(n=3, b=5, d=d, seed=2)
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    torch.autograd.gradcheck(lambda m, lv: weighted_subset_kl(Experts(m, lv, present), mask, weights, prior=prior), (mu, logvar))


@pytest.mark.parametrize("d", [3, 8])
@pytest.mark.parametrize("prior", [True, False])
@pytest.mark.parametrize("block_floats", [1 << 16, 60])
def test_complete_mask_and_shared_weights_match_brute_force(d, prior, block_floats, monkeypatch):
    """The all-present fast path: subset sums built by doubling over the complete mask, one (S, 1)
    column of weights for every sample; values against the brute force, gradients by gradcheck."""
    monkeypatch.setattr(subset_kl, "CPU_BLOCK_FLOATS", block_floats)
    mu, logvar, present, mask, _ = random_case(n=4, b=6, d=d, seed=10 + d, all_present=True)
    column = torch.rand(len(mask), 1, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
    experts = Experts(mu, logvar, present, all_present=True)
    got = weighted_subset_kl(experts, mask, column, prior=prior, complete=True)
    want = brute_force(mu.numpy(), logvar.numpy(), mask.numpy(), column.expand(-1, 6).numpy(), present.numpy(), prior)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    for complete, weights in ((True, column), (False, column), (True, column.expand(-1, 6).contiguous())):
        torch.autograd.gradcheck(lambda m, lv: weighted_subset_kl(Experts(m, lv, present, all_present=True), mask, weights,
                                                                  prior=prior, complete=complete), (mu, logvar))


def test_float32_agrees_with_the_composed_autograd_version():
    """What MoPoE computed before: every subset's PoE, its KL, the weighted sum — values and gradients."""
    mu, logvar, present, mask, weights = random_case(n=5, b=64, d=16, seed=3, all_present=True)
    mu, logvar, weights = mu.float().requires_grad_(True), (0.5 * logvar).float().requires_grad_(True), weights.float()
    experts = Experts(mu, logvar, present)
    upstream = torch.rand(64)
    fast = weighted_subset_kl(experts, mask, weights)
    slow = (weights * kl_standard_normal(*product_of_experts(experts, mask))).sum(0)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-4)
    fast_grads = torch.autograd.grad((fast * upstream).sum(), (mu, logvar))
    slow_grads = torch.autograd.grad((slow * upstream).sum(), (mu, logvar))
    for a, b in zip(fast_grads, slow_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_products_of_four_stay_exact_at_the_heads_log_variance_bound():
    """Σ log T is taken as log of products of four T: with every expert at log σ² = −8 (the bound of
    ``bounded_logvar``) and N = 8, T ≈ 2.4e4 and T⁴ ≈ 3e17, well inside float32."""
    n, b, d = 8, 3, 8
    mu, logvar = torch.zeros(n, b, d), torch.full((n, b, d), -8.0)
    present, mask = torch.ones(b, n, dtype=torch.bool), all_subsets(n)
    weights = torch.full((len(mask), b), 1.0 / len(mask))
    got = weighted_subset_kl(Experts(mu, logvar, present), mask, weights)
    want = brute_force(mu.double().numpy(), logvar.double().numpy(), mask.numpy(), weights.double().numpy(), present.numpy(), True)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)


def test_no_gradient_work_without_autograd():
    mu, logvar, present, mask, weights = random_case(n=3, b=4, d=4, seed=4)
    with torch.no_grad():
        value = weighted_subset_kl(Experts(mu, logvar, present), mask, weights)
    assert not value.requires_grad
    np.testing.assert_allclose(value.numpy(), brute_force(mu.numpy(), logvar.numpy(), mask.numpy(), weights.numpy(),
                                                          present.numpy(), True), rtol=1e-10)


def test_per_sample_subsets_are_refused():
    mu, logvar, present, mask, weights = random_case(n=2, b=3, d=2, seed=5)
    with pytest.raises(ValueError, match="subsets must be"):
        weighted_subset_kl(Experts(mu, logvar, present), mask.unsqueeze(1).expand(-1, 3, -1), weights)


def test_blocks_cover_the_batch_and_respect_the_limits():
    cpu, meta = torch.device("cpu"), torch.device("meta")
    for device, limit in ((cpu, subset_kl.CPU_BLOCK_FLOATS), (meta, subset_kl.ACCEL_BLOCK_FLOATS)):
        for s, b, d in ((255, 256, 64), (4095, 256, 64), (3, 7, 5), (10**6, 4, 64)):
            blocks = subset_kl.sample_blocks(s, b, d, device)
            assert blocks[0][0] == 0 and blocks[-1][1] == b
            assert all(r1 == next0 for (_, r1), (next0, _) in zip(blocks, blocks[1:]))
            assert all(r1 > r0 for r0, r1 in blocks)
            assert all((r1 - r0) * s * d <= limit for r0, r1 in blocks) or all(r1 - r0 == 1 for r0, r1 in blocks)
    assert subset_kl.sample_blocks(255, 256, 64, meta) == [(0, 256)]  # a whole batch at N = 8 on an accelerator
