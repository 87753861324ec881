"""The divergence guard: NaNs injected into batches are skipped and counted; a streak rolls back with a
lower learning rate or stops with a clear message; a non-finite model is never written."""
from __future__ import annotations

import json
import math

import pytest
import torch

from dist_helpers import leftovers, load, modkit_here
from modkit.core.batch import Batch
from modkit.runs.lifecycle import make_trainer
from modkit.training.trainer import Trainer

GUARD = ["--set", "train.divergence.max_bad_steps=3", "--set", "train.log_every=1", "--set", "train.checkpoint_every=5"]


def inject_nan(monkeypatch, first_step: int, times: int | None = None) -> dict:
    """Fill the image batch with NaN from step ``first_step`` (1-based) on, ``times`` times at most."""
    forward_backward = Trainer.forward_backward
    count = {"n": 0}

    def poisoned(self, batch, beta):
        if self.state.global_step + 1 >= first_step and (times is None or count["n"] < times):
            count["n"] += 1
            batch = Batch({**batch.data, "image": torch.full_like(batch.data["image"], math.nan)}, batch.present)
        return forward_backward(self, batch, beta)

    monkeypatch.setattr(Trainer, "forward_backward", poisoned)
    return count


def _finite(ckpt: dict) -> bool:
    return all(torch.isfinite(v).all() for v in ckpt["model"].values())


def _adam_steps(ckpt: dict) -> int:
    return int(next(iter(ckpt["optimizer"]["state"].values()))["step"])


def test_one_nan_batch_is_skipped_and_counted(project, monkeypatch):
    inject_nan(monkeypatch, first_step=8, times=1)
    result = modkit_here(["train", "tiny.yaml", "--out", "run"])
    assert result.exit_code == 0, result.output
    run = project / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["skipped_steps"] == 1 and "skipped_steps" not in rows[1]
    assert all(math.isfinite(r["train/loss"]) for r in rows)
    assert json.loads((run / "summary.json").read_text())["skipped_steps"] == 1
    ckpt = load(run)
    assert _finite(ckpt) and ckpt["global_step"] == 46
    assert _adam_steps(ckpt) == 45  # the poisoned step never reached the parameters or the moments
    assert "skipped 1 non-finite step(s)" in result.output


def test_a_streak_rolls_back_with_a_lower_learning_rate_and_recovers(project, monkeypatch):
    inject_nan(monkeypatch, first_step=12, times=3)  # steps 12, 13, 14: a streak of 3 at step 14
    result = modkit_here(["train", "tiny.yaml", "--out", "run", *GUARD])
    assert result.exit_code == 0, result.output
    assert "3 steps in a row had a non-finite loss or gradient at step 14; rolled back to step 10" in result.output
    assert "now 0.0005" in result.output
    run = project / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == [0.0005, 0.0005] and rows[-1]["rollbacks"] == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rollbacks"] == 1 and summary["steps"] == 46
    ckpt = load(run)
    assert _finite(ckpt) and _adam_steps(ckpt) == 46  # 10 before the rollback point, 36 after it


def test_persistent_nan_stops_with_a_clear_message_and_the_run_intact(project, monkeypatch):
    inject_nan(monkeypatch, first_step=12)
    result = modkit_here(["train", "tiny.yaml", "--out", "run", *GUARD, "--set", "train.divergence.action=stop"])
    assert result.exit_code == 3
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: training diverged: 3 steps in a row had a non-finite loss or gradient at step 14 (epoch 1). Stopped;")
    assert "Traceback" not in result.output
    run = project / "run"
    ckpt = load(run)
    assert ckpt["global_step"] == 10 and _finite(ckpt) and leftovers(run) == []


def test_rollbacks_run_out_then_it_stops(project, monkeypatch):
    inject_nan(monkeypatch, first_step=12)  # the data stay broken: lowering the rate cannot help
    result = modkit_here(["train", "tiny.yaml", "--out", "run", *GUARD, "--set", "train.divergence.max_rollbacks=2"])
    assert result.exit_code == 3
    assert result.output.count("rolled back to step 10") == 2
    assert "now 0.0005" in result.output and "now 0.00025" in result.output
    assert "after 2 rollback(s)" in result.output
    assert _finite(load(project / "run"))


def test_a_non_finite_model_is_never_checkpointed(project, monkeypatch):
    accumulate = Trainer.accumulate

    def corrupt_after_step_7(self, *args, **kwargs):
        accumulate(self, *args, **kwargs)
        if self.state.global_step == 7:
            with torch.no_grad():
                next(self.model.parameters()).fill_(math.inf)  # a silent corruption outside the guarded step

    monkeypatch.setattr(Trainer, "accumulate", corrupt_after_step_7)
    result = modkit_here(["train", "tiny.yaml", "--out", "run", "--set", "train.checkpoint_every=5",
                          "--set", "train.divergence.action=stop"])
    assert result.exit_code == 3
    assert "the parameters are no longer finite at step 10" in result.output
    ckpt = load(project / "run")
    assert ckpt["global_step"] == 5 and _finite(ckpt)


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_update_flags_non_finite_gradients_without_touching_the_model(project, bad):
    """The step itself: a non-finite gradient leaves parameters and Adam moments exactly as they were."""
    from modkit.plugins.loader import plugins_for
    from modkit.config.recipe import load_recipe

    recipe, resolved = load_recipe("tiny.yaml")
    trainer = make_trainer(recipe, resolved, plugins_for([], []), project / "unused", "cpu")
    batch = trainer.setup.train.__getitems__(list(range(8)))
    trainer.step(batch, 1.0)  # one good step, so Adam has moments
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    moments = {id(p): {k: v.clone() for k, v in s.items()} for p, s in trainer.optimizer.state.items()}
    loss, _ = trainer.forward_backward(batch, 1.0)
    next(trainer.model.parameters()).grad.view(-1)[0] = bad
    flag = trainer.update(loss)
    assert float(flag) == 1.0
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    for p, state in trainer.optimizer.state.items():
        assert all(torch.equal(moments[id(p)][k], v) for k, v in state.items())
