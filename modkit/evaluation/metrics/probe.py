"""Linear probes: how linearly a class attribute can be read off each subset's posterior mean (MoPoE §5, MMVAE+)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from modkit.evaluation.judges import attribute_values, iterate, split_attribute
from modkit.evaluation.metric import (BaseMetric, Block, Decoded, EvalContext, PosteriorBatch, Progress, Table, Text, cap, grouped,
                                      headline_subsets)
from modkit.evaluation.representations import linear_probe


class Probe(BaseMetric):
    name = "probe"
    group = "probe"
    keys = ("probe",)
    needs = frozenset({"encoders"})  # encodes the training rows it fits on
    description = ("Linear probes (MoPoE §5): a logistic regression per subset and attribute, fit on the posterior means of "
                   "at most probe_rows training rows (only the labels the model saw with that subset's modalities), "
                   "scored by class-balanced accuracy on the test items' posterior means; chance 1/K for K classes, ceiling 1.")

    def start(self, context: EvalContext) -> None:
        self.context = context
        self.means: list[torch.Tensor] = []
        self.positions: list[np.ndarray] = []

    def update(self, batch: PosteriorBatch, decoded: Decoded | None) -> None:
        if decoded is None and self.context.attributes:
            self.means.append(batch.mean.float().cpu())
            self.positions.append(batch.positions if batch.aligned else np.full(len(batch.batch), -1))

    def compute(self) -> dict[str, Any]:
        context = self.context
        if not context.attributes or not self.means:
            return {}
        context.echo("linear probes …")
        with context.clock("probes"):
            return {"probe": self._fit(torch.cat(self.means, 1).numpy(), np.concatenate(self.positions))}

    def _fit(self, test_mu: np.ndarray, test_pos: np.ndarray) -> dict:
        """Fit on training-row posterior means, score on test-row means, per subset and attribute."""
        context = self.context
        run, model, settings, masks, attrs = context.run, context.model, context.settings, context.masks, context.attributes
        train_view = context.train
        probe_view = run.view(train_view.rows.numpy()[cap(len(train_view), settings.probe_rows, settings.seed)])
        train_attrs = attribute_values(probe_view.records, attrs, probe_view.rows.numpy())
        mus, kept = [], []
        with torch.no_grad():
            for positions, batch in iterate(probe_view, settings.batch_size):
                if len(batch) != len(positions):
                    continue
                batch = batch.to(model.device)
                mus.append(model.fusion.posterior(model.encode(batch), masks).mean.float().cpu())
                kept.append(positions)
        train_mu = torch.cat(mus, 1).numpy()
        kept_rows = np.concatenate(kept)
        ok = test_pos >= 0
        # Only the labels the model was allowed to see with the probed subset's modalities: under weak
        # supervision an unpaired row shows its label alone, so a probe from the image may not learn from it.
        probe_rows = probe_view.rows.numpy()[kept_rows]
        out: dict[str, dict[str, float | None]] = {}
        bar = Progress(len(context.labels), "linear probes")
        for s, label in enumerate(context.labels):
            given = [n for n, on in zip(model.names, masks[s].tolist()) if on]
            shown: dict[str, np.ndarray | None] = {}  # per field: which probe rows showed it with ``given`` (48 attributes, one field)
            for a in attrs:
                field = split_attribute(a)[0]
                if field not in shown:
                    seen = run.seen_rows(field, given)
                    shown[field] = None if seen is None else np.isin(probe_rows, seen)
                y = train_attrs[a][kept_rows]
                if shown[field] is not None:
                    y = np.where(shown[field], y, -1)
                out.setdefault(label, {})[a] = linear_probe(train_mu[s], y, test_mu[s][ok], context.test_attributes[a][test_pos[ok]])
            bar(1)
        bar.close()
        return out

    def summary(self, result: dict, names: list[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for subset in headline_subsets(names):
            for a, v in grouped(result.get("probe", {}).get(subset, {})).items():
                out[f"probe/{subset}/{a}"] = v
        return out

    def report(self, result: dict) -> list[Block]:
        if not result.get("probe"):
            return []
        probes = {s: grouped(v) for s, v in result["probe"].items()}
        attrs = list(dict.fromkeys(a for v in probes.values() for a in v))
        return [Text(["## Linear probes", "", "Balanced accuracy of logistic regression on posterior means (fit on training rows):", ""]),
                Table(["posterior", *attrs], [[s, *[v.get(a) for a in attrs]] for s, v in probes.items()])]


METRIC = Probe
