"""The ``Metric`` protocol ``modkit eval`` runs, and what one shared posterior pass hands each metric.

A metric declares what it is (``name``, the ``group`` ``--metrics`` selects it by, the eval.json
``keys`` it writes, a ``description`` saying which paper it follows, what is sampled, counts, and
chance or ceiling) and what it needs from the pass (``needs``). ``modkit eval`` then

1. calls ``start(context)`` on every chosen metric (a metric that needs its own preparation, such as
   coherence's judges, does it here);
2. runs ONE pass over the test split: each batch is encoded once and fused for every evaluated subset;
   every metric's ``update(batch, None)`` sees the posterior means (and unimodal posteriors, when some
   metric ``needs`` them); then, when a metric needs decoded outputs, each target modality is decoded
   from the posterior means a chunk of subsets at a time and ``update(batch, decoded)`` sees every chunk;
3. calls ``compute()``, whose dict (keys among ``keys``) goes into eval.json as it is.

Metrics never run the encoders themselves unless they declare ``"encoders"`` in ``needs`` (the linear
probe encodes training rows; the importance-sampled likelihood keeps its own estimator).

For people, a metric also says how it reads in report.md (``report(result)`` → :class:`Text`,
:class:`Table` and :class:`Figure` blocks, drawn by :mod:`modkit.reporting.report`) and which of its
numbers are headline numbers (``summary(result, names)``). A new metric is one file in
``modkit/evaluation/metrics/`` exposing ``METRIC = TheClass``, or, from a plugin, a class registered
with ``registry.add_metric(name, TheClass)``.
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Protocol, runtime_checkable

import numpy as np
from torch import Tensor

from modkit.plugins.registry import METRIC_NEEDS, check_metric_class

if TYPE_CHECKING:
    from modkit.core.batch import Batch, Data
    from modkit.core.engine import MultimodalVAE
    from modkit.data.dataset import ModalityView
    from modkit.runs.loading import LoadedRun

#: what a metric may ask the pass for (``Metric.needs``): decoded outputs, unimodal posteriors, or the
#: encoders to run on data of its own (declared, so a reader sees which metrics cost extra passes)
NEEDS = METRIC_NEEDS


@dataclass
class EvalSettings:
    metrics: list[str] | None = None  # None: every group and every registered metric
    iw_samples: int = 1000  # K importance samples (the paper's 1000)
    prior_samples: int = 5000  # prior samples for log p(x_given) in conditionals (the paper's 5000)
    denominator: str = "prior"  # or "posterior"
    iw_items: int | None = 32  # cap test items for the (costly) likelihoods (None: every test item)
    joint_samples: int = 1000  # prior samples for joint coherence
    coherence_draws: int = 1  # z ~ q(z | X_S) per test item and subset for the sampled cross-modal coherence
    judges: str | None = None  # a judges file (safetensors, modkit's judges format) to score coherence with instead of the dataset's
    max_items: int | None = None  # cap test items for everything else
    judge_rows: int = 5000  # training rows for the coherence classifiers
    probe_rows: int = 5000  # training rows for the linear probes
    batch_size: int = 256
    retrain_judges: bool = False
    seed: int = 0
    subsets: str = "default"  # conditioning subsets: default (2N + 1), all (2^N − 1) or "a+b,c"
    likelihoods: str = "default"  # default: log p(x_i) and the joint; all: also the pairs and N² conditionals


class Progress:
    """tqdm on a terminal, silence elsewhere (logs and tests)."""

    def __init__(self, total: int, desc: str):
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False)

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Stages:
    """``with clock("name"):`` adds the block's wall seconds to ``stages["name"]`` (eval.json's stage_seconds)."""

    def __init__(self, stages: dict[str, float]):
        self.stages = stages

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - started, 2)


def cap(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Positions of at most ``limit`` of ``n`` items, drawn with ``seed`` and kept in order (all when ``limit`` is None)."""
    if limit is None or n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


@dataclass
class EvalContext:
    """What every metric may read, fixed before the pass."""

    run: "LoadedRun"
    model: "MultimodalVAE"
    settings: EvalSettings
    names: list[str]  # the model's modalities, in order
    masks: Tensor  # (S, N) bool on the model's device: the evaluated subsets
    labels: list[str]  # the subsets' names ("image+label")
    test: "ModalityView"  # the evaluated test items
    train: "ModalityView"  # the training split
    iw: "ModalityView"  # the test items the likelihoods use (at most settings.iw_items)
    attributes: list[str]  # the dataset's class attributes
    test_attributes: dict[str, np.ndarray]  # per attribute, each test item's class (−1: missing)
    echo: Callable[[str], None]
    clock: Stages
    task_metrics: dict[str, Callable] = field(default_factory=dict)  # the chosen ``fn(modality)`` task metrics


@dataclass
class Decoded:
    """One target modality decoded from the posterior means of the subsets ``start:stop`` (one chunk)."""

    target: str
    index: int  # the target's position among the modalities
    start: int
    stop: int
    out: Tensor  # likelihood parameters (s, B, ...)
    predicted: "Data"  # point estimates (s, B, ...)
    data: "Data"  # the target's real data (B, ...)
    valid: Tensor  # (s, B) bool: the subset's modalities and the target are all present


