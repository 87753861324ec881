"""``evaluate_run`` end to end on a model with known answers: multimodal PPCA with a class attribute.

The run is assembled in memory (no training): the log-likelihoods in ``eval.json`` must match the
closed form (tolerance 0.05 nats on the test mean, K = 2000), and the class — the sign of the first
latent, which both modalities carry — must be read off by judges, probes and cross generation.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from ppca_toys import exact_log_p, ppca_model  # noqa: E402

from modkit.training.builder import Setup  # noqa: E402
from modkit.data.dataset import ArrayRecords, DatasetSource, ModalityView  # noqa: E402
from modkit.evaluation.suite import EvalSettings, evaluate_run  # noqa: E402
from modkit.plugins.loader import load_plugins  # noqa: E402
from modkit.config.recipe import validate_recipe  # noqa: E402
from modkit.storage.files import write_json  # noqa: E402
from modkit.runs.loading import LoadedRun  # noqa: E402
from modkit.core.subsets import FullSampler, SamplerConfig  # noqa: E402

SIGMA = 0.3
BLOCKS = {"a": 5, "b": 4}


class InMemory(DatasetSource):
    """Stands in for the dataset plugin; only its hooks (no attributes declared, no ground truth) are used."""


def test_evaluate_run_on_ppca(tmp_path):
    torch.manual_seed(0)
    model, W, b = ppca_model(BLOCKS, sigma=SIGMA, scales=(3.0, 1.0), mu_shift=0.1, logvar_shift=0.5)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(400, 2, generator=g, dtype=torch.float64)
    x = z @ W.T + b + SIGMA * torch.randn(400, 9, generator=g, dtype=torch.float64)
    records = ArrayRecords({"a": x[:, :5].float(), "b": x[:, 5:].float(), "cls": (z[:, 0] > 0).long()})
    views = [ModalityView(records, dict(model.modalities), {"a": "a", "b": "b"}, rows) for rows in (np.arange(300), np.arange(300, 400))]
    recipe = validate_recipe({"data": {"dataset": "inmemory"}, "modalities": {"a": {"type": "ppca"}, "b": {"type": "ppca"}},
                              "model": {"latent_dim": 2}})
    plugins = load_plugins(entry_points=False)
    plugins.registry.add_dataset("inmemory", InMemory)
    setup = Setup(recipe, model, FullSampler(2, SamplerConfig(type="full")), *views)
    run = LoadedRun(tmp_path, recipe, {}, plugins, setup, torch.device("cpu"), None)

    result = evaluate_run(run, EvalSettings(iw_samples=2000, prior_samples=2000, denominator="posterior", joint_samples=500,
                                             likelihoods="all", iw_items=None))
    write_json(tmp_path / "eval.json", result)  # everything in it is JSON
    assert json.loads((tmp_path / "eval.json").read_text())["attributes"] == ["cls"]

    test = x[300:]
    exact_a = exact_log_p(test[:, :5], W[:5], b[:5], SIGMA).mean().item()
    exact_ab = exact_log_p(test, W, b, SIGMA).mean().item()
    exact_b = exact_log_p(test[:, 5:], W[5:], b[5:], SIGMA).mean().item()
    lik = result["likelihood"]
    assert abs(lik["log p(a)"]["mean"] - exact_a) < 0.05
    assert abs(lik["log p(a,b)"]["mean"] - exact_ab) < 0.05
    assert abs(lik["log p(a|b)"]["mean"] - (exact_ab - exact_b)) < 0.05
    assert lik["log p(a)"]["items"] == 100

    # the class is the sign of the dominant latent: every route to it should find it
    assert result["judges"]["a/cls"]["kind"] == "classifier" and result["judges"]["a/cls"]["balanced_accuracy"] > 0.9
    assert result["coherence_mean"]["cross"]["b->a"]["cls"] > 0.85  # decoded from the posterior mean
    assert result["coherence"]["cross"]["b->a"]["cls"] > 0.75  # from z ~ q(z | b): the posterior's spread blurs the sign
    assert result["coherence"]["joint"]["cls"] > 0.85
    assert result["probe"]["a"]["cls"] > 0.9
    rel = result["relatedness"]["a~b"]
    assert rel["paired_mean"] < rel["unpaired_mean"] and rel["auc"] > 0.8
    assert result["reconstruction"]["a+b->a"]["nll"] < result["reconstruction"]["b->a"]["nll"]
