"""The contract-test kit catches what it promises to: each check fails on a plugin that breaks its rule."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from modkit import Fusion, LossOutput, SubsetSampler
from modkit.distributions import DiagGaussian, product_of_experts
from modkit.testing import (FusionCase, ModalityCase, VectorModality, check_fusion, check_modality, fusion_absent_scores_zero,
                            fusion_finite_loss, fusion_posterior_nothing_present, modality_shapes,
                            modality_state_dict_round_trip)


class SummedOverBatch(VectorModality):
    """Wrong: sums the log-likelihood over the batch, (*lead,) instead of (*lead, B)."""

    def log_likelihood(self, out, x):
        return super().log_likelihood(out, x).sum(-1)


class Unseeded(VectorModality):
    """Wrong: keeps state outside its state_dict (a random projection drawn at build time, not a buffer)."""

    def __init__(self, name, config, latent_dim):
        super().__init__(name, config, latent_dim)
        self.projection = torch.randn(config.dim, config.dim)

    def features(self, x):
        return super().features(x @ self.projection)


def vector_case(cls) -> ModalityCase:
    return ModalityCase("vec", cls, *VectorModality.example())


def test_a_good_modality_and_fusion_pass_every_check():
    check_modality(vector_case(VectorModality))
    from modkit_poe import ProductOfExperts

    check_fusion(FusionCase("poe", ProductOfExperts))


def test_a_log_likelihood_of_the_wrong_shape_fails_the_shape_check():
    with pytest.raises(AssertionError, match=r"log_likelihood gave \(3,\); expected \(3, 6\)"):
        modality_shapes(vector_case(SummedOverBatch))


def test_state_outside_the_state_dict_fails_the_round_trip():
    with pytest.raises(AssertionError, match="encode differs after a state_dict round trip"):
        modality_state_dict_round_trip(vector_case(Unseeded))


class IgnoresPresence(Fusion):
    """Wrong: a product of experts over the subset mask alone, so absent modalities' encodings leak in."""

    def posterior(self, experts, subsets):
        everyone = experts._replace(present=torch.ones_like(experts.present))
        return DiagGaussian(*product_of_experts(everyone, subsets, prior=True))

    def loss(self, model, batch, plan, beta):
        post = self.posterior(model.encode(batch), plan.mask)
        z = post.rsample()
        rec, _ = model.present_reconstruction(model.log_likelihoods(z, batch), batch.present)
        loss = -(rec.sum() - beta * post.kl_to_standard_normal().sum()) / len(batch)
        return LossOutput(loss, {"loss": loss.detach()})


class NaNLoss(IgnoresPresence):
    def loss(self, model, batch, plan, beta):
        out = super().loss(model, batch, plan, beta)
        return LossOutput(out.loss * float("nan"), out.terms)


class NoFallback(IgnoresPresence):
    """Wrong: a product without the prior expert has no precision when nothing is present."""

    def posterior(self, experts, subsets):
        return DiagGaussian(*product_of_experts(experts, subsets, prior=False))


def test_a_fusion_that_ignores_presence_fails_the_absent_check():
    with pytest.raises(AssertionError, match="when absent data changed"):
        fusion_absent_scores_zero(FusionCase("leaky", IgnoresPresence))


def test_a_nan_loss_fails_the_finite_loss_check():
    with pytest.raises(AssertionError, match="loss is nan"):
        fusion_finite_loss(FusionCase("nan", NaNLoss))


def test_a_posterior_without_a_fallback_fails_the_nothing_present_check():
    with pytest.raises(AssertionError, match="posterior given nothing is not finite"):
        fusion_posterior_nothing_present(FusionCase("bare", NoFallback))


@pytest.mark.slow
def test_import_modkit_does_not_import_pytest_or_the_kit():
    code = "import sys, modkit; print('pytest' in sys.modules, 'modkit.testing' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_a_metric_that_computes_nan_or_applies_to_nothing_fails():
    from modkit import Mean
    from modkit.testing import MetricCase, metric_states

    with pytest.raises(AssertionError, match="compute\\(\\) gave nan for a"):
        metric_states(MetricCase("nan", lambda modality: Mean(lambda p, t: torch.full((len(t),), float("nan")))))
    with pytest.raises(AssertionError, match="applies to none"):
        metric_states(MetricCase("never", lambda modality: None))
    metric_states(MetricCase("mae", lambda modality: Mean(lambda p, t: (p.float() - t.float()).abs().reshape(len(t), -1).mean(1))))


# -- metrics, samplers and typed registration -------------------------------------------------------
def _metric_class(**overrides):
    from modkit import BaseMetric

    attrs = {"name": "ok", "group": "ok", "keys": ("ok",), "description": "a count of test items", "needs": frozenset(),
             "compute": lambda self: {"ok": 1}}
    attrs.update(overrides)
    return type("Counted", (BaseMetric,), attrs)


