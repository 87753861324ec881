"""MVAE's CelebA-19 shape on shapes scenes: image + 18 split attributes, 21 ELBO terms per step."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from modkit.config.recipe import load_recipe
from modkit.core.fusion import SubsetPlan
from modkit.plugins.loader import load_plugins
from modkit.training.builder import build
from modkit_attribute import AttributeConfig

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "shapes-19.yaml"


def test_nineteen_modalities_train_on_twenty_one_terms():
    recipe, _ = load_recipe(RECIPE, ["data.dataset.n=64", "model.latent_dim=8"])
    setup = build(recipe, load_plugins())
    model = setup.model
    assert len(model.names) == 19 and model.names[0] == "image"
    assert "attr_top_left_present" in model.names and "attr_bottom_right_cross" not in model.names  # select kept 18
    plan = SubsetPlan.from_mask(setup.sampler.sample())
    assert plan.n_subsets == 21  # the joint, the 19 singles and k = 1 random subset: linear in N, not 2^19 − 1
    batch = setup.train.__getitems__(list(range(32)))
    # a split attribute reads its own entry of the 48-vector
    top_left = model.modalities["attr_top_left_present"]
    full = setup.train.records.get(int(setup.train.rows[0]))["attributes"]
    assert float(top_left.select(batch.data["attr_top_left_present"])[0]) == float(full[0])
    out = model(batch, plan, 1.0)
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_select_needs_split_and_known_names():
    names = ["a", "b", "c"]
    assert AttributeConfig(type="attribute", names=names, split=True, select=["a", "c"]).select == ["a", "c"]
    with pytest.raises(ValidationError, match="select names 'd', which is not in names"):
        AttributeConfig(type="attribute", names=names, split=True, select=["d"])
    with pytest.raises(ValidationError, match="select needs names"):
        AttributeConfig(type="attribute", num_attributes=3, select=["a"])


def test_select_without_split_is_one_modality_of_those_entries():
    """The paper's MVAE beside MVAE19: the same 18 attributes as one modality (``split: false``)."""
    recipe, _ = load_recipe(RECIPE, ["data.dataset.n=64", "model.latent_dim=8", "modalities.attr.split=false"])
    setup = build(recipe, load_plugins())
    assert setup.model.names == ["image", "attr"]
    attr = setup.model.modalities["attr"]
    names = attr.config.names
    assert attr.size == 18 and attr.attribute_names == [n for n in names if n in attr.config.select]
    row = int(setup.train.rows[0])
    full = np.asarray(setup.train.records.get(row)["attributes"], dtype=np.float32)
    batch = setup.train.__getitems__([0])
    expected = full[[names.index(n) for n in attr.attribute_names]]
    assert np.array_equal(attr.select(batch.data["attr"])[0].numpy(), expected)  # the vector's entries, in its order
    assert np.array_equal(attr.preprocess(full).numpy(), expected)
    out = setup.model(batch, SubsetPlan.from_mask(setup.sampler.sample()), 1.0)
    assert torch.isfinite(out.loss)
