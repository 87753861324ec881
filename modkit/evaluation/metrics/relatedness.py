"""Relatedness: 2-Wasserstein distance between unimodal posteriors, paired vs unpaired, class × class (MEME §4.2)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from modkit.evaluation.metric import BaseMetric, Block, Decoded, EvalContext, Figure, PosteriorBatch, Table, Text
from modkit.evaluation.representations import relatedness

MAX_MATRICES = 1  # distance-matrix figures per modality pair (the attribute with most classes); all are in eval.json


class Relatedness(BaseMetric):
    name = "relatedness"
    group = "relatedness"
    keys = ("relatedness",)
    needs = frozenset({"singles"})
    description = ("Relatedness (MEME, Joy et al. 2022 §4.2): closed-form W2 between two modalities' unimodal posteriors on "
                   "the test items that have both, paired (the same item) against unpaired (a random derangement, "
                   "seeded); the AUC of telling them apart by distance (chance 0.5, ceiling 1) and, per attribute, the "
                   "class × class mean distance on at most 2000 items.")

    def start(self, context: EvalContext) -> None:
        self.context = context
        self.parts: dict[str, list] = {"mu": [], "std": [], "present": [], "positions": []}

    def update(self, batch: PosteriorBatch, decoded: Decoded | None) -> None:
        if decoded is not None or len(self.context.names) < 2:
            return
        self.parts["mu"].append(batch.single_mean.float().cpu())
        self.parts["std"].append(batch.single_std.float().cpu())
        self.parts["present"].append(batch.batch.present.cpu())
        self.parts["positions"].append(torch.as_tensor(batch.positions if batch.aligned else np.full(len(batch.batch), -1)))

    def compute(self) -> dict[str, Any]:
        names = self.context.names
        if len(names) < 2 or not self.parts["mu"]:
            return {}
        with self.context.clock("relatedness"):
            mu, std = torch.cat(self.parts["mu"], 1), torch.cat(self.parts["std"], 1)
            present, pos = torch.cat(self.parts["present"]), torch.cat(self.parts["positions"]).numpy()
            test_attrs = self.context.test_attributes
            out = {}
            for i, a in enumerate(names):
                for j, b in enumerate(names[i + 1:], start=i + 1):
                    both = (present[:, i] & present[:, j]).numpy() & (pos >= 0)
                    if both.sum() < 2:
                        continue
                    classes = {attr: test_attrs[attr][pos[both]] for attr in test_attrs}
                    out[f"{a}~{b}"] = relatedness(mu[i][both], std[i][both], mu[j][both], std[j][both], classes, seed=self.context.settings.seed)
        return {"relatedness": out}

    def summary(self, result: dict, names: list[str]) -> dict[str, float]:
        return {f"relatedness/{key}/auc": cell["auc"] for key, cell in result.get("relatedness", {}).items() if cell.get("auc") is not None}

    def report(self, result: dict) -> list[Block]:
        if not result.get("relatedness"):
            return []
        blocks: list[Block] = [Text(["## Relatedness (2-Wasserstein between unimodal posteriors)", ""])]
        rows = []
        for pair, cell in result["relatedness"].items():
            a, b = pair.split("~")
            rows.append([pair, cell["paired_mean"], cell["unpaired_mean"], cell["auc"]])
            blocks.append(Figure("histogram", f"relatedness_{safe(a)}_{safe(b)}.png", f"{pair} histogram",
                                 {"histogram": cell["histogram"], "title": f"W2(q(z|{a}), q(z|{b}))"}))
            matrices = sorted(cell.get("class_distance", {}).items(), key=lambda kv: -len(kv[1]["classes"]))
            for attr, mat in matrices[:MAX_MATRICES]:  # the attributes with most classes; all are in eval.json
                blocks.append(Figure("distance_matrix", f"distance_{safe(a)}_{safe(b)}_{safe(attr)}.png", f"{pair} class distance matrix",
                                     {"classes": mat["classes"], "matrix": mat["matrix"], "class_attribute": attr,
                                      "title": f"mean W2: q(z|{a}) of the row {attr} vs q(z|{b}) of the column {attr}"}))
        blocks.append(Table(["pair", "mean W2 paired", "mean W2 unpaired", "AUC paired vs unpaired"], rows))
        return blocks


def safe(text: str) -> str:
    """A name from eval.json made safe as part of a file name: no separators, no leading dot, not too long."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text))[:60] or "_"


METRIC = Relatedness
