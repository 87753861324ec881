"""The contract-test kit catches what it promises to: each check fails on a plugin that breaks its rule."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from modkit import DiagGaussian, Fusion, LossOutput, product_of_experts
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