def test_a_metric_class_passes_or_fails_the_protocol_check():
    from modkit.testing import MetricCase, metric_protocol

    metric_protocol(MetricCase("ok", _metric_class()))
    with pytest.raises(AssertionError, match=r"compute\(\) wrote \['other'\], declared keys \('ok',\)"):
        metric_protocol(MetricCase("stray", _metric_class(compute=lambda self: {"other": 1})))
    with pytest.raises(AssertionError, match="declares needs"):
        metric_protocol(MetricCase("needs", _metric_class(needs=frozenset({"gpu"}))))
    with pytest.raises(AssertionError, match="summary gave"):
        metric_protocol(MetricCase("nan", _metric_class(summary=lambda self, result, names: {"ok": float("nan")})))


class EmptyRow(SubsetSampler):
    """Wrong: asks for the empty subset, whose ELBO has nothing to reconstruct."""

    def sample(self):
        return torch.zeros(1, self.n, dtype=torch.bool)


class Unresumable(SubsetSampler):
    """Wrong: draws from the global random stream, so its state_dict does not resume it."""

    fixed = False

    def sample(self):
        return torch.rand(2, self.n) < 0.5 if self.n > 1 else torch.ones(1, 1, dtype=torch.bool)


def test_samplers_that_break_their_rules_fail():
    from modkit.core.subsets import MVAESampler
    from modkit.testing import SamplerCase, sampler_masks, sampler_state_round_trip

    sampler_masks(SamplerCase("mvae", MVAESampler, {"k": 2}))
    sampler_state_round_trip(SamplerCase("mvae", MVAESampler, {"k": 2}))
    with pytest.raises(AssertionError, match="has an empty subset"):
        sampler_masks(SamplerCase("empty", EmptyRow))
    with pytest.raises(AssertionError, match="after load_state_dict differs"):
        sampler_state_round_trip(SamplerCase("global", Unresumable))


def test_a_bad_registration_is_a_plugin_error_naming_the_plugin_and_the_fault():
    from modkit import DatasetSource, Modality, PluginError, Registry

    stage = Registry().staged("acme", "acme-pkg")
    with pytest.raises(PluginError, match="plugin 'acme' registers modality 'x' as a function, not a class"):
        stage.add_modality("x", lambda: None)
    with pytest.raises(PluginError, match="registers fusion 'x': class Modality is not a subclass of modkit.Fusion"):
        stage.add_fusion("x", Modality)
    with pytest.raises(PluginError, match="registers sampler 'x': class VectorModality is not a subclass of modkit.SubsetSampler"):
        stage.add_sampler("x", VectorModality)
    with pytest.raises(PluginError, match="registers dataset 'x': class str has no load"):
        stage.add_dataset("x", str)

    class Loose(Modality):
        Config = dict

    with pytest.raises(PluginError, match="Loose.Config is <class 'dict'>, not a subclass of modkit.ModalityConfig"):
        stage.add_modality("x", Loose)
    with pytest.raises(PluginError, match="registers metric 'x' as a int: neither a Metric class nor a function"):
        stage.add_metric("x", 3)
    with pytest.raises(PluginError, match="registers metric 'x': class Counted lacks keys"):
        stage.add_metric("x", type("Counted", (), {"name": "x", "group": "x", "description": "d", "needs": frozenset(),
                                                   **{m: lambda self: None for m in ("start", "update", "compute", "summary", "report")}}))
    with pytest.raises(PluginError, match="class Counted declares name 'ok'"):
        stage.add_metric("x", _metric_class())
    # what is right goes in: a Metric class under its own name, a task-metric function, the base classes' subclasses
    stage.add_metric("ok", _metric_class())
    stage.add_metric("mae", lambda modality: None)
    stage.add_modality("vec", VectorModality)
    stage.add_dataset("base", DatasetSource)
    assert stage.names("metric") == ["mae", "ok"]


def test_capabilities_are_read_by_isinstance():
    from modkit import Classifiable, Judgeable, Renderable, TaskHeaded, VectorEntry
    from modkit.core.capabilities import class_names_of, entry_index_of
    from modkit.testing import modality_cases

    label, attribute, image = (case.build() for case in modality_cases(names=["label", "attribute", "image"]))
    assert isinstance(label, Classifiable) and class_names_of(label) == ["red", "green", "blue"]
    assert not isinstance(image, Classifiable) and class_names_of(image) is None
    assert isinstance(attribute, VectorEntry) and entry_index_of(attribute) is None and entry_index_of(label) is None
    assert all(isinstance(m, (Judgeable)) and isinstance(m, Renderable) and isinstance(m, TaskHeaded) for m in (label, image))
    assert not isinstance(object(), Judgeable)
