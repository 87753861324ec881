"""``modkit sweep``: search a recipe's ``--set`` space with Optuna; many workers share one study.

A swept key is a list (``a,b,c``), a range (``range(lo,hi)`` or ``range(lo,hi,step)``, both ends
included) or a log-range (``log(1e-4,1e-2)``). ``seed`` is not searched: its values repeat every
trial, and each metric is reported as mean ± sd over them. Every value is resolved and validated
before anything trains. One Optuna trial is one point of the space: a run directory per seed under
``SWEEP/trial-NNNN/seed-S``. The study lives in ``SWEEP/study.db`` (SQLite) or any database
(``--storage postgresql://...``); ``modkit sweep --resume`` joins it from any process or machine.
A trial whose worker died or was interrupted is retried by the next worker, continuing each seed
run from its checkpoint. See docs/sweeps.md.
"""
from __future__ import annotations

import csv
import dataclasses
import fnmatch
import io
import itertools
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from modkit.errors import ModkitError, RecipeError
from modkit.storage import files as rundir

SWEEP_JSON = "sweep.json"
STUDY_DB = "study.db"
SWEEP_CSV = "sweep.csv"
SWEEP_MD = "sweep.md"
SWEEP_PNG = "sweep.png"
ATTR = "modkit"  # the study's user attribute holding the sweep's definition
DEFAULT_METRICS = ["coherence/given_*", "coherence/joint/*", "probe/*", "relatedness/*/auc"]
SAMPLERS = ("grid", "random", "tpe")
#: in a fixed --set value, replaced by each run's seed (e.g. a fine-tuning run that starts from the
#: pre-training run of its own seed: ``model.fusion.downstream.init_from=PRE/trial-0000/seed-{seed}``)
SEED_FIELD = "{seed}"
MAX_CHECKS = 4096  # value combinations resolved up front for random/TPE (grid: all of them)


# -- the space ---------------------------------------------------------------------------------

def split_values(text: str) -> list[str]:
    """Split on commas outside brackets and quotes: ``a=[1,2],[3,4]`` → ``["[1,2]", "[3,4]"]``."""
    parts, depth, quote, current = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return [p.strip() for p in parts]


def _number(text: str, where: str) -> int | float:
    """An int if it reads as one, else a float (``1e-4`` too, which YAML would keep as a string)."""
    for kind in (int, float):
        try:
            value = kind(text.strip())
        except ValueError:
            continue
        if math.isfinite(value):
            return value
    raise RecipeError("--set", f"{where}: '{text}' is not a number")


@dataclass
class Dimension:
    """One swept key: a list of raw values (as typed after ``key=``), or a numeric range."""

    key: str
    values: list[str] = field(default_factory=list)
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None

    @property
    def integer(self) -> bool:
        return all(isinstance(v, int) for v in (self.low, self.high, self.step) if v is not None)

    def candidates(self) -> list[str]:
        """The values checked before training: every listed value, a range's ends (and steps, if few)."""
        if not self.is_range:
            return self.values
        if self.step is not None or self.integer:
            grid = self.grid_values()
            if len(grid) <= 50:
                return grid
        return [str(self.low), str(self.high)]

    def grid_values(self) -> list[str]:
        """A finite list for grid search."""
        if not self.is_range:
            return self.values
        if self.log or (self.step is None and not self.integer):
            raise ModkitError(f"grid search needs finite values for {self.key}: give a list or range(lo,hi,step)")
        step = self.step or 1
        count = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        values = [self.low + i * step for i in range(count)]
        return [str(v if self.integer else round(v, 12)) for v in values]

    def suggest(self, trial: Any, grid: bool) -> str:
        """This trial's value, as the text after ``key=``."""
        if grid or not self.is_range:
            return str(trial.suggest_categorical(self.key, self.grid_values() if grid else self.values))
        if self.integer:
            return str(trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log))
        return repr(trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log))


_RANGE = re.compile(r"^(range|log)\((.*)\)$")


