"""recipes/shapes-translation.yaml: English and Spanish captions, 5 % of the scenes aligned (MVAE Table 4's protocol)."""
from __future__ import annotations

from pathlib import Path

import torch

from modkit.config.recipe import load_recipe
from modkit.core.fusion import SubsetPlan
from modkit.plugins.loader import load_plugins
from modkit.training.builder import build

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "shapes-translation.yaml"


def test_translation_recipe_aligns_five_percent_and_trains_a_step():
    recipe, _ = load_recipe(RECIPE, ["data.dataset.n=400", "model.latent_dim=8"])
    setup = build(recipe, load_plugins())
    presence = setup.train.presence
    aligned = presence.all(1)
    scenes = len(torch.unique(setup.train.rows))
    assert setup.model.names == ["caption", "translation"]
    assert abs(int(aligned.sum()) - round(0.05 * scenes)) <= 1  # the rest appear once per language, alone
    assert int((~aligned).sum()) == 2 * (scenes - int(aligned.sum()))
    batch = setup.train.__getitems__(list(range(64)))
    out = setup.model(batch, SubsetPlan.from_mask(setup.sampler.sample()), 1.0)
    out.loss.backward()
    assert torch.isfinite(out.loss)
