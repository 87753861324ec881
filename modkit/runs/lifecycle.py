"""A run's life in one place: start (a new run directory, locked while it trains), resume, finish, load.

The ``modkit train`` command, :func:`modkit.train`/:func:`modkit.load`, ``modkit sweep``, M2's accuracy
helper, :func:`modkit.testing.train_recipe`, the benchmarks and the tests all come through here (a
:class:`~modkit.training.trainer.Trainer` is built nowhere else: :func:`train`, or :func:`make_trainer`
for code that drives the trainer itself), so the rules hold for every one of them:

* a new run goes only into a new or empty folder (``--resume`` continues one);
* a run directory is locked while it trains (``.modkit.lock``): a second training on it fails at once;
* a resume first sweeps what a killed process left (temporary files, a half-done checkpoint rotation);
* a run stopped before its first checkpoint is started again from its own ``recipe.yaml``;
* a trainer's ``fit`` finishes the run: the callbacks of :mod:`modkit.runs.callbacks` (test metrics,
  ``summary.json``, samples, trackers) and those plugins add (``modkit_train_callbacks``) ride on it.
"""
from __future__ import annotations

import os

import datetime as _dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from modkit.config.project import ProjectConfig, load_project
from modkit.config.recipe import Recipe, load_recipe, read_yaml, resolve_raw
from modkit.errors import ModkitError
from modkit.runs.export import RUN_ONLY, export  # noqa: F401 - export: its old place, kept
from modkit.storage import checkpoint as checkpoints
from modkit.storage import files as rundir
from modkit.storage.layout import LOCK, check_new_run_dir, write_recipe  # noqa: F401 - check_new_run_dir: also its old place

WEIGHTS = checkpoints.WEIGHTS
load_weights = checkpoints.load_weights


# -- the lock and the folder guards -------------------------------------------------------------

class RunLock:
    """An exclusive lock on a run directory (``filelock``: an OS lock, released when the process dies)."""

    def __init__(self, run_dir: Path):
        from filelock import FileLock, Timeout

        self.run_dir = Path(run_dir)
        path = self.run_dir / LOCK
        if os.path.lexists(path) and (os.path.islink(path) or not os.path.isfile(path)):
            # a folder or a link (to a file elsewhere, which locking would create or truncate): never followed
            what = "a symbolic link" if os.path.islink(path) else "a folder" if os.path.isdir(path) else "not a regular file"
            raise ModkitError(f"{path} is {what}; modkit keeps a plain lock file there. Remove it (rm -r {path}) and try again")
        self._lock = FileLock(str(path), timeout=0)
        try:
            self._lock.acquire()
        except Timeout:
            raise ModkitError(f"{run_dir} is being trained by another process (it holds {run_dir / LOCK}); wait for it to "
                              "finish or stop it, or train into another --out") from None
        except OSError as exc:
            raise ModkitError(f"cannot lock {path}: {exc.strerror or exc}") from None

    def release(self) -> None:
        self._lock.release()


