"""The training loop's events: the order a callback sees them, the run's own callbacks before a plugin's, and
plugins adding callbacks through the ``modkit_train_callbacks`` hook."""
from __future__ import annotations

import json

import pytest

from modkit import hookimpl
from modkit.config.recipe import load_recipe
from modkit.plugins.loader import plugins_for
from modkit.runs.lifecycle import make_trainer
from modkit.training.events import EVENTS, Callback


class Recorder(Callback):
    """Writes down every event, with the counters and files the trainer had at that moment."""

    def __init__(self):
        self.seen: list[tuple] = []

    def on_fit_start(self, trainer):
        self.seen.append(("fit_start", trainer.state.global_step))

    def on_interval(self, trainer, row):
        self.seen.append(("interval", row["step"], row["epoch"]))

    def on_epoch_end(self, trainer, row):
        self.seen.append(("epoch_end", row["epoch"], row["step"]))

    def on_checkpoint(self, trainer):
        self.seen.append(("checkpoint", trainer.state.global_step))

    def on_fit_end(self, trainer):
        summary = json.loads((trainer.run_dir / "summary.json").read_text())
        self.seen.append(("fit_end", trainer.summary.get("steps"), summary["steps"], (trainer.run_dir / "samples.png").exists()))

    def on_fit_error(self, trainer, error):
        self.seen.append(("fit_error", type(error).__name__))


class CallbackPlugin:
    """A plugin object, registered on the PluginSet like a module: its hook hands the loop a Recorder."""

    def __init__(self):
        self.recorder = Recorder()
        self.recipes: list[str] = []

    @hookimpl
    def modkit_train_callbacks(self, recipe):
        self.recipes.append(recipe.name)
        return [self.recorder]


def _recipe(tiny_recipe, *sets):
    return load_recipe(tiny_recipe, ["train.epochs=2", "train.checkpoint_every=1000000", "train.progress=false", *sets])


def test_a_callback_sees_the_events_of_a_run_in_order(tiny_recipe, tmp_path):
    recipe, resolved = _recipe(tiny_recipe)
    plugins = plugins_for(recipe.plugins, [])
    plugin = CallbackPlugin()
    info = plugins.add_plugin(plugin, "events-test", source="test")
    assert info.ok, info.error
    mine = Recorder()
    trainer = make_trainer(recipe, resolved, plugins, tmp_path / "run", "cpu", echo=lambda *a: None, callbacks=[mine])
    steps, every = trainer.batches.steps(), recipe.train.log_every
    summary = trainer.fit()

    expected = [("fit_start", 0), ("checkpoint", 0)]
    for epoch in (1, 2):
        first, last = (epoch - 1) * steps + 1, epoch * steps
        expected += [("interval", s, epoch) for s in range(first, last + 1) if s % every == 0]
        expected += [("epoch_end", epoch, last), ("checkpoint", last)]
    expected.append(("fit_end", 2 * steps, 2 * steps, True))  # the run's summary and samples exist by then
    assert mine.seen == expected
    assert plugin.recorder.seen == expected and plugin.recipes == ["tiny"]
    assert summary["steps"] == 2 * steps and "test/elbo" in summary
    # the run was finished and its folder released: it can be opened again at once
    again = make_trainer(recipe, resolved, plugins, tmp_path / "run", "cpu", echo=lambda *a: None, resume=True)
    assert again.state.global_step == 2 * steps


def test_a_failing_fit_tells_every_callback_and_releases_the_run(tiny_recipe, tmp_path):
    recipe, resolved = _recipe(tiny_recipe)
    plugins = plugins_for(recipe.plugins, [])

    class Breaks(Callback):
        def on_epoch_end(self, trainer, row):
            raise RuntimeError("a callback failed")

    watcher = Recorder()
    trainer = make_trainer(recipe, resolved, plugins, tmp_path / "run", "cpu", echo=lambda *a: None, callbacks=[Breaks(), watcher])
    with pytest.raises(RuntimeError, match="a callback failed"):
        trainer.fit()
    assert watcher.seen[-1] == ("fit_error", "RuntimeError") and not any(e[0] == "fit_end" for e in watcher.seen)
    assert not (tmp_path / "run" / "summary.json").exists()
    resumed = make_trainer(recipe, resolved, plugins, tmp_path / "run", "cpu", echo=lambda *a: None, resume=True)  # not locked
    assert resumed.state.global_step == 0  # only the checkpoint before the first step was written


def test_a_second_trainer_on_a_folder_in_training_is_refused(tiny_recipe, tmp_path):
    from modkit.errors import ModkitError

    recipe, resolved = _recipe(tiny_recipe)
    plugins = plugins_for(recipe.plugins, [])
    first = make_trainer(recipe, resolved, plugins, tmp_path / "run", "cpu", echo=lambda *a: None)  # holds the lock until its fit ends
    with pytest.raises(ModkitError, match="is being trained by another process"):
        make_trainer(recipe, resolved, plugins, tmp_path / "run", "cpu", echo=lambda *a: None, resume=True)
    assert first.state.global_step == 0


def test_the_callback_base_class_answers_every_event():
    assert all(callable(getattr(Callback, name)) for name in EVENTS)
