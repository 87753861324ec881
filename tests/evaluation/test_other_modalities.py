"""Eval, generation and metric plugins on image + mask + caption (the synthetic dataset of tests/modalities):
nothing in evaluation names a modality, so masks (mIoU) and text (BLEU, dict data) work like images and labels."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "modalities"))

RECIPE = {
    "name": "three",
    "plugins": ["synthetic_plugin"],
    "data": {"dataset": {"type": "test_six", "n": 48}, "batch_size": 16, "test_fraction": 0.25},
    "modalities": {
        "image": {"type": "image", "shape": [3, 8, 8], "hidden": [32]},
        "mask": {"type": "mask", "num_classes": 4, "shape": [8, 8], "hidden": 32},
        "caption": {"type": "caption", "hidden": 32, "embedding_dim": 16, "max_length": 10},
    },
    "model": {"latent_dim": 8, "fusion": "poe", "sampler": {"type": "mvae", "k": 1}},
    "train": {"epochs": 2, "lr": 3e-3, "device": "cpu", "progress": False},
    "eval": {"samples": 1},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from modkit.plugins.loader import load_plugins
    from modkit.config.recipe import validate_recipe
    from modkit.runs.loading import load_run
    from modkit.runs.lifecycle import make_trainer

    out = tmp_path_factory.mktemp("three")
    recipe = validate_recipe(copy.deepcopy(RECIPE))
    trainer = make_trainer(recipe, recipe.model_dump(mode="json"), load_plugins(["synthetic_plugin"], source="test"), out, "cpu",
                           echo=lambda s: None)
    trainer.fit()
    return load_run(out, "cpu", plugins=["synthetic_plugin"])  # the test's own plugin module


def test_eval_covers_masks_and_text(run):
    from modkit.evaluation.suite import EvalSettings, evaluate_run

    result = evaluate_run(run, EvalSettings(metrics=["coherence", "relatedness", "task", "reconstruction"], joint_samples=50))
    assert result["attributes"] == ["label", "attrs[0]", "attrs[1]"]  # found in the dataset, not the recipe
    assert result["judges"]["mask/label"]["kind"] == "classifier" and "caption/label" not in result["judges"]  # text: no features
    assert 0.0 <= result["task"]["miou"]["image->mask"] <= 1.0 and "image->caption" not in result["task"]["miou"]
    assert 0.0 <= result["task"]["bleu"]["image+mask->caption"] <= 100.0
    assert set(result["relatedness"]) == {"image~mask", "image~caption", "mask~caption"}
    assert result["reconstruction"]["image->caption"]["nll"] > 0 and "mse" not in result["reconstruction"]["image->caption"]


def test_generate_between_images_masks_and_text(run, tmp_path):
    from PIL import Image

    from modkit.reporting.generation import generate

    record = run.setup.test.records.get(int(run.setup.test.rows[0]))
    Image.fromarray(np.asarray(record["image"]).astype(np.uint8)).save(tmp_path / "image.png")
    path, captions = generate(run, {"image": str(tmp_path / "image.png")}, "caption", n=3, out=tmp_path / "caption")
    assert path.suffix == ".txt" and len(captions) == 3 and all(isinstance(c, str) for c in captions)
    path, masks = generate(run, {"caption": record["caption"]}, "mask", n=2)
    assert path.exists() and np.asarray(masks[0]).shape == (8, 8, 3)
    path, images = generate(run, {"caption": record["caption"]}, "image", n=2)
    assert np.asarray(images[0]).shape == (8, 8, 3)
    path, masks = generate(run, {"caption": record["caption"], "image": str(tmp_path / "image.png")}, "mask", n=2)  # a subset of two
    assert len(masks) == 2 and path.name.startswith("caption-") and path.name.endswith("+image-image_to_mask.png")
