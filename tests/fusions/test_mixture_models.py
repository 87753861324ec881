"""CRMVAE and CMVAE against independent computations: CRMVAE's objective written out with torch.distributions, one
sample at a time; CMVAE's mixture prior, its cluster read-out and its objective against direct formulas (and both
against MultiVae 1.0.3's own code in benchmarks/crosscheck_models.py, tests/fusions/test_multivae_models.py)."""
from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from modkit import SubsetPlan, all_subsets
from modkit.testing import toy_batch, toy_model


@pytest.mark.parametrize("beta", [2.5, 0.4])
def test_crmvae_objective_by_hand(beta):
    from modkit_crmvae import CRMVAE

    model, batch = toy_model(CRMVAE, {"type": "crmvae"}), toy_batch()
    n, b = len(model.names), len(batch)
    with torch.no_grad():
        experts = model.encode_experts(batch)
        g = torch.Generator().manual_seed(7)
        eps = torch.randn(1 + n, b, experts.mu.shape[-1], generator=g)
        model.fusion.noise = lambda *shape, like: eps
        ours = model(batch, SubsetPlan.from_mask(all_subsets(n)), beta).loss
        expected = []
        for i in range(b):  # one sample at a time, over its present modalities only
            given = [m for m in range(n) if batch.present[i, m]]
            precision = sum(torch.exp(-experts.logvar[m, i]) for m in given)
            mu = sum(torch.exp(-experts.logvar[m, i]) * experts.mu[m, i] for m in given) / precision
            q = Normal(mu, precision ** -0.5)
            z_joint = mu + eps[0, i] * precision ** -0.5
            rec = 0.0
            for m in given:
                modality = model.modalities[model.names[m]]
                x = batch.data[model.names[m]][i:i + 1]
                z_own = experts.mu[m, i] + eps[1 + m, i] * torch.exp(0.5 * experts.logvar[m, i])
                for z in (z_joint, z_own):
                    rec = rec + modality.weight * modality.log_likelihood(modality.decode(z[None]), x)[0]
            kl = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum()
            tie = sum(kl_divergence(q, Normal(experts.mu[m, i], torch.exp(0.5 * experts.logvar[m, i]))).sum() for m in given)
            expected.append(rec / (2 * (n + 1)) - beta * (kl + tie) / (n + 1))
    assert torch.allclose(ours, -torch.stack(expected).mean(), rtol=1e-5)


def test_crmvae_sample_without_modalities_counts_for_nothing():
    from modkit import Batch
    from modkit_crmvae import CRMVAE

    model = toy_model(CRMVAE, {"type": "crmvae"})
    two = toy_batch(torch.tensor([[1, 1, 1], [0, 0, 0]], dtype=torch.bool))
    one = Batch({k: v[:1] for k, v in two.data.items()}, two.present[:1])
    eps = torch.randn(4, 2, model.latent_dim, generator=torch.Generator().manual_seed(0))
    plan = SubsetPlan.from_mask(all_subsets(3))
    with torch.no_grad():
        model.fusion.noise = lambda *shape, like: eps
        both = model(two, plan, 1.0).loss
        model.fusion.noise = lambda *shape, like: eps[:, :1]
        alone = model(one, plan, 1.0).loss
    assert torch.isfinite(both) and torch.allclose(both, alone / 2)



# -- the mixture prior (modkit.distributions.MixturePrior) --------------------------------------------------------------
def _reference(prior):
    """The same mixture as torch.distributions builds it: MixtureSameFamily over Independent Normal or Laplace."""
    from torch.distributions import Categorical, Independent, Laplace, MixtureSameFamily

    family = Laplace if prior.family == "laplace" else Normal
    weights = prior.log_weights().exp()
    keep = weights > 0
    return MixtureSameFamily(Categorical(probs=weights[keep]), Independent(family(prior.loc[keep], prior.scales()[keep]), 1))


