"""Segmentation masks: shapes, per-pixel categorical with ignored pixels, mIoU by hand, PNG input, renders, training."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ListRecords, assert_learns, make_modality, poe_model, train_steps
from PIL import Image as PILImage

from modkit import DataError
from modkit.data.dataset import ModalityView
from modkit_image import Image
from modkit_mask import Mask, confusion_matrix, mean_iou
from modkit_mask.metrics import voc_palette

R, B, D, C = 3, 2, 8, 4


def mask(**options):
    return make_modality(Mask, latent_dim=D, **({"num_classes": C, "shape": (12, 10), "hidden": 32} | options))


def random_masks(n=B, ignore=True, seed=0):
    x = torch.randint(0, C, (n, 12, 10), generator=torch.Generator().manual_seed(seed))
    if ignore:
        x[:, 0, :] = 255
    return x


def test_shapes_and_likelihood_against_torch_categorical():
    m = mask()
    x = random_masks()
    assert m.encode(x)[0].shape == (B, D)
    out = m.decode(torch.randn(R, B, D))
    assert out.shape == (R, B, C, 12, 10)
    ll = m.log_likelihood(out, x)
    assert ll.shape == (R, B)
    valid = x != 255
    per_pixel = torch.distributions.Categorical(logits=out.movedim(2, -1)).log_prob(torch.where(valid, x, 0))
    assert torch.allclose(ll, (per_pixel * valid).sum((-2, -1)), atol=1e-3)


def test_ignored_pixels_are_neither_scored_nor_encoded():
    m = mask()
    x = random_masks()
    out = m.decode(torch.randn(R, B, D))
    changed_out = out.clone()
    changed_out[..., 0, :] = torch.randn_like(changed_out[..., 0, :]) * 10  # logits of the ignored top row
    assert torch.allclose(m.log_likelihood(out, x), m.log_likelihood(changed_out, x))
    assert torch.equal(m.one_hot(x)[:, :, 0], torch.zeros(B, C, 10))
    acc = m.accuracy(out, x)
    expected = ((out.argmax(2) == x) & (x != 255)).sum((-2, -1)) / (x != 255).sum((-2, -1))
    assert torch.allclose(acc, expected.float())


def test_miou_against_a_hand_computation():
    target = torch.tensor([[0, 0, 1, 1],
                           [0, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1],
                         [0, 2, 0, 3]])
    # class 0: TP 2 (two zeros kept), FP 1 (pred 0 at a true 2), FN 1 (true 0 predicted 1) → 2/4
    # class 1: TP 2, FP 1, FN 0 → 2/3;  class 2: TP 1, FP 0, FN 1 → 1/2
    # class 3: only predicted on the ignored pixel → no union → left out
    expected = (2 / 4 + 2 / 3 + 1 / 2) / 3
    assert mean_iou(pred, target, num_classes=4) == pytest.approx(expected)
    cm = confusion_matrix(pred, target, 4)
    assert cm.sum() == 7 and cm[0, 0] == 2 and cm[2, 0] == 1


def test_raw_values_png_and_bad_data(tmp_path):
    m = mask()
    ids = np.random.default_rng(0).integers(0, C, size=(12, 10)).astype(np.uint8)
    ids[0, 0] = 255
    png = PILImage.fromarray(ids, mode="P")
    png.putpalette([v for rgb in voc_palette(256) for v in rgb])
    png.save(tmp_path / "m.png")
    assert torch.equal(m.preprocess(str(tmp_path / "m.png")), torch.from_numpy(ids.astype(np.int64)))
    assert torch.equal(m.preprocess(ids), torch.from_numpy(ids.astype(np.int64)))
    big = np.kron(ids, np.ones((2, 2), dtype=np.uint8))  # 24×20: nearest-neighbour resize gives the ids back
    assert torch.equal(m.preprocess(big), torch.from_numpy(ids.astype(np.int64)))
    ids[3, 3] = 7
    with pytest.raises(DataError, match="mask class 7 is out of range"):
        m.preprocess(ids)
    PILImage.new("RGB", (10, 12)).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match="mode RGB"):
        m.preprocess(tmp_path / "rgb.png")
    (tmp_path / "bad.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="cannot read mask"):
        m.preprocess(tmp_path / "bad.png")
    with pytest.raises(DataError, match="integer"):
        m.preprocess(np.full((12, 10), 0.5))


def test_render_colours_each_class():
    m = mask(palette=[(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)])
    x = torch.tensor([[0, 1], [2, 255]])
    picture = m.render(x)
    assert picture.shape == (2, 2, 3)
    assert np.allclose(picture[0, 1], [1, 0, 0]) and np.allclose(picture[1, 0], [0, 1, 0]) and np.allclose(picture[1, 1], [1, 1, 1])
    assert voc_palette(3) == [(0, 0, 0), (128, 0, 0), (0, 128, 0)]


def test_image_and_mask_train_with_poe():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(32):
        k = 1 + i % 3
        seg = np.zeros((12, 10), dtype=np.int64)
        r, c = rng.integers(0, 6), rng.integers(0, 5)
        seg[r : r + 6, c : c + 5] = k
        img = np.stack([seg == j for j in (1, 2, 3)]).astype(np.float32)
        rows.append({"image": img, "mask": seg})
    records = ListRecords(rows)
    model = poe_model({"image": make_modality(Image, "image", latent_dim=D, shape=(3, 12, 10), architecture="conv", hidden=[32]),
                       "mask": mask()})
    view = ModalityView(records, dict(model.modalities), {"image": "image", "mask": "mask"})
    assert_learns(train_steps(model, view, steps=30, lr=3e-3))
