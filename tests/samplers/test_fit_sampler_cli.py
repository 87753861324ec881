"""``modkit fit-sampler`` and ``modkit sample --sampler`` end to end on a tiny run, ``run.sample(sampler=)``,
the recipe's ``eval.latent_sampler``, and the one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from run_helpers import cli, one_error_line

import modkit

ROOT = Path(__file__).resolve().parents[2]


def base_recipe() -> dict:
    return yaml.safe_load((ROOT / "recipes" / "digits-poe.yaml").read_text())




@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One epoch of the tiny image + label recipe."""
    tmp = tmp_path_factory.mktemp("latent")
    raw = base_recipe()
    raw["modalities"]["image"]["hidden"] = [16]
    raw["modalities"]["label"]["hidden"] = [16]
    raw["model"]["latent_dim"] = 4
    raw["train"].update(epochs=1, device="cpu", progress=False)
    raw["eval"]["samples"] = 2
    recipe = tmp / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    result = cli("train", recipe, "--out", tmp / "run")
    assert result.exit_code == 0, result.output
    return tmp / "run"


def test_fit_then_sample_from_the_fitted_sampler(run_dir):
    result = cli("fit-sampler", run_dir, "gmm", "--set", "n_components=3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    stored = json.loads((run_dir / "samplers" / "gmm.json").read_text())
    assert stored["sampler"] == "gmm" and stored["options"]["n_components"] == 3 and stored["latent_dim"] == 4
    n_train = len(modkit.load(run_dir, device="cpu").setup.train)
    assert stored["fitted_on"]["examples"] == n_train
    result = cli("sample", run_dir, "--sampler", "gmm", "-n", "3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (run_dir / "generated" / "prior_samples_gmm.png").is_file()


def test_the_fit_is_on_the_joint_posterior_means(run_dir):
    """The stored mixture is scikit-learn's fit of exactly q(z | image, label)'s means over the training set."""
    from sklearn.mixture import GaussianMixture

    from modkit.storage import latent_sampler_file

    assert cli("fit-sampler", run_dir, "gmm", "--name", "one", "--set", "n_components=1", "--device", "cpu").exit_code == 0
    run = modkit.load(run_dir, device="cpu")
    batch = run.setup.train.__getitems__(list(range(len(run.setup.train))))
    with torch.no_grad():
        z = run.model.posterior(batch, run.model.names).mean.reshape(-1, 4).double().numpy()
    reference = GaussianMixture(n_components=1, covariance_type="full").fit(z)
    state, _ = latent_sampler_file.read(run_dir, "one")
    assert torch.allclose(state["means"], torch.as_tensor(reference.means_), atol=1e-5)
    assert torch.allclose(state["covariances"], torch.as_tensor(reference.covariances_), atol=1e-5)


def test_run_sample_draws_from_the_sampler_and_repeats_per_seed(run_dir):
    assert cli("fit-sampler", run_dir, "maf", "--set", "epochs=2", "--set", "hidden_features=[8]", "--device", "cpu").exit_code == 0
    run = modkit.load(run_dir, device="cpu")
    a = run.sample(6, seed=3, sampler="maf")
    b = run.sample(6, seed=3, sampler="maf")
    assert set(a) == set(run.model.names) and all(len(v) == 6 for v in a.values())
    assert a["label"] == b["label"]
    from modkit.reporting.generation import latent_draw

    draw = latent_draw(run, "maf")
    z1, z2 = draw(5, torch.Generator().manual_seed(1)), draw(5, torch.Generator().manual_seed(1))
    assert z1.shape == (5, 4) and torch.equal(z1, z2)


@pytest.mark.parametrize("args, says", [
    (["nope"], "unknown latent sampler 'nope' (available: gmm, iaf, maf)"),
    (["gmm", "--set", "n_components=0"], "--set n_components: Input should be greater than or equal to 1"),
    (["gmm", "--set", "colours=3"], "--set colours: unknown option for latent sampler 'gmm'"),
    (["gmm", "--set", "n_components"], "is not KEY=VALUE"),
    (["gmm", "--name", "../escape"], "latent sampler name '../escape'"),
])
def test_fit_sampler_mistakes_are_one_line(run_dir, args, says):
    assert says in one_error_line(cli("fit-sampler", run_dir, *args, "--device", "cpu"))


def test_sampling_from_a_sampler_never_fitted_is_one_line(run_dir):
    line = one_error_line(cli("sample", run_dir, "--sampler", "never", "--device", "cpu"))
    assert "has no fitted latent sampler 'never'" in line and "modkit fit-sampler" in line


def test_a_damaged_sampler_file_is_one_line(run_dir):
    assert cli("fit-sampler", run_dir, "gmm", "--name", "broken", "--device", "cpu").exit_code == 0
    (run_dir / "samplers" / "broken.safetensors").write_bytes(b"not a safetensors file")
    assert "is not a readable safetensors file" in one_error_line(cli("sample", run_dir, "--sampler", "broken", "--device", "cpu"))


def test_the_recipe_fits_its_sampler_when_training_ends(tmp_path):
    raw = base_recipe()
    raw["modalities"]["image"]["hidden"] = [16]
    raw["modalities"]["label"]["hidden"] = [16]
    raw["model"]["latent_dim"] = 4
    raw["train"].update(epochs=1, device="cpu", progress=False)
    raw["eval"].update(samples=2, latent_sampler={"type": "gmm", "n_components": 2})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    result = cli("train", recipe, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "samplers" / "gmm.json").read_text())["options"]["n_components"] == 2
    # a misspelt option stops the run before it trains
    raw["eval"]["latent_sampler"] = {"type": "gmm", "components": 2}
    recipe.write_text(yaml.safe_dump(raw))
    line = one_error_line(cli("train", recipe, "--out", tmp_path / "bad"))
    assert "eval.latent_sampler components: unknown option" in line
    assert not (tmp_path / "bad" / "checkpoint.safetensors").exists()


def test_modkit_plugins_lists_the_three():
    result = cli("plugins")
    assert result.exit_code == 0, result.output
    section = result.output.split("latent samplers:")[1].split("plugins:")[0]
    for name in ("gmm", "maf", "iaf"):
        assert f"  {name} " in section and "samplers (modkit-vae)" in section


def test_an_export_carries_its_fitted_samplers(run_dir, tmp_path):
    """A fitted sampler belongs to the generative model: the exported folder samples from it as the run does."""
    assert cli("fit-sampler", run_dir, "gmm", "--name", "travels", "--set", "n_components=2", "--device", "cpu").exit_code == 0
    run = modkit.load(run_dir, device="cpu")
    exported = modkit.load(run.export(tmp_path / "exported"), device="cpu")
    assert exported.exported
    assert exported.sample(5, seed=1, sampler="travels")["label"] == run.sample(5, seed=1, sampler="travels")["label"]
