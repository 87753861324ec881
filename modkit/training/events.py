"""What the training loop tells the code around it, and when: a small callback protocol.

The :class:`~modkit.training.trainer.Trainer` holds the loop, its faults and its checkpoint timing,
nothing else. Whatever else a run does while it trains (its trackers, the test metrics, ``summary.json``
and the samples at the end) is a callback the run lifecycle hands to the trainer
(:mod:`modkit.runs.callbacks`), and plugins add their own through the ``modkit_train_callbacks`` hook
(docs/plugin-api.md).

A callback is any object with some of these methods (subclass :class:`Callback` to get no-op defaults
for the rest). Each receives the trainer; callbacks run on every process under torchrun, so one that
writes files checks ``trainer.dist.main`` (rank 0). The events, in the order one ``fit`` emits them:

``on_fit_start(trainer)``
    once, before the first step (after a resume's restore: ``trainer.state`` holds the counters it
    continues from).
``on_interval(trainer, row)``
    every ``train.log_every`` steps; ``row`` is ``{"epoch", "step", "lr"}`` (the epoch counted from 1);
    ``trainer.state`` holds the running sums of the unfinished epoch (device tensors: reading them is a
    host sync).
``on_epoch_end(trainer, row)``
    after each epoch, with the row ``metrics.jsonl`` gets; before the epoch's checkpoint.
``on_checkpoint(trainer)``
    after each checkpoint was written (every ``train.checkpoint_every`` steps, every epoch, before the
    first step of a new run, and on an interrupt).
``on_fit_end(trainer)``
    once, after the last epoch's checkpoint: where a run is finished (test metrics, summary).
``on_fit_error(trainer, error)``
    instead of ``on_fit_end`` when ``fit`` raises (an interrupt, a divergence, a full disk); the error is
    raised again after the callbacks ran.

A rollback (divergence guard) restarts the epoch from the last good checkpoint without a new
``on_fit_start``; the next ``on_interval`` or ``on_epoch_end`` shows the restored counters.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from modkit.training.trainer import Trainer

EVENTS = ("on_fit_start", "on_interval", "on_epoch_end", "on_checkpoint", "on_fit_end", "on_fit_error")


class Callback:
    """A callback that does nothing on every event: subclass it and override what you need."""

    def on_fit_start(self, trainer: "Trainer") -> None:
        pass

    def on_interval(self, trainer: "Trainer", row: dict[str, Any]) -> None:
        pass

    def on_epoch_end(self, trainer: "Trainer", row: dict[str, Any]) -> None:
        pass

    def on_checkpoint(self, trainer: "Trainer") -> None:
        pass

    def on_fit_end(self, trainer: "Trainer") -> None:
        pass

    def on_fit_error(self, trainer: "Trainer", error: BaseException) -> None:
        pass


class Events:
    """The callbacks of one trainer, called in the order they were given; a missing method is skipped."""

    def __init__(self, callbacks: Iterable[Any] = ()):
        self.callbacks = list(callbacks)

    def add(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def emit(self, event: str, trainer: "Trainer", *args: Any) -> None:
        for callback in list(self.callbacks):
            method = getattr(callback, event, None)
            if method is not None:
                method(trainer, *args)

    def emit_error(self, trainer: "Trainer", error: BaseException) -> None:
        """``on_fit_error`` to every callback, even if one of them fails (the first such failure is raised after)."""
        failure: BaseException | None = None
        for callback in list(self.callbacks):
            method = getattr(callback, "on_fit_error", None)
            if method is None:
                continue
            try:
                method(trainer, error)
            except Exception as exc:  # noqa: BLE001 - the others must still hear of the error (a lock to release)
                failure = failure or exc
        if failure is not None:
            raise failure
