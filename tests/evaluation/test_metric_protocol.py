"""The Metric protocol: a new metric is one file (active units), third-party metrics register through the hook.

Active units are checked against numpy on posterior means computed independently (model.posterior per
subset), both fed by hand (presence masks) and end to end through ``evaluate_run`` on the in-memory PPCA run.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from ppca_toys import ppca_model  # noqa: E402

from modkit.config.recipe import validate_recipe  # noqa: E402
from modkit.core.batch import Batch  # noqa: E402
from modkit.core.subsets import FullSampler, SamplerConfig, all_subsets, subset_names  # noqa: E402
from modkit.data.dataset import ArrayRecords, DatasetSource, ModalityView  # noqa: E402
from modkit.evaluation.metric import EvalContext, EvalSettings, Metric, PosteriorBatch, Stages  # noqa: E402
from modkit.evaluation.metrics.active_units import THRESHOLD, ActiveUnits  # noqa: E402
from modkit.evaluation.suite import GROUPS, evaluate_run  # noqa: E402
from modkit.plugins.loader import load_plugins  # noqa: E402
from modkit.runs.loading import LoadedRun  # noqa: E402
from modkit.training.builder import Setup  # noqa: E402


class InMemory(DatasetSource):
    """Stands in for the dataset plugin."""


def ppca_run(tmp_path, extra_plugins=()):
    torch.manual_seed(0)
    model, W, b = ppca_model({"a": 5, "b": 4}, sigma=0.3, scales=(3.0, 0.05), mu_shift=0.1, logvar_shift=0.5)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(300, 2, generator=g, dtype=torch.float64)
    x = z @ W.T + b + 0.3 * torch.randn(300, 9, generator=g, dtype=torch.float64)
    records = ArrayRecords({"a": x[:, :5].float(), "b": x[:, 5:].float(), "cls": (z[:, 0] > 0).long()})
    views = [ModalityView(records, dict(model.modalities), {"a": "a", "b": "b"}, rows) for rows in (np.arange(200), np.arange(200, 300))]
    recipe = validate_recipe({"data": {"dataset": "inmemory"}, "modalities": {"a": {"type": "ppca"}, "b": {"type": "ppca"}},
                              "model": {"latent_dim": 2}})
    plugins = load_plugins(extra_plugins, entry_points=False)
    assert not plugins.broken, plugins.broken
    plugins.registry.add_dataset("inmemory", InMemory)
    setup = Setup(recipe, model, FullSampler(2, SamplerConfig(type="full")), *views)
    return LoadedRun(tmp_path, recipe, {}, plugins, setup, torch.device("cpu"), None)


def independent_active_units(model, batch: Batch, subset: list[str]):
    """numpy: posterior means of the items having the subset, population variance per dimension."""
    with torch.no_grad():
        mean = model.posterior(batch, subset).mean[0].double().numpy()
    has = batch.present[:, [model.names.index(n) for n in subset]].all(1).numpy()
    variance = np.var(mean[has], axis=0)
    return int((variance > THRESHOLD).sum()), variance, int(has.sum())


def test_active_units_fed_by_hand_match_numpy(tmp_path):
    run = ppca_run(tmp_path)
    model = run.model.eval()
    g = torch.Generator().manual_seed(5)
    batches = []
    for rows in (40, 25):
        present = torch.rand(rows, 2, generator=g) < 0.7
        present[~present.any(1), 0] = True
        batches.append(Batch({"a": torch.randn(rows, 5, generator=g) * 2, "b": torch.randn(rows, 4, generator=g)}, present))
    masks = all_subsets(2)
    labels = subset_names(masks, model.names)
    context = EvalContext(run=run, model=model, settings=EvalSettings(), names=model.names, masks=masks, labels=labels,
                          test=None, train=None, iw=None, attributes=[], test_attributes={}, echo=print, clock=Stages({}))
    metric = ActiveUnits()
    assert isinstance(metric, Metric)
    metric.start(context)
    with torch.no_grad():
        for batch in batches:
            usable = (masks.unsqueeze(1) <= batch.present.unsqueeze(0)).all(-1)
            metric.update(PosteriorBatch(np.arange(len(batch)), True, batch, model.fusion.posterior(model.encode(batch), masks).mean, usable), None)
    cells = metric.compute()["active_units"]
    whole = Batch({k: torch.cat([b.data[k] for b in batches]) for k in ("a", "b")}, torch.cat([b.present for b in batches]))
    for label in labels:
        active, variance, items = independent_active_units(model, whole, label.split("+"))
        assert cells[label]["items"] == items
        assert cells[label]["active"] == active
        np.testing.assert_allclose(cells[label]["variance"], variance, rtol=1e-6, atol=1e-9)


def test_active_units_end_to_end_count_the_collapsed_dimension_out(tmp_path):
    """The second PPCA direction is scaled by 0.05: its posterior mean barely moves, so it is not an active unit."""
    run = ppca_run(tmp_path)
    assert "active_units" in GROUPS  # found in the metrics folder: no list was edited to add it
    result = evaluate_run(run, EvalSettings(metrics=["active_units"]))
    assert set(result) >= {"active_units", "summary"} and "coherence" not in result
    test = run.setup.test
    batch = test.__getitems__(list(range(len(test))))
    for label in ("a", "b", "a+b"):
        active, variance, items = independent_active_units(run.model, batch, label.split("+"))
        cell = result["active_units"][label]
        assert cell["active"] == active and cell["items"] == items == 100
        np.testing.assert_allclose(cell["variance"], variance, rtol=1e-6, atol=1e-9)
    assert result["active_units"]["a+b"]["active"] == 1  # the ground truth: one of two directions carries the data
    assert result["summary"]["active_units/a+b"] == 1.0


def test_a_third_party_metric_registers_through_the_hook(tmp_path, monkeypatch):
    """A plugin module's modkit_register adds a Metric class; eval.json and the headline numbers carry it."""
    (tmp_path / "item_count_plugin.py").write_text(textwrap.dedent('''
        from modkit import BaseMetric, Table, Text, hookimpl

        class ItemCount(BaseMetric):
            name = "item_count"
            group = "item_count"
            keys = ("item_count",)
            description = "How many test items had every modality (a count, no sampling)."

            def start(self, context):
                self.n = 0

            def update(self, batch, decoded):
                if decoded is None:
                    self.n += int(batch.usable[-1].sum())

            def compute(self):
                return {"item_count": {"complete": self.n}}

            def summary(self, result, names):
                return {"item_count": float(result["item_count"]["complete"])} if "item_count" in result else {}

        @hookimpl
        def modkit_register(registry):
            registry.add_metric("item_count", ItemCount)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    run = ppca_run(tmp_path, ["item_count_plugin"])
    result = evaluate_run(run, EvalSettings(metrics=["item_count", "reconstruction"]))
    assert result["item_count"] == {"complete": 100} and result["summary"]["item_count"] == 100.0
    assert "reconstruction" in result and "active_units" not in result