@pytest.mark.parametrize("family,scale", [("gaussian", "exp"), ("laplace", "softmax"), ("gaussian", "softplus")])
def test_mixture_prior_density_and_cluster_posterior_match_torch_distributions(family, scale):
    from modkit.distributions import MixturePrior

    torch.manual_seed(0)
    prior = MixturePrior(4, 3, family=family, scale=scale, learn_scale=True)
    with torch.no_grad():
        prior.raw_scale.normal_(0.0, 0.5)
        prior.logits.normal_()
        z = torch.randn(5, 7, 3) * 2
        reference = _reference(prior)
        assert torch.allclose(prior.log_prob(z), reference.log_prob(z), atol=1e-5)
        # Bayes: p(c | z) = π_c p(z | c) / p(z), computed from the reference's own parts
        parts = reference.component_distribution.log_prob(z.unsqueeze(-2)) + reference.mixture_distribution.logits
        expected = parts - torch.logsumexp(parts, -1, keepdim=True)
        assert torch.allclose(prior.cluster_log_posterior(z), expected, atol=1e-5)
        assert torch.equal(prior.assign(z), expected.argmax(-1))
        assert prior.distribution().rsample(6).shape == (6, 3)
        assert torch.allclose(prior.distribution().log_prob(z), prior.log_prob(z))


def test_mixture_prior_switched_off_component_has_no_weight_and_no_items():
    from modkit.distributions import MixturePrior

    torch.manual_seed(1)
    prior = MixturePrior(3, 2)
    with torch.no_grad():
        prior.switch_off(1)
        z = prior.loc[1].expand(4, 2)  # at the switched-off component's centre
        assert prior.log_weights()[1] == float("-inf") and prior.n_active == 2
        assert (prior.assign(z) != 1).all()
        assert torch.allclose(prior.log_prob(z), _reference(prior).log_prob(z), atol=1e-5)
        assert (prior.sample(200)[1] != 1).all()
        prior.switch_off(0)
        with pytest.raises(ValueError, match="last active"):
            prior.switch_off(2)
    fresh = MixturePrior(3, 2)
    fresh.load_state_dict(prior.state_dict())  # a selection is part of the state
    assert fresh.active.tolist() == [False, False, True]


def test_mixture_prior_samples_follow_the_weights_and_components():
    from modkit.distributions import MixturePrior

    torch.manual_seed(2)
    prior = MixturePrior(3, 2, family="laplace", scale="softmax")
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.0, 1.0, -1.0]))
        prior.loc.copy_(torch.tensor([[-40.0, 0.0], [0.0, 40.0], [40.0, 0.0]]))  # far apart: the draw shows its cluster
        z, c = prior.sample(20000, generator=torch.Generator().manual_seed(0))
    frequency = torch.bincount(c, minlength=3).float() / len(c)
    assert torch.allclose(frequency, torch.softmax(prior.logits, 0), atol=0.015)
    assert torch.equal(prior.assign(z), c)  # every draw lies in its own cluster's basin here
    assert torch.allclose(z[c == 1].mean(0), prior.loc[1], atol=0.05)


def test_mixture_prior_kl_estimate_is_unbiased_for_one_component():
    from modkit.distributions import DiagGaussian, MixturePrior, kl_gaussians

    torch.manual_seed(3)
    prior = MixturePrior(1, 4, learn_scale=True)
    with torch.no_grad():
        prior.raw_scale.normal_(0.0, 0.3)
        q = DiagGaussian(torch.randn(4), torch.randn(4) * 0.3)
        z = q.rsample(200000)
        estimate = prior.kl_estimate(z, q.log_prob(z)).mean()
        exact = kl_gaussians(q.mu, q.logvar, prior.loc[0], prior.raw_scale[0])
    assert estimate == pytest.approx(float(exact), abs=0.02)


# -- CMVAE --------------------------------------------------------------------------------------------------------------
CMVAE_OPTIONS = {"type": "cmvae", "modalities_specific_dim": 2, "K": 3, "number_of_clusters": 4}


def test_cmvae_prior_term_is_multivae_expectation_over_the_cluster_posterior():
    """MultiVae's Σ_c q(c|u) [log π_c + log p(u|c) − log q(c|u)] (its 1e-20 included) is log p(u), which CMVAE scores."""
    from modkit_cmvae import CMVAE

    model = toy_model(CMVAE, CMVAE_OPTIONS)
    prior = model.fusion.clusters
    with torch.no_grad():
        prior.logits.normal_()
        u = torch.randn(3, 5, prior.dim) * 2
        lpc = torch.log(torch.softmax(prior.logits, 0))
        lpzc = torch.stack([torch.distributions.Laplace(prior.loc[c], prior.scales()[c]).log_prob(u).sum(-1) for c in range(4)])
        qc = torch.softmax(lpc.view(4, 1, 1) + lpzc, 0) + 1e-20
        multivae = sum(qc[c] * (lpc[c] + lpzc[c] - qc[c].log()) for c in range(4))
        assert torch.allclose(prior.log_prob(u), multivae, atol=1e-4)


