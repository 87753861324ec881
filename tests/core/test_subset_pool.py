"""The MVAE and random samplers enumerate their pool once (not 2^N subsets on every draw): the same draws as enumerating it on every
call (so training is unchanged to the bit), and beyond POOL_LIMIT modalities they draw bits instead."""
import torch

from modkit.core.subsets import all_subsets
from modkit.core.subsets import BUILTIN_SAMPLERS


def _old_draw(sampler, k: int, exclude_trivial: bool) -> torch.Tensor:
    """The code before the pool was kept, verbatim in effect: enumerate, filter, draw."""
    pool = all_subsets(sampler.n)
    if exclude_trivial:
        sizes = pool.sum(1)
        pool = pool[(sizes > 1) & (sizes < sampler.n)]
        if len(pool) == 0:
            return torch.zeros(0, sampler.n, dtype=torch.bool)
    return pool[torch.randint(len(pool), (k,), generator=sampler.generator)]


def test_cached_pool_draws_exactly_what_the_enumeration_drew():
    for kind, exclude in (("mvae", True), ("random", False)):
        for n in (2, 3, 5, 8):
            config = BUILTIN_SAMPLERS[kind].Config(type=kind, k=2)
            new, old = BUILTIN_SAMPLERS[kind](n, config, seed=7), BUILTIN_SAMPLERS[kind](n, config, seed=7)
            for _ in range(5):
                drawn = new.sample()
                if kind == "mvae":
                    expected = torch.cat([torch.ones(1, n, dtype=torch.bool), torch.eye(n, dtype=torch.bool),
                                          _old_draw(old, 2, exclude)])
                else:
                    expected = _old_draw(old, 2, exclude)
                assert torch.equal(drawn, expected), (kind, n)


def test_many_modalities_draw_allowed_subsets_without_enumerating():
    n = 40  # 2^40 subsets: never enumerated
    sampler = BUILTIN_SAMPLERS["mvae"](n, BUILTIN_SAMPLERS["mvae"].Config(type="mvae", k=64), seed=0)
    rows = sampler.sample()[1 + n:]
    sizes = rows.sum(1)
    assert rows.shape == (64, n) and bool(((sizes > 1) & (sizes < n)).all())
    assert 12 < float(sizes.float().mean()) < 28  # uniform over subsets: about n / 2 members
    assert "_pools" not in sampler.__dict__
