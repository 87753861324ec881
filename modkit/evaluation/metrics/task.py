"""Task metrics from plugins (``registry.add_metric(name, fn)``, fn(modality) → None or a state): mIoU, BLEU, ….

Each chosen ``fn`` is called once per (given subset, target modality); its state sees, per test batch,
the target predicted from the subset's posterior mean and the real target, on the items that have both
(:mod:`modkit.evaluation.task_metrics` has ``Collect`` and ``Mean`` for the usual states). A metric that
raises is reported in eval.json, not fatal.
"""
from __future__ import annotations

import json
from typing import Any

from modkit.evaluation.judges import select
from modkit.evaluation.metric import BaseMetric, Block, Decoded, EvalContext, PosteriorBatch, Table, Text

SIGNATURE = "a metric is fn(modality) -> None or a state with update(predicted, target) and compute()"


class TaskMetrics(BaseMetric):
    name = "task"
    group = "task"
    keys = ("task",)
    needs = frozenset({"decoded"})
    description = ("Task metrics registered by plugins (fn(modality) → a state): the target predicted from each subset's "
                   "posterior mean against the real target, over the test items that have both; what each follows, its "
                   "chance and ceiling are the plugin's.")

    def start(self, context: EvalContext) -> None:
        self.context = context
        self.fns = dict(context.task_metrics)
        self.states: dict[tuple[str, int, str], Any] = {}
        self.broken: dict[str, str] = {}

    def update(self, batch: PosteriorBatch, decoded: Decoded | None) -> None:
        if decoded is None:
            return
        labels, t = self.context.labels, decoded.target
        modality = self.context.model.modalities[t]
        pred, valid, s0 = decoded.predicted, decoded.valid, decoded.start
        for metric, fn in self.fns.items():
            if metric in self.broken:
                continue
            for s in range(decoded.start, decoded.stop):
                key = (metric, s, t)
                try:
                    if key not in self.states:
                        self.states[key] = fn(modality)
                    if self.states[key] is not None and bool(valid[s - s0].any()):
                        index = valid[s - s0].nonzero().flatten()
                        predicted = {k: v[s - s0][index] for k, v in pred.items()} if isinstance(pred, dict) else pred[s - s0][index]
                        self.states[key].update(predicted, select(decoded.data, index))
                except Exception as exc:  # noqa: BLE001 - a faulty plugin metric is reported, not fatal
                    self.broken[metric] = f"metric '{metric}' failed on {labels[s]}->{t}: {type(exc).__name__}: {exc} ({SIGNATURE})"
                    break

    def compute(self) -> dict[str, Any]:
        labels = self.context.labels
        task: dict[str, dict[str, Any]] = {}
        for (metric, s, t), state in self.states.items():
            if state is not None and metric not in self.broken:
                try:
                    value = state.compute()
                except ZeroDivisionError:
                    value = None
                except Exception as exc:  # noqa: BLE001
                    self.broken[metric] = f"metric '{metric}' failed in compute() on {labels[s]}->{t}: {type(exc).__name__}: {exc}"
                    continue
                task.setdefault(metric, {})[f"{labels[s]}->{t}"] = value
        for metric, message in self.broken.items():
            task[metric] = {"error": message}
        return {"task": task}

    def summary(self, result: dict, names: list[str]) -> dict[str, float]:
        import math

        out: dict[str, float] = {}
        headline = {*names, "+".join(names)}  # single sources and all together; every subset is in eval.json
        for metric, cells in result.get("task", {}).items():
            for key, value in cells.items():
                if key.split("->")[0] in headline and isinstance(value, (int, float)) and not math.isnan(value):
                    out[f"task/{metric}/{key}"] = float(value)
        return out

    def report(self, result: dict) -> list[Block]:
        blocks: list[Block] = []
        for metric, cells in (result.get("task") or {}).items():
            blocks.append(Text([f"## Task metric: {metric}", ""]))
            if "error" in cells:
                blocks.append(Text([f"Not computed: {cells['error']}", ""]))
                continue
            blocks.append(Table(["given->target", metric], [[k, v if not isinstance(v, dict) else json.dumps(v)] for k, v in cells.items()]))
        return blocks


METRIC = TaskMetrics
