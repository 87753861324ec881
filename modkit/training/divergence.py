"""The divergence guard's bookkeeping: what it did (rollbacks, learning-rate scale, skipped steps) and
its verdicts. The trainer skips non-finite steps on the device and asks the guard what to do about a
streak of them: roll back to the last good checkpoint with a lower learning rate, or stop."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modkit.config.recipe import DivergenceSpec
from modkit.errors import ModkitError
from modkit.storage.train_state import GuardState


class DivergenceError(ModkitError):
    """Training kept producing non-finite losses or gradients; the run directory keeps its last good checkpoint."""

    exit_code = 3


@dataclass
class DivergenceGuard:
    spec: DivergenceSpec
    lr_scale: float = 1.0
    rollbacks: int = 0
    skipped_total: int = 0  # non-finite steps skipped in finished epochs

    def too_long(self, streak: int) -> bool:
        """A streak of non-finite steps the guard must act on."""
        return streak >= self.spec.max_bad_steps

    def can_roll_back(self) -> bool:
        return self.spec.action == "rollback" and self.rollbacks < self.spec.max_rollbacks

    def state(self) -> GuardState:
        """What a checkpoint keeps of the guard (written by :mod:`modkit.storage.train_state`)."""
        return GuardState(self.lr_scale, self.rollbacks, self.skipped_total)

    def load_state(self, saved: GuardState) -> None:
        """Take the guard's state back from a checkpoint, as :func:`modkit.storage.train_state.read` checked it."""
        self.lr_scale, self.rollbacks, self.skipped_total = saved.lr_scale, saved.rollbacks, saved.skipped_total

    def rolled_back(self, rollbacks: int, lr_scale: float) -> float:
        """Record a rollback (after the checkpoint's own guard state was restored); the learning-rate ratio to apply."""
        ratio = lr_scale / self.lr_scale
        self.rollbacks, self.lr_scale = rollbacks, lr_scale
        return ratio

    def stop(self, why: str, step: int, epoch: int, run_dir: Path) -> DivergenceError:
        done = "" if self.spec.action == "stop" else f" after {self.rollbacks} rollback(s)"
        error = DivergenceError(
            f"training diverged: {why} at step {step} (epoch {epoch}){done}. Stopped; {run_dir} "
            f"keeps the last good checkpoint. Lower train.lr or set train.grad_clip and train again, "
            f"or look at the data (a non-finite value in a batch is skipped every time).")
        error.shown_by_rank0 = True  # every rank reaches the same verdict
        return error
