"""The built-in evaluation metrics, one module per family, found by scanning this folder.

A module here that sets ``METRIC`` to a :class:`~modkit.evaluation.metric.Metric` class is a metric of
``modkit eval``: it is computed, written to eval.json and shown in report.md with no edit elsewhere.
The families that existed before the protocol keep their order (in the pass, eval.json, the headline
numbers and report.md, so earlier runs read the same); a new module follows them, by name.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil

from modkit.errors import PluginError
from modkit.evaluation.metric import check_metric_class

#: the earlier families' order: computed (the random stream they draw from depends on it) …
COMPUTE_ORDER = ("coherence", "reconstruction", "task", "probe", "relatedness", "likelihood")
#: … and where their headline numbers and report sections stand
SUMMARY_ORDER = ("coherence", "likelihood", "probe", "relatedness", "reconstruction", "task")
REPORT_ORDER = ("coherence", "probe", "relatedness", "likelihood", "reconstruction", "task")


@functools.lru_cache(maxsize=None)
def builtin_metrics() -> tuple[type, ...]:
    """Every ``METRIC`` class of this folder's modules, the earlier families first (COMPUTE_ORDER), then by name."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        cls = getattr(module, "METRIC", None)
        if cls is None:
            continue
        problem = check_metric_class(cls)
        if problem:
            raise PluginError(f"built-in metric module {info.name}: METRIC {problem}")
        found[cls.name] = cls
    rank = {n: i for i, n in enumerate(COMPUTE_ORDER)}
    return tuple(sorted(found.values(), key=lambda c: (rank.get(c.name, len(rank)), c.name)))


def ordered(metrics, order: tuple[str, ...]) -> list:
    """``metrics`` (classes or instances) with the names in ``order`` first, in that order, the rest as they came."""
    rank = {n: i for i, n in enumerate(order)}
    return sorted(metrics, key=lambda m: rank.get(m.name, len(rank)))
