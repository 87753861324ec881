"""One trial of a sweep: a point of the space, trained (or continued from its checkpoint) and evaluated
once per seed, each seed run in ``SWEEP/trial-NNNN/seed-S``."""
from __future__ import annotations

import os
import socket
import statistics
from pathlib import Path
from typing import Callable

from modkit.errors import ModkitError
from modkit.storage import files as rundir
from modkit.sweep.config import SweepConfig, resolve


class AlreadyRunning(Exception):
    """This trial repeats a point (or continues a run directory) another worker is running or has finished:
    it ends at once, untrained, and the worker takes the next one."""


def claim(trial, trial_dir: Path, values: dict[str, str], grid: bool) -> None:
    """Under the sweep's lock: take ``trial_dir`` for this trial, unless another live trial already has it or,
    on a grid, another trial is running or has finished the same point."""
    from optuna.trial import TrialState

    from modkit.sweep.study import claim_lock

    with claim_lock(trial_dir.parent):
        for other in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE)):
            if other.number == trial.number:
                continue
            same_dir = other.state == TrialState.RUNNING and other.user_attrs.get("run_dir") == str(trial_dir)
            same_point = grid and other.user_attrs.get("values") == values
            if same_dir or same_point:
                trial.set_user_attr("duplicate_of", other.number)
                raise AlreadyRunning(f"trial {trial.number} repeats trial {other.number} ({other.state.name.lower()}); skipped")
        trial.set_user_attr("values", values)
        trial.set_user_attr("run_dir", str(trial_dir))


def trial_folder(out: Path, trial) -> Path:
    """Where a trial's runs are: a retry continues in the folder of the trial it repeats (``first_trial``)."""
    return out / f"trial-{int(trial.user_attrs.get('first_trial', trial.number)):04d}"




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
        run = lifecycle.load(run_dir, recipe.train.device, plugins=True)  # the sweep's own recipe
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
        claim(trial, trial_dir, values, config.sampler == "grid")
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
