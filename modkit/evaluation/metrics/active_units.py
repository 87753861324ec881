"""Active units (Burda et al. 2016, "Importance Weighted Autoencoders", §5.2): how many latent dimensions the model uses.

A dimension u is active for a subset when Var_x(E_q(z|x_subset)[z_u]) > 0.01: its posterior mean moves
with the data. The variance is over the test items that have every modality of the subset (population
variance, as in the paper), accumulated from the shared pass as Σ mean and Σ mean² per dimension.
"""
from __future__ import annotations

from typing import Any

import torch

from modkit.evaluation.metric import BaseMetric, Block, Decoded, EvalContext, PosteriorBatch, Table, Text, headline_subsets

THRESHOLD = 0.01


class ActiveUnits(BaseMetric):
    name = "active_units"
    group = "active_units"
    keys = ("active_units",)
    needs: frozenset[str] = frozenset()
    description = (f"Active units (Burda et al. 2016 §5.2): latent dimensions whose posterior mean varies across the test "
                   f"items (population variance > {THRESHOLD}), per subset, over the items that have all of the subset's "
                   "modalities. No sampling; a collapsed dimension scores 0, the ceiling is the latent size.")

    def start(self, context: EvalContext) -> None:
        self.context = context
        shape = (len(context.masks), context.model.latent_dim)
        self.n = torch.zeros(len(context.masks), dtype=torch.float64)
        self.sum = torch.zeros(shape, dtype=torch.float64)
        self.sum2 = torch.zeros(shape, dtype=torch.float64)

    def update(self, batch: PosteriorBatch, decoded: Decoded | None) -> None:
        if decoded is not None:
            return
        mean = batch.mean.double().cpu()  # (S, B, D)
        usable = batch.usable.cpu().double().unsqueeze(-1)  # (S, B, 1)
        self.n += usable.sum((1, 2))
        self.sum += (mean * usable).sum(1)
        self.sum2 += (mean.pow(2) * usable).sum(1)

    def compute(self) -> dict[str, Any]:
        out = {}
        for s, label in enumerate(self.context.labels):
            n = self.n[s].item()
            if n < 2:
                out[label] = {"active": None, "dims": self.context.model.latent_dim, "items": int(n), "variance": None}
                continue
            variance = (self.sum2[s] / n - (self.sum[s] / n).pow(2)).clamp_min(0)
            out[label] = {"active": int((variance > THRESHOLD).sum()), "dims": self.context.model.latent_dim, "items": int(n),
                          "variance": variance.tolist()}
        return {"active_units": out}

    def summary(self, result: dict, names: list[str]) -> dict[str, float]:
        cells = result.get("active_units", {})
        return {f"active_units/{s}": float(cells[s]["active"]) for s in headline_subsets(names)
                if s in cells and cells[s].get("active") is not None}

    def report(self, result: dict) -> list[Block]:
        cells = result.get("active_units")
        if not cells:
            return []
        return [Text(["## Active units", "", f"Latent dimensions whose posterior mean varies across the test items (variance > "
                      f"{THRESHOLD}; Burda et al. 2016), per subset:", ""]),
                Table(["posterior", "active units", "latent dimensions", "items"],
                      [[s, c["active"], c["dims"], c["items"]] for s, c in cells.items()])]


METRIC = ActiveUnits
