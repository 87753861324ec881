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


E2E = {"crmvae": []}


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