@pytest.mark.parametrize("objective", ["dreg_looser", "iwae_looser"])
def test_cmvae_with_one_cluster_at_the_origin_is_mmvae_plus(objective):
    """With one cluster at 0 of scale 1, p(u) is MMVAE+'s fixed prior: same weights and draws, same loss and gradients."""
    from modkit_cmvae import CMVAE
    from modkit_mmvae_plus import MMVAEPlus

    options = {**CMVAE_OPTIONS, "number_of_clusters": 1, "loss": objective}
    ours = toy_model(CMVAE, options)
    with torch.no_grad():
        ours.fusion.clusters.loc.zero_()
    theirs = toy_model(MMVAEPlus, {k: v for k, v in options.items() if k != "number_of_clusters"} | {"type": "mmvae_plus"})
    theirs.load_state_dict({k: v for k, v in ours.state_dict().items() if not k.startswith("fusion.clusters.")})
    batch, plan = toy_batch(), SubsetPlan.from_mask(all_subsets(3))
    grads = []
    for model in (ours, theirs):
        torch.manual_seed(0)  # the same standard Laplace draws, in the same order, for both
        model.fusion.noise = lambda *shape, like: torch.distributions.Laplace(0.0, 1.0).sample(shape)
        model.zero_grad()
        loss = model(batch, plan, 0.7).loss
        loss.backward()
        grads.append((loss.detach(), {k: p.grad for k, p in model.named_parameters() if p.grad is not None and "clusters" not in k}))
    assert torch.allclose(grads[0][0], grads[1][0], rtol=1e-6)
    assert grads[0][1].keys() == grads[1][1].keys()
    assert all(torch.allclose(grads[0][1][k], grads[1][1][k], rtol=1e-5, atol=1e-7) for k in grads[0][1])


def test_cmvae_posterior_without_modalities_is_the_cluster_mixture_and_prior_is_mixture_beside_p_w():
    from modkit_cmvae import CMVAE

    model = toy_model(CMVAE, CMVAE_OPTIONS).eval()
    fusion, shared = model.fusion, model.fusion.layout.shared
    with torch.no_grad():
        fusion.clusters.logits.normal_()
        post = model.posterior(toy_batch(torch.zeros(6, 3, dtype=torch.bool)), all_subsets(3))
        z = post.rsample(4)  # (4, S, B, width)
        assert torch.allclose(post.parts[0].log_prob(z[..., :shared]), fusion.clusters.log_prob(z[..., :shared]), atol=1e-5)
        given = model.posterior(toy_batch(torch.ones(6, 3, dtype=torch.bool)), torch.tensor([[True, False, False]]))
        experts = model.encode_experts(toy_batch(torch.ones(6, 3, dtype=torch.bool)))
        assert torch.allclose(given.mean[0, :, :shared], experts.mu[0, :, :shared], atol=1e-6)  # one given: its own posterior
        prior = fusion.prior()
        draw = prior.rsample(5)
        p_w = fusion.private_prior_scale().repeat(3)
        expected = fusion.clusters.log_prob(draw[:, :shared]) + torch.distributions.Laplace(0.0, p_w).log_prob(draw[:, shared:]).sum(-1)
        assert torch.allclose(prior.log_prob(draw), expected, atol=1e-5)


def test_cmvae_refuses_a_learned_shared_prior_in_one_line():
    from modkit.config.recipe import component_config
    from modkit.errors import RecipeError
    from modkit_cmvae import CMVAE
    from modkit.config.recipe import load_recipe
    from pathlib import Path

    recipe, _ = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "digits-cmvae.yaml", ["model.fusion.learn_shared_prior=true"])
    with pytest.raises(RecipeError, match="learn_shared_prior"):
        component_config(recipe.model.fusion, CMVAE.Config, "model.fusion")


@pytest.fixture(scope="module")
def cmvae_run(tmp_path_factory):
    import modkit
    from pathlib import Path

    out = tmp_path_factory.mktemp("cmvae") / "digits"
    modkit.train(str(Path(__file__).resolve().parents[2] / "recipes" / "digits-cmvae.yaml"),
                 ["train.epochs=3", "train.progress=false", "train.device=cpu", "model.fusion.K=2", "model.latent_dim=8",
                  "modalities.image.hidden=[64]", "modalities.label.hidden=[64]"], out=out, echo=lambda s: None)
    return out


