"""The divergence guard's bookkeeping: what it did (rollbacks, learning-rate scale, skipped steps) and
its verdicts. The trainer skips non-finite steps on the device and asks the guard what to do about a
streak of them: roll back to the last good checkpoint with a lower learning rate, or stop."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modkit.config.recipe import DivergenceSpec
from modkit.errors import ModkitError


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

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the guard."""
        return {"lr_scale": self.lr_scale, "rollbacks": self.rollbacks, "skipped_total": self.skipped_total}

    def load_state(self, ckpt: dict[str, Any]) -> None:
        self.lr_scale = float(ckpt.get("lr_scale", 1.0))
        self.rollbacks = int(ckpt.get("rollbacks", 0))
        self.skipped_total = int(ckpt.get("skipped_total", 0))

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
