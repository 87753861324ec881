"""data.paired_per_batch (balanced paired/unpaired batches) and data.evaluate_on: validation (tuning never sees the test split)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from modkit import RecipeError
from modkit.config.recipe import load_recipe
from modkit.data.dataset import BalancedBatchSampler
from modkit.plugins.loader import load_plugins
from modkit.training.builder import build

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "digits-m2-partial.yaml"


def test_every_batch_holds_the_paired_count_and_an_epoch_is_one_pass_over_the_others():
    paired = np.zeros(103, dtype=bool)
    paired[[3, 17, 40, 41, 90]] = True
    sampler = BalancedBatchSampler(paired, batch_size=16, paired_per_batch=8, seed=1)
    sampler.set_epoch(2)
    batches = list(sampler)
    assert len(batches) == sampler.steps() == int(np.ceil(98 / 8))
    others = [i for b in batches for i in b if not paired[i]]
    assert sorted(others) == sorted(np.flatnonzero(~paired).tolist())  # each unpaired row exactly once
    for b in batches:
        assert sum(paired[i] for i in b) == 8
    counts = Counter(i for b in batches for i in b if paired[i])
    assert set(counts) == set(np.flatnonzero(paired).tolist())
    assert max(counts.values()) - min(counts.values()) <= 1  # the paired rows cycle through shuffled passes
    # a fixed (seed, epoch) gives the same batches; a resume mid-epoch continues them
    again = BalancedBatchSampler(paired, 16, 8, seed=1)
    again.set_epoch(2, start=3)
    assert list(again) == batches[3:]


def test_ranks_share_each_global_batch_row_by_row():
    paired = np.arange(60) % 5 == 0
    whole = BalancedBatchSampler(paired, 16, 8, seed=0)
    parts = [BalancedBatchSampler(paired, 8, 8, seed=0, rank=r, world=2) for r in range(2)]
    for full, a, b in zip(whole, *parts):
        assert sorted(a + b) == sorted(full) and sum(paired[i] for i in a) == 4


def test_the_recipe_option_gives_the_trainer_balanced_batches_and_refuses_impossible_settings():
    from modkit.training.trainer import batch_sampler

    sets = ["data.paired_fraction=0.1", "data.paired_per_batch=8", "data.batch_size=16"]
    recipe = load_recipe(RECIPE, sets)[0]
    setup = build(recipe, load_plugins())
    batches = batch_sampler(recipe, setup.train)
    assert isinstance(batches, BalancedBatchSampler)
    sizes = []
    for batch in batches:
        assert setup.train.presence[batch].all(dim=1).sum().item() == 8
        sizes.append(len(batch))
    assert set(sizes[:-1]) == {16} and 8 < sizes[-1] <= 16  # the last batch takes the unpaired rows left
    too_many = load_recipe(RECIPE, [*sets[:1], "data.paired_per_batch=16", "data.batch_size=16"])[0]
    with pytest.raises(RecipeError, match="paired_per_batch"):
        batch_sampler(too_many, setup.train)
    everything = load_recipe(RECIPE, ["data.paired_fraction=1.0", "data.paired_per_batch=8"])[0]
    with pytest.raises(RecipeError, match="paired and unpaired rows"):
        batch_sampler(everything, build(everything, load_plugins()).train)


def test_a_validation_run_is_measured_on_training_rows_it_never_trains_on():
    test = build(load_recipe(RECIPE)[0], load_plugins())
    val = build(load_recipe(RECIPE, ["data.evaluate_on=validation", "data.validation_fraction=0.25"])[0], load_plugins())
    test_rows, val_rows = set(test.test.rows.tolist()), set(val.test.rows.tolist())
    trained = set(val.train.rows.tolist())
    all_train = set(test.train.rows.tolist()) | set()  # paired and unpaired rows of the ordinary build
    assert not val_rows & test_rows and not val_rows & trained  # neither the test split nor training's rows
    assert val_rows <= set(range(len(test.train.records))) - test_rows
    n_train = len(all_train)
    assert len(val_rows) == round(0.25 * n_train)
