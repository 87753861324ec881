"""What a run does around the training loop, as callbacks on it (:mod:`modkit.training.events`).

The run lifecycle composes them (:func:`run_callbacks`) onto every trainer it builds, in this order:

* :class:`Monitor`: with ``data.monitor_fraction``, after each epoch, the held-out rows' joint ELBO and
  cross-modal accuracies added to the epoch's row (``monitor/*``) before it is written or tracked;
* :class:`TestMetrics`, :class:`Summary`, :class:`Samples`: at the end of ``fit``, on rank 0, the test
  split's metrics, ``summary.json`` and ``samples.png``/``samples.md``;
* :class:`LatentSamplerFit`: with ``eval.latent_sampler``, the post-hoc latent sampler fitted to the
  training set when ``fit`` ends (rank 0), its options checked when ``fit`` starts;
* :class:`Tracking`: TensorBoard/MLflow (``tracking:``), opened when ``fit`` starts (after a resume's
  restore), fed every interval and epoch, given the summary and the samples at the end (so it comes
  after the three above), closed KILLED/FAILED if ``fit`` raises.

The end-of-run evaluation draws its noise from its own seeded stream (the recipe's seed + 1), shared by
the test metrics and then the samples, and gives training's RNG back afterwards: a finished run's
numbers do not depend on how far training's RNG had advanced, and they are the same as before the
evaluation became callbacks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from modkit.data.dataset import EpochBatchSampler, make_loader
from modkit.evaluation.epoch_metrics import test_metrics
from modkit.reporting.samples import write_samples
from modkit.storage import files
from modkit.storage.layout import RunDir
from modkit.tracking import NULL_TRACKER, open_tracker
from modkit.training.events import Callback
from modkit.training.latent_samplers import fit_latent_sampler, sampler_class, sampler_config


@dataclass
class EvaluationStream:
    """The end-of-run evaluation's RNG: seeded by :class:`TestMetrics`, given back by :class:`Samples`."""

    training_rng: torch.Tensor | None = None
    metrics: dict[str, Any] | None = None

    def start(self, seed: int) -> None:
        self.training_rng = torch.get_rng_state()
        torch.manual_seed(seed + 1)  # evaluation noise does not disturb training RNG

    def end(self) -> None:
        if self.training_rng is not None:
            torch.set_rng_state(self.training_rng)
            self.training_rng = None


class Tracking(Callback):
    """The run's trackers (rank 0; the other ranks get one without backends)."""

    def __init__(self):
        self.tracker = NULL_TRACKER

    def on_fit_start(self, trainer) -> None:
        if self.tracker is NULL_TRACKER:  # once per trainer, at the step it starts from
            self.tracker = open_tracker(trainer.recipe.tracking, trainer.resolved, trainer.run_dir,
                                        trainer.state.global_step, trainer.dist.main, trainer.echo)

    def on_interval(self, trainer, row: dict[str, Any]) -> None:
        self.tracker.log_interval(trainer.state, row["lr"])

    def on_epoch_end(self, trainer, row: dict[str, Any]) -> None:
        self.tracker.log_epoch(row)

    def on_fit_end(self, trainer) -> None:
        if self.tracker is not NULL_TRACKER:  # rank 0 with a backend
            run = RunDir(trainer.run_dir)
            self.tracker.finish(trainer.summary, {"samples_png": run.samples_png, "samples_md": run.samples_md})

    def on_fit_error(self, trainer, error: BaseException) -> None:
        if self.tracker is NULL_TRACKER:
            return
        interrupted = isinstance(error, KeyboardInterrupt) or type(error).__name__ == "Interrupted"
        self.tracker.close("KILLED" if interrupted else "FAILED")


class Monitor(Callback):
    """The rows ``data.monitor_fraction`` holds out of training, scored after every epoch (on rank 0; the
    numbers join the epoch's row as ``monitor/<key>``, <key> as in the test metrics).

    The training loss says whether the model still fits its own rows better; these say whether it still
    improves on rows it never fits, which is what "has it converged" means to a reader of a result. The
    noise comes from a stream of its own (the recipe's seed + 3), the same every epoch, and training's RNG
    is given back: a run with the monitor trains exactly as one without it on the rows it keeps.
    """

    def on_epoch_end(self, trainer, row: dict[str, Any]) -> None:
        view = trainer.setup.monitor
        if view is None or not trainer.dist.main:
            return
        recipe = trainer.recipe
        loader = make_loader(view, EpochBatchSampler(len(view), recipe.data.eval_batch_size, shuffle=False))
        devices = [trainer.device] if trainer.device.type == "cuda" else []  # the CPU's RNG is always forked
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(recipe.seed + 3)
            metrics = test_metrics(trainer.model, loader, trainer.device, coherence=recipe.eval.coherence)
        # test_metrics leaves the model in eval mode: the next epoch puts it back in train mode before its first step
        row.update({f"monitor/{key.removeprefix('test/')}": value for key, value in metrics.items()
                    if value is not None and not key.startswith("chance/")})


