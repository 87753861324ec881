"""``modkit sweep`` on Optuna: two workers sharing a SQLite and a PostgreSQL study, a killed worker whose
trial another worker continues from its checkpoint, and a bad value refused before anything trains."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState
from sweep_helpers import TINY, wait_for

from modkit.cli.main import main

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "digits-poe.yaml"
FAST = [*TINY, "--set", "train.epochs=1", "--set", "data.batch_size=256", "--no-eval"]


def sweep(*args: str):
    return CliRunner().invoke(main, ["sweep", *map(str, args)], catch_exceptions=False)


def study_of(out: Path, storage: str | None = None) -> optuna.Study:
    name = json.loads((out / "sweep.json").read_text())["study"]
    return optuna.load_study(study_name=name, storage=storage or f"sqlite:///{out / 'study.db'}")


def check_two_workers(out: Path, study: optuna.Study, trials: int) -> None:
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == trials
    assert len({t.user_attrs["worker"]["pid"] for t in complete}) == 2, "both worker processes ran trials"
    assert {t.user_attrs["worker"]["threads"] for t in complete} == {max(1, len(os.sched_getaffinity(0)) // 2)}
    for t in complete:
        run = Path(t.user_attrs["run_dir"]) / "seed-0"
        summary = json.loads((run / "summary.json").read_text())
        assert t.value == pytest.approx(summary["test/elbo"])
        assert any(p.name.startswith("events.out.tfevents") for p in run.iterdir())  # TensorBoard by default
    best = max(complete, key=lambda t: t.value)
    text = (out / "sweep.md").read_text()
    assert f"Best: trial {best.number} " in text and best.user_attrs["run_dir"] in text
    assert (out / "optimization_history.png").exists() and (out / "sweep.png").exists()


@pytest.mark.slow
@pytest.mark.distributed
def test_two_workers_share_a_sqlite_study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sweep"
    result = sweep(RECIPE, *FAST, "--set", "train.lr=0.001,0.002,0.003,0.004", "--workers", "2", "--out", out)
    assert result.exit_code == 0, result.output
    assert "4 grid trial(s)" in result.output and "best: trial" in result.output
    check_two_workers(out, study_of(out), 4)
    csv_rows = (out / "sweep.csv").read_text().splitlines()
    assert csv_rows[0].startswith("trial,run,train.lr") and len(csv_rows) == 5


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.distributed
def test_two_workers_share_a_postgres_study(tmp_path, monkeypatch, postgres):
    monkeypatch.chdir(tmp_path)
    url = postgres.url("sweeps")
    out = tmp_path / "sweep"
    result = sweep(RECIPE, *FAST, "--set", "train.lr=log(1e-4,1e-2)", "--trials", "4", "--workers", "2",
                   "--storage", url, "--study", "pg-study", "--out", out)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="pg-study", storage=url)
    check_two_workers(out, study, 4)
    assert all(1e-4 <= t.params["train.lr"] <= 1e-2 for t in study.trials)
    # a worker joins by study name and storage; the sweep is complete, so it only tabulates
    again = sweep("--resume", "pg-study", "--storage", url, "--out", out)
    assert again.exit_code == 0, again.output
    assert "4 complete" in again.output and len(study.get_trials()) == 4


@pytest.mark.slow
def test_seeds_are_a_repeat_dimension(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sweep"
    result = sweep(RECIPE, *FAST, "--set", "model.latent_dim=4,8", "--set", "seed=0,1", "--out", out)
    assert result.exit_code == 0, result.output
    import statistics

    study = study_of(out)
    assert len(study.trials) == 2 and all(len(t.user_attrs["seeds"]) == 2 for t in study.trials)
    for t in study.trials:
        elbos = [json.loads((Path(t.user_attrs["run_dir"]) / f"seed-{s}" / "summary.json").read_text())["test/elbo"]
                 for s in (0, 1)]
        assert t.value == pytest.approx(statistics.fmean(elbos))
        row = next(line for line in (out / "sweep.md").read_text().splitlines() if line.startswith(f"| {t.number} |"))
        assert f"{statistics.fmean(elbos):.4g} ± {statistics.stdev(elbos):.2g}" in row


@pytest.mark.slow
@pytest.mark.distributed
def test_a_killed_worker_trial_is_resumed_from_its_checkpoint(tmp_path):
    """kill -9 mid-trial, then a worker that is itself stopped with Ctrl-C, then one that finishes: the one
    trial's run continues from its checkpoint each time and ends with every epoch exactly once."""
    out = tmp_path / "sweep"
    slow = [*TINY, "--set", "train.epochs=12", "--set", "data.batch_size=16", "--no-eval", "--trials", "1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(REPO), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")] if p)}
    metrics = out / "trial-0000" / "seed-0" / "metrics.jsonl"

    def epochs() -> int:
        return metrics.read_text().count("\n") if metrics.exists() else 0

    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "modkit", "sweep", *args], cwd=tmp_path, env=env,
                                start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop_after(worker: subprocess.Popen, rows: int, signum: int) -> str:
        try:
            wait_for(lambda: epochs() >= rows or worker.poll() is not None, 300, f"epoch {rows}'s checkpoint")
            assert worker.poll() is None, "the worker finished before it could be stopped"
            os.killpg(worker.pid, signum)
            return worker.communicate(timeout=120)[0]
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()

    stop_after(start(str(RECIPE), *slow, "--set", "train.lr=0.001,0.002", "--out", str(out)), 1, signal.SIGKILL)
    killed_at = epochs()
    second = start("--resume", str(out))
    output = stop_after(second, killed_at + 1, signal.SIGINT)
    assert second.returncode == 130, output
    assert "retrying interrupted trial(s) 0" in output and "continue the sweep with: modkit sweep --resume" in output
    interrupted_at = epochs()
    assert interrupted_at < 12 and not (metrics.parent / "summary.json").exists()
    result = subprocess.run([sys.executable, "-m", "modkit", "sweep", "--resume", str(out)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    study = study_of(out)
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]  # killed, interrupted, finished
    assert all(t.user_attrs["first_trial"] == 0 and t.params == study.trials[0].params for t in study.trials[1:])
    # each worker continued the same run directory from its checkpoint, not from scratch
    assert study.trials[1].user_attrs["resumed_from_step"]["seed-0"] > 0
    assert study.trials[2].user_attrs["resumed_from_step"]["seed-0"] > study.trials[1].user_attrs["resumed_from_step"]["seed-0"]
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 13))


def test_a_bad_value_is_refused_before_anything_trains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sweep"
    for bad, named in ([("train.lr=0.001,0.002,-1", "train.lr=-1"),
                        ("modalities.image.likelihood=bernoulli,gaussian,banana", "modalities.image.likelihood=banana"),
                        ("train.lr=log(0,1)", "train.lr=log(0,1)")]):
        result = sweep(RECIPE, *FAST, "--set", "seed=0,1", "--set", bad, "--out", out)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --set: ") and named in lines[0], result.output
        assert not out.exists()


@pytest.mark.slow
@pytest.mark.distributed
def test_a_grid_with_fewer_points_than_workers_runs_each_point_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sweep"
    result = sweep(RECIPE, *FAST, "--set", "seed=0,1", "--workers", "2", "--out", out)  # one point, two seeds
    assert result.exit_code == 0, result.output
    assert "1 trial(s) to run: 1 worker(s), not 2" in result.output
    trials = study_of(out).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] and sorted(trials[0].user_attrs["seeds"]) == ["seed-0", "seed-1"]
    assert sorted(p.name for p in out.glob("trial-*")) == ["trial-0000"]
