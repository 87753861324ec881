"""``modkit sweep``: search a recipe's ``--set`` space with Optuna; many workers share one study.

A swept key is a list (``a,b,c``), a range (``range(lo,hi)`` or ``range(lo,hi,step)``, both ends
included) or a log-range (``log(1e-4,1e-2)``). ``seed`` is not searched: its values repeat every
trial, and each metric is reported as mean ± sd over them. Every value is resolved and validated
before anything trains. One Optuna trial is one point of the space: a run directory per seed under
``SWEEP/trial-NNNN/seed-S``. The study lives in ``SWEEP/study.db`` (SQLite) or any database
(``--storage postgresql://...``); ``modkit sweep --resume`` joins it from any process or machine.
A trial whose worker died or was interrupted is retried by the next worker, continuing each seed
run from its checkpoint. See docs/sweeps.md.

The parts: :mod:`~modkit.sweep.space` (the ``--set`` grammar), :mod:`~modkit.sweep.config` (the definition and
its validation), :mod:`~modkit.sweep.study` (storage, creating and joining, crash recovery),
:mod:`~modkit.sweep.trial` (one trial's runs), :mod:`~modkit.sweep.workers` (the worker pool),
:mod:`~modkit.sweep.results` (the results API: :func:`load_results`) and :mod:`~modkit.sweep.output`
(sweep.csv, sweep.md, plots).
"""

from __future__ import annotations

from modkit.sweep.config import MAX_CHECKS, SAMPLERS, SEED_FIELD, SweepConfig, check_components, resolve, validate
from modkit.sweep.output import (DEFAULT_METRICS, SWEEP_CSV, SWEEP_MD, SWEEP_PNG, finish, optuna_plots, pick_metrics,
                                 write_results)
from modkit.sweep.results import PointResult, SeedRun, SweepResults, TrialResult, load_results, mean_sd, results_of
from modkit.sweep.space import Dimension, Space, grid_size, parse_dimension, parse_space, split_values
from modkit.sweep.study import (ATTR, STUDY_DB, SWEEP_JSON, counts, create_study, default_storage, load_study, locate,
                                new_sweep, open_storage, open_sweep, recover, remaining, sampler_for)
from modkit.sweep.trial import objective_for, run_one, summary_metrics, trial_folder
from modkit.sweep.workers import TrialProgress, run_workers, thread_share, work

__all__ = [
    "ATTR", "DEFAULT_METRICS", "MAX_CHECKS", "SAMPLERS", "SEED_FIELD", "STUDY_DB", "SWEEP_CSV", "SWEEP_JSON",
    "SWEEP_MD", "SWEEP_PNG", "Dimension", "PointResult", "SeedRun", "Space", "SweepConfig", "SweepResults",
    "TrialProgress", "TrialResult", "check_components", "counts", "create_study", "default_storage", "finish",
    "grid_size", "load_results", "load_study", "locate", "mean_sd", "new_sweep", "objective_for", "open_storage",
    "open_sweep", "optuna_plots", "parse_dimension", "parse_space", "pick_metrics", "recover", "remaining", "resolve",
    "results_of", "run_one", "run_workers", "sampler_for", "split_values", "summary_metrics", "thread_share",
    "trial_folder", "validate", "work", "write_results",
]