@dataclass
class PosteriorBatch:
    """One test batch after the encoders ran once: the posterior of every evaluated subset."""

    positions: np.ndarray  # the items' positions in the evaluated test view
    aligned: bool  # False when a skip-bad view dropped rows (positions then do not match the batch)
    batch: "Batch"  # on the model's device
    mean: Tensor  # (S, B, D) posterior means, one row per evaluated subset
    usable: Tensor  # (S, B) bool: all of the subset's modalities are present
    single_mean: Tensor | None = None  # (N, B, D) unimodal posterior means (when some metric needs "singles")
    single_std: Tensor | None = None  # (N, B, D) their standard deviations
    attributes: dict[str, np.ndarray] = field(default_factory=dict)  # per attribute, the batch items' classes (aligned batches)
    posterior: Any = None  # the fusion's posterior of every evaluated subset (batch shape (S, B)): what sampled metrics draw from


# -- what a metric shows in report.md (drawn by modkit.reporting.report) -------------------------
@dataclass
class Text:
    lines: list[str]


@dataclass
class Table:
    header: list[Any]
    rows: list[list[Any]]


@dataclass
class Figure:
    """A figure of one of the kinds the report draws: ``heatmap`` (rows, columns, values, title), ``histogram``
    (histogram, title) or ``distance_matrix`` (classes, matrix, title, class_attribute)."""

    kind: str
    file: str  # file name under the report's figure folder
    alt: str
    args: dict[str, Any] = field(default_factory=dict)


Block = Text | Table | Figure


@runtime_checkable
class Metric(Protocol):
    """One family of evaluation numbers. Instances are made fresh for every evaluation (``cls()``)."""

    name: ClassVar[str]  # how --metrics names it
    group: ClassVar[str]  # the group it belongs to (--metrics may name the group instead)
    keys: ClassVar[tuple[str, ...]]  # the top-level eval.json keys compute() may write
    description: ClassVar[str]  # which paper it follows, what is sampled, counts, chance/ceiling
    needs: ClassVar[frozenset[str]]  # among NEEDS

    def start(self, context: EvalContext) -> None:
        """Prepare before the pass (read settings, fit judges); keep ``context``."""
        ...

    def update(self, batch: PosteriorBatch, decoded: Decoded | None) -> None:
        """Fold in one batch (``decoded`` None), then each decoded chunk of it (when ``"decoded"`` is needed)."""
        ...

    def compute(self) -> dict[str, Any]:
        """The numbers, as ``{key: value}`` with keys among ``keys``; {} when the metric does not apply."""
        ...

    def summary(self, result: dict, names: list[str]) -> dict[str, float]:
        """Headline numbers read back from an eval.json ``result`` (what ``modkit sweep`` plots)."""
        ...

    def report(self, result: dict) -> list[Block]:
        """How the metric's part of ``result`` reads in report.md ([] when it is not there)."""
        ...


class BaseMetric:
    """Defaults for a :class:`Metric`: nothing to prepare or fold in, no headline numbers, and a report
    section that shows ``result[name]`` as a table (one row per entry)."""

    name: ClassVar[str]
    group: ClassVar[str]
    keys: ClassVar[tuple[str, ...]]
    description: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset()

    def start(self, context: EvalContext) -> None:
        self.context = context

    def update(self, batch: PosteriorBatch, decoded: Decoded | None) -> None:
        pass

    def compute(self) -> dict[str, Any]:
        return {}

    def summary(self, result: dict, names: list[str]) -> dict[str, float]:
        return {}

    def report(self, result: dict) -> list[Block]:
        values = result.get(self.name)
        if not values:
            return []
        blocks: list[Block] = [Text([f"## {self.name}", "", self.description, ""])]
        if isinstance(values, dict):
            cells = [v for v in values.values() if isinstance(v, dict)]
            columns = list(dict.fromkeys(k for v in cells for k in v))
            if cells and len(cells) == len(values):
                blocks.append(Table(["", *columns], [[k, *[v.get(c) for c in columns]] for k, v in values.items()]))
            else:
                blocks.append(Table(["", self.name], [[k, v] for k, v in values.items()]))
        else:
            blocks.append(Text([str(values), ""]))
        return blocks


# -- helpers the built-in metrics share -----------------------------------------------------------
def grouped(per_attribute: dict[str, float | None]) -> dict[str, float]:
    """Entries ``field[k]`` of a vector attribute averaged into ``field[*]`` (48 binary attributes → one number)."""
    from modkit.evaluation.judges import split_attribute

    sums: dict[str, list[float]] = {}
    for a, v in per_attribute.items():
        name, k = split_attribute(a)
        if v is not None:
            sums.setdefault(a if k is None else f"{name}[*]", []).append(v)
    return {a: float(np.mean(v)) for a, v in sums.items()}


def fast_balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float | None:
    """sklearn's ``balanced_accuracy_score`` (the mean recall over the classes in ``y``) without its per-call
    input validation, which cost about 3 ms a call: one call per subset × target × attribute is thousands
    of calls (11 of 23 s of a 200-item shapes posterior pass). None without samples."""
    if len(y) == 0:
        return None
    classes, inverse = np.unique(y, return_inverse=True)
    hits = np.bincount(inverse, weights=(np.asarray(pred) == y).astype(np.float64), minlength=len(classes))
    return float(np.mean(hits / np.bincount(inverse, minlength=len(classes))))


def headline_subsets(names: list[str]) -> list[str]:
    """Each modality alone, and all together: the subsets whose numbers are headline numbers."""
    return [*names, "+".join(names)] if len(names) > 1 else list(names)