def parse_dimension(key: str, raw: str) -> Dimension | None:
    """``raw`` as a swept dimension, or None for a fixed value."""
    text = f"{key}={raw}"
    match = _RANGE.match(raw.strip())
    if match:
        kind, inner = match.groups()
        parts = split_values(inner)
        if len(parts) not in (2, 3) or (kind == "log" and len(parts) != 2):
            raise RecipeError("--set", f"'{text}': write {kind}(lo,hi){'' if kind == 'log' else ' or range(lo,hi,step)'}")
        low, high = _number(parts[0], text), _number(parts[1], text)
        step = _number(parts[2], text) if len(parts) == 3 else None
        if not low < high:
            raise RecipeError("--set", f"'{text}': the low end must be below the high end")
        if kind == "log" and low <= 0:
            raise RecipeError("--set", f"'{text}': a log-range needs positive ends")
        if step is not None and step <= 0:
            raise RecipeError("--set", f"'{text}': the step must be positive")
        if isinstance(low, int) != isinstance(high, int) or (step is not None and isinstance(step, float) and isinstance(low, int)):
            low, high, step = float(low), float(high), None if step is None else float(step)
        return Dimension(key, low=low, high=high, step=step, log=kind == "log")
    values = split_values(raw)
    if len(values) == 1:
        return None
    if any(v == "" for v in values):
        raise RecipeError("--set", f"'{text}' has an empty value in its list")
    if len(set(values)) != len(values):
        raise RecipeError("--set", f"'{text}' repeats a value")
    return Dimension(key, values=values)


@dataclass
class Space:
    fixed: list[str]
    dimensions: list[Dimension]
    seeds: list[int] | None  # None: the recipe's own seed

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.dimensions]


def parse_space(overrides: list[str]) -> Space:
    fixed, dims, seeds = [], [], None
    for text in overrides:
        if "=" not in text:
            raise RecipeError("--set", f"'{text}' is not key=value")
        key, raw = (s.strip() for s in text.split("=", 1))
        dim = parse_dimension(key, raw)
        if key == "seed":  # seeds repeat every trial, one of them too
            values = [raw] if dim is None else (dim.grid_values() if dim.is_range else dim.values)
            seeds = []
            for v in values:
                number = _number(v, f"seed={v}")
                if not isinstance(number, int):
                    raise RecipeError("--set", f"seed={v}: a seed must be an integer")
                seeds.append(number)
        elif dim is None:
            fixed.append(f"{key}={raw}")
        else:
            if key in {d.key for d in dims}:
                raise RecipeError("--set", f"{key} is swept twice")
            dims.append(dim)
    if not dims and not seeds:
        raise ModkitError("nothing to sweep: give at least one --set KEY=V1,V2,... (or range(lo,hi), log(lo,hi), seed=0,1,2)")
    return Space(fixed, dims, seeds)


# -- the sweep's definition (stored in the study, so any worker can join) ----------------------

@dataclass
class SweepConfig:
    study: str
    out: str
    recipe: dict[str, Any]  # the recipe file's contents: workers elsewhere need not have the file
    source: str
    overrides: list[str]
    sampler: str
    trials: int
    objective: str
    direction: str
    evaluate: bool
    settings: dict[str, Any]
    plot: list[str]
    device: str | None = None
    heartbeat: int = 30
    created: str = ""

    @property
    def space(self) -> Space:
        return parse_space(self.overrides)


def grid_size(space: Space) -> int:
    return math.prod(len(d.grid_values()) for d in space.dimensions) if space.dimensions else 1


def resolve(config: SweepConfig, values: dict[str, str], seed: int | None, project) -> tuple[Any, dict[str, Any]]:
    from modkit.config.recipe import resolve_raw

    space = config.space
    fixed = space.fixed if seed is None else [s.replace(SEED_FIELD, str(seed)) for s in space.fixed]
    sets = fixed + [f"{k}={v}" for k, v in values.items()] + ([f"seed={seed}"] if seed is not None else [])
    sets += [f"train.device={config.device}"] if config.device else []
    recipe, resolved = resolve_raw(config.recipe, sets, project, config.source)
    if recipe.tracking.mlflow not in (None, False) and not recipe.tracking.experiment:  # a sweep's runs: one experiment
        recipe.tracking.experiment = resolved["tracking"]["experiment"] = config.study
    return recipe, resolved


