"""Every shipped recipe validates; the default one builds (plugins found, options valid, data fit)."""
from pathlib import Path

import pytest

from modkit.training.builder import build
from modkit.plugins.loader import load_plugins
from modkit.config.recipe import component_config, load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_validates_with_its_plugins(path):
    recipe, _ = load_recipe(path)
    registry = load_plugins().registry
    for name, spec in recipe.modalities.items():
        component_config(spec, registry.get("modality", spec.type).Config, f"modalities.{name}")
    component_config(recipe.model.fusion, registry.get("fusion", recipe.model.fusion.type).Config, "model.fusion")
    component_config(recipe.model.sampler, registry.get("sampler", recipe.model.sampler.type).Config, "model.sampler")
    assert registry.has("dataset", recipe.data.dataset.type)


def test_default_recipe_builds_five_modalities(tmp_path):
    recipe, _ = load_recipe(RECIPES[0].parent / "digits.yaml")
    setup = build(recipe, load_plugins(), tmp_path)
    assert setup.model.names == ["image", "label", "attributes", "caption", "translation"]
    assert len(setup.train) + len(setup.test) == 1797
