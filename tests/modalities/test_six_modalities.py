"""All six modality kinds in one recipe: built by modkit.training.builder (attribute split through the expand hook),
trained with PoE by the Trainer, evaluated, and rendered; then resumed with the saved tokenizers."""
from __future__ import annotations

import json

import pytest

from modkit import RecipeError
from modkit.training.builder import build
from modkit.plugins.loader import load_plugins
from modkit.config.recipe import validate_recipe
from modkit.runs.lifecycle import make_trainer

RECIPE = {
    "name": "six",
    "data": {"dataset": {"type": "test_six", "n": 48}, "batch_size": 16, "test_fraction": 0.25},
    "modalities": {
        "image": {"type": "image", "shape": [3, 8, 8], "architecture": "conv", "hidden": [32], "mask_ratio": 0.25, "patch_size": 2},
        "mask": {"type": "mask", "num_classes": 4, "shape": [8, 8], "hidden": 32},
        "label": {"type": "label", "num_classes": 6, "hidden": [32], "embedding_dim": 8},
        "attr": {"type": "attribute", "field": "attrs", "names": ["red", "right"], "split": True, "hidden": [16]},
        "caption": {"type": "caption", "hidden": 32, "embedding_dim": 16, "max_length": 10, "architecture": "transformer", "heads": 2},
        "en": {"type": "translation", "hidden": 32, "embedding_dim": 16, "max_length": 8, "tokenizer": "word"},
        "vi": {"type": "translation", "language": "vi", "hidden": 32, "embedding_dim": 16, "max_length": 10, "tokenizer": "word"},
    },
    "model": {"latent_dim": 8, "fusion": "poe", "sampler": {"type": "mvae", "k": 1}, "beta": {"end": 0.5}},
    "train": {"epochs": 3, "lr": 3e-3, "device": "cpu", "progress": False},
    "eval": {"samples": 1},
}


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(["synthetic_plugin"], source="test")


def test_build_expands_split_attributes(plugins, tmp_path):
    setup = build(validate_recipe(RECIPE), plugins, tmp_path)
    assert setup.model.names == ["image", "mask", "label", "attr_red", "attr_right", "caption", "en", "vi"]
    assert setup.train.fields["attr_red"] == setup.train.fields["attr_right"] == "attrs"
    batch = setup.train.__getitems__([0, 1, 2])
    assert batch.data["attr_right"].shape == (3, 1) and batch.data["mask"].shape == (3, 8, 8)
    assert sorted(p.name for p in (tmp_path / "tokenizers").iterdir()) == ["caption.model", "en.model", "vi.model"]


def test_expanded_names_may_not_clash(plugins, tmp_path):
    recipe = json.loads(json.dumps(RECIPE))
    recipe["modalities"]["attr_red"] = {"type": "label", "field": "label", "num_classes": 6}
    with pytest.raises(RecipeError, match="attr_red"):
        build(validate_recipe(recipe), plugins, tmp_path)


def test_six_modalities_train_evaluate_render_and_resume(plugins, tmp_path):
    recipe = validate_recipe(RECIPE)
    lines = []
    trainer = make_trainer(recipe, RECIPE, plugins, tmp_path, "cpu", echo=lines.append)
    summary = trainer.fit()
    assert all(k in summary for k in ("test/elbo", "test/rec/caption", "test/rec/mask", "balanced_accuracy/image->label",
                                      "accuracy/image->mask", "accuracy/en->vi", "balanced_accuracy/image->attr_red", "chance/attr_red"))
    assert (tmp_path / "samples.png").stat().st_size > 0
    first, last = trainer.rows[0]["train/loss"], trainer.rows[-1]["train/loss"]
    assert last < first, trainer.rows
    # a resumed run rebuilds from the same directory: tokenizers load, so the checkpoint fits
    tokenizer = (tmp_path / "tokenizers" / "vi.model").read_bytes()
    resumed = make_trainer(recipe, RECIPE, plugins, tmp_path, "cpu", echo=lines.append, resume=True)  # restored from the checkpoint
    assert resumed.state.epoch == 3 and (tmp_path / "tokenizers" / "vi.model").read_bytes() == tokenizer
