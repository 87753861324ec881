"""Running a sweep: one worker (``work``: join the study, run trials until the sweep has its count) and the
pool of worker processes (``run_workers``), each with a fair share of the cores, with a progress bar."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from modkit.errors import ModkitError
from modkit.sweep.config import SweepConfig
from modkit.sweep.study import claim_lock, load_study, open_storage, recover, remaining, sampler_for
from modkit.sweep.trial import AlreadyRunning, objective_for


def work(config: SweepConfig, storage_url: str, echo: Callable[[str], None], on_trial: Callable[[Any], None] | None = None,
         recovering: bool = True) -> None:
    """One worker: join the study, queue dead or interrupted trials again (unless the parent did), run
    trials until the sweep has its count."""
    from modkit.config.project import load_project
    from modkit.training.trainer import Interrupted

    storage = open_storage(storage_url, config.heartbeat)
    study, _ = load_study(config.study, storage)
    if recovering:
        with claim_lock(config.out):
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
        study.optimize(objective_for(config, out, project, echo), callbacks=[stop_when_done], gc_after_trial=True,
                       catch=(AlreadyRunning,))  # a duplicate ends as FAIL at once; the worker takes the next trial
    except Interrupted:  # queue this worker's own interrupted trial again, to continue from its checkpoint
        with claim_lock(config.out):
            recover(study, storage, lambda t: (t.user_attrs.get("worker") or {}).get("pid") == os.getpid())
        raise



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
    with claim_lock(out):
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
           "OMP_NUM_THREADS": str(share), "MKL_NUM_THREADS": str(share), "PYTHONSAFEPATH": "1"}
    # -P: the working directory is not put first on the worker's path, so a stray ./click.py there is never imported
    command = [sys.executable, "-P", "-m", "modkit", "sweep", "--resume", config.study, "--out", config.out, "--as-worker"]
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