def check_components(recipe: Any, plugins: Any, source: str | None) -> None:
    """Every plugin-level option (modalities, fusion, sampler, dataset) validated without loading data."""
    from modkit.config.recipe import component_config
    from modkit.data.dataset import DatasetSource
    from modkit.training.builder import lookup

    plugins.require_ok(recipe.plugins)
    for name, spec in recipe.modalities.items():
        cls = lookup(plugins, "modality", spec, f"modalities.{name}.type", source)
        component_config(spec, cls.Config, f"modalities.{name}", source)
    for kind, spec, key in (("fusion", recipe.model.fusion, "model.fusion"), ("sampler", recipe.model.sampler, "model.sampler")):
        component_config(spec, lookup(plugins, kind, spec, key, source).Config, key, source)
    cls = lookup(plugins, "dataset", recipe.data.dataset, "data.dataset", source)
    component_config(recipe.data.dataset, getattr(cls, "Config", None) or DatasetSource.Config, "data.dataset", source)


def validate(config: SweepConfig, project) -> int:
    """Resolve the recipe for every value (and, for grid search, every combination) before anything trains.
    A bad value is one RecipeError naming ``--set key=value``. Returns how many recipes were checked."""
    from modkit.plugins.loader import plugins_for

    space = config.space
    grid = config.sampler == "grid"
    options = [d.grid_values() if grid else d.candidates() for d in space.dimensions]
    seeds = space.seeds or [None]
    plugins_by_list: dict[tuple, Any] = {}
    checked = 0

    def check(values: dict[str, str], seed: int | None, blame: str) -> None:
        nonlocal checked
        try:
            recipe, _ = resolve(config, values, seed, project)
            key = tuple(recipe.plugins)
            if key not in plugins_by_list:
                plugins_by_list[key] = plugins_for(recipe.plugins, project.plugins)
            check_components(recipe, plugins_by_list[key], config.source)
        except RecipeError as exc:
            if not blame:
                raise
            detail = f"{exc.key}: {exc.message}" if exc.key else exc.message
            raise RecipeError("--set", f"{blame}: {detail}") from None
        checked += 1

    check({}, None, "")  # the recipe with the fixed --set values alone
    for d, values in zip(space.dimensions, options):  # each value alone: the error names it
        for v in values:
            check({d.key: v}, None, f"{d.key}={v}")
    for seed in space.seeds or []:
        check({}, seed, f"seed={seed}")
    combos = itertools.islice(itertools.product(*options), None if grid else MAX_CHECKS)
    for combo in combos if len(space.dimensions) > 1 else ():  # then their combinations
        values = dict(zip(space.keys, combo))
        check(values, seeds[0], ", ".join(f"{k}={v}" for k, v in values.items()))
    return checked


# -- storage -----------------------------------------------------------------------------------

def default_storage(out: Path) -> str:
    return f"sqlite:///{(out / STUDY_DB).resolve()}"


def open_storage(url: str, heartbeat: int):
    """Optuna's RDB storage with heartbeats: a trial whose worker stops beating is failed and retried."""
    import optuna
    from optuna.storages import RDBStorage

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}  # several workers on one SQLite file
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with _Quiet():
            return RDBStorage(url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                              heartbeat_stale_trial_callback=_retry(), **kwargs)
    except Exception as exc:  # noqa: BLE001 - a bad URL, a server that is down, a missing driver
        from modkit.tracking.mlflow import masked

        raise ModkitError(f"cannot open the study storage {masked(url)}: {str(exc).splitlines()[0]}") from None


class _Quiet:
    """Optuna marks its heartbeat and retry API experimental: docs/sweeps.md says so once, not every call."""

    def __enter__(self):
        import optuna

        self._context = warnings.catch_warnings()
        self._context.__enter__()
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)


