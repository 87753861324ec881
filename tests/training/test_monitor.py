"""data.monitor_fraction: rows held out of training and scored after every epoch (``monitor/*`` in metrics.jsonl),
so a rule for "still improving" can read a held-out curve instead of the training loss."""
from __future__ import annotations

import json

import pytest
import torch

from modkit.config.recipe import load_recipe
from modkit.data.dataset import EpochBatchSampler, make_loader
from modkit.evaluation import epoch_metrics
from modkit.plugins.loader import load_plugins, plugins_for
from modkit.runs import callbacks
from modkit.runs.lifecycle import make_trainer
from modkit.training.builder import build

SETS = ["train.epochs=2", "train.checkpoint_every=1000000", "train.progress=false", "train.device=cpu"]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_monitor_rows_are_neither_trained_on_nor_tested_on(tiny_recipe):
    plain = build(load_recipe(tiny_recipe, SETS)[0], load_plugins())
    watched = build(load_recipe(tiny_recipe, [*SETS, "data.monitor_fraction=0.2"])[0], load_plugins())
    assert plain.monitor is None
    kept, held, tested = (set(v.rows.tolist()) for v in (watched.train, watched.monitor, watched.test))
    assert not held & kept and not held & tested and tested == set(plain.test.rows.tolist())
    assert kept | held == set(plain.train.rows.tolist()) and len(held) == round(0.2 * len(plain.train))
    assert watched.monitor.presence.all()  # every modality of a monitor row is scored
    # beside a validation split: carved from what the validation split leaves to training
    both = build(load_recipe(tiny_recipe, [*SETS, "data.monitor_fraction=0.2", "data.evaluate_on=validation"])[0], load_plugins())
    assert not set(both.monitor.rows.tolist()) & (set(both.test.rows.tolist()) | set(both.train.rows.tolist()))


@pytest.mark.parametrize("fraction", ["0.5", "-0.1"])
def test_a_monitor_fraction_out_of_range_names_the_key(tiny_recipe, fraction):
    from modkit import RecipeError

    with pytest.raises(RecipeError, match="data.monitor_fraction"):
        load_recipe(tiny_recipe, [*SETS, f"data.monitor_fraction={fraction}"])


def test_each_epoch_row_carries_the_held_out_scores_and_training_is_unchanged(tiny_recipe, tmp_path, monkeypatch):
    recipe, resolved = load_recipe(tiny_recipe, [*SETS, "data.monitor_fraction=0.2"])
    trainer = make_trainer(recipe, resolved, plugins_for(recipe.plugins, []), tmp_path / "watched", "cpu", echo=lambda *a: None)
    trainer.fit()
    watched = rows(tmp_path / "watched" / "metrics.jsonl")
    assert len(watched) == 2
    for row in watched:
        assert row["monitor/elbo"] < 0 and 0 <= row["monitor/balanced_accuracy/image->label"] <= 1, row
        assert not any(k.startswith("monitor/chance/") for k in row)
    # the last row's numbers are the test metrics of the finished model on the monitor rows, under the monitor's
    # own noise stream (seed + 3): computed here independently of the callback
    view = trainer.setup.monitor
    torch.manual_seed(recipe.seed + 3)
    again = epoch_metrics.test_metrics(trainer.model, make_loader(view, EpochBatchSampler(len(view), 512, shuffle=False)), torch.device("cpu"))
    assert watched[-1]["monitor/elbo"] == pytest.approx(again["test/elbo"], rel=1e-6)

    # the same rows trained without scoring them: the training numbers are identical (the monitor's noise is
    # its own, and the model goes back to train mode)
    monkeypatch.setattr(callbacks.Monitor, "on_epoch_end", lambda self, trainer, row: None)
    blind = make_trainer(recipe, resolved, plugins_for(recipe.plugins, []), tmp_path / "blind", "cpu", echo=lambda *a: None)
    blind.fit()
    unwatched = rows(tmp_path / "blind" / "metrics.jsonl")
    train_keys = [k for k in watched[0] if k.startswith("train/")]
    assert train_keys and [[r[k] for k in train_keys] for r in unwatched] == [[r[k] for k in train_keys] for r in watched]
    assert not any(k.startswith("monitor/") for r in unwatched for k in r)
