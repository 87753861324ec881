"""JMVAE, MVTCAE, DMVAE, MMVAE+ and CVAE against independent computations: MVTCAE's and JMVAE's objectives written
out with torch.distributions here, and all five against MultiVae 1.0.3's own code (benchmarks/crosscheck_models.py,
when the MultiVae venv benchmarks/run.py creates is present)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from modkit import SubsetPlan, all_subsets
from modkit.testing import toy_batch, toy_model

ROOT = Path(__file__).resolve().parents[2]


def _by_hand(model, batch, seed, joint):
    """Per-sample reconstruction (λ-weighted, present modalities), KL to N(0, I) and Σ_m KL(q(z|X) ‖ q(z|x_m)) with the
    same single draw the fusion makes (the first torch.randn after ``seed``)."""
    experts = model.encode_experts(batch)
    mu, logvar = joint(experts)
    torch.manual_seed(seed)
    z = mu + torch.randn(mu.shape) * torch.exp(0.5 * logvar)
    q = Normal(mu, torch.exp(0.5 * logvar))
    rec = sum(torch.where(batch.present[:, i], model.modalities[n].weight * model.modalities[n].log_likelihood(model.modalities[n].decode(z), batch.data[n]), 0.0)
              for i, n in enumerate(model.names))
    kl = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    tie = sum(torch.where(batch.present[:, i], kl_divergence(q, Normal(experts.mu[i], torch.exp(0.5 * experts.logvar[i]))).sum(-1), 0.0)
              for i in range(len(model.names)))
    return rec, kl, tie


@pytest.mark.parametrize("alpha,beta", [(0.1, 2.5), (0.7, 0.4)])
def test_mvtcae_objective_by_hand(alpha, beta):
    from modkit_mvtcae import MVTCAE

    model, batch = toy_model(MVTCAE, {"type": "mvtcae", "alpha": alpha}), toy_batch()

    def poe(experts):  # product of the present experts, no prior expert: precisions add
        precision = torch.where(batch.present.T.unsqueeze(-1), torch.exp(-experts.logvar), 0.0)
        total = precision.sum(0)
        return (precision * experts.mu).sum(0) / total, -torch.log(total)

    with torch.no_grad():
        rec, kl, tie = _by_hand(model, batch, 3, poe)
        torch.manual_seed(3)
        ours = model(batch, SubsetPlan.from_mask(all_subsets(3)), beta).loss
    n = 3
    expected = -((n - alpha) / n * rec - beta * (alpha / n * tie + (1 - alpha) * kl)).mean()
    assert torch.allclose(ours, expected, rtol=1e-5)


def test_jmvae_objective_by_hand():
    from modkit_jmvae import JMVAE

    model, batch = toy_model(JMVAE, {"type": "jmvae", "alpha": 0.3, "hidden": [8]}), toy_batch()
    feats = [model.modalities[n].features(batch.data[n]) for n in model.names]
    with torch.no_grad():
        rec, kl, tie = _by_hand(model, batch, 5, lambda experts: model.fusion.joint(feats, batch.present))
        torch.manual_seed(5)
        ours = model(batch, SubsetPlan.from_mask(all_subsets(3)), 0.6).loss
    assert torch.allclose(ours, -(rec - 0.6 * (kl + 0.3 * tie)).mean(), rtol=1e-5)


def test_jmvae_posterior_is_joint_for_everything_unimodal_for_one_and_poe_between():
    from modkit_jmvae import JMVAE

    model = toy_model(JMVAE, {"type": "jmvae", "hidden": [8]}).eval()
    batch = toy_batch(torch.ones(6, 3, dtype=torch.bool))
    with torch.no_grad():
        experts = model.encode_experts(batch)
        post = model.posterior(batch, torch.tensor([[True, True, True], [True, False, False], [True, True, False]]))
        feats = [model.modalities[n].features(batch.data[n]) for n in model.names]
        joint_mu, _ = model.fusion.joint(feats, batch.present)
    assert torch.allclose(post.mu[0], joint_mu, atol=1e-6)
    assert torch.allclose(post.mu[1], experts.mu[0], atol=1e-5)
    precision = torch.exp(-experts.logvar[:2])
    assert torch.allclose(post.mu[2], (precision * experts.mu[:2]).sum(0) / precision.sum(0), atol=1e-5)


@pytest.mark.slow  # about 20 s: sixteen cases of three draws, each a forward and backward of both implementations
def test_all_five_match_multivae(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run
        import crosscheck_models
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    if run.peer_python(create=False)[0] is None:
        pytest.skip("no MultiVae venv (benchmarks/run.py creates benchmarks/.venv-multivae)")
    assert crosscheck_models.main(["--out", str(tmp_path)]) == 0, (tmp_path / "crosscheck-models.md").read_text()
