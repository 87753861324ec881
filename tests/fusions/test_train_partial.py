"""Every fusion of this area trains a few steps on the digits with most samples missing a modality, without NaN,
and its posterior serves modkit's evaluation (test ELBO and coherence)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modkit.training.builder import build
from modkit.data.dataset import EpochBatchSampler, make_loader
from modkit.evaluation.epoch_metrics import test_metrics as evaluate_metrics
from modkit.core.fusion import SubsetPlan
from modkit.plugins.loader import load_plugins
from modkit.config.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SMALL = ["modalities.image.hidden=[32]", "modalities.label.hidden=[32]", "modalities.label.embedding_dim=8", "model.latent_dim=8"]

CASES = {
    "poe": ("digits-poe-partial.yaml", []),
    "moe-elbo-laplace-learned-prior": ("digits-moe-partial.yaml", ["model.fusion.objective=elbo", "model.fusion.family=laplace", "model.fusion.learn_prior=true", "model.fusion.k=2"]),
    "moe-iwae": ("digits-moe-partial.yaml", ["model.fusion.objective=iwae", "model.fusion.k=3"]),
    "moe-dreg": ("digits-moe-partial.yaml", ["model.fusion.k=3"]),
    "moe-dreg-mmvae-laplace": ("digits-moe-partial.yaml", ["model.fusion.objective=dreg_mmvae", "model.fusion.family=laplace", "model.fusion.k=3"]),
    "mopoe": ("digits-mopoe-partial.yaml", []),
    "mopoe-no-prior-expert-mvae-sampler": ("digits-mopoe-partial.yaml", ["model.fusion.prior_expert=false", "model.sampler={type: mvae, k: 1}"]),
    "mopoe-private": ("digits-mopoe-partial.yaml", ["model.fusion.private_dim=3"]),
    "poe_quotient": ("digits-poe-partial.yaml", ["model.fusion=poe_quotient"]),
}


@pytest.fixture(scope="module")
def plugins():
    return load_plugins()


@pytest.mark.parametrize("case", list(CASES))
def test_trains_with_missing_modalities_without_nan(case, plugins):
    recipe_file, overrides = CASES[case]
    recipe, _ = load_recipe(RECIPES / recipe_file, [*SMALL, *overrides])
    assert recipe.data.paired_fraction == 0.1
    torch.manual_seed(0)
    setup = build(recipe, plugins)
    model, sampler = setup.model, setup.sampler
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.train.lr, amsgrad=recipe.train.amsgrad)
    batches = EpochBatchSampler(len(setup.train), 64, seed=0)
    unimodal_rows = 0
    for step, batch in enumerate(make_loader(setup.train, batches)):
        if step == 6:
            break
        unimodal_rows += int((batch.present.sum(1) == 1).sum())
        out = model(batch, SubsetPlan.from_mask(sampler.sample()), 1.0)
        optimizer.zero_grad()
        out.loss.backward()
        assert torch.isfinite(out.loss), case
        assert all(torch.isfinite(v).all() for v in out.terms.values()), (case, out.terms)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None), case
        optimizer.step()
    assert unimodal_rows > 0  # the data really had missing modalities
    test = setup.test
    metrics = evaluate_metrics(model, [test.__getitems__(list(range(100)))], torch.device("cpu"), n_samples=3)
    assert all(v is not None and v == v for v in metrics.values()), metrics  # no NaN
    assert 0.0 <= metrics["balanced_accuracy/image->label"] <= 1.0
    assert metrics["test/elbo"] < 0
