"""Helpers for task-metric plugins (``registry.add_metric(name, fn)``).

Eval calls ``fn(modality)`` once per (target modality, given subset) and expects None (the metric does
not apply) or a state with ``update(predicted, target)`` per test batch and ``compute()`` at the end.
These two states cover the usual cases, so a plugin can adapt a plain function in one line::

    def miou(modality):
        if not isinstance(modality, Mask):
            return None
        return Collect(lambda pred, target: mean_iou(pred, target, modality.config.num_classes))
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor


def _cat(parts: list[Any]) -> Any:
    if isinstance(parts[0], dict):
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(parts)


class Collect:
    """Keeps every batch (on the CPU) and calls ``fn(all_predicted, all_targets)`` once: corpus-level metrics
    such as BLEU or a dataset-wide mIoU. Dict data (tokens and lengths) are concatenated key by key; tensors
    of different trailing sizes (padded text) are kept as a list of batches instead."""

    def __init__(self, fn: Callable[[Any, Any], Any]):
        self.fn = fn
        self.predicted: list[Any] = []
        self.targets: list[Any] = []

    def update(self, predicted: Any, target: Any) -> None:
        move = lambda d: {k: v.detach().cpu() for k, v in d.items()} if isinstance(d, dict) else d.detach().cpu()  # noqa: E731
        self.predicted.append(move(predicted))
        self.targets.append(move(target))

    def compute(self) -> Any:
        try:
            predicted, targets = _cat(self.predicted), _cat(self.targets)
        except RuntimeError:  # ragged batches (e.g. padded to different lengths): hand over the lists
            predicted, targets = self.predicted, self.targets
        return self.fn(predicted, targets)  # outside the try: an error of the metric itself is not retried


class Mean:
    """The mean over samples of ``fn(predicted, target) -> (B,)`` per-sample values, accumulated on the device."""

    def __init__(self, fn: Callable[[Any, Any], Tensor]):
        self.fn = fn
        self.total: Tensor | None = None
        self.count = 0

    def update(self, predicted: Any, target: Any) -> None:
        values = self.fn(predicted, target).double()
        self.total = values.sum() if self.total is None else self.total + values.sum()
        self.count += values.numel()

    def compute(self) -> float | None:
        return None if self.total is None else self.total.item() / self.count