def _retry():
    """A dead trial comes back as a WAITING one with the same parameters and user attributes."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with _Quiet():
        return RetryHeartbeatStaleTrialCallback(max_retry=None)


def load_study(name: str, storage: Any):
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise ModkitError(f"no study '{name}' in that storage (give the sweep folder, or --storage URL and the study name)") from None
    raw = study.user_attrs.get(ATTR)
    if not raw:
        raise ModkitError(f"study '{name}' was not made by modkit sweep")
    return study, SweepConfig(**raw)


def create_study(config: SweepConfig, storage: Any):
    import optuna

    try:
        study = optuna.create_study(study_name=config.study, storage=storage,
                                    direction="maximize" if config.direction == "maximize" else "minimize")
    except optuna.exceptions.DuplicatedStudyError:
        raise ModkitError(f"a study named '{config.study}' already exists there; join it with --resume {config.study} "
                          f"or choose another --study") from None
    study.set_user_attr(ATTR, dataclasses.asdict(config))
    return study


def sampler_for(config: SweepConfig):
    import optuna

    if config.sampler == "grid":
        return optuna.samplers.GridSampler({d.key: d.grid_values() for d in config.space.dimensions} or {"_": [0]}, seed=0)
    if config.sampler == "random":
        return optuna.samplers.RandomSampler()
    return optuna.samplers.TPESampler(constant_liar=True)  # parallel workers do not all pick the same point


# -- one worker --------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def _retried(study) -> set[int]:
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with _Quiet():
        return {n for t in study.get_trials(deepcopy=False) for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}


def recover(study, storage, interrupted: Callable[[Any], bool] = lambda t: True) -> list[int]:
    """Queue again, as WAITING trials with the same parameters and run directories: the trials of workers
    that died on this machine (at once, without waiting for the heartbeat's grace period), those of other
    machines' silent workers (Optuna's heartbeat), and interrupted ones that ``interrupted`` selects.
    Each is queued by the one process that changed its state, so two workers never continue one run."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    host, queued = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker") or {}
        if worker.get("host") == host and worker.get("pid") and not _alive(int(worker["pid"])):
            try:
                storage.set_trial_user_attr(t._trial_id, "worker", None)  # the retry must not inherit a dead pid
                changed = storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                changed = False
            if changed:
                _retry()(study, storage.get_trial(t._trial_id))
                queued.append(t.number)
    with _Quiet():
        optuna.storages.fail_stale_trials(study)  # other machines: the heartbeat's verdict (it queues them itself)
    retried = _retried(study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if t.number not in retried and t.user_attrs.get("interrupted") and interrupted(t):
            _retry()(study, t)
            queued.append(t.number)
    return queued


def counts(study) -> dict[str, int]:
    from optuna.trial import TrialState

    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {s.name.lower(): states.count(s) for s in TrialState}


def remaining(study, config: SweepConfig) -> int:
    c = counts(study)
    return c["waiting"] + max(0, config.trials - c["complete"] - c["pruned"] - c["running"] - c["waiting"])


def summary_metrics(run_dir: Path) -> dict[str, float]:
    """A finished run's numbers: summary.json (train/… flattened) and eval.json's summary."""
    from modkit.evaluation.suite import EVAL_JSON
    from modkit.tracking.base import numbers

    found = numbers(rundir.read_json(run_dir / rundir.SUMMARY), skip=("epochs", "steps", "processes"))
    if (run_dir / EVAL_JSON).exists():
        found.update(numbers(rundir.read_json(run_dir / EVAL_JSON).get("summary", {})))
    return found


def run_one(config: SweepConfig, values: dict[str, str], seed: int | None, run_dir: Path, project,
            echo: Callable[[str], None], on_resume: Callable[[int], None]) -> dict[str, float]:
    """Train (or continue from its checkpoint: ``on_resume(step)``) and evaluate one seed run; its metrics.

    Through the run lifecycle like ``modkit train``: the run directory is locked while it trains, and a
    run an earlier worker left is tidied and continued from its newest checkpoint.
    """
    from modkit.evaluation.suite import EVAL_JSON, EvalSettings, evaluate_run
    from modkit.runs import lifecycle
    from modkit.storage import checkpoint, train_state

    recipe, resolved = resolve(config, values, seed, project)
    quiet = lambda s: echo("  " + s)  # noqa: E731
    if not (run_dir / rundir.SUMMARY).exists():
        if (run_dir / rundir.RECIPE).exists():  # an earlier worker started it: continue
            if checkpoint.has_checkpoint(run_dir):
                step = train_state.newest_step(run_dir / checkpoint.CHECKPOINT)
                on_resume(step if step is not None else 0)
            lifecycle.train(resume=run_dir, echo=quiet)
        else:
            lifecycle.train(resolved, out=run_dir, echo=quiet)  # the resolved recipe: the sweep's values already applied
    if config.evaluate and not (run_dir / EVAL_JSON).exists():
        run = lifecycle.load(run_dir, recipe.train.device)
        rundir.write_json(run_dir / EVAL_JSON, evaluate_run(run, EvalSettings(**config.settings)))
    return summary_metrics(run_dir)


def objective_for(config: SweepConfig, out: Path, project, echo: Callable[[str], None]):
    import optuna
    import torch

    from modkit.training.trainer import DivergenceError, Interrupted

    space = config.space
    seeds = space.seeds or [None]

    def objective(trial) -> float:
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid(), "threads": torch.get_num_threads()})
        trial.set_user_attr("interrupted", False)
        values = {d.key: d.suggest(trial, config.sampler == "grid") for d in space.dimensions}
        # a retry carries the user attributes of the trial it repeats: the same run directories, continued
        trial.set_user_attr("first_trial", int(trial.user_attrs.get("first_trial", trial.number)))
        trial_dir = trial_folder(out, trial)
        number = int(trial.user_attrs["first_trial"])
        trial.set_user_attr("run_dir", str(trial_dir))
        label = ", ".join(f"{k}={v}" for k, v in values.items()) or "the recipe as it is"
        echo(f"trial {trial.number}{f' (retrying {number})' if number != trial.number else ''}: {label} → {trial_dir}")
        per_seed: dict[str, dict[str, float]] = {}
        resumed: dict[str, int] = {}
        trial.set_user_attr("resumed_from_step", resumed)  # a retry must not keep its predecessor's
        trial.set_user_attr("seeds", per_seed)
        for seed in seeds:
            name = f"seed-{seed if seed is not None else resolve(config, values, None, project)[0].seed}"

            def on_resume(step: int, name: str = name) -> None:
                resumed[name] = step
                trial.set_user_attr("resumed_from_step", resumed)

            try:
                metrics = run_one(config, values, seed, trial_dir / name, project, echo, on_resume)
            except Interrupted:
                trial.set_user_attr("interrupted", True)
                raise
            except DivergenceError as exc:
                trial.set_user_attr("error", str(exc).split(". ")[0])
                echo(f"  {name} diverged; trial {trial.number} pruned")
                raise optuna.TrialPruned(str(exc)) from None
            per_seed[name] = metrics
            trial.set_user_attr("seeds", per_seed)
        found = [m[config.objective] for m in per_seed.values() if config.objective in m]
        if len(found) != len(per_seed):
            known = sorted({k for m in per_seed.values() for k in m})
            raise ModkitError(f"--objective {config.objective} is not among the run's metrics ({', '.join(known)})")
        return statistics.fmean(found)

    return objective


