"""Image modality: encoder/decoder shapes for MLP, conv and timm; likelihoods; file/array input; MAE masking."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ListRecords, assert_learns, make_modality, poe_model, train_steps
from PIL import Image as PILImage

from modkit import DataError, RecipeError
from modkit.data.dataset import ModalityView
from modkit_image import Image
from modkit_image.nets import patch_mask
from modkit_label import Label

R, B, D = 3, 2, 8


@pytest.mark.parametrize("architecture,shape", [
    ("mlp", (1, 8, 8)), ("conv", (1, 8, 8)), ("conv", (1, 28, 28)), ("conv", (3, 32, 32)), ("conv", (3, 45, 61)),
    ("conv", (3, 224, 224)),
])
def test_shapes_through_encode_decode_score(architecture, shape):
    image = make_modality(Image, shape=shape, architecture=architecture, hidden=[32], latent_dim=D)
    x = torch.rand(B, *shape)
    mu, logvar = image.encode(x)
    assert mu.shape == logvar.shape == (B, D)
    out = image.decode(torch.randn(R, B, D))
    assert out.shape == (R, B, *shape)
    ll = image.log_likelihood(out, x)
    assert ll.shape == (R, B) and torch.isfinite(ll).all()
    assert image.render(x[0]).shape == (shape[1], shape[2], 3)


def test_conv_channels_follow_the_recipe():
    image = make_modality(Image, shape=(3, 32, 32), architecture="conv", channels=[8, 16], hidden=[16])
    assert [m.out_channels for m in image.encoder.convs if isinstance(m, torch.nn.Conv2d)] == [8, 16]
    assert image.decoder.sizes == [(32, 32), (16, 16), (8, 8)]


@pytest.mark.parametrize("likelihood,scale", [("bernoulli", None), ("gaussian", 0.3), ("laplace", 0.75)])
def test_likelihoods_match_torch_distributions(likelihood, scale):
    options = {"likelihood": likelihood} | ({"scale": scale} if scale else {})
    image = make_modality(Image, shape=(3, 8, 8), architecture="conv", hidden=[16], **options)
    x = torch.rand(B, 3, 8, 8)
    out = image.decode(torch.randn(R, B, D))
    if likelihood == "bernoulli":
        # soft targets: x log σ(o) + (1 − x) log(1 − σ(o)), the continuous extension of the Bernoulli pmf
        p = torch.sigmoid(out.double())
        expected = (x * p.log() + (1 - x) * (1 - p).log()).sum((-3, -2, -1))
        hard = (x > 0.5).float()
        assert torch.allclose(image.log_likelihood(out, hard),
                              torch.distributions.Bernoulli(logits=out).log_prob(hard.expand_as(out)).sum((-3, -2, -1)), atol=1e-4)
    elif likelihood == "gaussian":
        expected = torch.distributions.Normal(out, scale).log_prob(x).sum((-3, -2, -1))
    else:
        expected = torch.distributions.Laplace(out, scale).log_prob(x).sum((-3, -2, -1))
    assert torch.allclose(image.log_likelihood(out, x).double(), expected.double(), atol=1e-3)


def test_raw_values_uint8_png_and_bad_files(tmp_path):
    image = make_modality(Image, shape=(3, 4, 6))
    hwc = np.random.default_rng(0).integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    x = image.preprocess(hwc)
    assert x.shape == (3, 4, 6) and torch.allclose(x, torch.from_numpy(hwc.transpose(2, 0, 1) / 255.0).float())
    path = tmp_path / "a.png"
    PILImage.fromarray(hwc).save(path)
    assert torch.allclose(image.preprocess(str(path)), x)
    PILImage.fromarray(hwc).resize((12, 8)).save(tmp_path / "big.png")
    assert image.preprocess(tmp_path / "big.png").shape == (3, 4, 6)  # resized to the recipe's shape
    grey = make_modality(Image, shape=(1, 4, 6))
    assert torch.allclose(grey.preprocess(hwc[..., 0]), torch.from_numpy(hwc[None, ..., 0] / 255.0).float())
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="cannot read image"):
        image.preprocess(tmp_path / "corrupt.png")
    with pytest.raises(DataError, match="not found"):
        image.preprocess(tmp_path / "missing.png")
    with pytest.raises(DataError, match="shape"):
        image.preprocess(np.zeros((3, 5, 5), dtype=np.float32))


def test_patch_mask_drops_exactly_the_ratio_of_whole_patches():
    keep = patch_mask(64, 8, 8, patch=2, ratio=0.75, device=torch.device("cpu"))
    patches = keep.view(64, 4, 2, 4, 2).permute(0, 1, 3, 2, 4).reshape(64, 16, 4)
    assert ((patches == 0) | (patches == 1)).all() and (patches.min(-1).values == patches.max(-1).values).all()
    assert (patches[..., 0].sum(1) == 4).all()  # 16 patches, round(0.75·16) = 12 dropped in every image
    # every patch is dropped with probability 0.75 (Monte Carlo over 64 images · 16 patches, 4σ ≈ 0.05)
    assert abs(1 - patches[..., 0].mean().item() - 0.75) < 0.06


def test_mae_masking_only_in_training():
    image = make_modality(Image, shape=(1, 8, 8), architecture="conv", hidden=[16], mask_ratio=0.5, patch_size=4)
    x = torch.rand(4, 1, 8, 8) + 0.1
    image.eval()
    assert torch.equal(image.features(x), image.encoder(x))
    image.train()
    masked = image.mask_patches(x)
    zero_patches = (masked.view(4, 2, 4, 2, 4).abs().sum((2, 4)) == 0).sum((1, 2))
    assert (zero_patches == 2).all()  # half of the 4 patches of each image
    assert not torch.equal(image.features(x), image.encoder(x))


def _timm_image(tmp_path, frozen: bool, weights=None):
    return make_modality(Image, shape=(3, 32, 32), architecture="conv", hidden=[16],
                         backbone={"name": "test_resnet", "frozen": frozen, **({"weights": str(weights)} if weights else {})})


def test_timm_backbone_frozen_has_no_gradients(tmp_path):
    image = _timm_image(tmp_path, frozen=True)
    image.train()
    assert not image.encoder.model.training  # batch-norm statistics stay fixed
    x = torch.rand(2, 3, 32, 32)
    mu, logvar = image.encode(x)
    assert mu.shape == (2, D) and image.feature_dim == image.encoder.model.num_features
    (mu.sum() + image.log_likelihood(image.decode(mu), x).sum()).backward()
    assert all(p.grad is None and not p.requires_grad for p in image.encoder.parameters())
    assert image.head.linear.weight.grad is not None


def test_timm_backbone_fine_tuned_gets_gradients(tmp_path):
    image = _timm_image(tmp_path, frozen=False)
    image.train()
    assert image.encoder.model.training
    image.encode(torch.rand(2, 3, 32, 32))[0].sum().backward()
    grads = [p.grad for p in image.encoder.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_timm_weights_load_from_a_local_file_or_folder(tmp_path):
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("test_resnet", pretrained=False, num_classes=5)  # with a classifier, as checkpoints are
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    (tmp_path / "folder").mkdir()
    save_file(source.state_dict(), str(tmp_path / "folder" / "model.safetensors"))
    for weights in (tmp_path / "weights.pth", tmp_path / "folder"):
        image = _timm_image(tmp_path, frozen=True, weights=weights)
        own = image.encoder.model.state_dict()
        assert all(torch.equal(own[k], v) for k, v in source.state_dict().items() if k in own)
    with pytest.raises(RecipeError, match="backbone.weights"):
        _timm_image(tmp_path, frozen=True, weights=tmp_path / "nothing.pth")


def test_image_and_label_train_with_poe():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):
        k = i % 3
        img = (rng.random((8, 8, 3)) * 60).astype(np.uint8)
        img[:, k * 2 : k * 2 + 3] = 255
        rows.append({"image": img, "label": k})
    records = ListRecords(rows)
    image = make_modality(Image, "image", shape=(3, 8, 8), architecture="conv", hidden=[32], mask_ratio=0.25, patch_size=2)
    label = make_modality(Label, "label", num_classes=3, hidden=[32], embedding_dim=8)
    model = poe_model({"image": image, "label": label})
    view = ModalityView(records, dict(model.modalities), {"image": "image", "label": "label"})
    assert_learns(train_steps(model, view, steps=30, lr=3e-3))


def test_backbone_that_cannot_take_the_shape_fails_the_data_check():
    image = make_modality(Image, shape=(3, 8, 8), architecture="conv", hidden=[16], backbone={"name": "test_vit"})
    with pytest.raises(ValueError, match="backbone 'test_vit' cannot take images of shape"):
        image.check(torch.rand(2, 3, 8, 8))


def test_files_need_grey_or_rgb_shapes():
    with pytest.raises(DataError, match="grey or RGB"):
        make_modality(Image, shape=(2, 4, 4)).preprocess(np.zeros((4, 4), dtype=np.uint8))


def test_float_arrays_are_arranged_not_scrambled():
    """(H, W, C) floats are permuted to (C, H, W); flat and (H, W) arrays reshape; any other shape with the
    right number of values is refused rather than reshaped (which would scramble the pixels)."""
    rgb = make_modality(Image, shape=(3, 4, 5), hidden=[8])
    chw = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    assert np.array_equal(rgb.preprocess(chw).numpy(), chw)
    assert np.array_equal(rgb.preprocess(chw.transpose(1, 2, 0)).numpy(), chw)
    assert np.array_equal(rgb.preprocess(chw.reshape(-1)).numpy(), chw)
    with pytest.raises(DataError, match="shape"):
        rgb.preprocess(chw.reshape(5, 4, 3))
    grey = make_modality(Image, shape=(1, 4, 5), hidden=[8])
    assert tuple(grey.preprocess(np.ones((4, 5), dtype=np.float32)).shape) == (1, 4, 5)


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.25])
def test_mask_ratio_that_masks_all_or_nothing_is_refused(ratio):
    # patch_size 16 on an 8x8 image is one patch: 0.75 would mask 100 % of the pixels, 0.5 and 0.25 none
    from modkit_image import ImageConfig
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"tiles the 8x8 image into 1 patch\(es\).*patch_size \d+ or smaller masks a part"):
        ImageConfig(type="image", shape=(1, 8, 8), mask_ratio=ratio)
    ImageConfig(type="image", shape=(1, 8, 8), mask_ratio=ratio, patch_size=2)  # 16 patches: a part is masked
    ImageConfig(type="image", shape=(1, 8, 8), patch_size=16)  # no masking asked: any patch size is fine


@pytest.mark.slow
def test_mask_ratio_error_names_the_key_in_a_recipe(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "modkit", "train", "recipes/digits.yaml", "--set", "modalities.image.mask_ratio=0.75",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "modalities.image" in out.stderr and "masks a part" in out.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_grey_image_reads_its_own_rgb_render():
    """render() repeats a one-channel image over three channels; preprocess reads that back as the image, and an
    RGB array through the luma PIL uses for files (compared with PIL's own conversion of the same pixels)."""
    image = make_modality(Image, shape=(1, 8, 8), hidden=[16])
    x = torch.rand(1, 8, 8)
    render = image.render(x)
    assert render.shape == (8, 8, 3)
    torch.testing.assert_close(image.preprocess(render), x, atol=1e-6, rtol=0)
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    expected = np.asarray(PILImage.fromarray(rgb).convert("L"), dtype=np.float32) / 255
    got = image.preprocess(rgb.astype(np.float32) / 255)[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1 / 255 + 1e-6)  # PIL rounds to whole grey levels
    with pytest.raises(DataError, match=r"\(H, W, 3\) for one channel"):
        image.preprocess(np.zeros((8, 8, 2), np.float32))
