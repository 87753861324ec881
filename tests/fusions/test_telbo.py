"""TELBO against independent computations: both stages' objectives written out with torch.distributions here, its
posterior rule, its default stages and their errors, and a run trained in both stages, then evaluated, generated
from and exported through the command line and the Python API. (Against MultiVae 1.0.3's own code:
benchmarks/crosscheck_models.py, run by tests/fusions/test_multivae_models.py when the MultiVae venv is present.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch.distributions import Normal, kl_divergence

import modkit
from modkit import RecipeError, SubsetPlan, all_subsets
from modkit.testing import toy_batch, toy_model
from modkit_telbo import TELBO, TELBOConfig
from run_helpers import cli

ROOT = Path(__file__).resolve().parents[2]
LAMBDAS, GAMMAS = {"a": 0.5, "c": 3.0}, {"b": 2.0}


def _model():
    return toy_model(TELBO, {"type": "telbo", "hidden": [8], "lambda_factors": LAMBDAS, "gamma_factors": GAMMAS})


def _factor(model, given, name):
    return given.get(name, model.modalities[name].weight)


def _loss(model, batch, stage, beta, seed):
    model.stage = stage
    torch.manual_seed(seed)
    out = model(batch, SubsetPlan.from_mask(all_subsets(len(model.names))), beta)
    model.stage = None
    return out.loss


@pytest.mark.parametrize("stage", [None, "joint"])
def test_joint_objective_by_hand(stage):
    model, batch = _model(), toy_batch()
    with torch.no_grad():
        feats = [model.fusion.joint.trunks[n].features(batch.data[n]) for n in model.names]
        mu, logvar = model.fusion.joint(feats, batch.present)
        torch.manual_seed(4)
        z = mu + torch.randn(mu.shape) * torch.exp(0.5 * logvar)
        rec = sum(torch.where(batch.present[:, i], _factor(model, LAMBDAS, n) * model.modalities[n].log_likelihood(model.modalities[n].decode(z), batch.data[n]), 0.0)
                  for i, n in enumerate(model.names))
        q = Normal(mu, torch.exp(0.5 * logvar))
        kl = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
        some = batch.present.any(-1)
        expected = -torch.where(some, rec - 0.7 * kl, 0.0).mean()
        assert torch.allclose(_loss(model, batch, stage, 0.7, 4), expected, rtol=1e-5)


def test_unimodal_objective_by_hand():
    model, batch = _model(), toy_batch()
    assert not bool(batch.present.all())  # some modalities missing: their ELBOs must not count
    with torch.no_grad():
        experts = model.encode_experts(batch)
        torch.manual_seed(6)
        eps = torch.randn(experts.mu.shape)
        total = 0.0
        for i, n in enumerate(model.names):
            mu, logvar = experts.mu[i], experts.logvar[i]
            z = mu + eps[i] * torch.exp(0.5 * logvar)
            rec = _factor(model, GAMMAS, n) * model.modalities[n].log_likelihood(model.modalities[n].decode(z), batch.data[n])
            kl = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
            total = total + torch.where(batch.present[:, i], rec - 1.3 * kl, 0.0)
        assert torch.allclose(_loss(model, batch, "unimodal", 1.3, 6), -total.mean(), rtol=1e-5)


def test_each_stage_trains_its_own_parts():
    """The joint stage's gradient reaches the joint encoder (and its encoder copies) and the decoders, never the
    unimodal encoders; the unimodal stage's reaches the unimodal encoders, and the decoders only as a path."""
    model, batch = _model(), toy_batch()
    for stage, reached, untouched in [("joint", ("fusion.joint.", ".decoder."), (".encoder.", ".head.")),
                                      ("unimodal", (".encoder.", ".head."), ("fusion.joint.",))]:
        model.zero_grad(set_to_none=True)
        _loss(model, batch, stage, 1.0, 0).backward()
        got = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        for part in reached:
            assert any(part in n for n in got), (stage, part)
        for part in untouched:
            assert not any(part in n and n.startswith("modalities.") == part.startswith(".") for n in got), (stage, part, sorted(got))


def test_posterior_is_joint_for_everything_unimodal_for_one_and_poe_between():
    model = _model().eval()
    batch = toy_batch(torch.ones(6, 3, dtype=torch.bool))
    with torch.no_grad():
        experts = model.encode_experts(batch)
        post = model.posterior(batch, torch.tensor([[True, True, True], [True, False, False], [True, True, False], [False] * 3]))
        feats = [model.fusion.joint.trunks[n].features(batch.data[n]) for n in model.names]
        joint_mu, _ = model.fusion.joint(feats, batch.present)
    assert torch.allclose(post.mu[0], joint_mu, atol=1e-6)
    assert torch.allclose(post.mu[1], experts.mu[0], atol=1e-5)
    precision = torch.exp(-experts.logvar[:2])
    assert torch.allclose(post.mu[2], (precision * experts.mu[:2]).sum(0) / precision.sum(0), atol=1e-5)
    assert torch.equal(post.mu[3], torch.zeros_like(post.mu[3])) and torch.equal(post.logvar[3], torch.zeros_like(post.logvar[3]))


