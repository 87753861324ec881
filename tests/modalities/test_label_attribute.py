"""Label and attribute modalities: shapes, likelihoods against torch.distributions, raw values, per-attribute split."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ListRecords, assert_learns, make_modality, poe_model, train_steps

from modkit import ArrayRecords, DataError
from modkit.data.dataset import ModalityView
from modkit_attribute import Attribute
from modkit_label import Label

R, B, D = 3, 4, 8
NAMES = ["odd", "prime", "big"]


def test_label_shapes_likelihood_and_values():
    label = make_modality(Label, num_classes=5, class_names=list("abcde"), hidden=[16], latent_dim=D)
    x = torch.tensor([0, 4, 2, 1])
    assert label.encode(x)[0].shape == (B, D)
    out = label.decode(torch.randn(R, B, D))
    assert out.shape == (R, B, 5)
    expected = torch.distributions.Categorical(logits=out).log_prob(x)
    assert torch.allclose(label.log_likelihood(out, x), expected, atol=1e-5)
    assert label.preprocess("c") == 2 and label.preprocess(3) == 3 and label.render(torch.tensor(1)) == "b"
    with pytest.raises(DataError, match="outside"):
        label.preprocess(7)
    assert label.accuracy(out, x).shape == (R, B)


def test_fractional_labels_are_refused_not_truncated():
    label = make_modality(Label, num_classes=5, hidden=[16], latent_dim=D)
    assert label.preprocess(2.0) == 2
    with pytest.raises(DataError, match="whole number"):
        label.preprocess(2.7)


def test_attribute_vector_shapes_and_bernoulli_likelihood():
    attr = make_modality(Attribute, names=NAMES, hidden=[16], latent_dim=D)
    x = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float32)
    assert attr.encode(x)[0].shape == (B, D)
    out = attr.decode(torch.randn(R, B, D))
    assert out.shape == (R, B, 3)
    expected = torch.distributions.Bernoulli(logits=out).log_prob(x.expand_as(out)).sum(-1)
    assert torch.allclose(attr.log_likelihood(out, x), expected, atol=1e-5)
    acc = attr.accuracy(out, x)
    assert acc.shape == (R, B)
    assert torch.allclose(acc, ((out > 0).float() == x).float().mean(-1))
    assert attr.render(torch.tensor([1.0, 0.0, 1.0])) == "odd, big"


def test_attribute_raw_values():
    attr = make_modality(Attribute, num_attributes=3)
    assert torch.equal(attr.preprocess([1, 0, True]), torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(DataError, match="0 or 1"):
        attr.preprocess([1, -1, 0])
    with pytest.raises(DataError, match="3"):
        attr.preprocess([1, 0])
    with pytest.raises(DataError, match="sequence"):
        attr.preprocess("101")


def test_split_expands_into_one_modality_per_attribute():
    config = Attribute.Config.model_validate({"type": "attribute", "names": NAMES, "split": True, "field": "attrs"})
    parts = Attribute.expand("a", config)
    assert list(parts) == ["a_odd", "a_prime", "a_big"]
    assert [c.index for c in parts.values()] == [0, 1, 2] and all(c.field == "attrs" for c in parts.values())
    one = Attribute("a_prime", parts["a_prime"], D)
    vector = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert torch.equal(one.preprocess([1, 0, 1]), torch.tensor([0.0]))
    out = one.decode(torch.randn(R, 2, D))
    assert out.shape == (R, 2, 1)
    # the full vector (the ArrayRecords fast path) and the pre-sliced column score the same
    assert torch.allclose(one.log_likelihood(out, vector), one.log_likelihood(out, vector[:, 1:2]))
    assert one.render(torch.tensor([1.0])) == "prime: yes"


def _digit_rows(n: int = 60):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        k = int(rng.integers(0, 6))
        rows.append({"label": k, "attrs": [k % 2, int(k in (2, 3, 5)), int(k >= 3)]})
    return rows


@pytest.mark.parametrize("fast", [False, True])
def test_split_attributes_train_with_poe(fast):
    rows = _digit_rows()
    records = (ArrayRecords({"label": np.array([r["label"] for r in rows]), "attrs": np.array([r["attrs"] for r in rows], dtype=np.float32)})
               if fast else ListRecords(rows))
    config = Attribute.Config.model_validate({"type": "attribute", "names": NAMES, "split": True, "field": "attrs", "hidden": [32]})
    modalities = {name: Attribute(name, c, D) for name, c in Attribute.expand("attr", config).items()}
    modalities["label"] = make_modality(Label, "label", num_classes=6, hidden=[32], embedding_dim=8)
    model = poe_model(modalities)
    view = ModalityView(records, dict(model.modalities), {n: "attrs" for n in modalities if n != "label"} | {"label": "label"})
    batch = view.__getitems__(list(range(8)))
    for name in NAMES:
        model.modalities[f"attr_{name}"].check(batch.data[f"attr_{name}"])
    assert_learns(train_steps(model, view, steps=40, lr=3e-3))