class TestMetrics(Callback):
    """The test split's metrics (rank 0), the first part of :class:`Summary`'s numbers."""

    __test__ = False  # not a pytest test class

    def __init__(self, stream: EvaluationStream):
        self.stream = stream

    def on_fit_end(self, trainer) -> None:
        if not trainer.dist.main:
            return
        recipe = trainer.recipe
        loader = make_loader(trainer.setup.test, EpochBatchSampler(len(trainer.setup.test), recipe.data.eval_batch_size, shuffle=False))
        self.stream.start(recipe.seed)
        bad = [0]

        def counted(batches):
            for batch in batches:
                bad[0] += batch.skipped
                yield batch

        metrics = test_metrics(trainer.model, counted(loader), trainer.device, coherence=recipe.eval.coherence)
        if bad[0]:
            metrics["test/skipped_samples"] = bad[0]
            trainer.echo(f"evaluation skipped {bad[0]} bad test samples")
        self.stream.metrics = metrics


class Summary(Callback):
    """``summary.json`` (rank 0): what training did and cost, and the test metrics; also ``trainer.summary``."""

    def __init__(self, stream: EvaluationStream):
        self.stream = stream

    def on_fit_end(self, trainer) -> None:
        if not trainer.dist.main:
            return
        rows = trainer.rows
        summary = {"name": trainer.recipe.name, "epochs": trainer.state.epoch, "steps": trainer.state.global_step,
                   "device": str(trainer.device), "processes": trainer.dist.world,
                   "skipped_steps": trainer.guard.skipped_total, "rollbacks": trainer.guard.rollbacks,
                   "train": {k: v for k, v in (rows[-1] if rows else {}).items() if k.startswith("train/")},
                   # what training cost, summed over the epochs (metrics.jsonl has each): the time a user waits
                   "train_seconds": round(sum(r.get("time_s", 0.0) for r in rows), 3),
                   "train_cpu_seconds": round(sum(r.get("cpu_s", 0.0) for r in rows), 3),
                   **(self.stream.metrics or {})}
        for key in files.write_json(RunDir(trainer.run_dir).summary, summary):
            trainer.echo(f"warning: {key} was not finite (NaN or infinite); summary.json holds null for it")
        trainer.summary = summary


class Samples(Callback):
    """``samples.png`` and ``samples.md`` (rank 0): reconstructions and cross-generations of complete test samples."""

    def __init__(self, stream: EvaluationStream):
        self.stream = stream

    def on_fit_end(self, trainer) -> None:
        if not trainer.dist.main:
            return
        try:
            test = trainer.setup.test
            complete = torch.nonzero(test.presence.all(1)).flatten()[: trainer.recipe.eval.samples].tolist()
            if complete:
                run = RunDir(trainer.run_dir)
                write_samples(trainer.model, test.__getitems__(complete), run.samples_png, run.samples_md)
        finally:
            self.stream.end()

    def on_fit_error(self, trainer, error: BaseException) -> None:
        self.stream.end()


class LatentSamplerFit(Callback):
    """``samplers/NAME.safetensors`` (rank 0) when the recipe asks for a latent sampler (``eval.latent_sampler``)."""

    def on_fit_start(self, trainer) -> None:
        spec = trainer.recipe.eval.latent_sampler
        if spec is not None:  # a misspelt option fails now, not after the training it would follow
            cls = sampler_class(trainer.plugins.registry, spec.type)
            sampler_config(cls, spec.type, spec.options, where="eval.latent_sampler")

    def on_fit_end(self, trainer) -> None:
        spec = trainer.recipe.eval.latent_sampler
        if spec is None or not trainer.dist.main:
            return
        with torch.random.fork_rng(devices=[]):  # the fit's own seeded noise leaves training's RNG as it was
            fitted = fit_latent_sampler(trainer.model, trainer.setup.train, trainer.plugins.registry, trainer.run_dir,
                                        spec.type, spec.options, seed=trainer.recipe.seed,
                                        batch_size=trainer.recipe.data.eval_batch_size)
        trainer.echo(f"fitted latent sampler '{spec.type}' to {fitted.embedded} training examples: {fitted.path}")


def run_callbacks() -> list[Callback]:
    """The callbacks every run's trainer gets, in order (see the module's docstring)."""
    stream = EvaluationStream()
    return [Monitor(), TestMetrics(stream), Summary(stream), Samples(stream), LatentSamplerFit(), Tracking()]


def plugin_callbacks(plugins, recipe) -> list[Any]:
    """Callbacks the loaded plugins add through the ``modkit_train_callbacks`` hook, in plugin order."""
    found: list[Any] = []
    for answer in plugins.manager.hook.modkit_train_callbacks(recipe=recipe):
        if answer is None:
            continue
        found.extend(answer if isinstance(answer, (list, tuple)) else [answer])
    return found
