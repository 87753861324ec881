"""Pushforward and Stacked, the seam for posteriors that are not Gaussian: scored against zuko's own normalizing-flow
distribution and torch.distributions, sampled through the map's inverse, and stacked into mixtures and subset rows."""
from __future__ import annotations

import math

import pytest
import torch
import zuko
from scipy import stats
from torch.distributions import Independent, Normal, TransformedDistribution
from torch.distributions.transforms import AffineTransform, ExpTransform

from modkit.distributions import DiagGaussian, Pushforward, Stacked, WeightedMixture

D = 3


def flow(seed: int = 0):
    torch.manual_seed(seed)
    maf = zuko.flows.MAF(features=D, transforms=2, hidden_features=[16, 16]).double()
    with torch.no_grad():  # away from the identity zuko starts near, so the check means something
        for p in maf.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return maf.transform()


def test_log_prob_is_zuko_normalizing_flow_log_prob():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(4, D, generator=g, dtype=torch.float64), 0.5 * torch.randn(4, D, generator=g, dtype=torch.float64)
    t = flow()
    ours = Pushforward(DiagGaussian(mu, logvar), t)
    theirs = zuko.distributions.NormalizingFlow(t, Independent(Normal(mu, torch.exp(0.5 * logvar)), 1))
    z = torch.randn(5, 4, D, generator=g, dtype=torch.float64)
    assert torch.allclose(ours.log_prob(z), theirs.log_prob(z), atol=1e-10)
    assert ours.log_prob(z).shape == (5, 4)


def test_elementwise_map_matches_torch_transformed_distribution_and_scipy():
    """An event-dimension-0 map (exp: a log-normal) has its per-coordinate Jacobian terms summed."""
    mu, logvar = torch.tensor([[0.2, -0.5, 1.0]], dtype=torch.float64), torch.tensor([[0.1, -0.3, 0.4]], dtype=torch.float64)
    to_base = ExpTransform().inv  # z ↦ log z: z = exp(u), u Gaussian
    ours = Pushforward(DiagGaussian(mu, logvar), to_base)
    z = torch.tensor([[[0.7, 1.3, 2.2]], [[1.5, 0.4, 3.0]]], dtype=torch.float64)
    torch_ld = TransformedDistribution(Normal(mu, torch.exp(0.5 * logvar)), [ExpTransform()]).log_prob(z).sum(-1)
    scipy_ld = stats.lognorm(s=torch.exp(0.5 * logvar).numpy(), scale=torch.exp(mu).numpy()).logpdf(z.numpy()).sum(-1)
    assert torch.allclose(ours.log_prob(z), torch_ld, atol=1e-12)
    assert torch.allclose(ours.log_prob(z), torch.as_tensor(scipy_ld), atol=1e-10)


def test_samples_are_base_samples_through_the_inverse_and_mean_is_the_image_of_the_base_mean():
    g = torch.Generator().manual_seed(2)
    mu, logvar = torch.randn(4, D, generator=g, dtype=torch.float64), 0.3 * torch.randn(4, D, generator=g, dtype=torch.float64)
    t = flow(1)
    post = Pushforward(DiagGaussian(mu, logvar), t)
    torch.manual_seed(5)
    z = post.rsample(6)
    torch.manual_seed(5)
    u = DiagGaussian(mu, logvar).rsample(6)
    assert z.shape == (6, 4, D) and post.rsample().shape == (4, D)
    assert torch.allclose(t(z), u, atol=1e-8)  # the forward map sends each sample back to its base draw
    assert torch.allclose(t(post.mean), mu, atol=1e-8)


def test_sample_moments_agree_with_the_density():
    """Monte-Carlo: E_q[1] under importance weights q / q' ≈ 1 with q' a wide Gaussian, i.e. the density integrates to 1."""
    mu, logvar = torch.zeros(1, D, dtype=torch.float64), torch.zeros(1, D, dtype=torch.float64)
    post = Pushforward(DiagGaussian(mu, logvar), flow(3))
    torch.manual_seed(0)
    z = post.rsample(20000)
    wide = DiagGaussian(post.mean.detach(), torch.full((1, D), math.log(9.0), dtype=torch.float64))
    with torch.no_grad():
        x = wide.rsample(200000)
        mass = torch.exp(post.log_prob(x) - wide.log_prob(x)).mean()
    assert abs(float(mass) - 1.0) < 0.05
    assert torch.isfinite(z).all()


def test_stacked_rows_and_a_mixture_over_different_kinds():
    g = torch.Generator().manual_seed(4)
    b = 5
    gauss = DiagGaussian(torch.randn(b, D, generator=g, dtype=torch.float64), torch.zeros(b, D, dtype=torch.float64))
    pushed = Pushforward(DiagGaussian(torch.randn(b, D, generator=g, dtype=torch.float64), torch.zeros(b, D, dtype=torch.float64)), flow(4))
    stack = Stacked([gauss, pushed])
    z = torch.randn(7, 2, b, D, generator=g, dtype=torch.float64)
    assert torch.allclose(stack.log_prob(z), torch.stack([gauss.log_prob(z[:, 0]), pushed.log_prob(z[:, 1])], 1))
    one = z[:, :1]
    assert torch.allclose(stack.log_prob(one), torch.stack([gauss.log_prob(one[:, 0]), pushed.log_prob(one[:, 0])], 1))
    assert stack.mean.shape == (2, b, D) and stack.rsample(3).shape == (3, 2, b, D) and stack.rsample().shape == (2, b, D)
    with pytest.raises(ValueError):
        stack.log_prob(torch.zeros(3, b, D, dtype=torch.float64))
    w = torch.tensor([[0.3] * b, [0.7] * b], dtype=torch.float64)
    mix = WeightedMixture.from_weights(stack, w)
    x = torch.randn(4, b, D, generator=g, dtype=torch.float64)
    expected = torch.logaddexp(math.log(0.3) + gauss.log_prob(x), math.log(0.7) + pushed.log_prob(x))
    assert torch.allclose(mix.log_prob(x), expected, atol=1e-10)
    assert mix.rsample(3).shape == (3, b, D)


def test_affine_map_is_a_gaussian():
    """z = 2u + 1 with u ~ N(mu, σ²) is N(2mu + 1, 4σ²): the pushforward through torch's AffineTransform agrees."""
    mu, logvar = torch.tensor([[0.5, -1.0, 0.0]], dtype=torch.float64), torch.tensor([[0.2, 0.0, -0.4]], dtype=torch.float64)
    post = Pushforward(DiagGaussian(mu, logvar), AffineTransform(1.0, 2.0).inv)
    z = torch.randn(3, 1, D, dtype=torch.float64)
    assert torch.allclose(post.log_prob(z), DiagGaussian(2 * mu + 1, logvar + math.log(4.0)).log_prob(z), atol=1e-12)
