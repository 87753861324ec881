"""Nexus and the engine's hierarchical latents: the posterior and prior drawn top-down against the networks called by
hand, forced perceptual dropout's subsets, the refused likelihoods, and a run trained, evaluated, generated from and
exported through the command line and the Python API. (The objective itself is checked against MultiVae's Nexus on
shared weights, batch and noise: benchmarks/crosscheck_models.py, run by tests/fusions/test_multivae_models.py.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from modkit import ModkitError, PrivateLayout, TopDown, all_subsets
from modkit.testing import toy_batch, toy_model

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = {"type": "nexus", "modalities_specific_dim": 3, "msg_dim": 4, "hidden": [8], "decoder_hidden": [8]}


def _model(**extra):
    from modkit_nexus import Nexus

    return toy_model(Nexus, {**OPTIONS, **extra}).eval()


def test_layout_puts_each_modality_under_the_top_latent():
    layout = PrivateLayout(shared=4, private=3, n=3, hierarchical=True)
    assert layout.width == 13 and layout.modality_width == 3
    assert layout.view(1).tolist() == [7, 8, 9]  # its own part alone, never the top latent
    model = _model()
    assert [m.latent_dim for m in model.modalities.values()] == [3, 3, 3] and model.latent_dim == 4 + 3 * 3


def test_posterior_mean_is_the_given_parts_then_the_top_then_the_rest_by_hand():
    model = _model()
    fusion = model.fusion
    batch = toy_batch(torch.ones(6, 3, dtype=torch.bool))
    with torch.no_grad():
        experts = model.encode_experts(batch)
        post = model.posterior(batch, torch.tensor([[True, False, True], [False, False, False]]))
        assert isinstance(post, TopDown) and post.mean.shape == (2, 6, 4 + 9)
        # by hand: messages of a and c from their posterior means, averaged, the joint encoder, then g_b(u)
        msg = (fusion.top_encoders["a"](experts.mu[0]) + fusion.top_encoders["c"](experts.mu[2])) / 2
        u, _ = fusion.joint_encoder(msg)
        expected = torch.cat([u, experts.mu[0], fusion.top_decoders["b"](u), experts.mu[2]], -1)
        assert torch.allclose(post.mean[0], expected, atol=1e-6)
        # nothing given: the prior's mean, u = 0 and every part g_m(0)
        zero = torch.zeros(4)
        prior_mean = torch.cat([zero, *(fusion.top_decoders[n](zero) for n in "abc")])
        assert torch.allclose(post.mean[1], prior_mean.expand(6, -1), atol=1e-6)
        assert torch.allclose(fusion.prior().mean, prior_mean, atol=1e-6)


def test_a_draw_keeps_given_parts_on_their_posterior_and_maps_the_rest_from_u():
    model = _model()
    batch = toy_batch(torch.ones(6, 3, dtype=torch.bool))
    with torch.no_grad():
        z = model.posterior(batch, torch.tensor([[True, False, False]])).rsample(50)  # (50, 1, 6, 13)
        u, w = z[..., :4], z[..., 4:].unflatten(-1, (3, 3))
        assert torch.allclose(w[..., 1, :], model.fusion.top_decoders["b"](u), atol=1e-6)  # a target: g_b(u), no noise of its own
        experts = model.encode_experts(batch)
        spread = w[..., 0, :].std(0)  # the given part varies as its posterior does
        assert torch.allclose(spread, torch.exp(0.5 * experts.logvar[0]).expand_as(spread), rtol=0.35)
        prior = model.fusion.prior().rsample(5)
        assert torch.allclose(prior[:, 4:7], model.fusion.top_decoders["a"](prior[:, :4]), atol=1e-6)


def test_forced_perceptual_dropout_keeps_a_proper_subset_of_complete_samples_only():
    model = _model(dropout_rate=1.0)
    present = torch.tensor([[True, True, True]] * 200 + [[True, False, True]] * 50)
    torch.manual_seed(0)
    keep = model.fusion.dropout_keep(present)
    complete = keep[:200]
    assert bool((complete.sum(1) >= 1).all() and (complete.sum(1) <= 2).all())  # 1 … N − 1 of them
    assert set(complete.sum(1).tolist()) == {1, 2}  # both sizes occur
    assert torch.equal(keep[200:], present[200:])  # a sample with missing modalities aggregates what it has
    assert torch.equal(_model().fusion.dropout_keep(present), present)  # the default rate, 0: no dropout


def test_likelihoods_and_the_test_elbo_are_refused_by_name():
    from modkit.evaluation.epoch_metrics import test_metrics
    from modkit.evaluation.likelihood import importance_log_likelihood, no_density_reason

    model = _model()
    reason = no_density_reason(model)
    assert reason.startswith("not applicable: the Nexus fusion decodes every modality not given")
    with pytest.raises(ModkitError, match="importance-sampled likelihoods are not applicable: the Nexus fusion"):
        importance_log_likelihood(model, toy_batch(), ["a"], k=4)
    with pytest.raises(NotImplementedError, match="no density of its own"):
        model.posterior(toy_batch(), all_subsets(3)).log_prob(torch.zeros(13))
    out = test_metrics(model, [toy_batch(torch.ones(6, 3, dtype=torch.bool))], torch.device("cpu"), n_samples=2)
    assert out["test/elbo"] is None and all(torch.isfinite(torch.tensor(out[f"test/rec/{n}"])) for n in "abc")


def test_unknown_modalities_in_the_options_are_recipe_errors():
    from modkit import RecipeError

    for option, value in [("gammas", {"z": 1.0}), ("bottom_betas", {"z": 1.0}), ("adapt_top_decoder_variance", ["z"])]:
        with pytest.raises(RecipeError, match=f"model.fusion.{option}.*'z' is not a modality"):
            _model(**{option: value})


@pytest.mark.slow  # about 15 s: a one-epoch run, evaluated, generated from and exported
def test_train_eval_generate_export(tmp_path):
    import modkit
    from run_helpers import cli

    run = tmp_path / "run"
    small = ["modalities.image.hidden=[16]", "modalities.label.hidden=[16]", "model.latent_dim=4", "train.epochs=1",
             "train.device=cpu", "train.progress=false", "model.fusion.hidden=[16]", "model.fusion.decoder_hidden=[16]",
             "model.fusion.modalities_specific_dim=4"]
    trained = cli("train", ROOT / "recipes" / "digits-nexus.yaml", "--out", run, *(a for s in small for a in ("--set", s)))
    assert trained.exit_code == 0, trained.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test/elbo"] is None and summary["balanced_accuracy/image->label"] is not None
    evaluated = cli("eval", run, "--metrics", "likelihood,coherence", "--max-items", "40", "--iw-samples", "4", "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    scores = json.loads((run / "eval.json").read_text())
    assert scores["not_applicable"]["likelihood"].startswith("not applicable: the Nexus fusion")
    assert "likelihood" not in scores and scores["coherence"]["cross"]  # coherence decodes through g_m(u): it runs
    for given in (["--given", "label=3"], []):  # cross-modal (the top latent inferred from the label), and from the prior
        made = cli("generate", run, "--target", "image", *given, "-n", "2", "--device", "cpu", "--out", tmp_path / "g.png")
        assert made.exit_code == 0, made.output
    loaded = modkit.load(run, "cpu")
    dest = loaded.export(tmp_path / "exported")
    again = modkit.load(dest, "cpu")
    item = {"image": [loaded.data("test").values("image")[0]]}
    first, second = loaded.encode(item), again.encode(item)
    assert torch.allclose(first.mean, second.mean)  # the exported weights give the same hierarchy
    assert len(again.generate({"label": "3"}, "image", n=2)) == 2