def test_the_joint_encoder_reads_its_own_copies_of_the_encoders():
    """The unimodal stage changes the modalities' encoders; the joint posterior must not move with them."""
    model = _model().eval()
    batch = toy_batch(torch.ones(6, 3, dtype=torch.bool))
    everything = torch.ones(1, 3, dtype=torch.bool)
    with torch.no_grad():
        before = model.posterior(batch, everything).mu
        for name in model.names:
            for p in model.modalities[name].parameters():
                p.add_(0.5)
        assert torch.equal(model.posterior(batch, everything).mu, before)
    copies = [n for n, _ in model.fusion.joint.trunks.named_parameters()]
    assert copies and not any(".decoder." in n or ".head." in n for n in copies)  # the copies keep no dead weights


def test_default_stages_split_the_epochs():
    half = TELBO.stages(TELBOConfig(type="telbo"), 9)
    assert [(s["name"], s["epochs"]) for s in half] == [("joint", 4), ("unimodal", 5)]
    assert half[1]["freeze"] == ["fusion.joint", "modalities.*.decoder"]
    assert [s["epochs"] for s in TELBO.stages(TELBOConfig(type="telbo", warmup=7), 9)] == [7, 2]
    with pytest.raises(RecipeError) as info:
        TELBO.stages(TELBOConfig(type="telbo", warmup=9), 9)
    assert info.value.key == "model.fusion.warmup"
    with pytest.raises(RecipeError) as info:
        TELBO.stages(TELBOConfig(type="telbo"), 1)
    assert info.value.key == "train.epochs"


def test_a_factor_for_an_unknown_modality_names_the_option():
    with pytest.raises(RecipeError) as info:
        toy_model(TELBO, {"type": "telbo", "hidden": [8], "gamma_factors": {"z": 1.0}})
    assert info.value.key == "model.fusion.gamma_factors" and "'z' is not a modality" in str(info.value)


def test_a_recipe_stage_with_another_objective_is_an_error(tmp_path):
    raw = yaml.safe_load((ROOT / "recipes" / "digits-telbo.yaml").read_text())
    del raw["train"]["epochs"]  # the stages give them
    raw["train"]["stages"] = [{"name": "joint", "epochs": 1}, {"name": "finetune", "epochs": 1}]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    result = cli("train", recipe, "--out", tmp_path / "run", "--set", "train.device=cpu")
    assert result.exit_code != 0
    assert "train.stages.1.name: 'finetune' is not an objective of the telbo fusion (it has: joint, unimodal)" in result.output


def test_train_eval_generate_export_end_to_end(tmp_path):
    """Two epochs (one per stage) through the command line; eval and generate on the run; export and load back."""
    recipe = tmp_path / "telbo.yaml"
    recipe.write_text((ROOT / "recipes" / "digits-telbo.yaml").read_text())
    sets = ["train.epochs=2", "model.fusion.warmup=1", "modalities.image.hidden=[32]", "modalities.label.hidden=[32]",
            "model.fusion.hidden=[32]", "model.latent_dim=8", "train.device=cpu", "train.progress=false", "eval.samples=2"]
    run = tmp_path / "run"
    result = cli("train", recipe, "--out", run, *[a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    assert "stage 1/2 'joint': epoch 1, objective 'joint', nothing frozen" in result.output
    assert "stage 2/2 'unimodal': epoch 2, objective 'unimodal', freezing fusion.joint, modalities.*.decoder" in result.output
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["joint", "unimodal"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2 and torch.isfinite(torch.tensor(summary["test/elbo"]))

    evaluated = cli("eval", run, "--metrics", "coherence", "--max-items", "20", "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    assert "coherence" in json.dumps(json.loads((run / "eval.json").read_text()))
    generated = cli("generate", run, "--target", "label", "--given", "image=" + str(_digit_png(tmp_path)), "-n", "3",
                    "--device", "cpu", "--out", tmp_path / "labels.txt")
    assert generated.exit_code == 0, generated.output
    assert len((tmp_path / "labels.txt").read_text().split()) >= 3

    loaded = modkit.load(run, "cpu")
    exported = loaded.export(tmp_path / "exported")
    again = modkit.load(exported, "cpu")
    batch = next(iter(loaded.test_batches(16))) if hasattr(loaded, "test_batches") else None
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[name]), name
    if batch is not None:
        with torch.no_grad():
            assert torch.equal(loaded.model.posterior(batch, ["image", "label"]).mean, again.model.posterior(batch, ["image", "label"]).mean)


def _digit_png(tmp_path: Path) -> Path:
    from PIL import Image
    from sklearn.datasets import load_digits

    image = (load_digits().images[7] / 16 * 255).astype("uint8")
    path = tmp_path / "digit.png"
    Image.fromarray(image).save(path)
    return path
