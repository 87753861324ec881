"""MVAE-Q: the product-and-quotient of Gaussian experts, and its variance constraint."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from modkit.core.gaussian import Experts
from modkit_poe_quotient import constrained_experts, quotient_of_experts

PRESENT = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
SUBSETS = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)


def experts(scale: float, seed: int = 0) -> Experts:
    g = torch.Generator().manual_seed(seed)
    return Experts(torch.randn(3, 4, 2, generator=g), scale * torch.randn(3, 4, 2, generator=g), PRESENT)


def test_quotient_matches_the_unnormalised_density_ratio():
    """log q(z) − log q(z') equals [Σ_i log q_i − (n−1) log p](z) − [same](z'): the definition, not the closed form."""
    raw = experts(1.0)
    con = constrained_experts(raw)
    mu, logvar = quotient_of_experts(con, SUBSETS)
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(2, 3, 4, 2, generator=g).double().numpy()
    for s in range(3):
        for b in range(4):
            members = [m for m in range(3) if SUBSETS[s, m] and PRESENT[b, m]]
            sd = np.exp(0.5 * logvar[s, b].double().numpy())
            q = stats.norm(mu[s, b].double().numpy(), sd)
            got = q.logpdf(z1[s, b]).sum() - q.logpdf(z2[s, b]).sum()

            def unnormalised(z: np.ndarray) -> float:
                total = -(len(members) - 1) * stats.norm(0, 1).logpdf(z).sum()
                for m in members:
                    total += stats.norm(con.mu[m, b].double().numpy(), np.exp(0.5 * con.logvar[m, b].double().numpy())).logpdf(z).sum()
                return total

            want = unnormalised(z1[s, b]) - unnormalised(z2[s, b]) if members else (
                stats.norm(0, 1).logpdf(z1[s, b]).sum() - stats.norm(0, 1).logpdf(z2[s, b]).sum())
            assert got == pytest.approx(want, abs=1e-4)


def test_constraint_keeps_every_quotient_a_distribution_even_at_the_logvar_bounds():
    """Unimodal variances below the prior's (V_i < 1) make Σ T_i − (n − 1) ≥ 1: V_quotient ≤ 1, finite, positive."""
    raw = experts(1.0)
    for extreme in (-8.0, 8.0):
        raw = Experts(raw.mu, torch.full_like(raw.logvar, extreme), PRESENT)
        con = constrained_experts(raw)
        assert (con.logvar < 0).all()  # V_i < 1 = V_prior: the constraint the quotient needs
        mu, logvar = quotient_of_experts(con, SUBSETS)
        assert torch.isfinite(mu).all() and torch.isfinite(logvar).all()
        assert (logvar <= 1e-6).all()  # precision ≥ 1
    empty = quotient_of_experts(constrained_experts(raw), torch.zeros(1, 3, dtype=torch.bool))
    assert torch.equal(empty[0], torch.zeros(1, 4, 2)) and torch.equal(empty[1], torch.zeros(1, 4, 2))  # the prior
