"""Sweep workers never collide: a trial that would continue a run directory another live trial holds, or
repeat a grid point that is running or done, ends at once (untrained) and the worker moves on."""
from __future__ import annotations

import threading

import optuna
import pytest

from modkit.sweep.study import LOCK, claim_lock
from modkit.sweep.trial import AlreadyRunning, claim


@pytest.fixture
def study(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}")


def test_a_run_directory_held_by_a_running_trial_is_not_taken_twice(study, tmp_path):
    first, second = study.ask(), study.ask()
    claim(first, tmp_path / "trial-0000", {"lr": "1"}, grid=False)
    with pytest.raises(AlreadyRunning, match="repeats trial 0"):
        claim(second, tmp_path / "trial-0000", {"lr": "1"}, grid=False)  # a retry both workers took
    claim(second, tmp_path / "trial-0001", {"lr": "1"}, grid=False)  # not a grid: the same values may repeat
    assert second.user_attrs["run_dir"].endswith("trial-0001")


def test_a_grid_point_running_or_done_is_skipped(study, tmp_path):
    first = study.ask()
    claim(first, tmp_path / "trial-0000", {"lr": "1"}, grid=True)
    with pytest.raises(AlreadyRunning):
        claim(study.ask(), tmp_path / "trial-0001", {"lr": "1"}, grid=True)
    study.tell(first, 1.0)
    with pytest.raises(AlreadyRunning, match="complete"):
        claim(study.ask(), tmp_path / "trial-0002", {"lr": "1"}, grid=True)
    claim(study.ask(), tmp_path / "trial-0003", {"lr": "2"}, grid=True)


def test_claims_are_serialised_by_the_sweep_lock(study, tmp_path):
    """Eight threads claim one run directory at once: exactly one gets it."""
    trials = [study.ask() for _ in range(8)]
    won, start = [], threading.Barrier(len(trials))

    def take(trial):
        start.wait()
        try:
            claim(trial, tmp_path / "trial-0000", {}, grid=False)
            won.append(trial.number)
        except AlreadyRunning:
            pass
    threads = [threading.Thread(target=take, args=(t,)) for t in trials]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and (tmp_path / LOCK).exists()
    with claim_lock(tmp_path):  # released by every claimer
        pass
