"""Reconstruction and translation: −log p(x_target | z̄) and the mean squared error from each subset's posterior mean."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from modkit.evaluation.metric import BaseMetric, Block, Decoded, EvalContext, PosteriorBatch, Table, Text


class Reconstruction(BaseMetric):
    name = "reconstruction"
    group = "reconstruction"
    keys = ("reconstruction",)
    needs = frozenset({"decoded"})
    description = ("Reconstruction (the target among the given) and translation (MVAE §5's cross-modal transforms): the "
                   "target decoded from the posterior mean z̄ of each subset, −log p(x_target | z̄) per item and, for "
                   "real-valued data, the mean squared error of the predicted mean, over the test items that have the "
                   "subset and the target. No sampling; no chance level (lower is better).")

    def start(self, context: EvalContext) -> None:
        self.context = context
        self.sums: dict[int, Tensor] = {}  # target → (3, S): Σ nll, items, Σ mse
        self.has_mse = {t: True for t in context.names}

    def update(self, batch: PosteriorBatch, decoded: Decoded | None) -> None:
        if decoded is None:
            return
        j, s0, s1, x, pred, valid = decoded.index, decoded.start, decoded.stop, decoded.data, decoded.predicted, decoded.valid
        if j not in self.sums:
            self.sums[j] = torch.zeros(3, len(self.context.masks), dtype=torch.float64, device=valid.device)
        sums = self.sums[j]
        nll = -self.context.model.modalities[decoded.target].log_likelihood(decoded.out, x).float()
        sums[0, s0:s1] += nll.double().mul(valid).sum(1)
        sums[1, s0:s1] += valid.sum(1).double()
        if isinstance(pred, Tensor) and isinstance(x, Tensor) and pred.is_floating_point() and pred.shape[1:] == x.shape:
            sums[2, s0:s1] += (pred - x.to(pred.dtype)).pow(2).flatten(2).mean(-1).double().mul(valid).sum(1)
        else:
            self.has_mse[decoded.target] = False

    def compute(self) -> dict[str, Any]:
        names, labels = self.context.names, self.context.labels
        out: dict[str, dict[str, float | None]] = {}
        for j, sums in self.sums.items():
            sums = sums.cpu()
            for s in range(len(labels)):
                n = sums[1, s].item()
                cell = {"nll": sums[0, s].item() / n if n else None, "items": int(n)}
                if self.has_mse[names[j]]:
                    cell["mse"] = sums[2, s].item() / n if n else None
                out[f"{labels[s]}->{names[j]}"] = cell
        return {"reconstruction": out}

    def summary(self, result: dict, names: list[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, cell in result.get("reconstruction", {}).items():
            given, target = key.split("->")
            if given == target and cell.get("nll") is not None:
                out[f"reconstruction/{target}/nll"] = cell["nll"]
            elif "+" not in given:  # one modality translated into another (MVAE's vision transforms: edges -> image)
                out.update({f"reconstruction/{key}/{m}": cell[m] for m in ("nll", "mse") if cell.get(m) is not None})
        return out

    def report(self, result: dict) -> list[Block]:
        if not result.get("reconstruction"):
            return []
        return [Text(["## Reconstruction", "", "From each subset's posterior mean: −log p(x_target | z̄) per item, and the mean "
                      "squared error where the data are real-valued.", ""]),
                Table(["given->target", "NLL", "MSE", "items"],
                      [[k, v.get("nll"), v.get("mse"), v.get("items")] for k, v in result["reconstruction"].items()])]


METRIC = Reconstruction
