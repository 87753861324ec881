"""The subset matrix and each sampler."""
import itertools

import pytest
import torch

from modkit.core.fusion import SubsetPlan
from modkit.core.subsets import AllSampler, FullSampler, KConfig, MVAESampler, RandomSampler, SamplerConfig, SinglesSampler, all_subsets, subset_names


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_all_subsets_are_every_nonempty_subset_once(n):
    mask = all_subsets(n)
    assert mask.shape == (2**n - 1, n)
    rows = {tuple(r) for r in mask.tolist()}
    expected = {tuple(bool(x) for x in bits) for bits in itertools.product([0, 1], repeat=n) if any(bits)}
    assert rows == expected


def test_singles_full_and_names():
    names = ["image", "label", "caption"]
    assert SinglesSampler(3, SamplerConfig(type="singles")).sample().tolist() == torch.eye(3, dtype=torch.bool).tolist()
    assert FullSampler(3, SamplerConfig(type="full")).sample().tolist() == [[True, True, True]]
    assert subset_names(all_subsets(2), ["a", "b"]) == ["a", "b", "a+b"]
    assert subset_names(torch.eye(3, dtype=torch.bool), names) == names


@pytest.mark.parametrize("n,k", [(2, 1), (3, 1), (5, 2), (8, 3), (19, 1)])
def test_mvae_sampler_full_singles_and_k_random(n, k):
    sampler = MVAESampler(n, KConfig(type="mvae", k=k), seed=1)
    mask = sampler.sample()
    extra = k if n > 2 else 0
    assert mask.shape == (1 + n + extra, n)
    assert mask[0].all()
    assert mask[1 : 1 + n].tolist() == torch.eye(n, dtype=torch.bool).tolist()
    sizes = mask[1 + n :].sum(1)
    assert ((sizes >= 2) & (sizes <= n - 1)).all()
    assert sampler.fixed == (extra == 0)


def test_mvae_celeba19_setting_has_21_terms():
    """MVAE on CelebA: image + 18 attributes, k = 1 → ELBO(all) + 19 singles + 1 random = 21 terms."""
    assert MVAESampler(19, KConfig(type="mvae", k=1)).sample().shape[0] == 21


def test_random_sampler_is_seeded_and_resumable():
    a = RandomSampler(4, KConfig(type="random", k=3), seed=7)
    b = RandomSampler(4, KConfig(type="random", k=3), seed=7)
    assert torch.equal(a.sample(), b.sample())
    state = a.state_dict()
    first = a.sample()
    a.load_state_dict(state)
    assert torch.equal(a.sample(), first)
    assert all(row.any() for row in first)


def test_random_sampler_covers_all_subsets():
    sampler = RandomSampler(3, KConfig(type="random", k=50), seed=0)
    seen = {tuple(r) for r in sampler.sample().tolist()}
    assert len(seen) == 7


def test_plan_rows_index_the_subsets_holding_each_modality():
    mask = all_subsets(3)
    plan = SubsetPlan.from_mask(mask)
    for i in range(3):
        assert plan.rows[i].tolist() == [s for s in range(7) if mask[s, i]]
        assert plan.counts[i] == 4
    assert AllSampler(3, SamplerConfig(type="all")).sample().tolist() == mask.tolist()
