"""LCMVAE's image path: a ViT's patch-token grid, MAE-style dropped tokens re-inserted as zeros, and the
pre-concatenation convolution over the grid before latent mixing."""
from __future__ import annotations

import pytest
import torch

from modkit_image import Image, ImageConfig

VIT = {"name": "vit_tiny_patch16_224", "patch_size": 8, "frozen": False, "normalize": False, "tokens": True}


def make_image(mask_ratio: float = 0.0) -> Image:
    torch.manual_seed(0)
    config = ImageConfig(type="image", shape=(3, 32, 32), backbone=VIT, mask_ratio=mask_ratio, hidden=[32])
    return Image("image", config, latent_dim=4)


def test_token_grid_is_the_vits_last_layer_in_grid_order():
    image = make_image().eval()
    vit = image.encoder.model
    assert image.feature_shape == (192, 4, 4) and image.feature_dim == 192 * 16
    x = torch.rand(2, 3, 32, 32)
    grid = image.features(x).view(2, 192, 4, 4)
    reference = vit.forward_features(x)[:, vit.num_prefix_tokens:]  # timm's own forward: (B, 16, 192)
    assert torch.allclose(grid.flatten(2).transpose(1, 2), reference, atol=1e-5)
    mu, logvar = image.encode(x)  # the modality's own expert reads the mean token
    assert mu.shape == logvar.shape == (2, 4)


def test_masked_tokens_are_dropped_before_the_transformer_and_zero_in_place():
    image = make_image(mask_ratio=0.75).train()
    x = torch.rand(3, 3, 32, 32)
    grid = image.features(x).view(3, 192, 16)
    zero = (grid.abs().sum(1) == 0)  # (B, 16) positions re-inserted as zeros
    assert (zero.sum(1) == 12).all()  # round(0.75 · 16) dropped in every image
    # the visible tokens are what the transformer gives when it sees only them (MAE), not the full sequence
    vit = image.encoder.model
    b = 0
    keep = (~zero[b]).nonzero().flatten()
    tokens = vit._pos_embed(vit.patch_embed(x[b:b + 1]))
    P = vit.num_prefix_tokens
    alone = vit.norm(vit.blocks(vit.norm_pre(torch.cat([tokens[:, :P], tokens[:, P:][:, keep]], 1))))[0, P:]
    assert torch.allclose(grid[b][:, keep].T, alone, atol=1e-5)
    full = vit.forward_features(x[b:b + 1])[0, P:][keep]
    assert not torch.allclose(alone, full, atol=1e-3)
    image.eval()
    assert (image.features(x).view(3, 192, 16).abs().sum(1) > 0).all()  # no masking at test time


def test_a_non_vit_backbone_cannot_give_tokens():
    from modkit import RecipeError

    with pytest.raises(RecipeError, match="not a vision transformer"):
        Image("image", ImageConfig(type="image", shape=(3, 32, 32), backbone={"name": "resnet18", "tokens": True}), 4)


def test_pre_concat_convolves_the_grid_and_trains(tiny_grid_setup=None):
    from modkit import Batch
    from modkit_label import Label, LabelConfig
    from modkit_latent_mix import LatentMix, LatentMixConfig

    image = make_image(mask_ratio=0.5)
    label = Label("label", LabelConfig(type="label", num_classes=3, hidden=[8]), latent_dim=4)
    mods = {"image": image, "label": label}
    fusion = LatentMix(mods, 4, LatentMixConfig(type="latent_mix", hidden=[16], pre_concat={"channels": 6, "kernel": 3},
                                                aux_target="label", aux_weight=1.0))
    conv = fusion.pre_concat["image"][1]
    assert conv.in_channels == 192 and conv.out_channels == 6
    assert fusion.mixer[0].in_features == 6 * 16 + label.feature_dim + 2  # conv grid + label features + presence bits
    from modkit import MultimodalVAE

    model = MultimodalVAE(mods, fusion, 4)
    batch = Batch({"image": torch.rand(5, 3, 32, 32), "label": torch.tensor([0, 1, 2, 1, 0])}, torch.ones(5, 2, dtype=torch.bool))
    out = model(batch, None, 1.0)
    out.loss.backward()
    assert torch.isfinite(out.loss) and conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert "aux" in out.terms  # the auxiliary latent reconstruction of the caption's (here the label's) features
