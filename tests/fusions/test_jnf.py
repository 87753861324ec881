"""JNF and JNF-DCCA against independent computations: each stage's objective written out with torch.distributions
and zuko's own normalizing-flow distribution, the posterior of each kind of subset, MultiVae's MADE step, the DCCA
correlation against a whitening by Cholesky factors and an SVD, and which parameters each stage trains."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import zuko
from torch.distributions import Independent, Normal, kl_divergence

from modkit import RecipeError, SubsetPlan, all_subsets
from modkit.testing import toy_batch, toy_model
from modkit_jnf import JNF, made_affine
from modkit_jnf_dcca import JNFDCCA, cca_loss, dcca_loss

OPTIONS = {"type": "jnf", "hidden": [8], "unimodal_hidden": [8], "hidden_size": 8, "n_hidden_in_made": 2}
ALL = torch.ones(6, 3, dtype=torch.bool)


def loss(model, batch, stage, seed=3, beta=0.7):
    model.stage = stage
    torch.manual_seed(seed)
    return model(batch, SubsetPlan.from_mask(all_subsets(3)), beta)


def by_hand(model, batch, seed, beta):
    """(joint-stage loss, unimodal-stage loss) from torch.distributions and zuko's NormalizingFlow, one shared draw."""
    feats = [model.modalities[n].features(batch.data[n]) for n in model.names]
    mu, logvar = model.fusion.joint(feats, batch.present)
    q = Normal(mu, torch.exp(0.5 * logvar))
    torch.manual_seed(seed)
    z = mu + torch.randn(mu.shape) * q.scale
    rec = sum(torch.where(batch.present[:, i], model.modalities[n].weight * model.modalities[n].log_likelihood(model.modalities[n].decode(z), batch.data[n]), 0.0)
              for i, n in enumerate(model.names))
    kl = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    nll = 0.0
    for i, n in enumerate(model.names):
        m, lv = model.fusion.unimodal[i](feats[i])
        flow = zuko.distributions.NormalizingFlow(model.fusion.flows[i](), Independent(Normal(m, torch.exp(0.5 * lv)), 1))
        nll = nll + torch.where(batch.present[:, i], -flow.log_prob(z), 0.0)
    some = batch.present.any(-1)
    return -torch.where(some, rec - beta * kl, 0.0).mean(), nll.mean()


@pytest.mark.parametrize("present", [None, ALL], ids=["partial", "complete"])
def test_each_stage_objective_by_hand(present):
    model, batch = toy_model(JNF, OPTIONS), toy_batch(present)
    with torch.no_grad():
        joint, unimodal = by_hand(model, batch, 3, 0.7)
        assert torch.allclose(loss(model, batch, "joint").loss, joint, rtol=1e-5)
        assert torch.allclose(loss(model, batch, "unimodal").loss, unimodal, rtol=1e-5)
        assert torch.allclose(loss(model, batch, None).loss, joint + unimodal, rtol=1e-5)


