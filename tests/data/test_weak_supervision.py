"""data.unpaired: what MVAE's unpaired rows become (split, dropped, or kept with some modalities)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modkit import RecipeError
from modkit.config.recipe import load_recipe
from modkit.data.dataset import weak_supervision
from modkit.plugins.loader import load_plugins
from modkit.training.builder import build

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "digits-poe-partial.yaml"


def test_the_three_schemes_against_the_paired_rows():
    rows = np.arange(100, 200)
    split_rows, split = weak_supervision(rows, 3, 0.2, seed=4)
    paired = set(split_rows[split.all(1)].tolist())
    assert len(paired) == 20
    unpaired = sorted(set(rows.tolist()) - paired)
    # split (MVAE): every unpaired row once per modality, alone
    assert sorted(split_rows[~split.all(1)].tolist()) == sorted(unpaired * 3) and (split[~split.all(1)].sum(1) == 1).all()
    # drop: the same pairs and nothing else
    drop_rows, drop = weak_supervision(rows, 3, 0.2, seed=4, unpaired="drop")
    assert set(drop_rows.tolist()) == paired and drop.all()
    # keep modalities 0 and 2: each unpaired row once, without modality 1
    keep_rows, keep = weak_supervision(rows, 3, 0.2, seed=4, unpaired=[0, 2])
    alone = ~keep.all(1)
    assert sorted(keep_rows[alone].tolist()) == unpaired and (keep[alone] == [True, False, True]).all()
    assert set(keep_rows[~alone].tolist()) == paired


def test_recipe_key_builds_and_is_checked():
    setup = build(load_recipe(RECIPE, ["data.unpaired=[image]"])[0], load_plugins())
    presence = setup.train.presence.numpy()
    assert presence[:, 0].all() and not presence[:, 1].all()  # every row has its image; most lack the label
    drop = build(load_recipe(RECIPE, ["data.unpaired=drop"])[0], load_plugins())
    assert drop.train.presence.all() and len(drop.train) < 0.15 * len(setup.train)
    with pytest.raises(RecipeError, match="'caption' is not a modality"):
        build(load_recipe(RECIPE, ["data.unpaired=[caption]"])[0], load_plugins())
    with pytest.raises(RecipeError, match="some but not all"):
        build(load_recipe(RECIPE, ["data.unpaired=[image,label]"])[0], load_plugins())


def test_repeat_match_gives_the_pairs_as_many_rows_as_the_split_protocol():
    split = build(load_recipe(RECIPE)[0], load_plugins())
    pairs = build(load_recipe(RECIPE, ["data.unpaired=drop"])[0], load_plugins())
    matched = build(load_recipe(RECIPE, ["data.unpaired=drop", "data.repeat=match"])[0], load_plugins())
    # only the pairs, each the same number of times, and about as many rows per epoch as MVAE's protocol
    assert matched.train.presence.all()
    counts = np.unique(matched.train.rows.numpy(), return_counts=True)
    assert set(counts[0].tolist()) == set(pairs.train.rows.numpy().tolist()) and len(set(counts[1].tolist())) == 1
    repeat = counts[1][0]
    assert repeat == round(len(split.train) / len(pairs.train))
    assert abs(len(matched.train) - len(split.train)) <= len(pairs.train) / 2
    tripled = build(load_recipe(RECIPE, ["data.repeat=3"])[0], load_plugins())
    assert len(tripled.train) == 3 * len(split.train)
    assert (tripled.train.presence.numpy() == np.tile(split.train.presence.numpy(), (3, 1))).all()
    with pytest.raises(RecipeError, match="data.repeat"):
        load_recipe(RECIPE, ["data.repeat=0"])


def test_repeat_all_gives_the_pairs_as_many_rows_as_every_training_scene():
    every = build(load_recipe(RECIPE, ["data.paired_fraction=1.0"])[0], load_plugins())
    pairs = build(load_recipe(RECIPE, ["data.unpaired=drop"])[0], load_plugins())
    full = build(load_recipe(RECIPE, ["data.unpaired=drop", "data.repeat=all"])[0], load_plugins())
    counts = np.unique(full.train.rows.numpy(), return_counts=True)
    # the same pairs, each repeated alike, about one epoch of every training scene in all
    assert set(counts[0].tolist()) == set(pairs.train.rows.numpy().tolist()) and len(set(counts[1].tolist())) == 1
    assert counts[1][0] == round(len(every.train) / len(pairs.train)) > 1
    assert abs(len(full.train) - len(every.train)) <= len(pairs.train) / 2
    with pytest.raises(RecipeError, match="data.repeat"):
        load_recipe(RECIPE, ["data.repeat=every"])
