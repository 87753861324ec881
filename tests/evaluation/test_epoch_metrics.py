"""summary.json's cross-modal accuracy: balanced per class (chance stated), checked against scikit-learn."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from modkit.config.recipe import load_recipe
from modkit.core.fusion import SubsetPlan
from modkit.core.subsets import all_subsets, singles
from modkit.data.dataset import EpochBatchSampler, make_loader
from modkit.evaluation.epoch_metrics import test_metrics as summary_metrics
from modkit.plugins.loader import load_plugins
from modkit.training.builder import build

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["modalities.image.hidden=[16]", "modalities.label.hidden=[16]", "modalities.attributes.hidden=[16]",
         "modalities.caption.hidden=16", "modalities.translation.hidden=16", "model.latent_dim=4"]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    recipe, _ = load_recipe(ROOT / "recipes" / "digits.yaml", SMALL)
    built = build(recipe, load_plugins())
    model = built.model.eval()
    # a few steps so predictions are not constant
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    plan = SubsetPlan.from_mask(all_subsets(len(model.names)))
    for step, batch in enumerate(make_loader(built.train, EpochBatchSampler(len(built.train), 128, seed=0))):
        loss = model(batch, plan, 1.0).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 10:
            break
    return built


def brute_force(setup, source: str, target: str) -> float:
    """Decode the target from the source's posterior mean, item by item through scikit-learn."""
    model = setup.model
    names = model.names
    batch = setup.test.__getitems__(list(range(len(setup.test))))
    with torch.no_grad():
        experts = model.encode(batch)
        z = model.fusion.posterior(experts, singles(len(names))).mean[names.index(source)]
        out = model.modalities[target].decode(z.unsqueeze(0))[0]
    both = (batch.present[:, names.index(source)] & batch.present[:, names.index(target)]).numpy()
    if target == "label":
        return balanced_accuracy_score(batch.data[target].numpy()[both], out.argmax(-1).numpy()[both])
    truth = batch.data[target].numpy()[both].round().astype(int)
    pred = (out.numpy()[both] > 0).astype(int)
    return float(np.mean([balanced_accuracy_score(truth[:, a], pred[:, a]) for a in range(truth.shape[1])]))


def test_balanced_accuracy_matches_scikit_learn(setup):
    torch.manual_seed(1)
    loader = make_loader(setup.test, EpochBatchSampler(len(setup.test), 100, shuffle=False))  # several batches, summed
    metrics = summary_metrics(setup.model, loader, torch.device("cpu"))
    for source, target in [("image", "label"), ("caption", "label"), ("image", "attributes"), ("label", "attributes")]:
        assert metrics[f"balanced_accuracy/{source}->{target}"] == pytest.approx(brute_force(setup, source, target), abs=1e-9)
    assert metrics["chance/label"] == pytest.approx(0.1) and metrics["chance/attributes"] == pytest.approx(0.5)
    assert not any(k.startswith("coherence/") for k in metrics)  # one name per measure: eval.json owns "coherence"
    assert "accuracy/image->caption" in metrics  # exact-match text keeps its plain accuracy


def test_a_constant_attribute_predictor_scores_chance(setup):
    # the audit's case: per-bit accuracy gave a constant predictor 0.60 on the digits attributes
    attrs = setup.model.modalities["attributes"]
    x = torch.as_tensor(np.stack([setup.test.__getitems__([i]).data["attributes"][0].numpy() for i in range(200)]))
    constant = torch.full((1, len(x), x.shape[1]), -5.0)  # always "no"
    pred, truth, k = attrs.class_predictions(constant, x)
    per_bit = (pred[0] == truth).float().mean().item()
    assert per_bit > 0.55  # what the old per-bit "coherence" reported
    balanced = np.mean([balanced_accuracy_score(truth[:, a].numpy(), pred[0, :, a].numpy()) for a in range(truth.shape[1])])
    assert balanced == pytest.approx(0.5) and k == 2
