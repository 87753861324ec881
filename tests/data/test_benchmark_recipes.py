"""The papers' benchmark recipes, each trained at its small tier on the offline stand-in, through the command line.

The recipes are the papers' settings; ``--set`` points ``data.root`` at a stand-in generated here and
shrinks the run to one epoch, as each recipe's header comment says. What is checked: the recipe builds
against the dataset's real file layout, trains, and scores a finite test ELBO for every modality.
"""
import json
import math

import pytest
import yaml

from modkit_celeba import make_celeba
from modkit_cub import make_cub
from modkit_mnist_svhn import make_mnist_svhn
from modkit_polymnist import make_polymnist

from benchmark_helpers import REPO, modkit, train_small_here

SMALL = {
    "polymnist-mopoe.yaml": ("polymnist", ["model.latent_dim=8", "data.batch_size=32"]),
    "polymnist-mmvae.yaml": ("polymnist", ["model.latent_dim=8", "data.batch_size=32"]),
    "polymnist-mvae.yaml": ("polymnist", ["model.latent_dim=8", "data.batch_size=32"]),
    "polymnist-crmvae.yaml": ("polymnist", ["model.latent_dim=8", "data.batch_size=32"]),
    "polymnist-cmvae.yaml": ("polymnist", ["model.latent_dim=8", "data.batch_size=32", "model.fusion.K=2",
                                            "model.fusion.modalities_specific_dim=2"]),
    "polymnist-nexus.yaml": ("polymnist", ["model.latent_dim=8", "model.fusion.modalities_specific_dim=8", "data.batch_size=32"]),
    "polymnist-mhvae.yaml": ("polymnist", ["model.latent_dim=8", "data.batch_size=32"]),
    "polymnist-mmvae_plus.yaml": ("polymnist", ["model.latent_dim=8", "model.fusion.modalities_specific_dim=2"]),
    "polymnist-dmvae.yaml": ("polymnist", ["model.latent_dim=8", "model.fusion.modalities_specific_dim=2", "data.batch_size=32"]),
    "polymnist-mvtcae.yaml": ("polymnist", ["model.latent_dim=8", "data.batch_size=32"]),
    "polymnist-jmvae.yaml": ("polymnist", ["model.latent_dim=8", "data.batch_size=32", "model.fusion.hidden=[32]"]),
    "polymnist-cvae.yaml": ("polymnist", ["model.latent_dim=8", "data.batch_size=32", "model.fusion.hidden=[32]"]),
    "mnist-svhn-mmvae.yaml": ("mnist_svhn", ["data.dataset.copies=1", "model.fusion.k=2"]),
    "celeba-mvae19.yaml": ("celeba", ["model.latent_dim=8", "data.batch_size=32"]),
    "cub-mmvae.yaml": ("cub", ["model.latent_dim=8", "model.fusion.k=2", "data.batch_size=32"]),
}


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    root = tmp_path_factory.mktemp("standin")
    make_polymnist(root / "polymnist", n_train=96, n_test=32)
    make_mnist_svhn(root / "mnist_svhn", n_mnist=(120, 40), n_svhn=(140, 50))
    make_celeba(root / "celeba", n=64)
    make_cub(root / "cub")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(SMALL))
def test_small_tier_trains_on_the_stand_in(standins, tmp_path, recipe):
    dataset, sets = SMALL[recipe]
    header = (REPO / "recipes" / recipe).read_text()
    assert "Needs on disk" in header and "Small tier" in header  # the recipe says what it needs and how to try it
    assert all(f"--set {s}" in header for s in sets)  # and its small-tier line is the one trained here
    train_small_here(recipe, standins / dataset, tmp_path / "run", *sets)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    modalities = yaml.safe_load((REPO / "recipes" / recipe).read_text())["modalities"]
    # a split attribute becomes one modality per name: <modality>_<name>
    names = [f"{m}_{a}" for m, spec in modalities.items() if spec.get("split") for a in spec["names"]] + \
            [m for m, spec in modalities.items() if not spec.get("split")]
    # a model without a density over its latent (Nexus) reports no test ELBO, by name (Fusion.no_likelihood_reason), and
    # a conditional model (cvae) has no unconditional prior: its test ELBO is reported as not applicable too
    fusion = yaml.safe_load((REPO / "recipes" / recipe).read_text())["model"]["fusion"]["type"]
    elbo = summary["test/elbo"]
    assert summary["epochs"] == 1 and (elbo is None if fusion in ("cvae", "nexus") else elbo is not None and math.isfinite(elbo))
    assert all(math.isfinite(summary[f"test/rec/{m}"]) for m in names), sorted(summary)


@pytest.mark.slow
def test_coherence_reads_the_labels_of_gathered_pairs(standins, tmp_path):
    """The papers' metric on MNIST-SVHN: evaluation reads ``label`` through the lazily gathered records."""
    # two copies of the matching: the evaluation's classifier wants more training rows than one copy of this stand-in has
    train_small_here("mnist-svhn-mmvae.yaml", standins / "mnist_svhn", tmp_path / "run", "data.dataset.copies=2", "model.fusion.k=2")
    result = modkit("eval", tmp_path / "run", "--metrics", "coherence", "--max-items", "40", "--device", "cpu")
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads((tmp_path / "run" / "eval.json").read_text())
    flat = json.dumps(scores)
    assert "coherence/mnist->svhn/label" in flat and "coherence/svhn->mnist/label" in flat
