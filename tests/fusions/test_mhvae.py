"""MHVAE: the objective against a direct torch.distributions computation (every subset, every level, the networks
called by hand), the ladder posterior's and prior's densities level by level, and a run trained, evaluated, generated
from and exported through the command line and the Python API. (The objective is also checked against MultiVae's
MHVAE on shared weights, batch and noise: benchmarks/crosscheck_models.py, run by tests/fusions/test_multivae_models.py.)"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from modkit import RecipeError, SubsetPlan, all_subsets
from modkit.testing import toy_batch, toy_model

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = {"type": "mhvae", "n_latent": 3, "hidden": 8}
D = 4  # modkit.testing.LATENT: each level's width


def _model(**extra):
    from modkit_mhvae import MHVAE

    return toy_model(MHVAE, {**OPTIONS, **extra})


def _normal(params):
    mu, logvar = params
    return Normal(mu, torch.exp(0.5 * logvar))


def _product(experts: list[Normal], prior: Normal) -> Normal:
    """A product of Gaussian experts, precision-weighted, one expert at a time (MultiVae adds 1e-8 to each variance)."""
    precision = [1.0 / (e.variance + 1e-8) for e in [*experts, prior]]
    total = sum(precision)
    mean = sum(e.mean * p for e, p in zip([*experts, prior], precision)) / total
    return Normal(mean, total.rsqrt())


def _by_hand(model, batch, eps, beta):
    """MultiVae's objective, per subset of the three toy modalities, one sample at a time's worth of masking done by
    Python loops over subsets and modalities, every density a torch.distributions object."""
    fusion, names = model.fusion, model.names
    features = {n: model.modalities[n].features(batch.data[n]) for n in names}
    total = 0.0
    subsets = [s for r in range(1, 4) for s in itertools.combinations(range(3), r)]
    order = {tuple(torch.nonzero(row).flatten().tolist()): i for i, row in enumerate(all_subsets(3))}
    for subset in subsets:
        k = order[subset]
        skips = {n: [features[n]] for n in names}
        tops = {}
        for n in names:
            h = features[n]
            h = fusion.bottom_up_blocks[n][0](h)
            skips[n].append(h)
            tops[n] = _normal(fusion.bottom_up_blocks[n][1](h))
        given = [names[i] for i in subset]

        def experts_for(dists):  # a modality missing from a sample contributes nothing: an infinite variance there
            out = []
            for n in given:
                here = batch.present[:, names.index(n)].unsqueeze(-1)
                out.append(Normal(dists[n].mean, torch.where(here, dists[n].stddev, torch.inf)))
            return out

        standard = Normal(torch.zeros(len(batch), D), torch.ones(len(batch), D))
        q = _product(experts_for(tops), standard)
        z = q.mean + q.stddev * eps[0, k]
        kl = kl_divergence(q, standard).sum(-1)
        for level in (2, 1):
            h = fusion.top_down[level - 1](z)
            prior = _normal(fusion.prior_blocks[level - 1](h))
            dists = {n: _normal(fusion.posterior_blocks[n][level - 1](torch.cat([h, skips[n][level - 1]], -1))) for n in names}
            q = _product(experts_for(dists), prior)
            z = q.mean + q.stddev * eps[3 - level, k]
            kl = kl + kl_divergence(q, prior).sum(-1)
        rec = 0.0
        for i, n in enumerate(names):
            out = model.modalities[n].decoder_net(z)
            ll = Categorical(logits=out).log_prob(batch.data[n]) if n == "c" else Normal(out, 1.0).log_prob(batch.data[n]).sum(-1)
            rec = rec + torch.where(batch.present[:, i], ll, 0.0)
        total = total + (rec - beta * 0.5 * kl)
    return -(total / len(subsets)).sum() / len(batch)


@pytest.mark.parametrize("present", [None, "all"])
def test_objective_matches_torch_distributions(present):
    torch.manual_seed(0)
    model = _model(beta=0.5).train()
    batch = toy_batch(torch.ones(6, 3, dtype=torch.bool) if present == "all" else None)
    eps = torch.randn(3, 7, len(batch), D)
    model.fusion.noise = lambda *shape, like: eps
    out = model.fusion.loss(model, batch, SubsetPlan.from_mask(all_subsets(3)), beta=0.8)
    expected = _by_hand(model, batch, eps, beta=0.8)
    assert torch.allclose(out.loss, expected, rtol=1e-5, atol=1e-5), (out.loss.item(), expected.item())
    assert torch.allclose(out.terms["kl"], out.terms["kl_1"] + out.terms["kl_2"] + out.terms["kl_3"], atol=1e-5)


def test_densities_are_the_levels_gaussians_summed():
    model = _model().eval()
    fusion = model.fusion
    batch = toy_batch()
    mask = torch.tensor([[True, False, True], [False, False, False]])
    with torch.no_grad():
        post = model.posterior(batch, mask)
        z = post.rsample(5)  # (5, 2, 6, 3·D)
        assert z.shape == (5, 2, 6, 3 * D) and model.latent_dim == 3 * D
        # the ladder by hand for the nothing-given row: the prior's conditionals, level by level
        z3, z2, z1 = z[:, 1, :, :D], z[:, 1, :, D:2 * D], z[:, 1, :, 2 * D:]
        p2 = _normal(fusion.prior_blocks[1](fusion.top_down[1](z3)))
        p1 = _normal(fusion.prior_blocks[0](fusion.top_down[0](z2)))
        expected = Normal(0.0, 1.0).log_prob(z3).sum(-1) + p2.log_prob(z2).sum(-1) + p1.log_prob(z1).sum(-1)
        assert torch.allclose(post.log_prob(z)[:, 1], expected, atol=1e-4)
        assert torch.allclose(model.fusion.prior().log_prob(z[:, 1]), expected, atol=1e-4)
        # the decoders read z_1 alone: changing the upper levels changes no reconstruction
        moved = z.clone()
        moved[..., : 2 * D] += 3.0
        assert torch.equal(model.modalities["a"].decode(z), model.modalities["a"].decode(moved))
        # nothing given: the posterior's mean is the prior's
        assert torch.allclose(post.mean[1], fusion.prior().mean.expand(6, -1), atol=1e-6)
        assert fusion.prior().rsample(4).shape == (4, 3 * D)


def test_importance_sampled_likelihood_is_finite():
    from modkit.evaluation.likelihood import importance_log_likelihood

    model = _model().eval()
    with torch.no_grad():
        estimate = importance_log_likelihood(model, toy_batch(torch.ones(6, 3, dtype=torch.bool)), ["a"], proposal=["a", "b"], k=8)
    assert estimate.log_p.shape == (6,) and torch.isfinite(estimate.log_p).all() and bool(estimate.valid.all())


def test_shared_posterior_blocks_need_equal_feature_sizes():
    from modkit.testing import VectorConfig, VectorModality
    from modkit_mhvae import MHVAE

    shared = _model(share_posterior_weights=True)  # the toy modalities' features are all 16 wide
    assert isinstance(shared.fusion.posterior_blocks, torch.nn.ModuleList) and len(shared.fusion.posterior_blocks) == 2
    assert torch.isfinite(shared.fusion.loss(shared, toy_batch(), SubsetPlan.from_mask(all_subsets(3)), 1.0).loss)
    modalities = {"a": VectorModality("a", VectorConfig(type="vector"), D),
                  "b": VectorModality("b", VectorConfig(type="vector", hidden=8), D)}
    with pytest.raises(RecipeError, match="share_posterior_weights.*feature_dim differ"):
        MHVAE(modalities, D, MHVAE.Config(type="mhvae", share_posterior_weights=True))


@pytest.mark.slow  # about 15 s: a one-epoch run, evaluated, generated from and exported
def test_train_eval_generate_export(tmp_path):
    import modkit
    from run_helpers import cli

    run = tmp_path / "run"
    small = ["modalities.image.hidden=[16]", "modalities.label.hidden=[16]", "model.latent_dim=4", "train.epochs=1",
             "train.device=cpu", "train.progress=false", "model.fusion.hidden=16"]
    trained = cli("train", ROOT / "recipes" / "digits-mhvae.yaml", "--out", run, *(a for s in small for a in ("--set", s)))
    assert trained.exit_code == 0, trained.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test/elbo"] is not None and summary["balanced_accuracy/image->label"] is not None
    evaluated = cli("eval", run, "--metrics", "likelihood,coherence", "--max-items", "40", "--iw-samples", "4", "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    scores = json.loads((run / "eval.json").read_text())
    assert "likelihood" in scores and scores["coherence"]["cross"]  # every level is Gaussian: the likelihoods are computed
    for given in (["--given", "label=3"], []):  # cross-modal, and from the prior down the ladder
        made = cli("generate", run, "--target", "image", *given, "-n", "2", "--device", "cpu", "--out", tmp_path / "g.png")
        assert made.exit_code == 0, made.output
    loaded = modkit.load(run, "cpu")
    dest = loaded.export(tmp_path / "exported")
    again = modkit.load(dest, "cpu")
    item = {"image": [loaded.data("test").values("image")[0]]}
    first, second = loaded.encode(item), again.encode(item)
    assert first.mean.shape[-1] == 3 * 4 and torch.allclose(first.mean, second.mean)
    assert len(again.generate({"label": "3"}, "image", n=2)) == 2
