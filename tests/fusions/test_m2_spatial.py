"""Fully convolutional M2 (model.fusion.spatial): y is a K×H×W map that stays spatial in every network."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modkit import RecipeError
from modkit.config.recipe import load_recipe
from modkit.core.fusion import SubsetPlan
from modkit.core.subsets import full
from modkit.plugins.loader import load_plugins
from modkit.training.builder import build

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "shapes-m2-seg.yaml"


def make(*overrides: str):
    torch.manual_seed(0)
    recipe, _ = load_recipe(RECIPE, ["data.dataset.n=64", *overrides])
    return build(recipe, load_plugins())


@pytest.fixture(scope="module")
def setup():
    return make()


def test_no_dense_layer_sees_the_map(setup):
    fusion = setup.model.fusion
    kinds = {type(m).__name__ for m in fusion.classifier.modules()} - {"PixelClassifier", "Sequential"}
    assert kinds <= {"Conv2d", "SiLU"}
    small = make("data.dataset.image_size=16", "modalities.image.shape=[3,16,16]", "modalities.mask.shape=[16,16]").model.fusion
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(small.classifier) == count(fusion.classifier)  # its size does not grow with the pixels
    assert fusion.y_shape == (5, 32, 32) and fusion.zc_dim == 32 and setup.model.latent_dim == 32 + 5 * 32 * 32
    assert small.y_shape == (5, 16, 16) and small.zc_dim == 32 and small.latent_dim == 32 + 5 * 16 * 16  # z_dim sizes the latent


def test_z_dim_builds_the_model_that_latent_dim_spelled_out(setup):
    """``model.fusion.z_dim: 32`` is the recipe's former ``model.latent_dim: 5152``: the same networks, the same sizes."""
    spelled = make("model.fusion.z_dim=null", "model.latent_dim=5152").model
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(spelled) == shapes(setup.model) and spelled.latent_dim == setup.model.latent_dim == 5152
    label = build(load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "digits-m2.yaml",
                              ["model.fusion.z_dim=6"])[0], load_plugins()).model
    assert label.latent_dim == 6 + 10 and label.fusion.zc_dim == 6  # a label's y: its 10 classes
    assert label.modalities["image"].decode(torch.zeros(1, 16)).shape[0] == 1  # the modalities are built at that width


def test_classifier_is_translation_equivariant(setup):
    classifier = setup.model.fusion.classifier.eval()
    x = torch.rand(2, 3, 32, 32)
    shifted = torch.roll(x, shifts=(4, 4), dims=(2, 3))
    with torch.no_grad():
        a = torch.roll(classifier(x), shifts=(4, 4), dims=(2, 3))
        b = classifier(shifted)
    reach = 2 * sum(2 ** i for i in range(len(setup.recipe.model.fusion.channels))) + 4  # receptive field + the shift
    inner = (slice(None), slice(None), slice(reach, 32 - reach), slice(reach, 32 - reach))
    assert torch.allclose(a[inner], b[inner], atol=1e-5)


def test_decoder_reads_the_map_locally(setup):
    image = setup.model.modalities["image"].eval()
    fusion = setup.model.fusion
    z = torch.zeros(1, setup.model.latent_dim)
    y = torch.zeros(5, 32, 32)
    y[0] = 1  # all background
    z[0, fusion.zc_dim:] = y.flatten()
    z2 = z.clone()
    y2 = y.clone()
    y2[:, 16, 16] = torch.tensor([0.0, 1, 0, 0, 0])  # one pixel becomes a circle
    z2[0, fusion.zc_dim:] = y2.flatten()
    with torch.no_grad():
        diff = (image.decode(z2) - image.decode(z)).abs().sum(1)[0]  # (32, 32)
    changed = diff > 1e-6
    assert changed[16, 16] and changed.any()
    rows, cols = changed.nonzero().T
    assert rows.min() >= 14 and rows.max() <= 18 and cols.min() >= 14 and cols.max() <= 18  # two 3×3 convolutions


def test_posteriors_carry_the_map(setup):
    model = setup.model.eval()
    batch = setup.test.__getitems__(list(range(4)))
    fusion = model.fusion
    with torch.no_grad():
        from_image = model.posterior(batch, ["image"]).mean[0, :, fusion.zc_dim:].view(4, 5, 32, 32)
        from_mask = model.posterior(batch, ["mask"]).mean[0, :, fusion.zc_dim:].view(4, 5, 32, 32)
        probs = torch.softmax(fusion.classifier(batch.data["image"].float()), 1)
    assert torch.allclose(from_image, probs, atol=1e-5)
    assert torch.equal(from_mask.argmax(1), batch.data["mask"]) and torch.allclose(from_mask.sum(1), torch.ones(4, 32, 32))
    assert torch.equal(model.modalities["mask"].decode(model.posterior(batch, ["mask"]).mean[0]).argmax(1), batch.data["mask"])


def test_semi_supervised_step_trains_every_network(setup):
    model = setup.model.train()
    batch = setup.train.__getitems__(list(range(len(setup.train))))
    assert batch.present[:, 1].any() and not batch.present[:, 1].all()  # some masks, not all (paired_fraction 0.05)
    out = model(batch, SubsetPlan.from_mask(full(2)), 1.0)
    out.loss.backward()
    fusion = model.fusion
    assert torch.isfinite(out.loss)
    for net in (fusion.classifier, fusion.z_map, model.modalities["image"].task_head):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_spatial_needs_a_per_pixel_target_and_one_image():
    with pytest.raises(RecipeError, match="per-pixel target"):
        load = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "digits-m2.yaml",
                           ["model.fusion.spatial=true"])[0]
        build(load, load_plugins())
    with pytest.raises(RecipeError, match="must exceed the 5120 dims.*model.fusion.z_dim"):
        make("model.fusion.z_dim=null", "model.latent_dim=64")
