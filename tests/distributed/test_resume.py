"""kill -9 in the middle of an epoch, Ctrl-C later, resume twice: the end state equals an uninterrupted run, bit for bit."""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from dist_helpers import STEPS_PER_EPOCH, leftovers, load, modkit_here, modkit_subprocess

SETS = ["--set", "train.checkpoint_every=5", "--set", "train.epochs=3"]


def _rows(run):
    return [{k: v for k, v in json.loads(line).items() if k not in ("time_s", "cpu_s")} for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_same_state(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"] and a["epoch"] == b["epoch"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for pid, state in a["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][pid][key]), (pid, key)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert torch.equal(a["sampler"]["generator"], b["sampler"]["generator"])


@pytest.mark.slow
@pytest.mark.distributed
def test_kill9_then_sigint_then_resume_equals_uninterrupted_run(project):
    reference = modkit_here(["train", "tiny.yaml", "--out", "reference", *SETS])
    assert reference.exit_code == 0, reference.output
    run = project / "run"

    # life 1: a real kill -9 after step 33 (epoch 2, step 10 of 23); the last checkpoint is step 30
    killed = modkit_subprocess(["train", "tiny.yaml", "--out", "run", *SETS], project, MODKIT_TEST_KILL_AT="33:9")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    ckpt = load(run)
    assert (ckpt["global_step"], ckpt["epoch"], ckpt["step_in_epoch"]) == (30, 1, 30 - STEPS_PER_EPOCH)
    assert leftovers(run) == []

    # life 2: resumed, then Ctrl-C (SIGINT) after step 52: the handler checkpoints that very step and exits 130
    stopped = modkit_subprocess(["train", "--resume", "run"], project, MODKIT_TEST_KILL_AT="52:2")
    assert stopped.returncode == 130, stopped.stderr
    assert "resuming run at epoch 2 (step 30)" in stopped.stdout
    assert "interrupted by SIGINT at step 52 (epoch 3); checkpoint saved" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert load(run)["global_step"] == 52 and leftovers(run) == []

    # life 3: to the end
    finished = modkit_here(["train", "--resume", "run"])
    assert finished.exit_code == 0, finished.output
    _assert_same_state(load(project / "reference"), load(run))
    assert _rows(run) == _rows(project / "reference")  # the epoch means too, partial sums included
    ref_summary = json.loads((project / "reference" / "summary.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test/elbo"] == ref_summary["test/elbo"]


def test_sigterm_checkpoints_and_exits_cleanly(project, monkeypatch):
    from modkit.training.trainer import Trainer

    accumulate = Trainer.accumulate

    def terminate_at_step_9(self, *args, **kwargs):
        accumulate(self, *args, **kwargs)
        if self.state.global_step == 9:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Trainer, "accumulate", terminate_at_step_9)
    before = signal.getsignal(signal.SIGTERM)
    result = modkit_here(["train", "tiny.yaml", "--out", "run"])
    assert result.exit_code == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM at step 9 (epoch 1); checkpoint saved. Continue with: modkit train --resume run" in result.output
    assert load(project / "run")["global_step"] == 9
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the trainer's only while it trains
