"""A sweep's Optuna study: its storage (SQLite in the sweep folder, or any database), creating and joining
it, and crash recovery (a trial whose worker died or was interrupted is queued again, to continue each
seed run from its checkpoint). ``new_sweep`` and ``locate`` are the entry points the CLI calls."""
from __future__ import annotations

import dataclasses
import os
import socket
import warnings
from pathlib import Path
from typing import Any, Callable

from modkit.errors import ModkitError
from modkit.storage import files as rundir
from modkit.sweep.config import SweepConfig, validate
from modkit.sweep.space import grid_size, parse_space

SWEEP_JSON = "sweep.json"
STUDY_DB = "study.db"
ATTR = "modkit"  # the study's user attribute holding the sweep's definition


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
    return study, SweepConfig.stored(raw, f"study '{name}'")


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


LOCK = ".sweep.lock"


class claim_lock:
    """An exclusive lock on the sweep folder while a process changes which trial runs where: queueing dead or
    interrupted trials again, and a trial claiming its run directory. Two workers joining after a crash (the
    default SQLite study has no row locks) would otherwise both queue one retry, or both train one point."""

    def __init__(self, out: Path | str):
        from filelock import FileLock

        Path(out).mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(Path(out) / LOCK), timeout=300)

    def __enter__(self):
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            raise ModkitError(f"another worker has held {self._lock.lock_file} for 5 minutes; is it stuck? "
                              f"Stop it and run modkit sweep --resume again") from None
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()


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


def open_sweep(target: str | Path, storage: str | None, out: Path | None = None) -> tuple[Any, SweepConfig, str]:
    """A sweep's study, its definition and its storage URL: ``target`` is a sweep folder (its study.db, or
    ``storage``) or a study's name in ``storage``. The definition's ``out`` is the folder the trials' runs
    are in: ``out`` if given, else the sweep folder, else where the sweep was made."""
    folder = Path(target)
    if (folder / SWEEP_JSON).is_file():
        info = rundir.read_json(folder / SWEEP_JSON)
        if not isinstance(info, dict) or not isinstance(info.get("study"), str) or not isinstance(info.get("storage"), (str, type(None))):
            raise ModkitError(f"{folder / SWEEP_JSON} is damaged (it needs a 'study' name and a 'storage' URL or null); "
                              f"it was changed by hand. Restore it, or join the study with --resume STUDY --storage URL")
        if storage is None and info.get("storage"):
            raise ModkitError(f"the study of {folder} is in {info['storage']}: give --storage URL")
        url, name = storage or default_storage(folder), info["study"]
    elif storage is None:
        raise ModkitError(f"{target} is not a sweep folder (no {SWEEP_JSON}); to join a study by name give --storage URL")
    else:
        url, name = storage, str(target)
    study, config = load_study(name, open_storage(url, 30))
    if out is not None:
        config.out = str(Path(out).resolve())
    elif (folder / SWEEP_JSON).is_file():
        config.out = str(folder.resolve())
    return study, config, url


def locate(target: str, storage: str | None, out: Path | None) -> tuple[SweepConfig, str]:
    """``--resume SWEEP_DIR`` (its study.db, or --storage) or ``--resume STUDY --storage URL``."""
    _, config, url = open_sweep(target, storage, out)
    rundir.ensure_writable(Path(config.out))
    return config, url