def default_run_dir(project: ProjectConfig, name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return rundir.unique_run_dir(project.runs_dir, name, stamp)


# -- what to train ------------------------------------------------------------------------------

@dataclass
class Plan:
    """A validated recipe and where it trains."""

    recipe: Recipe
    resolved: dict[str, Any]
    source: str
    run_dir: Path | None  # None: choose the default when the run starts
    resume: bool


def plan(recipe: Path | str | dict | None = None, overrides: list[str] | tuple[str, ...] = (), out: Path | str | None = None,
         resume: Path | str | None = None, project: ProjectConfig | None = None) -> Plan:
    """Validate before anything is written: a recipe file or dict (new run) or a run directory (``resume``)."""
    project = project or load_project()
    sets = list(overrides)
    if resume is not None:
        if recipe is not None:
            raise ModkitError("give either RECIPE or --resume RUN_DIR, not both")
        resume = Path(resume)
        if not (resume / rundir.RECIPE).is_file():
            raise ModkitError(f"{resume} is not a run directory (no {rundir.RECIPE})")
        source = str(resume / rundir.RECIPE)
        parsed, resolved = resolve_raw(read_yaml(resume / rundir.RECIPE), sets, None, source)
        return Plan(parsed, resolved, source, resume, True)
    if recipe is None:
        raise ModkitError("missing RECIPE (a YAML file) or --resume RUN_DIR; see 'modkit train --help'")
    if isinstance(recipe, dict):
        source = "<recipe dict>"
        parsed, resolved = resolve_raw(recipe, sets, project, source)
    else:
        source = str(recipe)
        parsed, resolved = load_recipe(Path(recipe), sets, project)
    if out is not None:
        check_new_run_dir(Path(out))
    return Plan(parsed, resolved, source, Path(out) if out is not None else default_run_dir(project, parsed.name), False)


# -- training -----------------------------------------------------------------------------------

@dataclass
class Trained:
    run_dir: Path
    summary: dict[str, Any]
    main: bool  # this process is rank 0 (the one that prints)


def open_run_dir(p: Plan, echo: Callable[[str], None]) -> tuple[RunLock, bool, bool]:
    """Create (new run) or tidy (resume) the run directory and lock it. Returns the lock, whether the
    folder was created here, and whether training starts from step 0."""
    run_dir = p.run_dir
    created = not run_dir.exists()
    rundir.ensure_writable(run_dir)
    lock = RunLock(run_dir)
    try:
        if not p.resume:
            check_new_run_dir(run_dir)  # again, holding the lock: another process may have filled it meanwhile
            return lock, created, True
        for what in checkpoints.recover(run_dir):
            echo(f"tidied {run_dir}: {what}")
        checkpoints.refuse_legacy(run_dir)
        if not checkpoints.has_checkpoint(run_dir):
            echo(f"{run_dir} was stopped before its first checkpoint: starting it from the beginning")
            return lock, False, True
        return lock, False, False
    except BaseException:
        lock.release()
        raise


def train(recipe: Path | str | dict | None = None, *, overrides: list[str] | tuple[str, ...] = (), out: Path | str | None = None,
          resume: Path | str | None = None, echo: Callable[[str], None] = print) -> Trained:
    """Train a new run, or continue ``resume``, in this process (or in each torchrun process, rank 0 writing)."""
    from modkit.plugins.loader import plugins_for
    from modkit.training import distributed
    from modkit.training.accel import resolve_device

    project = load_project()
    p = plan(recipe, overrides, out, resume, project)
    dist, dist_device = distributed.init(p.recipe.train.device)
    lock: RunLock | None = None
    try:
        def open_on_rank0() -> tuple[bool, bool]:
            nonlocal lock
            lock, created, fresh = open_run_dir(p, echo)
            return created, fresh

        created, fresh = on_rank0(open_on_rank0, dist)
        run_dir = p.run_dir
        if fresh and not p.resume and dist.main:
            write_recipe(run_dir, p.resolved)  # first: a run killed while it builds can be --resume'd
        plugins = plugins_for(p.recipe.plugins, project.plugins)
        device = dist_device or resolve_device(p.recipe.train.device)
        try:
            trainer = assemble(p.recipe, p.resolved, plugins, run_dir, device, p.source, echo, dist)
            if fresh:  # a fusion that starts from another run (init_from) can fail here too
                trainer.model.fusion.initialize(trainer.model)
        except BaseException:
            if created and dist.main:  # a recipe that fails to build or initialise leaves no run directory behind
                lock.release()
                lock = None
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        if fresh:
            trainer.echo(f"run directory: {run_dir}")
        else:
            trainer.restore()
            trainer.echo(f"resuming {run_dir} at epoch {trainer.state.epoch + 1} (step {trainer.state.global_step})")
        if dist.active:
            trainer.echo(f"{dist.world} processes, {trainer.device.type} ({'nccl' if trainer.device.type == 'cuda' else 'gloo'}), "
                         f"{p.recipe.data.batch_size // dist.world} samples per process per step")
        return Trained(run_dir, trainer.fit(), dist.main)
    except ModkitError as exc:
        exc.rank = dist.rank
        raise
    finally:
        if lock is not None:
            lock.release()
        distributed.shutdown()


def assemble(recipe: Recipe, resolved: dict[str, Any], plugins, run_dir: Path, device: torch.device,
             source: str | None = None, echo: Callable[[str], None] = print, dist=None, callbacks=()):
    """Seed, build the recipe's setup (rank 0 first under torchrun) and hand it to a Trainer with the run's
    callbacks, the plugins' and ``callbacks``. The caller holds the run directory's lock."""
    from modkit.runs.callbacks import plugin_callbacks, run_callbacks
    from modkit.training.builder import build_on_ranks, refuse_oversized
    from modkit.training.distributed import SINGLE
    from modkit.training.trainer import Trainer, seed_everything

    dist = dist or SINGLE
    refuse_oversized(recipe, plugins, source)  # counted on the meta device, before the data or the model is loaded
    seed_everything(recipe.seed)
    setup = build_on_ranks(recipe, plugins, run_dir, source, dist)
    every = [*run_callbacks(), *plugin_callbacks(plugins, recipe), *callbacks]
    return Trainer(recipe, resolved, plugins, run_dir, device, setup, source=source, echo=echo, dist=dist, callbacks=every)


class _ReleaseLock:
    """The last callback of :func:`make_trainer`'s trainer: the run directory is free once ``fit`` ends or fails."""

    def __init__(self, lock: RunLock):
        self.lock = lock

    def on_fit_end(self, trainer) -> None:
        self.lock.release()

    def on_fit_error(self, trainer, error: BaseException) -> None:
        self.lock.release()


def make_trainer(recipe: Recipe, resolved: dict[str, Any], plugins, run_dir: Path | str, device: torch.device | str = "cpu",
                 source: str | None = None, echo: Callable[[str], None] = print, *, resume: bool = False, callbacks=()):
    """A trainer on one process, for code that drives it itself (tests, benchmarks, :func:`modkit.testing.train_recipe`),
    under the same rules as :func:`train`: ``run_dir`` is new or empty (or, with ``resume``, a run to continue,
    tidied first), it is locked until ``fit`` ends, the recipe is written first, a new run's fusion is initialised
    and a resumed one restored from its newest checkpoint; ``fit`` finishes the run (``summary.json``, samples)."""
    from modkit.training.accel import resolve_device

    run_dir = Path(run_dir)
    device = resolve_device(device)
    created = not run_dir.exists()
    p = Plan(recipe, resolved, source or "<recipe>", run_dir, resume)
    lock, _, fresh = open_run_dir(p, echo)
    try:
        if not resume:
            write_recipe(run_dir, resolved)
        trainer = assemble(recipe, resolved, plugins, run_dir, device, source, echo, callbacks=[*callbacks, _ReleaseLock(lock)])
        if fresh:
            trainer.model.fusion.initialize(trainer.model)
        else:
            trainer.restore()
    except BaseException:
        lock.release()
        if created:  # a recipe that fails to build leaves no run directory behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return trainer


def on_rank0(fn: Callable[[], Any], dist) -> Any:
    """Run ``fn`` on rank 0 and give its result (or its user error) to every rank, so none waits forever."""
    from modkit.training import distributed

    result: object = None
    if dist.main:
        try:
            result = fn()
        except ModkitError as exc:
            result = exc
    result = distributed.broadcast(result, dist)
    if isinstance(result, ModkitError):
        result.shown_by_rank0 = True
        raise result
    return result


# -- loading and exporting ----------------------------------------------------------------------

def load(run_dir: Path | str, device: str | torch.device | None = "auto", plugins: bool | list[str] | tuple[str, ...] = ()):
    """A finished (or checkpointed) run, or a folder :func:`export` wrote, ready to use: a :class:`LoadedRun`.
    ``plugins``: modules its recipe names that may be imported (True: all); by default only installed plugins."""
    from modkit.runs.loading import load_exported, load_run

    run_dir = Path(run_dir)
    if (run_dir / WEIGHTS).is_file() and not checkpoints.has_checkpoint(run_dir):
        return load_exported(run_dir, device, plugins)
    return load_run(run_dir, device, plugins)