def work(config: SweepConfig, storage_url: str, echo: Callable[[str], None], on_trial: Callable[[Any], None] | None = None,
         recovering: bool = True) -> None:
    """One worker: join the study, queue dead or interrupted trials again (unless the parent did), run
    trials until the sweep has its count."""
    from modkit.config.project import load_project
    from modkit.training.trainer import Interrupted

    storage = open_storage(storage_url, config.heartbeat)
    study, _ = load_study(config.study, storage)
    if recovering:
        queued = recover(study, storage)
        if queued:
            echo(f"retrying interrupted trial(s) {', '.join(map(str, queued))} from their checkpoints")
    if remaining(study, config) <= 0:
        return
    study.sampler = sampler_for(config)
    out = Path(config.out)
    project = load_project()

    def stop_when_done(study, trial) -> None:
        if on_trial is not None:
            on_trial(study)
        if remaining(study, config) <= 0:
            study.stop()

    try:
        study.optimize(objective_for(config, out, project, echo), callbacks=[stop_when_done], gc_after_trial=True)
    except Interrupted:  # queue this worker's own interrupted trial again, to continue from its checkpoint
        recover(study, storage, lambda t: (t.user_attrs.get("worker") or {}).get("pid") == os.getpid())
        raise


# -- many workers, progress, results -----------------------------------------------------------

