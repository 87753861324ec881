"""MEME's objective pieces against independent computations (closed forms, float64 sums, Monte Carlo)."""
import math

import numpy as np
import pytest
import torch

from modkit.core.gaussian import Experts, kl_gaussians
from modkit_meme import Meme, MemeConfig
from modkit_meme.objective import log_marginal_from_samples, log_mixture, supervised_term, vamp_kl


def _gauss_logpdf(z, mu, logvar):
    return (-0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / np.exp(logvar))).sum(-1)


def test_gaussian_kl_closed_form_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mu1, lv1 = rng.normal(size=3), rng.normal(scale=0.5, size=3)
    mu2, lv2 = rng.normal(size=3), rng.normal(scale=0.5, size=3)
    z = mu1 + np.exp(0.5 * lv1) * rng.standard_normal((400_000, 3))
    terms = _gauss_logpdf(z, mu1, lv1) - _gauss_logpdf(z, mu2, lv2)
    mc, se = terms.mean(), terms.std() / math.sqrt(len(terms))
    closed = kl_gaussians(*(torch.tensor(a) for a in (mu1, lv1, mu2, lv2))).item()
    assert abs(closed - mc) < 4 * se + 1e-3, (closed, mc, se)


def test_vampprior_kl_estimator_is_unbiased_for_a_one_component_mixture():
    torch.manual_seed(0)
    mu, lv = torch.randn(3, dtype=torch.float64), 0.3 * torch.randn(3, dtype=torch.float64)
    pm, plv = torch.randn(3, dtype=torch.float64), 0.3 * torch.randn(3, dtype=torch.float64)
    z = mu + torch.exp(0.5 * lv) * torch.randn(200_000, 3, dtype=torch.float64)
    # the same component three times is still that one Gaussian
    est = vamp_kl(z, mu, lv, pm.expand(3, 3), plv.expand(3, 3))
    assert abs(est.mean().item() - kl_gaussians(mu, lv, pm, plv).item()) < 4 * est.std().item() / math.sqrt(len(est)) + 1e-3


def test_log_mixture_matches_direct_float64_sum():
    torch.manual_seed(1)
    z, mu, lv = torch.randn(5, 2), torch.randn(5, 4, 2), torch.randn(5, 4, 2)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [0, 1, 1, 0], [1, 1, 0, 1], [0, 0, 0, 1]], dtype=torch.bool)
    got = log_mixture(z, mu, lv, mask)
    for i in range(5):
        dens = [np.exp(_gauss_logpdf(z[i].double().numpy(), mu[i, c].double().numpy(), lv[i, c].double().numpy()))
                for c in range(4) if mask[i, c]]
        assert got[i].item() == pytest.approx(math.log(np.mean(dens)), rel=1e-5, abs=1e-5)


def test_log_q_t_given_s_includes_the_posterior_sample():
    a = torch.tensor([[3.0, -1.0], [0.5, 2.0], [-2.0, 0.0], [1.0, 1.0]], dtype=torch.float64)  # (1 + K, 2)
    with_post = log_marginal_from_samples(a, include_posterior=True)
    without = log_marginal_from_samples(a, include_posterior=False)
    for j in range(2):
        col = a[:, j].numpy()
        assert with_post[j].item() == pytest.approx(math.log(np.exp(col).mean()), rel=1e-12)
        assert without[j].item() == pytest.approx(math.log(np.exp(col[1:]).mean()), rel=1e-12)


def test_log_q_t_given_s_estimates_the_gaussian_marginal():
    # q(z|s) = N(m, v), q(t|z) = N(t; z, s2)  =>  q(t|s) = N(t; m, v + s2)
    torch.manual_seed(2)
    m, v, s2, t = 0.3, 0.5, 0.8, 1.1
    z = m + math.sqrt(v) * torch.randn(400_001, dtype=torch.float64)
    log_q = -0.5 * (math.log(2 * math.pi * s2) + (t - z) ** 2 / s2)
    est = log_marginal_from_samples(log_q, include_posterior=True).item()
    exact = -0.5 * (math.log(2 * math.pi * (v + s2)) + (t - m) ** 2 / (v + s2))
    assert est == pytest.approx(exact, abs=0.01)


def test_weight_ratio_is_bounded_only_with_the_posterior_sample():
    k = 10
    a = torch.full((1 + k,), -1e4, dtype=torch.float32)
    a[0] = 1e4  # the posterior sample explains t far better than the extra draws
    w_in = torch.exp(a[0] - log_marginal_from_samples(a, True))
    w_out = torch.exp(a[0] - log_marginal_from_samples(a, False))
    assert torch.isfinite(w_in) and w_in.item() <= k + 1 + 1e-4
    assert not torch.isfinite(w_out)


def test_stop_gradient_on_the_weight_ratio():
    torch.manual_seed(3)
    log_ps, log_qt, kl, log_qts = (torch.randn(6, requires_grad=True) for _ in range(4))
    c, beta = 10.0, 0.7
    term, w = supervised_term(log_ps, log_qt, kl, log_qts, c, beta)
    grads = torch.autograd.grad(term.sum(), [log_ps, log_qt, kl, log_qts])
    w_const = torch.exp(log_qt - log_qts).detach()
    assert not w.requires_grad
    torch.testing.assert_close(grads[0], w_const)          # ∂/∂ log p(s|z) = w
    torch.testing.assert_close(grads[1], -w_const)         # no ∂w/∂ log q(t|z) term
    torch.testing.assert_close(grads[2], -beta * w_const)
    torch.testing.assert_close(grads[3], torch.full_like(w_const, c))  # no ∂w/∂ log q(t|s) term
    # the naive estimator (ratio not detached) has a different gradient: the stop-gradient matters
    naive = torch.exp(log_qt - log_qts) * (log_ps - log_qt - beta * kl) + c * log_qts
    g_naive = torch.autograd.grad(naive.sum(), log_qt)[0]
    assert not torch.allclose(g_naive, grads[1])


def _toy_experts(n=2, b=4, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Experts(torch.randn(n, b, d, generator=g), 0.5 * torch.randn(n, b, d, generator=g), torch.ones(b, n, dtype=torch.bool))


def test_two_modalities_poe_and_moe_priors_agree():
    """With two modalities both combinations are the other encoder: MoE's MC KL averages to PoE's closed form."""
    experts = _toy_experts()
    n, b = 2, 4
    others = ~torch.eye(n, dtype=torch.bool).unsqueeze(1).expand(n, b, n)
    has = others.any(-1)
    fusions = {c: Meme.__new__(Meme) for c in ("poe", "moe")}
    for c, f in fusions.items():
        torch.nn.Module.__init__(f)
        f.config = MemeConfig(type="meme", combine=c)
    closed = fusions["poe"]._conditional_kl(experts, others, has, experts.mu)
    z = experts.mu + torch.exp(0.5 * experts.logvar) * torch.randn(100_000, *experts.mu.shape)
    mc = fusions["moe"]._conditional_kl(experts, others, has, z)
    torch.testing.assert_close(mc.mean(0), closed, atol=0.05, rtol=0.02)
    torch.testing.assert_close(closed, kl_gaussians(experts.mu, experts.logvar, experts.mu.flip(0), experts.logvar.flip(0)))
