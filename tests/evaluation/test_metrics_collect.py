"""modkit.evaluation.task_metrics.Collect hands ragged batches over as lists, and does not retry a metric that fails."""
from __future__ import annotations

import pytest
import torch

from modkit.evaluation.task_metrics import Collect


def test_ragged_batches_arrive_as_lists():
    seen = []
    collect = Collect(lambda p, t: seen.append((type(p), type(t))) or len(p))
    collect.update(torch.zeros(2, 3), torch.zeros(2, 3))
    collect.update(torch.zeros(2, 5), torch.zeros(2, 5))
    assert collect.compute() == 2 and seen == [(list, list)]


def test_an_error_of_the_metric_is_raised_once():
    calls = []

    def metric(p, t):
        calls.append(type(p))
        raise RuntimeError("metric failed")

    collect = Collect(metric)
    collect.update(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(RuntimeError, match="metric failed"):
        collect.compute()
    assert calls == [torch.Tensor]
