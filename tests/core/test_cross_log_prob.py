"""cross_log_prob: every expert's log-density at every source's draws, against the broadcast formula
and scipy, with the DReG stop-gradient on each source's own component."""
from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from modkit.core.gaussian import cross_log_prob, gaussian_log_prob


def case(seed: int = 0, n: int = 3, k: int = 2, b: int = 4, d: int = 5):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, b, d, generator=g, dtype=torch.float64, requires_grad=True)
    mu = torch.randn(n, b, d, generator=g, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(n, b, d, generator=g, dtype=torch.float64, requires_grad=True)
    return z, mu, logvar


def test_values_match_scipy():
    z, mu, logvar = case()
    got = cross_log_prob(z, mu, logvar).detach().numpy()
    zn, mn, sd = z.detach().numpy(), mu.detach().numpy(), np.exp(0.5 * logvar.detach().numpy())
    for i, k, j, b in np.ndindex(*got.shape):
        assert np.isclose(got[i, k, j, b], stats.norm.logpdf(zn[i, k, b], mn[j, b], sd[j, b]).sum(), rtol=1e-12)


def test_gradient_is_exact():
    torch.autograd.gradcheck(cross_log_prob, case(seed=1))


def test_stop_own_cuts_exactly_the_sources_own_component():
    """The same gradients as the broadcast formula with mu[i], logvar[i] detached for source i's draws."""
    z, mu, logvar = case(seed=2)
    upstream = torch.randn(3, 2, 3, 4, dtype=torch.float64)
    own = torch.eye(3, dtype=torch.bool)[:, None, :, None, None]
    want = gaussian_log_prob(z.unsqueeze(2), torch.where(own, mu.detach(), mu), torch.where(own, logvar.detach(), logvar))
    got = cross_log_prob(z, mu, logvar, stop_own=True)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad((got * upstream).sum(), (z, mu, logvar)),
                    torch.autograd.grad((want * upstream).sum(), (z, mu, logvar))):
        torch.testing.assert_close(a, b)


def test_more_components_than_sources():
    z, mu, logvar = case(seed=3)
    extra_mu, extra_logvar = torch.cat([mu, mu[:1] + 1.0]), torch.cat([logvar, logvar[:1]])
    got = cross_log_prob(z, extra_mu, extra_logvar)
    torch.testing.assert_close(got, gaussian_log_prob(z.unsqueeze(2), extra_mu, extra_logvar))
