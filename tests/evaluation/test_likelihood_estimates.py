"""The importance-sampling estimator against probabilistic PCA, where log p(x) is exact.

Tolerances (stated, chosen from the Monte Carlo error of the settings used): with the exact
posterior as proposal every log weight equals log p(x), so K = 1 is exact to float32 rounding
(1e-3 nats). With a deliberately wrong proposal, K = 1 (the ELBO) is visibly low (> 0.1 nats on
average) and K = 4000 is within 0.03 nats of the exact value on average over 64 points and
within 0.25 nats at every point.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from ppca_toys import exact_log_p, ppca_data, ppca_model, split_batch  # noqa: E402

from modkit.evaluation.likelihood import (  # noqa: E402
    conditional_log_likelihood,
    importance_log_likelihood,
    likelihood_suite,
    quantities,
)

SIGMA = 0.5
BLOCKS = {"a": 5, "b": 4}


def test_exact_posterior_gives_exact_answer_and_zero_weight_variance():
    torch.manual_seed(0)
    model, W, b = ppca_model({"x": 6}, sigma=SIGMA)  # one modality, orthogonal W: PoE posterior is exact
    x = ppca_data(W, b, SIGMA, 64)
    exact = exact_log_p(x, W, b, SIGMA)
    for k in (1, 16):
        est = importance_log_likelihood(model, split_batch(x, {"x": 6}), ["x"], k=k)
        assert torch.allclose(est.log_p.double(), exact, atol=1e-3), (est.log_p.double() - exact).abs().max()
        assert est.log_w_var.max() < 1e-6


@pytest.fixture(scope="module")
def perturbed():
    torch.manual_seed(1)
    model, W, b = ppca_model(BLOCKS, sigma=SIGMA, mu_shift=0.3, logvar_shift=1.0)
    x = ppca_data(W, b, SIGMA, 64)
    exact = {
        "a": exact_log_p(x[:, :5], W[:5], b[:5], SIGMA),
        "b": exact_log_p(x[:, 5:], W[5:], b[5:], SIGMA),
        "ab": exact_log_p(x, W, b, SIGMA),
    }
    return model, split_batch(x, BLOCKS), exact


@pytest.mark.parametrize("targets,key", [(["a"], "a"), (["a", "b"], "ab")])
def test_estimate_approaches_exact_log_p(perturbed, targets, key):
    model, batch, exact = perturbed
    torch.manual_seed(2)
    elbo = importance_log_likelihood(model, batch, targets, k=1)
    est = importance_log_likelihood(model, batch, targets, k=4000)
    err_1 = (elbo.log_p.double() - exact[key]).mean()
    err = est.log_p.double() - exact[key]
    assert err_1 < -0.1, "a single sample is the ELBO: biased low by the proposal's KL gap"
    assert abs(err.mean()) < 0.03 and err.abs().max() < 0.25, (err.mean(), err.abs().max())
    assert est.log_w_var.mean() > 0.1, "a wrong proposal has spread in its log weights"


@pytest.mark.parametrize("denominator", ["prior", "posterior"])
def test_conditional_matches_exact_gaussian_conditional(perturbed, denominator):
    model, batch, exact = perturbed
    torch.manual_seed(3)
    cond, den = conditional_log_likelihood(model, batch, ["a"], ["b"], k=4000, denominator=denominator, k_denominator=4000)
    err = cond.log_p.double() - (exact["ab"] - exact["b"])
    assert abs(err.mean()) < 0.03 and err.abs().max() < 0.25, (err.mean(), err.abs().max())
    assert abs((den.log_p.double() - exact["b"]).mean()) < 0.03


def test_chunking_does_not_change_the_estimate(perturbed):
    model, batch, _ = perturbed
    torch.manual_seed(4)
    whole = importance_log_likelihood(model, batch, ["a", "b"], k=300, chunk_elements=10**9)
    torch.manual_seed(4)
    chunked = importance_log_likelihood(model, batch, ["a", "b"], k=300, chunk_elements=64 * 9 * 7)  # 7 samples a chunk
    assert torch.allclose(whole.log_p, chunked.log_p, atol=1e-4)
    assert torch.allclose(whole.log_w_var, chunked.log_w_var, rtol=1e-3, atol=1e-5)
    # the variance is the plain sample variance of the log weights
    torch.manual_seed(4)
    q = model.posterior(batch, ["a", "b"])
    z = q.rsample(300).reshape(300, len(batch), -1)
    from modkit.evaluation.likelihood import _log_lik, prior_of

    log_w = _log_lik(model, z, batch, ["a", "b"], shared=False) + prior_of(model).log_prob(z) - q.log_prob(z.unsqueeze(1)).reshape(300, -1)
    assert torch.allclose(whole.log_w_var, log_w.var(0), rtol=1e-3, atol=1e-5)
    assert torch.allclose(whole.log_p, torch.logsumexp(log_w, 0) - torch.log(torch.tensor(300.0)), atol=1e-4)


def test_suite_masks_absent_samples_and_names_every_quantity(perturbed):
    model, batch, exact = perturbed
    present = batch.present.clone()
    present[:10, 1] = False  # b missing in the first 10 samples
    torch.manual_seed(5)
    out = likelihood_suite(model, [batch.with_present(present)], k=2000, k_denominator=2000, denominator="posterior")
    assert set(out) == {q[0] for q in quantities(["a", "b"])}
    assert out["log p(a)"]["items"] == 64 and out["log p(a,b)"]["items"] == 54 and out["log p(a|b)"]["items"] == 54
    assert abs(out["log p(a)"]["mean"] - exact["a"].mean().item()) < 0.05
    assert abs(out["log p(a,b)"]["mean"] - exact["ab"][10:].mean().item()) < 0.05
    assert abs(out["log p(b|a)"]["mean"] - (exact["ab"] - exact["a"])[10:].mean().item()) < 0.05


def test_suite_reports_both_denominators_for_conditionals(perturbed):
    model, batch, exact = perturbed
    torch.manual_seed(6)
    out = likelihood_suite(model, [batch], k=2000, k_denominator=4000, denominator="prior")
    cond = out["log p(a|b)"]
    truth = (exact["ab"] - exact["b"]).mean().item()
    assert abs(cond["mean"] - truth) < 0.05  # the paper's prior-sampled denominator
    assert abs(cond["mean_posterior_denominator"] - truth) < 0.05  # the posterior-proposal one
    assert "mean_posterior_denominator" not in out["log p(a)"]


def test_a_fusions_own_prior_is_used():
    """A fusion whose ``prior()`` is not N(0, I) (a learned prior): log p(x) = log N(x; b, 4 W Wᵀ + σ² I) for p(z) = N(0, 4 I)."""
    from modkit.core.gaussian import DiagGaussian

    torch.manual_seed(7)
    model, W, b = ppca_model({"x": 6}, sigma=SIGMA)
    model.fusion.prior = lambda: DiagGaussian(torch.zeros(2), torch.full((2,), float(torch.log(torch.tensor(4.0)))))
    x = ppca_data(2 * W, b, SIGMA, 64)  # z ~ N(0, 4I) is 2·z' with z' ~ N(0, I)
    est = importance_log_likelihood(model, split_batch(x, {"x": 6}), ["x"], k=4000)
    err = est.log_p.double() - exact_log_p(x, 2 * W, b, SIGMA)
    assert abs(err.mean()) < 0.03 and err.abs().max() < 0.25, (err.mean(), err.abs().max())
