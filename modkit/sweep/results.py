"""A sweep's results as plain data: what code that builds on a sweep reads instead of Optuna's trial records.

:func:`load_results` opens a sweep (its folder, or a study's name with ``storage``) and gives every trial
with its state, its swept values, its folder and, for each seed run that finished, the seed, the run
directory and the run's metrics (summary.json, and eval.json's summary when the sweep evaluates).
:meth:`SweepResults.points` aggregates the finished runs of each point of the space to mean and sample
standard deviation, the numbers sweep.md reports per trial.
"""
from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modkit.sweep.config import SweepConfig
from modkit.sweep.study import open_sweep
from modkit.sweep.trial import trial_folder

#: a trial's state, as Optuna names it (lower case)
STATES = ("complete", "pruned", "running", "waiting", "fail")


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one seed)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


@dataclass(frozen=True)
class SeedRun:
    """One finished seed run of a trial."""

    seed: int
    run_dir: Path
    metrics: dict[str, float]


@dataclass(frozen=True)
class TrialResult:
    """One trial: a point of the space, run once per seed."""

    number: int
    state: str  # one of STATES
    values: dict[str, Any]  # swept key -> its value in this trial (a list's values as typed, a range's as numbers)
    folder: Path  # SWEEP/trial-NNNN; a retry continues in the folder of the trial it repeats
    runs: list[SeedRun]  # the seed runs that finished (all of them for a complete trial)
    value: float | None  # the objective: its mean over the seeds (None unless complete)
    started: dt.datetime | None
    finished: dt.datetime | None
    error: str | None = None  # why a pruned trial stopped (a diverged run)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]


@dataclass(frozen=True)
class PointResult:
    """The finished runs of one point of the space (every complete trial at those values), aggregated."""

    values: dict[str, Any]
    trials: list[int]
    runs: list[SeedRun]
    stats: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # metric -> (mean, sd or None)

    @property
    def n(self) -> int:
        return len(self.runs)

    def mean(self, metric: str) -> float:
        return self.stats[metric][0]

    def sd(self, metric: str) -> float | None:
        return self.stats[metric][1]


@dataclass(frozen=True)
class SweepResults:
    config: SweepConfig
    trials: list[TrialResult]  # every trial of the study, by number

    @property
    def keys(self) -> list[str]:
        """The swept keys (``seed`` is not one: its values repeat in every trial)."""
        return self.config.space.keys

    def complete(self) -> list[TrialResult]:
        return [t for t in self.trials if t.state == "complete"]

    def points(self) -> list[PointResult]:
        """Each point of the space that has a complete trial, in the order of its first one; a metric's mean and
        sd are over every finished seed run at the point that has the metric."""
        grouped: dict[tuple, list[TrialResult]] = {}
        for t in self.complete():
            grouped.setdefault(tuple(t.values.get(k) for k in self.keys), []).append(t)
        found = []
        for trials in grouped.values():
            runs = [r for t in trials for r in t.runs]
            names = list(dict.fromkeys(m for r in runs for m in r.metrics))
            stats = {m: mean_sd([r.metrics[m] for r in runs if m in r.metrics]) for m in names}
            found.append(PointResult(dict(trials[0].values), [t.number for t in trials], runs, stats))
        return found


def load_results(target: str | Path, storage: str | None = None, out: Path | None = None) -> SweepResults:
    """The results of the sweep in folder ``target`` (its study.db, or ``storage``), or of study ``target`` in
    ``storage``. The trials' folders are under ``out`` if given, else under the sweep folder, else where the
    sweep was made. Reads only: a sweep that is running elsewhere is seen as it stands."""
    study, config, _ = open_sweep(target, storage, out)
    return results_of(study, config)


def results_of(study: Any, config: SweepConfig) -> SweepResults:
    """An open study's results, its trials' folders under ``config.out``."""
    out = Path(config.out)
    keys = config.space.keys
    trials = []
    for t in study.get_trials(deepcopy=False):
        folder = trial_folder(out, t)
        runs = [SeedRun(int(name.removeprefix("seed-")), folder / name, dict(metrics))
                for name, metrics in (t.user_attrs.get("seeds") or {}).items()]
        values = {k: t.params[k] for k in keys if k in t.params}
        trials.append(TrialResult(number=t.number, state=t.state.name.lower(), values=values, folder=folder, runs=runs,
                                  value=t.value, started=t.datetime_start, finished=t.datetime_complete,
                                  error=t.user_attrs.get("error")))
    return SweepResults(config, sorted(trials, key=lambda t: t.number))
