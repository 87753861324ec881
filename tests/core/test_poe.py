"""Product of experts against independent computations: the closed form written separately, and a
1-D brute-force product of densities on a grid."""
import math

import numpy as np
import torch

from modkit.core.gaussian import Experts, kl_standard_normal, product_of_experts
from modkit.core.subsets import all_subsets


def closed_form(mus, variances, prior=True):
    """Textbook product of Gaussians, one subset at a time, in plain Python floats."""
    precisions = [1.0 / v for v in variances] + ([1.0] if prior else [])
    means = list(mus) + ([0.0] if prior else [])
    total = sum(precisions)
    return sum(m * p for m, p in zip(means, precisions)) / total, 1.0 / total


def test_poe_matches_closed_form_for_every_subset():
    torch.manual_seed(0)
    n, b, d = 3, 4, 5
    mu = torch.randn(n, b, d, dtype=torch.float64)
    logvar = torch.randn(n, b, d, dtype=torch.float64)
    present = torch.ones(b, n, dtype=torch.bool)
    subsets = all_subsets(n)
    fused_mu, fused_logvar = product_of_experts(Experts(mu.float(), logvar.float(), present), subsets)
    for s, row in enumerate(subsets.tolist()):
        for i in range(b):
            for k in range(d):
                members = [j for j in range(n) if row[j]]
                m, v = closed_form([mu[j, i, k].item() for j in members], [math.exp(logvar[j, i, k].item()) for j in members])
                assert abs(fused_mu[s, i, k].item() - m) < 1e-5
                assert abs(math.exp(fused_logvar[s, i, k].item()) - v) < 1e-5


def test_poe_matches_brute_force_product_on_a_grid():
    """Multiply the prior and two expert densities pointwise on a fine grid; read off mean and variance."""
    grid = np.linspace(-12, 12, 200_001)
    dx = grid[1] - grid[0]

    def density(m, v):
        return np.exp(-0.5 * (grid - m) ** 2 / v) / math.sqrt(2 * math.pi * v)

    mus, variances = [1.5, -0.7], [0.4, 2.5]
    product = density(0.0, 1.0) * density(mus[0], variances[0]) * density(mus[1], variances[1])
    product /= product.sum() * dx
    mean = (grid * product).sum() * dx
    var = ((grid - mean) ** 2 * product).sum() * dx

    experts = Experts(torch.tensor(mus).view(2, 1, 1), torch.log(torch.tensor(variances)).view(2, 1, 1), torch.ones(1, 2, dtype=torch.bool))
    fused_mu, fused_logvar = product_of_experts(experts, torch.ones(1, 2, dtype=torch.bool))
    assert abs(fused_mu.item() - mean) < 1e-5
    assert abs(fused_logvar.exp().item() - var) < 1e-5


def test_without_prior_expert_single_subset_is_the_expert():
    mu, logvar = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    fused_mu, fused_logvar = product_of_experts(Experts(mu, logvar, torch.ones(3, 2, dtype=torch.bool)), torch.eye(2, dtype=torch.bool), prior=False)
    torch.testing.assert_close(fused_mu, mu)
    torch.testing.assert_close(fused_logvar, logvar)


def test_per_sample_subsets_equal_shared_subsets():
    experts = Experts(torch.randn(3, 5, 2), torch.randn(3, 5, 2), torch.ones(5, 3, dtype=torch.bool))
    subsets = all_subsets(3)
    shared = product_of_experts(experts, subsets)
    per_sample = product_of_experts(experts, subsets.unsqueeze(1).expand(-1, 5, -1))
    torch.testing.assert_close(shared[0], per_sample[0])
    torch.testing.assert_close(shared[1], per_sample[1])


def test_one_subset_per_sample_equals_the_shared_subsets():
    """A (1, B, N) mask (MoPoE's drawn component) takes a masked sum instead of the batched product."""
    present = torch.rand(6, 3) < 0.7
    experts = Experts(torch.randn(3, 6, 2), torch.randn(3, 6, 2), present)
    subsets = all_subsets(3)
    pick = torch.tensor([0, 6, 3, 5, 1, 2])
    for prior in (True, False):
        mu, logvar = product_of_experts(experts, subsets[pick].unsqueeze(0), prior=prior)
        all_mu, all_logvar = product_of_experts(experts, subsets, prior=prior)
        torch.testing.assert_close(mu[0], all_mu[pick, torch.arange(6)])
        torch.testing.assert_close(logvar[0], all_logvar[pick, torch.arange(6)])


def test_extreme_log_variances_stay_finite():
    """Bounded log-variances from the heads keep precisions finite in float32; the fused result too."""
    from modkit.core.nn import bounded_logvar

    raw = torch.tensor([-1e4, 1e4, 0.0]).view(3, 1, 1)
    logvar = bounded_logvar(raw)
    experts = Experts(torch.tensor([1e3, -1e3, 0.0]).view(3, 1, 1), logvar, torch.ones(1, 3, dtype=torch.bool))
    mu, fused = product_of_experts(experts, all_subsets(3))
    assert torch.isfinite(mu).all() and torch.isfinite(fused).all()
    assert torch.isfinite(kl_standard_normal(mu, fused)).all()


def test_kl_standard_normal_matches_torch_distributions():
    mu, logvar = torch.randn(7, 3), torch.randn(7, 3)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(kl_standard_normal(mu, logvar), expected)
