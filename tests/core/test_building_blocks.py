"""Public building blocks for plugin authors (what a new fusion or modality would otherwise copy from a built-in): a weighted mixture posterior, features and experts from
one encoder pass, a dataset derived from another with fields added, and ``Modality.load_given``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modkit import (ArrayRecords, Batch, ColumnRecords, DataError, DerivedDataset, Fusion, FusionConfig, GaussianHead, Modality,
                    ModalityConfig, MultimodalVAE, RecipeError, mlp)
from modkit.distributions import DiagGaussian, UniformMixture, WeightedMixture


def test_weighted_mixture_matches_torch_mixture_same_family():
    torch.manual_seed(0)
    mu, logvar = torch.randn(3, 5, 2), torch.randn(3, 5, 2) * 0.3  # (M, B, D)
    logits = torch.randn(3, 5)
    mix = WeightedMixture(DiagGaussian(mu, logvar), logits)
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=logits.T),
        torch.distributions.Independent(torch.distributions.Normal(mu.transpose(0, 1), torch.exp(0.5 * logvar).transpose(0, 1)), 1))
    z = torch.randn(7, 5, 2)
    assert torch.allclose(mix.log_prob(z), reference.log_prob(z), atol=1e-5)
    assert torch.allclose(mix.mean, reference.mean, atol=1e-6)
    assert torch.allclose(mix.weights.sum(0), torch.ones(5))
    assert mix.rsample(4).shape == (4, 5, 2) and mix.rsample().shape == (5, 2)


def test_weighted_mixture_draws_components_in_proportion_and_drops_zero_weights():
    far = torch.tensor([[[-50.0]], [[0.0]], [[50.0]]])  # three well separated 1-d components, one batch entry
    mix = WeightedMixture.from_weights(DiagGaussian(far, torch.zeros_like(far)), torch.tensor([[0.2], [0.0], [0.8]]))
    z = mix.rsample(20000)[:, 0, 0]
    assert abs(float((z > 25).float().mean()) - 0.8) < 0.015 and not bool(((z > -25) & (z < 25)).any())
    assert mix.valid[:, 0].tolist() == [True, False, True]


def test_uniform_mixture_is_the_weighted_mixture_with_equal_weights():
    torch.manual_seed(1)
    mu, logvar = torch.randn(4, 3, 2), torch.randn(4, 3, 2) * 0.2
    valid = torch.tensor([[True, True, False], [True, False, False], [False, True, True], [True, True, True]])
    uniform = UniformMixture(DiagGaussian(mu, logvar), valid)
    weighted = WeightedMixture(DiagGaussian(mu, logvar), torch.where(valid, 0.0, float("-inf")))
    z = torch.randn(6, 3, 2)
    assert isinstance(uniform, WeightedMixture)
    assert torch.allclose(uniform.log_prob(z), weighted.log_prob(z), atol=1e-6)
    assert torch.allclose(uniform.mean, weighted.mean, atol=1e-6)


class Counted(Modality):
    """An MLP modality that counts its encoder passes."""

    def __init__(self, name: str):
        super().__init__(name, ModalityConfig(type="counted"), 2)
        self.net, self.head, self.feature_dim, self.passes = mlp([3, 4], final_activation=True), GaussianHead(4, 2), 4, 0

    def features(self, x):
        self.passes += 1
        return self.net(x)


def test_encode_with_features_runs_each_encoder_once_and_agrees_with_features_and_encode():
    modalities = {"a": Counted("a"), "b": Counted("b")}
    model = MultimodalVAE(modalities, Fusion(modalities, 2, FusionConfig(type="poe")), 2)
    batch = Batch({"a": torch.randn(5, 3), "b": torch.randn(5, 3)}, torch.tensor([[True, False]] * 5))
    features, experts = model.encode_with_features(batch)
    assert [m.passes for m in modalities.values()] == [1, 1]
    plain = model.encode_experts(batch)
    for i, name in enumerate(model.names):
        assert torch.equal(features[name], modalities[name].features(batch.data[name]))
        assert torch.equal(experts.mu[i], plain.mu[i]) and torch.equal(experts.logvar[i], plain.logvar[i])
    assert features["a"].shape == (5, 4) and torch.equal(experts.present, batch.present)


def test_with_fields_adds_to_column_records_lazily_and_to_array_records_in_memory():
    rows = ColumnRecords({"x": ["a", "bb", "ccc"]})
    more = rows.with_fields({"length": lambda row: len(row["x"]), "tag": ["p", None, "r"]})
    assert more.fields == ["x", "length", "tag"] and more.get(1) == {"x": "bb", "length": 2, "tag": None}
    arrays = ArrayRecords({"v": np.arange(4.0)}, objects={"s": ["w", "x", "y", "z"]})
    grown = arrays.with_fields({"double": lambda row: float(row["v"]) * 2, "maybe": [1, None, 3, 4], "s": list("abcd")})
    assert isinstance(grown, ArrayRecords) and set(grown.arrays) == {"v", "double", "maybe"}
    assert grown.arrays["double"].tolist() == [0.0, 2.0, 4.0, 6.0] and grown.get(1)["maybe"] is None
    assert grown.get(2)["s"] == "c" and grown.get(3)["maybe"] == 4
    with pytest.raises(DataError, match=r"\{'short': 2\}.*4 rows"):
        arrays.with_fields({"short": [1, 2]})


class DigitsWithParity(DerivedDataset):
    """digits plus a 'parity' field (0 even, 1 odd) derived from the label."""

    base = "digits"

    def add_fields(self, records, split):
        return {"parity": lambda row: int(row["label"]) % 2}


def test_a_derived_dataset_extends_a_registered_one_with_its_options():
    source = DigitsWithParity(DigitsWithParity.Config(type="digits_parity", base={"language": "fr"}), Path("data"))
    records = source.load()["all"]
    assert isinstance(records, ArrayRecords) and "parity" in records.arrays and len(records) == 1797
    row = records.get(7)
    assert int(row["parity"]) == int(row["label"]) % 2 and row["translation"] in {"zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"}
    with pytest.raises(RecipeError, match="data.dataset.base.langauge"):
        DigitsWithParity(DigitsWithParity.Config(type="digits_parity", base={"langauge": "fr"}), Path("data")).load()


def test_load_given_passes_files_as_paths_and_other_text_as_is(tmp_path):
    modality = Counted("a")
    (tmp_path / "x.npy").write_bytes(b"")
    assert modality.load_given(str(tmp_path / "x.npy")) == str(tmp_path / "x.npy")
    assert modality.load_given("seven") == "seven"
    assert modality.load_given("y" * 300) == "y" * 300 and modality.load_given("a\0b") == "a\0b"
