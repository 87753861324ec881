"""MoPoE: the per-sample component draw, the weighted KL, the mixture posterior, and where gradients go."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from fusion_toy import toy_batch, toy_model
from modkit.core.fusion import SubsetPlan
from modkit.core.gaussian import Experts
from modkit.core.subsets import all_subsets
from modkit_mopoe import MixtureOfProductsOfExperts, MoPoEConfig, sample_components, subset_validity

PATTERNS = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=torch.bool)


def numpy_poe(mu: np.ndarray, logvar: np.ndarray, members: list[int], prior: bool) -> tuple[np.ndarray, np.ndarray]:
    """Product of Gaussian experts (and the N(0, I) prior expert): precision-weighted mean, summed precision."""
    precision = sum(np.exp(-logvar[m]) for m in members) + (1.0 if prior else 0.0)
    mean = sum(np.exp(-logvar[m]) * mu[m] for m in members) / precision
    return mean, 1.0 / precision


def test_component_is_drawn_only_among_present_subsets_and_uniformly():
    mask = all_subsets(3)  # (7, 3)
    reps = 3000
    present = PATTERNS.repeat(reps, 1)  # every pattern, reps times
    torch.manual_seed(0)
    pick = sample_components(subset_validity(mask, present)).view(reps, len(PATTERNS))
    for p, row in enumerate(PATTERNS):
        allowed = [s for s in range(len(mask)) if bool((mask[s] <= row).all())]
        counts = torch.bincount(pick[:, p], minlength=len(mask)).double() / reps
        assert set(torch.nonzero(counts).flatten().tolist()) == set(allowed)  # never an invalid subset, every valid one seen
        # uniform over the allowed subsets: binomial s.e. ≤ 0.0092 at n = 3000; allow 5 of them
        assert torch.allclose(counts[allowed], torch.full((len(allowed),), 1.0 / len(allowed), dtype=torch.float64), atol=0.046)


def test_validity_ignores_empty_subsets_and_absent_modalities():
    mask = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    got = subset_validity(mask, torch.tensor([[1, 0, 1], [1, 1, 1]], dtype=torch.bool))
    assert got.tolist() == [[False, False], [True, True], [False, True]]


def gaussian_kl(mean: np.ndarray, var: np.ndarray) -> float:
    return float(0.5 * np.sum(var + mean**2 - 1.0 - np.log(var)))


@pytest.mark.parametrize("prior_expert, private_dim", [(True, 0), (False, 0), (True, 1)])
def test_kl_is_the_uniformly_weighted_sum_over_each_samples_valid_subsets(prior_expert, private_dim):
    """KL_b = Σ_{S ⊆ present_b} KL(PoE_S ‖ p) / |V_b|  (+ Σ_{m present} KL(q(w_m|x_m) ‖ p) for private dims)."""
    config = MoPoEConfig(type="mopoe", prior_expert=prior_expert, private_dim=private_dim)
    model = toy_model(MixtureOfProductsOfExperts, config, n_modalities=3, latent_dim=3)
    batch = toy_batch(PATTERNS)
    plan = SubsetPlan.from_mask(all_subsets(3))
    experts = model.encode(batch)
    mu, logvar = experts.mu.detach().double().numpy(), experts.logvar.detach().double().numpy()
    shared = 3 - private_dim
    for b, row in enumerate(PATTERNS.tolist()):
        present = [m for m in range(3) if row[m]]
        kls = []
        for size in range(1, len(present) + 1):
            for members in itertools.combinations(present, size):
                mean, var = numpy_poe(mu[:, b, :shared], logvar[:, b, :shared], list(members), prior_expert)
                kls.append(gaussian_kl(mean, var))
        want = float(np.mean(kls)) + sum(gaussian_kl(mu[m, b, shared:], np.exp(logvar[m, b, shared:])) for m in present)
        got = model(batch.select(torch.tensor([b])), plan, 1.0).terms["kl"].item()
        assert got == pytest.approx(want, rel=1e-4)


def test_absent_modalities_get_no_gradient_and_present_ones_do():
    """Sample b draws z among subsets of its present modalities only, and only their KLs count: an encoder
    whose modality is absent in every sample gets exactly zero gradient (it would not if an invalid subset
    were ever drawn, or weighted in the KL)."""
    model = toy_model(MixtureOfProductsOfExperts, MoPoEConfig(type="mopoe"), n_modalities=3)
    present = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]] * 8, dtype=torch.bool)
    torch.manual_seed(1)
    model(toy_batch(present), SubsetPlan.from_mask(all_subsets(3)), 1.0).loss.backward()
    grad = lambda m: torch.cat([p.grad.flatten() for p in model.modalities[m].parameters() if p.grad is not None] or [torch.zeros(1)])  # noqa: E731
    assert grad("m2").abs().max() == 0
    assert grad("m0").abs().max() > 0 and grad("m1").abs().max() > 0


def test_posterior_is_the_mixture_of_subset_products():
    fusion = MixtureOfProductsOfExperts({"a": None, "b": None}, 2, MoPoEConfig(type="mopoe"))
    g = torch.Generator().manual_seed(0)
    present = torch.tensor([[1, 1], [0, 1]], dtype=torch.bool)
    experts = Experts(torch.randn(2, 2, 2, generator=g, dtype=torch.float64), 0.5 * torch.randn(2, 2, 2, generator=g, dtype=torch.float64), present)
    rows = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    post = fusion.posterior(experts, rows)
    z = torch.randn(4, 2, 2, 2, generator=g, dtype=torch.float64)
    got = post.log_prob(z)
    mu, logvar = experts.mu.numpy(), experts.logvar.numpy()
    for k, s, b in itertools.product(range(4), range(2), range(2)):
        available = [m for m in range(2) if rows[s, m] and present[b, m]]
        comps = [c for size in range(1, len(available) + 1) for c in itertools.combinations(available, size)]
        if comps:
            logs = [stats.norm(*(lambda mv: (mv[0], np.sqrt(mv[1])))(numpy_poe(mu[:, b], logvar[:, b], list(c), True))).logpdf(z[k, s, b].numpy()).sum()
                    for c in comps]
            want = logsumexp(logs) - np.log(len(comps))
        else:
            want = stats.norm(0, 1).logpdf(z[k, s, b].numpy()).sum()
        assert got[k, s, b].item() == pytest.approx(want, abs=1e-5)  # modkit's PoE computes in float32


def test_private_dims_reach_only_their_own_decoder():
    """With private_dim P, decoder m reads [the one shared z ; modality m's own private draw]."""
    model = toy_model(MixtureOfProductsOfExperts, MoPoEConfig(type="mopoe", private_dim=2), n_modalities=3, latent_dim=5)
    seen = {}
    for name, modality in model.modalities.items():
        with torch.no_grad():
            modality.logvar.fill_(-18.0)  # std e^-9: draws sit on the means
        modality.decoder_net = (lambda net, key: (lambda z: seen.__setitem__(key, z) or net(z)))(modality.decoder_net, name)
    batch = toy_batch(torch.ones(4, 3, dtype=torch.bool))
    out = model(batch, SubsetPlan.from_mask(all_subsets(3)), 1.0)
    assert torch.isfinite(out.loss)
    experts = model.encode(batch)
    for m, name in enumerate(model.names):
        assert seen[name].shape == (4, 5)
        torch.testing.assert_close(seen[name][:, 3:], experts.mu[m, :, 3:], atol=1e-3, rtol=0)
        torch.testing.assert_close(seen[name][:, :3], seen["m0"][:, :3])  # the shared part is common
    post = model.fusion.posterior(experts, torch.ones(1, 3, dtype=torch.bool))
    assert post.mean.shape == (1, 4, 5) and torch.equal(post.mean[..., 3:], torch.zeros(1, 4, 2))  # private: the prior


def test_private_dim_must_leave_shared_dimensions():
    from modkit.errors import RecipeError

    with pytest.raises(RecipeError, match="model.fusion.private_dim"):
        toy_model(MixtureOfProductsOfExperts, MoPoEConfig(type="mopoe", private_dim=2), latent_dim=2)


def test_sampled_kl_is_an_unbiased_estimate_of_the_exact_one():
    """kl: sampled pays the drawn component's KL only; its mean over draws is the exact weighted KL.
    Each pattern's row is repeated 2000 times; the tolerance is 5 standard errors from the spread of
    the per-subset KLs (computed by brute force)."""
    torch.manual_seed(3)
    exact_model = toy_model(MixtureOfProductsOfExperts, MoPoEConfig(type="mopoe"), n_modalities=3, latent_dim=3)
    sampled_model = toy_model(MixtureOfProductsOfExperts, MoPoEConfig(type="mopoe", kl="sampled"), n_modalities=3, latent_dim=3)
    sampled_model.load_state_dict(exact_model.state_dict())
    reps = 2000
    batch = toy_batch(PATTERNS).select(torch.arange(len(PATTERNS)).repeat(reps))
    plan = SubsetPlan.from_mask(all_subsets(3))
    experts = exact_model.encode(toy_batch(PATTERNS))
    mu, logvar = experts.mu.detach().double().numpy(), experts.logvar.detach().double().numpy()
    variance = 0.0
    for b, row in enumerate(PATTERNS.tolist()):
        present = [m for m in range(3) if row[m]]
        kls = [gaussian_kl(*numpy_poe(mu[:, b], logvar[:, b], list(members), True))
               for size in range(1, len(present) + 1) for members in itertools.combinations(present, size)]
        variance += reps * float(np.var(kls))
    standard_error = variance**0.5 / len(batch)
    exact = exact_model(batch, plan, 1.0).terms["kl"].item()
    sampled = sampled_model(batch, plan, 1.0).terms["kl"].item()
    assert standard_error > 0
    assert abs(sampled - exact) < 5 * standard_error