def thread_share(workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // workers)


class TrialProgress:
    """A bar over trials on a terminal; a line per finished trial elsewhere."""

    def __init__(self, total: int, echo: Callable[[str], None]):
        self.total, self.echo, self.seen = total, echo, set()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="trials", unit="trial")

    def update(self, study) -> None:
        from optuna.trial import TrialState

        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))]
        for t in done:
            if t.number not in self.seen:
                self.seen.add(t.number)
                value = "pruned" if t.value is None else f"{t.value:.4g}"
                line = f"trial {t.number} finished: {value} ({len(self.seen)}/{self.total})"
                if self.bar is not None:
                    self.bar.write(line)
                else:
                    self.echo(line)
        if self.bar is not None:
            self.bar.n = min(len(self.seen), self.total)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def trial_folder(out: Path, trial) -> Path:
    """Where a trial's runs are: a retry continues in the folder of the trial it repeats (``first_trial``)."""
    return out / f"trial-{int(trial.user_attrs.get('first_trial', trial.number)):04d}"


def run_workers(config: SweepConfig, storage_url: str, workers: int, echo: Callable[[str], None]) -> None:
    """``workers`` processes (``modkit sweep --resume`` each), every one with a fair share of the cores."""
    out = Path(config.out)
    progress = TrialProgress(config.trials, echo)
    if workers == 1:
        try:
            work(config, storage_url, echo, progress.update)
        finally:
            progress.close()
        return
    storage = open_storage(storage_url, config.heartbeat)
    study, _ = load_study(config.study, storage)
    queued = recover(study, storage)  # here, once, before the workers start
    if queued:
        echo(f"retrying interrupted trial(s) {', '.join(map(str, queued))} from their checkpoints")
    left = remaining(study, config)
    if left <= 0:
        return
    if config.sampler == "grid" and left < workers:  # a grid has no other point: a spare worker would repeat one
        echo(f"{left} trial(s) to run: {left} worker(s), not {workers}")
        workers = left
    share = thread_share(workers)
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():  # never more than the user asked for
        share = max(1, min(share, int(os.environ["OMP_NUM_THREADS"])))
    env = {**os.environ, "MODKIT_SWEEP_STORAGE": storage_url, "MODKIT_SWEEP_THREADS": str(share),
           "OMP_NUM_THREADS": str(share), "MKL_NUM_THREADS": str(share)}
    command = [sys.executable, "-m", "modkit", "sweep", "--resume", config.study, "--out", config.out, "--as-worker"]
    procs = []
    echo(f"{workers} worker(s), {share} thread(s) each; their logs: {out}/worker-N.log")
    for i in range(workers):
        log = open(out / f"worker-{i}.log", "a")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        while any(p.poll() is None for p, _ in procs):
            progress.update(study)
            time.sleep(1.0)
        progress.update(study)
    except KeyboardInterrupt:  # the workers got the same Ctrl-C: let them checkpoint and stop
        for p, _ in procs:
            p.wait()
        raise
    finally:
        progress.close()
        for _, log in procs:
            log.close()
    failed = [i for i, (p, _) in enumerate(procs) if p.returncode]
    if failed:
        tail = (out / f"worker-{failed[0]}.log").read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise ModkitError(f"worker {failed[0]} stopped with exit code {procs[failed[0]][0].returncode}: {tail[0]} "
                          f"(see {out}/worker-{failed[0]}.log; continue with: modkit sweep --resume {out})")


def pick_metrics(names: list[str], patterns: list[str]) -> list[str]:
    chosen = [k for p in patterns for k in names if fnmatch.fnmatchcase(k, p) or k == p]
    return list(dict.fromkeys(chosen))


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one seed)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        m, s = value
        return f"{m:.4g}" if s is None else f"{m:.4g} ± {s:.2g}"
    return f"{value:.4g}" if isinstance(value, float) else ("–" if value is None else str(value))