def trained_by(model, batch, stage) -> set[str]:
    model.zero_grad(set_to_none=True)
    loss(model, batch, stage).loss.backward()
    return {k.split(".")[0] + "." + k.split(".")[1] for k, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_each_stage_trains_its_own_parts_and_none_trains_both():
    model, batch = toy_model(JNF, OPTIONS), toy_batch(ALL)
    joint, unimodal, both = (trained_by(model, batch, s) for s in ("joint", "unimodal", None))
    assert joint == {"fusion.joint", "modalities.a", "modalities.b", "modalities.c"}
    assert unimodal == {"fusion.unimodal", "fusion.flows"}
    assert both == joint | unimodal


def test_dcca_stage_trains_only_the_dcca_networks_and_unimodal_reads_them_frozen():
    model, batch = toy_model(JNFDCCA, {**OPTIONS, "type": "jnf_dcca", "dcca_hidden": [8], "embedding_dcca_dim": 2}), toy_batch(ALL)
    assert trained_by(model, batch, "dcca") == {"fusion.dcca"}
    assert trained_by(model, batch, "unimodal") == {"fusion.unimodal", "fusion.flows"}
    assert trained_by(model, batch, None) == {"fusion.joint", "fusion.dcca", "fusion.unimodal", "fusion.flows",
                                              "modalities.a", "modalities.b", "modalities.c"}
    with torch.no_grad():
        feats = [model.modalities[n].features(batch.data[n]) for n in model.names]
        emb = [net(f) for net, f in zip(model.fusion.dcca, feats)]
        expected = cca_loss(emb[0], emb[1], 2) + cca_loss(emb[0], emb[2], 2) + cca_loss(emb[1], emb[2], 2)
        assert torch.allclose(loss(model, batch, "dcca").loss, expected, rtol=1e-5)


def test_unknown_stage_is_a_recipe_error():
    model, batch = toy_model(JNF, OPTIONS), toy_batch()
    with pytest.raises(RecipeError, match="dcca"):
        loss(model, batch, "dcca")


def test_posterior_joint_for_everything_flow_for_one_mixture_between():
    model = toy_model(JNF, OPTIONS).eval()
    batch = toy_batch(ALL)
    mask = torch.tensor([[True, True, True], [False, True, False], [True, False, True]])
    with torch.no_grad():
        post = model.posterior(batch, mask)
        feats = [model.modalities[n].features(batch.data[n]) for n in model.names]
        joint_mu, joint_logvar = model.fusion.joint(feats, batch.present)
        flows = []
        for i in range(3):
            m, lv = model.fusion.unimodal[i](feats[i])
            flows.append(zuko.distributions.NormalizingFlow(model.fusion.flows[i](), Independent(Normal(m, torch.exp(0.5 * lv)), 1)))
        z = torch.randn(4, 3, 6, 2 * 2)[..., :model.latent_dim]
        lp = post.log_prob(z)
        assert torch.allclose(lp[:, 0], Independent(Normal(joint_mu, torch.exp(0.5 * joint_logvar)), 1).log_prob(z[:, 0]), atol=1e-5)
        assert torch.allclose(lp[:, 1], flows[1].log_prob(z[:, 1]), atol=1e-5)
        mix = torch.logaddexp(flows[0].log_prob(z[:, 2]), flows[2].log_prob(z[:, 2])) - np.log(2)
        assert torch.allclose(lp[:, 2], mix, atol=1e-5)
        assert torch.allclose(post.mean[0], joint_mu, atol=1e-6)
        m1, _ = model.fusion.unimodal[1](feats[1])
        assert torch.allclose(model.fusion.flows[1]()(post.mean[1]), m1, atol=1e-4)  # the flow's inverse of the Gaussian's mean


def test_made_affine_is_pythae_made_step():
    """pythae's MAF step: u = (z − μ) e^{−log_var}, log|det| = −Σ log_var; its inverse z = u e^{log_var} + μ."""
    g = torch.Generator().manual_seed(0)
    z, mu, lv = (torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    t = made_affine(mu, lv)
    assert torch.allclose(t(z), (z - mu) * torch.exp(-lv))
    assert torch.allclose(t.log_abs_det_jacobian(z, t(z)).sum(-1), -lv.sum(-1))
    assert torch.allclose(t.inv(t(z)), z)


def whitened_t(h1: np.ndarray, h2: np.ndarray, r: float = 1e-3) -> np.ndarray:
    """Σ11^{-1/2} Σ12 Σ22^{-1/2} with scipy's matrix square root (the symmetric root, as the code's T)."""
    from scipy.linalg import sqrtm

    m = h1.shape[0]
    a, b = h1 - h1.mean(0), h2 - h2.mean(0)
    s11 = a.T @ a / (m - 1) + r * np.eye(a.shape[1])
    s22 = b.T @ b / (m - 1) + r * np.eye(b.shape[1])
    return np.linalg.inv(sqrtm(s11).real) @ (a.T @ b / (m - 1)) @ np.linalg.inv(sqrtm(s22).real)


def whitened_svd_correlation(h1: np.ndarray, h2: np.ndarray, r: float = 1e-3) -> np.ndarray:
    """The canonical correlations of two views another way: whiten each by the inverse of its Cholesky factor (not the
    symmetric inverse root), then the singular values of the whitened cross-covariance."""
    m = h1.shape[0]
    a, b = h1 - h1.mean(0), h2 - h2.mean(0)
    s11 = a.T @ a / (m - 1) + r * np.eye(a.shape[1])
    s22 = b.T @ b / (m - 1) + r * np.eye(b.shape[1])
    s12 = a.T @ b / (m - 1)
    l1, l2 = np.linalg.cholesky(s11), np.linalg.cholesky(s22)
    t = np.linalg.solve(l1, s12) @ np.linalg.inv(l2).T
    return np.linalg.svd(t, compute_uv=False)


@pytest.mark.parametrize("o", [2, 4])
def test_cca_loss_is_the_regularised_total_canonical_correlation(o):
    rng = np.random.default_rng(o)
    shared = rng.normal(size=(200, 2))
    h1 = np.concatenate([shared, rng.normal(size=(200, o - 2))], 1) @ rng.normal(size=(o, o)) + 0.05 * rng.normal(size=(200, o))
    h2 = np.concatenate([shared, rng.normal(size=(200, o - 2))], 1) @ rng.normal(size=(o, o)) + 0.05 * rng.normal(size=(200, o))
    sigma = whitened_svd_correlation(h1, h2)
    ours = cca_loss(torch.tensor(h1), torch.tensor(h2), o)
    assert np.isclose(float(ours), -np.sqrt(sigma**2 + 1e-3).sum(), rtol=1e-8)  # TᵀT + r1·I: each σ² moved by r1
    a, b = torch.tensor(h1, requires_grad=True), torch.tensor(h2, requires_grad=True)
    all_values = cca_loss(a, b, o, use_all_singular_values=True)
    # Andrew et al.'s code: trace(sqrt(TᵀT)) with the root element-wise, i.e. Σ_i sqrt((TᵀT)_ii) = Σ_i ‖T[:, i]‖
    t = whitened_t(h1, h2)
    assert np.isclose(all_values.item(), -np.linalg.norm(t, axis=0).sum(), rtol=1e-8)
    all_values.backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    # two strongly shared directions: the two top correlations near 1, the others near 0
    assert sigma[0] > 0.8 and sigma[1] > 0.8 and (o == 2 or sigma[2] < 0.3)


def test_dcca_loss_sums_pairs_over_the_samples_that_have_both():
    g = torch.Generator().manual_seed(1)
    h = [torch.randn(40, 3, generator=g, dtype=torch.float64) for _ in range(3)]
    present = torch.ones(40, 3, dtype=torch.bool)
    present[:10, 0] = False
    expected = (cca_loss(h[0][10:], h[1][10:], 3) + cca_loss(h[0][10:], h[2][10:], 3) + cca_loss(h[1], h[2], 3))
    assert torch.allclose(dcca_loss(h, present, 3), expected)
    present[:38, 2] = False  # two samples with the third modality: too few for a 3-wide covariance, those pairs add nothing
    assert torch.allclose(dcca_loss(h, present, 3), cca_loss(h[0][10:], h[1][10:], 3))


def test_default_stages_split_the_epochs_and_refuse_too_few():
    config = JNF.Config.model_validate({"type": "jnf", "warmup": 4})
    assert [(s["name"], s["epochs"]) for s in JNF.stages(config, 10)] == [("joint", 4), ("unimodal", 6)]
    with pytest.raises(RecipeError, match="warmup"):
        JNF.stages(config, 4)
    config = JNFDCCA.Config.model_validate({"type": "jnf_dcca", "warmup": 2, "nb_epochs_dcca": 3})
    stages = JNFDCCA.stages(config, 10)
    assert [(s["name"], s["epochs"]) for s in stages] == [("joint", 2), ("dcca", 3), ("unimodal", 5)]
    assert "fusion.dcca" in stages[2]["freeze"] and "fusion.dcca" not in stages[1]["freeze"]
    with pytest.raises(RecipeError, match="nb_epochs_dcca"):
        JNFDCCA.stages(config, 5)


def test_latent_of_one_dimension_is_a_recipe_error():
    with pytest.raises(RecipeError, match="latent_dim"):
        JNF({"a": type("M", (), {"feature_dim": 4})()}, 1, JNF.Config.model_validate({"type": "jnf"}))


def test_sampled_coherence_draws_each_subset_row_from_its_own_stream():
    """Subset 'b' draws the same latents whether or not other subsets are evaluated beside it."""
    from modkit.evaluation.metrics.coherence import posterior_draw

    model = toy_model(JNF, OPTIONS).eval()
    batch = toy_batch(ALL)
    with torch.no_grad():
        both = posterior_draw(model.posterior(batch, torch.tensor([[False, True, False], [True, False, True]])), ["b", "a+c"], 0, 0, 0)
        alone = posterior_draw(model.posterior(batch, torch.tensor([[False, True, False]])), ["b"], 0, 0, 0)
    assert torch.equal(both[0], alone[0])