@pytest.mark.slow  # a few seconds of training
def test_clustering_metric_scores_the_model_own_clusters(cmvae_run):
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from modkit.evaluation.metric import EvalSettings
    from modkit.evaluation.suite import evaluate_run
    from modkit.runs.loading import load_run

    run = load_run(cmvae_run, torch.device("cpu"))
    result = evaluate_run(run, EvalSettings(metrics=["clustering"], batch_size=100))
    test = run.setup.test
    batch = test.__getitems__(list(range(len(test))))
    y = batch.data["label"].numpy()
    with torch.no_grad():
        for subset in (["image"], ["label"], ["image", "label"]):
            own = run.model.fusion.cluster_log_posterior(run.model.posterior(batch, subset).mean[0]).argmax(-1).numpy()
            cell = result["clustering"]["+".join(subset)]["label"]
            assert cell["prior_ari"] == pytest.approx(adjusted_rand_score(y, own), abs=1e-6)
            assert cell["prior_nmi"] == pytest.approx(normalized_mutual_info_score(y, own), abs=1e-6)
            assert cell["prior_clusters"] == len(set(own.tolist()))
    assert "clustering/image+label/label/prior_ari" in result["summary"]


@pytest.mark.slow
def test_cmvae_select_clusters_keeps_the_lowest_scoring_set(cmvae_run):
    import modkit

    run = modkit.load(cmvae_run, "cpu")
    fusion = run.model.fusion
    scores = fusion.select_clusters(run.model, lambda: run.data("train").batches(256), beta=1.0)
    assert sorted(scores) == list(range(2, 11))  # 10 clusters down to 2, one pass each
    best = min(scores, key=scores.get)
    assert fusion.clusters.n_active == best
    batch = next(run.data("test").batches(64))
    with torch.no_grad():
        clusters, log_post = fusion.predict_clusters(run.model.encode(batch))
    assert fusion.clusters.active[clusters].all()  # nobody is put in a cluster the selection left out
    assert torch.allclose(log_post.exp().sum(-1), torch.ones(()), atol=1e-5)
    exported = modkit.load(run.export(cmvae_run.parent / "selected"), "cpu")
    assert torch.equal(exported.model.fusion.clusters.active, fusion.clusters.active)


E2E = {"crmvae": [], "cmvae": ["model.fusion.K=2"]}


@pytest.mark.slow  # a few seconds each: one short epoch, an evaluation, generation and an export
@pytest.mark.parametrize("fusion", sorted(E2E))
def test_train_eval_generate_export_end_to_end(fusion, tmp_path):
    """``modkit train``, ``eval``, ``generate`` and ``sample`` on the run, then ``Run.export`` read back by ``modkit.load``."""
    import json
    from pathlib import Path

    import modkit
    from run_helpers import cli

    ROOT = Path(__file__).resolve().parents[2]
    run = tmp_path / "run"
    small = ["modalities.image.hidden=[32]", "modalities.label.hidden=[32]", "model.latent_dim=8", "train.epochs=1",
             "train.device=cpu", "train.progress=false", "eval.samples=2", *E2E[fusion]]
    trained = cli("train", ROOT / "recipes" / f"digits-{fusion}.yaml", *(a for s in small for a in ("--set", s)), "--out", run)
    assert trained.exit_code == 0, trained.output
    evaluated = cli("eval", run, "--metrics", "coherence,clustering", "--max-items", "60", "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    scores = json.loads((run / "eval.json").read_text())
    assert 0 <= scores["summary"]["coherence/image->label/label"] <= 1
    generated = cli("generate", run, "--target", "image", "--given", "label=3", "-n", "2", "--device", "cpu")
    assert generated.exit_code == 0, generated.output
    assert cli("sample", run, "-n", "2", "--device", "cpu", "--out", tmp_path / "prior.png").exit_code == 0
    loaded = modkit.load(run, "cpu")
    exported = loaded.export(tmp_path / "exported")
    again = modkit.load(exported, "cpu")
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[key], value), key
    assert again.generate(given={"label": "three"}, target="label", n=2)