def write_results(study, config: SweepConfig, echo: Callable[[str], None]) -> dict[str, Any]:
    """sweep.csv (every seed run), sweep.md (mean ± sd per trial, best first), sweep.png and Optuna's plots."""
    from optuna.trial import TrialState

    from modkit.reporting import figures

    out = Path(config.out)
    keys = config.space.keys
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.user_attrs.get("seeds")]
    if not trials:
        raise ModkitError(f"no trial of study '{config.study}' has finished yet")
    # every seed run, every metric
    runs = [{"trial": t.number, "run": f"{Path(t.user_attrs['run_dir']).name}/{seed}", **{k: t.params.get(k) for k in keys},
             **metrics} for t in trials for seed, metrics in t.user_attrs["seeds"].items()]
    columns = list(dict.fromkeys(c for r in runs for c in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(runs)
    rundir.atomic_write_text(out / SWEEP_CSV, buffer.getvalue())
    # per trial: mean ± sd over seeds
    names = list(dict.fromkeys(k for t in trials for m in t.user_attrs["seeds"].values() for k in m))
    chosen = [m for m in [config.objective, *pick_metrics(names, config.plot or DEFAULT_METRICS)] if m in names]
    chosen = list(dict.fromkeys(chosen))
    rows = []
    for t in trials:
        per_seed = list(t.user_attrs["seeds"].values())
        stats = {m: mean_sd([s[m] for s in per_seed if m in s]) for m in chosen if any(m in s for s in per_seed)}
        rows.append({"trial": t.number, **{k: t.params.get(k) for k in keys}, "seeds": len(per_seed), **stats,
                     "run_dir": t.user_attrs["run_dir"]})
    reverse = config.direction == "maximize"
    rows.sort(key=lambda r: r[config.objective][0], reverse=reverse)
    best = rows[0]
    header = ["trial", *keys, "seeds", *chosen]
    md = [f"# Sweep {config.study}", "",
          f"{len(trials)} trial(s), {config.sampler} search over {', '.join(keys) or 'seeds'}; "
          f"objective {config.objective} ({config.direction}), mean ± sd over seeds, best first.", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(_fmt(r.get(c)) for c in header) + " |" for r in rows]
    md += ["", f"Best: trial {best['trial']} ({', '.join(f'{k}={best[k]}' for k in keys) or 'seeds only'}), "
               f"{config.objective} {_fmt(best[config.objective])}; run directories: `{best['run_dir']}`.", ""]
    plots = optuna_plots(study, out)
    if keys:
        x_key = keys[0]
        xs = sorted({r[x_key] for r in rows}, key=lambda v: (not isinstance(v, (int, float)), v if isinstance(v, (int, float)) else str(v)))
        series = {m: [next((r[m][0] for r in rows if r[x_key] == x and m in r), None) for x in xs] for m in chosen}
        try:
            xs_num = [float(x) for x in xs]
            xs = xs_num
        except (TypeError, ValueError):
            pass
        figures.sweep_plot(x_key, xs, series, out / SWEEP_PNG)
        plots.insert(0, SWEEP_PNG)
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    if pruned:
        md += ["Diverged (pruned): " + "; ".join(f"trial {t.number} ({', '.join(f'{k}={v}' for k, v in t.params.items())}): "
                                                 f"{t.user_attrs.get('error', 'pruned')}" for t in pruned), ""]
    md += [f"![{p}]({p})" for p in plots]
    md += ["", f"Every metric of every seed run: `{SWEEP_CSV}`; the study: `{config.study}`.", ""]
    rundir.atomic_write_text(out / SWEEP_MD, "\n".join(md))
    echo("| " + " | ".join(header) + " |")
    for r in rows:
        echo("| " + " | ".join(_fmt(r.get(c)) for c in header) + " |")
    echo(f"best: trial {best['trial']}, {config.objective} {_fmt(best[config.objective])}: {best['run_dir']}")
    return {"rows": rows, "best": best, "metrics": chosen, "keys": keys, "plots": plots}


def optuna_plots(study, out: Path) -> list[str]:
    """Optuna's own matplotlib figures where they have something to show (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ov

    made = []
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    plots = [("optimization_history.png", ov.plot_optimization_history, 1)]
    if complete and complete[0].params:
        plots += [("slice.png", ov.plot_slice, 2)]
        if len(complete[0].params) > 1:
            plots += [("param_importances.png", ov.plot_param_importances, 3)]
    for name, plot, needs in plots:
        if len(complete) < needs:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                axes = plot(study)
            except Exception:  # noqa: BLE001 - a plot Optuna cannot draw for this study is left out
                plt.close("all")
                continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
        figure.savefig(out / name, dpi=110, bbox_inches="tight")
        plt.close("all")
        made.append(name)
    return made


# -- the entry points the CLI calls ------------------------------------------------------------

def new_sweep(recipe_path: Path, overrides: list[str], out: Path, *, storage: str | None, study: str | None,
              sampler: str | None, trials: int | None, objective: str, direction: str | None, evaluate: bool,
              settings: dict[str, Any], plot: list[str], device: str | None, heartbeat: int,
              echo: Callable[[str], None] = print) -> tuple[SweepConfig, str]:
    """Define the sweep, validate every value, create its study. Nothing has trained when this returns."""
    import datetime as dt

    from modkit.config.project import load_project
    from modkit.config.recipe import read_yaml
    from modkit.tracking.mlflow import masked

    space = parse_space(overrides)
    ranged = [d.key for d in space.dimensions if d.is_range and (d.log or (d.step is None and not d.integer))]
    sampler = sampler or ("tpe" if ranged else "grid")
    if sampler == "grid" and ranged:
        raise ModkitError(f"grid search needs finite values for {ranged[0]}: give a list or range(lo,hi,step), or --sampler tpe")
    size = grid_size(space) if sampler == "grid" else None
    trials = min(trials or size, size) if size is not None else (trials or 20)
    direction = direction or ("minimize" if "loss" in objective else "maximize")
    config = SweepConfig(study=study or out.name, out=str(out.resolve()), recipe=read_yaml(recipe_path), source=str(recipe_path),
                         overrides=list(overrides), sampler=sampler, trials=trials, objective=objective, direction=direction,
                         evaluate=evaluate, settings=settings, plot=plot, device=device, heartbeat=heartbeat,
                         created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    checked = validate(config, load_project())
    echo(f"checked {checked} recipe(s) over {', '.join(space.keys + (['seed'] if space.seeds else []))}: every value is valid")
    if (out / SWEEP_JSON).exists():
        raise ModkitError(f"{out} already holds a sweep; continue it with: modkit sweep --resume {out}")
    rundir.ensure_writable(out)
    url = storage or default_storage(out)
    create_study(config, open_storage(url, heartbeat))
    rundir.write_json(out / SWEEP_JSON, {"study": config.study, "storage": None if storage is None else masked(storage),
                                         "sampler": sampler, "trials": trials, "objective": objective, "direction": direction})
    seeds = f" × {len(space.seeds)} seeds" if space.seeds else ""
    echo(f"study '{config.study}' ({masked(url)}): {trials} {sampler} trial(s){seeds}; sweep folder {out}")
    return config, url


def locate(target: str, storage: str | None, out: Path | None) -> tuple[SweepConfig, str]:
    """``--resume SWEEP_DIR`` (its study.db, or --storage) or ``--resume STUDY --storage URL``."""
    folder = Path(target)
    if (folder / SWEEP_JSON).is_file():
        info = rundir.read_json(folder / SWEEP_JSON)
        if storage is None and info.get("storage"):
            raise ModkitError(f"the study of {folder} is in {info['storage']}: give --storage URL")
        url, name = storage or default_storage(folder), info["study"]
    elif storage is None:
        raise ModkitError(f"{target} is not a sweep folder (no {SWEEP_JSON}); to join a study by name give --storage URL")
    else:
        url, name = storage, target
    _, config = load_study(name, open_storage(url, 30))
    if out is not None:
        config.out = str(out.resolve())
    elif (folder / SWEEP_JSON).is_file():
        config.out = str(folder.resolve())
    rundir.ensure_writable(Path(config.out))
    return config, url


def finish(config: SweepConfig, url: str, echo: Callable[[str], None]) -> dict[str, Any] | None:
    """Tables and plots of whatever has finished; None if nothing has."""
    study, _ = load_study(config.study, open_storage(url, config.heartbeat))
    c = counts(study)
    echo(f"study '{config.study}': {c['complete']} complete, {c['pruned']} pruned, {c['running']} running, "
         f"{c['fail']} failed trial(s)")
    if not c["complete"]:
        return None
    return write_results(study, config, echo)
