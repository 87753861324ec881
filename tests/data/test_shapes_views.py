"""MVAE's vision-transform views of shapes scenes, each checked against an independent computation."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modkit_shapes import ShapesConfig, generate
from modkit_shapes import views


@pytest.fixture(scope="module")
def scenes():
    records, _ = generate(ShapesConfig(type="shapes", n=48, difficulty="hard", views=list(views.VIEWS)))
    return {k: np.asarray(v) for k, v in records.arrays.items()}


def test_every_view_is_a_field_of_the_right_shape(scenes):
    n = len(scenes["image"])
    assert scenes["image_grayscale"].shape == scenes["image_edges"].shape == (n, 1, 32, 32)
    assert scenes["image_half"].shape == scenes["image_watermark"].shape == (n, 3, 32, 32)
    plain, _ = generate(ShapesConfig(type="shapes", n=4))
    assert not any(f.startswith("image_") for f in plain.fields)


def test_grayscale_is_pillows_luma(scenes):
    for img, gray in zip(scenes["image"][:8], scenes["image_grayscale"][:8]):
        pil = np.asarray(Image.fromarray((img.transpose(1, 2, 0) * 255).round().astype(np.uint8)).convert("L"), dtype=np.float32) / 255
        assert np.abs(pil - gray[0]).max() <= 1.5 / 255


def test_edges_trace_the_shape_borders(scenes):
    mask, e = scenes["mask"], scenes["image_edges"][:, 0]
    border = np.zeros_like(mask, bool)
    border[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    border[:, :, 1:] |= mask[:, :, 1:] != mask[:, :, :-1]
    near = border.copy()
    near[:, :-1] |= border[:, 1:]
    near[:, :, :-1] |= border[:, :, 1:]
    assert set(np.unique(e)) <= {0.0, 1.0}
    assert e[border].mean() > 0.98  # every shape has its outline, even a red one as bright as the texture
    assert e[~near].mean() < 0.03  # the noisy texture of hard scenes barely shows


def test_half_blacks_out_the_bottom_and_keeps_the_top(scenes):
    img, half = scenes["image"], scenes["image_half"]
    assert np.array_equal(half[:, :, :16], img[:, :, :16]) and not half[:, :, 16:].any()


def test_watermark_is_fixed_and_changes_only_the_marked_pixels(scenes):
    mark = views.watermark_pattern(32)
    assert 0.05 < mark.mean() < 0.5
    img, wm = scenes["image"], scenes["image_watermark"]
    assert np.array_equal(wm[..., mark == 0], img[..., mark == 0])
    expected = img[..., mark == 1] * (1 - views.WATERMARK_ALPHA) + views.WATERMARK_ALPHA
    assert np.allclose(wm[..., mark == 1], expected, atol=1e-6)
    again, _ = generate(ShapesConfig(type="shapes", n=48, difficulty="hard", views=["watermark"]))
    assert np.array_equal(np.asarray(again.arrays["image_watermark"]), wm)  # deterministic from the seed


def test_the_transforms_recipe_builds_six_image_modalities_and_trains_a_step():
    from pathlib import Path

    import torch

    from modkit.config.recipe import load_recipe
    from modkit.core.fusion import SubsetPlan
    from modkit.plugins.loader import load_plugins
    from modkit.training.builder import build

    recipe, _ = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "shapes-transforms.yaml",
                            ["data.dataset.n=64", "model.latent_dim=8"])
    setup = build(recipe, load_plugins())
    model = setup.model
    assert model.names == ["image", "image_grayscale", "image_edges", "mask", "image_half", "image_watermark"]
    batch = setup.train.__getitems__(list(range(16)))
    assert batch.data["image_edges"].shape == (16, 1, 32, 32) and batch.present.all()
    plan = SubsetPlan.from_mask(setup.sampler.sample())
    assert plan.n_subsets == 1 + 6 + 1  # MVAE's sub-sampled objective: the joint, each single, k = 1 random subset
    out = model(batch, plan, 1.0)
    out.loss.backward()
    assert torch.isfinite(out.loss)
