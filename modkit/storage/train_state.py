"""The training loop's own state inside a checkpoint: one schema, written and read here alone.

A checkpoint holds the components' ``state_dict`` s (model, optimizer, scheduler, subset sampler; see
:mod:`modkit.storage.checkpoint`) beside what the loop itself needs to continue bit for bit:

* the counters: completed ``epoch`` s, ``step_in_epoch`` (steps done in the unfinished epoch), ``global_step``;
* the unfinished epoch's partial sums: ``sums`` (Σ term × batch size over finite steps, reduced over the
  ranks), ``seen`` (samples in them), ``skipped`` (non-finite steps), ``bad_samples`` (bad data rows dropped);
* the divergence guard's state: the current ``bad_streak`` of non-finite steps, and ``lr_scale``,
  ``rollbacks``, ``skipped_total`` (what it did so far);
* the RNG of every rank (``rng_ranks``; ``rng`` is rank 0's) and the number of processes (``world``);
* in multistage training, the ``stage`` the next epoch trains in (its name; absent in a run of one stage), so a
  resumed run continues in the same stage with the same frozen parameters and the optimizer of that stage.

The keys sit at the top level of the checkpoint, as in every checkpoint of format 3. The trainer,
the divergence guard, run loading and sweeps read them only through :func:`read`, :func:`read_counters`
and :func:`newest_step`, so a damaged or hand-edited value is one error naming the file, not a
``KeyError`` somewhere in the loop.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from modkit.errors import ModkitError
from modkit.storage import state_file

COUNTERS = ("epoch", "step_in_epoch", "global_step")


@dataclass
class TrainState:
    """The loop's counters and the unfinished epoch's partial sums (device tensors while training)."""

    epoch: int = 0  # completed epochs
    step_in_epoch: int = 0  # steps done in the current (unfinished) epoch
    global_step: int = 0
    sums: dict[str, Tensor] = field(default_factory=dict)  # Σ over finite steps of term × batch size
    seen: Tensor | int = 0  # samples in those steps (a device tensor while training)
    skipped: Tensor | int = 0  # non-finite steps skipped this epoch (a device tensor while training)
    bad_samples: int = 0  # bad data samples dropped this epoch (data.on_bad_sample: skip), counted by the loader


@dataclass
class GuardState:
    """What the divergence guard did so far, kept across a resume and restored by a rollback."""

    lr_scale: float = 1.0
    rollbacks: int = 0
    skipped_total: int = 0  # non-finite steps skipped in finished epochs


@dataclass
class Saved:
    """The loop's part of one checkpoint, read back and checked."""

    state: TrainState  # sums, seen and skipped on the CPU, as written
    bad_streak: float
    guard: GuardState
    rng_ranks: list[dict[str, Any]]  # one per rank that wrote it; rank 0's first
    world: int
    stage: str | None = None  # the stage of the epoch ``state.epoch`` (multistage training), None in one stage


def rng_state() -> dict[str, Any]:
    """This process's RNG: torch (and CUDA), numpy, Python."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])


def write(state: TrainState, *, bad_streak: Tensor | float, guard: GuardState, rng: dict[str, Any],
          rng_ranks: list[dict[str, Any]], world: int, stage: str | None = None) -> dict[str, Any]:
    """The checkpoint entries of the loop's state (``state``'s sums and seen already reduced over the ranks);
    ``stage``: the name of the stage ``state.epoch`` trains in, in multistage training."""
    entries = {"epoch": state.epoch, "step_in_epoch": state.step_in_epoch, "global_step": state.global_step,
            "sums": {k: v.detach().cpu() for k, v in state.sums.items()}, "seen": torch.as_tensor(state.seen).cpu(),
            "skipped": torch.as_tensor(state.skipped).cpu(), "bad_samples": state.bad_samples,
            "bad_streak": torch.as_tensor(bad_streak).cpu(),
            "lr_scale": guard.lr_scale, "rollbacks": guard.rollbacks, "skipped_total": guard.skipped_total,
            "world": world, "rng": rng, "rng_ranks": rng_ranks}
    if stage is not None:
        entries["stage"] = stage
    return entries


def _integer(ckpt: dict[str, Any], key: str, where: Path | str, default: int | None = None) -> int:
    value = ckpt.get(key, default)
    if value is None:
        raise ModkitError(f"{where} has no '{key}' counter; the file was changed or damaged")
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ModkitError(f"{where}: the checkpoint's '{key}' is {value!r} ({type(value).__name__}), not a count "
                          "(a whole number ≥ 0); the file was changed or damaged")
    return value


def _number(ckpt: dict[str, Any], key: str, where: Path | str, default: float) -> float:
    value = ckpt.get(key, default)
    if isinstance(value, Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModkitError(f"{where}: the checkpoint's '{key}' is {value!r} ({type(value).__name__}), not a number; "
                          "the file was changed or damaged")
    return float(value)


def check_counters(ckpt: dict[str, Any], where: Path | str) -> None:
    """The counters a checkpoint holds are whole numbers ≥ 0 (what :func:`modkit.storage.checkpoint.load_checkpoint`
    checks as it reads the file, so the error names the very file; a missing one is :func:`read`'s to report)."""
    for key in (*COUNTERS, "bad_samples", "rollbacks", "skipped_total", "world"):
        if key in ckpt:
            _integer(ckpt, key, where)


def read_counters(ckpt: dict[str, Any], where: Path | str) -> TrainState:
    """The counters alone (what a weights-only read of a checkpoint still has), checked: whole numbers ≥ 0."""
    epoch, step_in_epoch, global_step = (_integer(ckpt, key, where) for key in COUNTERS)
    return TrainState(epoch, step_in_epoch, global_step, bad_samples=_integer(ckpt, "bad_samples", where, 0))


def read(ckpt: dict[str, Any], where: Path | str) -> Saved:
    """The loop's part of a whole checkpoint, checked; a bad entry is one ModkitError naming ``where``."""
    state = read_counters(ckpt, where)
    sums = ckpt.get("sums", {})
    if not isinstance(sums, dict) or not all(isinstance(v, Tensor) for v in sums.values()):
        raise ModkitError(f"{where}: the checkpoint's 'sums' are not loss terms → tensors; the file was changed or damaged")
    state.sums = dict(sums)
    state.seen = torch.as_tensor(_number(ckpt, "seen", where, 0.0), dtype=torch.float64)
    state.skipped = torch.as_tensor(_number(ckpt, "skipped", where, 0.0))
    guard = GuardState(_number(ckpt, "lr_scale", where, 1.0), _integer(ckpt, "rollbacks", where, 0),
                       _integer(ckpt, "skipped_total", where, 0))
    ranks = ckpt.get("rng_ranks") or ([ckpt["rng"]] if ckpt.get("rng") is not None else [])
    if not ranks or not all(isinstance(r, dict) for r in ranks):
        raise ModkitError(f"{where} has no usable RNG state; the file was changed or damaged")
    world = _integer(ckpt, "world", where, 1)
    stage = ckpt.get("stage")
    if stage is not None and not isinstance(stage, str):
        raise ModkitError(f"{where}: the checkpoint's 'stage' is {stage!r}, not a stage name; the file was changed or damaged")
    return Saved(state, _number(ckpt, "bad_streak", where, 0.0), guard, list(ranks), world, stage)


def newest_step(path: Path) -> int | None:
    """A checkpoint's global step from its header alone, or None if it is unreadable."""
    try:
        structure = json.loads(state_file.header(path).get(state_file.STRUCTURE_KEY, "{}"))
        return _integer(structure, "global_step", path)
    except (ModkitError, ValueError, TypeError, AttributeError):
        return None
