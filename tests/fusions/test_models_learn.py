"""Each of MultiVae's models that modkit has as a fusion learns: trained a few seconds on the digits, the label
inferred from the image alone (posterior mean given the image, decoded by the label's decoder) is right far more
often than chance (1/10)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modkit.config.recipe import load_recipe
from modkit.core.fusion import SubsetPlan
from modkit.core.subsets import all_subsets
from modkit.data.dataset import EpochBatchSampler, make_loader
from modkit.plugins.loader import load_plugins
from modkit.training import stages as staging
from modkit.training.builder import build

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SMALL = ["modalities.image.hidden=[128]", "modalities.label.hidden=[64]", "model.latent_dim=16",
         "model.beta={start: 1.0, end: 1.0, anneal_epochs: 0}"]
#: fusion → extra overrides (small networks of its own)
MODELS = {"jmvae": ["model.fusion.hidden=[128]"], "mvtcae": [], "dmvae": [], "mmvae_plus": ["model.fusion.K=3"],
          # the conditional model the other way round from its recipe: p(label | z, image), judged given the image alone
          "cvae": ["model.fusion.main_modality=label", "model.fusion.conditioning_modalities=[image]", "model.fusion.hidden=[128]"]}
MODELS["crmvae"] = []
MODELS["cmvae"] = ["model.fusion.K=3"]
MODELS["telbo"] = ["model.fusion.hidden=[128]", "model.fusion.warmup=5"]  # trained in its two stages: 5 joint epochs, 5 unimodal
# trained in their stages (5 joint epochs, then the flows; JNF-DCCA over 14 epochs: 5 joint, 3 DCCA, 6 unimodal, as its
# unimodal encoders read embeddings that only exist after the DCCA stage), image→label through the flow posterior
_FLOWS = ["model.fusion.hidden=[128]", "model.fusion.unimodal_hidden=[64]", "model.fusion.hidden_size=16", "model.fusion.n_hidden_in_made=1"]
MODELS.update({"jnf": [*_FLOWS, "model.fusion.warmup=5"],
               "jnf_dcca": [*_FLOWS, "model.fusion.dcca_hidden=[64]", "model.fusion.warmup=5", "model.fusion.nb_epochs_dcca=3"]})
#: fusions that need more than 10 epochs to get through their stages
EPOCHS = {"jnf_dcca": 14}
# the nexus latent barely informs the modality latents under MultiVae's defaults in 10 epochs (σ_m = 1, β_top = 1)
MODELS["nexus"] = ["model.fusion.hidden=[128]", "model.fusion.decoder_hidden=[128]", "model.fusion.modalities_specific_dim=8",
                   "model.fusion.top_beta=0.01", "model.fusion.adapt_top_decoder_variance=[image, label]"]

# the ladder collapses onto its prior (every KL 0) under β_f = 1 from the first step; MultiVae's beta, the KL weight, eases it
MODELS["mhvae"] = ["model.fusion.hidden=128", "model.fusion.beta=0.1"]


def image_to_label_accuracy(fusion: str, epochs: int, overrides: list[str]) -> float:
    recipe, _ = load_recipe(RECIPES / f"digits-{fusion}.yaml", [*SMALL, f"train.epochs={epochs}", *overrides])
    torch.manual_seed(0)
    setup = build(recipe, load_plugins())
    model = setup.model
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    plan = SubsetPlan.from_mask(all_subsets(len(model.names)))
    model.train()
    # a fusion that trains in stages (telbo): each epoch in its stage, a fresh optimizer at each, as the trainer does
    phases, trainable = staging.resolve(recipe, model), {n for n, p in model.named_parameters() if p.requires_grad}
    for epoch in range(epochs):
        if phases and staging.stage_at(phases, epoch).first_epoch == epoch:
            optimizer = torch.optim.Adam(staging.apply(model, staging.stage_at(phases, epoch), trainable), lr=2e-3)
        for batch in make_loader(setup.train, EpochBatchSampler(len(setup.train), 64, seed=epoch)):
            loss = model(batch, plan, 1.0).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    model.stage = None
    right = total = 0
    with torch.no_grad():
        for batch in make_loader(setup.test, EpochBatchSampler(len(setup.test), 256, seed=0, shuffle=False)):
            z = model.posterior(batch, ["image"]).mean[0]
            guess = model.modalities["label"].decode(z).argmax(-1)
            right += int((guess == batch.data["label"]).sum())
            total += len(guess)
    return right / total


@pytest.mark.slow  # about 3 s of training each on one free core; more on a shared machine
@pytest.mark.parametrize("fusion", list(MODELS))
def test_image_to_label_well_above_chance(fusion):
    epochs = EPOCHS.get(fusion, 10)
    accuracy = image_to_label_accuracy(fusion, epochs, MODELS[fusion])
    assert accuracy > 0.6, f"{fusion}: image→label accuracy {accuracy:.2f} after {epochs} epochs (chance 0.10)"
