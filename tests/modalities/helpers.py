"""Shared test helpers: in-memory records, a PoE model built from modality configs, a few training steps."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from modkit import Modality, MultimodalVAE, Records, SubsetPlan
from modkit.data.dataset import Column, ModalityView
from modkit.core.subsets import all_subsets
from modkit_poe import PoEConfig, ProductOfExperts


class ListRecords(Records):
    """Rows of raw values (strings, paths, arrays): the per-item path real datasets take."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows
        self.fields = list(rows[0])

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, i: int) -> dict[str, Any]:
        return dict(self.rows[i])


def make_modality(cls: type[Modality], name: str = "m", latent_dim: int = 8, records: Records | None = None,
                  field: str | None = None, run_dir: Path | None = None, **options) -> Modality:
    """One modality from its options, prepared on ``records`` (all rows) when given."""
    config = cls.Config.model_validate({"type": name, **options})
    modality = cls(name, config, latent_dim)
    if records is not None:
        modality.prepare(Column(records, field or name, np.arange(len(records))), run_dir)
    return modality


def poe_model(modalities: dict[str, Modality], latent_dim: int = 8) -> MultimodalVAE:
    fusion = ProductOfExperts(modalities, latent_dim, PoEConfig(type="poe"))
    return MultimodalVAE(modalities, fusion, latent_dim)


def train_steps(model: MultimodalVAE, view: ModalityView, steps: int = 30, batch_size: int = 16, lr: float = 3e-3,
                seed: int = 0, beta: float = 1.0) -> list[float]:
    """Adam on the PoE objective over every subset; returns the loss of each step."""
    torch.manual_seed(seed)
    plan = SubsetPlan.from_mask(all_subsets(len(model.names)))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for step in range(steps):
        index = [(step * batch_size + i) % len(view) for i in range(batch_size)]
        batch = view.__getitems__(index)
        out = model(batch, plan, beta=beta)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.loss.detach()))
    return losses


def assert_learns(losses: list[float], factor: float = 0.9) -> None:
    """Finite losses whose last-five mean is below ``factor`` × the first-five mean."""
    assert all(np.isfinite(losses)), losses
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < factor * first if first > 0 else last < first, (first, last)
