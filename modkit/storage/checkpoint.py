"""The checkpoint files of a run directory: their names, their layout, their format version.

A checkpoint is one safetensors file (see :mod:`modkit.storage.state_file`): the weights under
``model/…``, the optimizer's tensors under ``optimizer/…``, and everything else (step counters,
partial sums, the scheduler, the subset sampler, the RNG of every rank) as tensors or JSON. Opening
one never runs code. It is written in three moves so a complete one always exists:

1. the new checkpoint is written atomically as ``checkpoint.safetensors.new``;
2. ``checkpoint.safetensors`` becomes ``checkpoint.prev.safetensors``;
3. ``checkpoint.safetensors.new`` becomes ``checkpoint.safetensors``.

Run directories of modkit before format 3 hold ``checkpoint.pt`` (a pickle); they are refused with a
message that names the format, or converted with ``modkit convert RUN``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from modkit.errors import ModkitError
from modkit.storage import files, state_file, train_state

CHECKPOINT_FORMAT = 3
KIND = "checkpoint"
CHECKPOINT = "checkpoint.safetensors"
PREVIOUS = "checkpoint.prev.safetensors"
STAGED = CHECKPOINT + ".new"
NEWEST_FIRST = (CHECKPOINT, STAGED, PREVIOUS)
LEGACY = ("checkpoint.pt", "checkpoint.pt.new", "checkpoint.prev.pt")  # format 2: torch.save pickles
MODEL = "model"
WEIGHTS = "model.safetensors"  # an exported folder's weights (modkit.load reads them; no training state)


def layout(loop: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
           sampler: Any) -> dict[str, Any]:
    """What a checkpoint holds (the one place that says so): the loop's own state (counters, partial sums, the
    divergence guard's, the RNG of every rank and the number of processes: ``train_state.write``), and the
    model, optimizer, scheduler and subset sampler."""
    return {**loop, MODEL: model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None, "sampler": sampler.state_dict()}


def restore_components(ckpt: dict[str, Any], where: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                       scheduler: Any = None, sampler: Any = None) -> None:
    """Load a checkpoint's model (and, for a resume, optimizer, scheduler and sampler) state; a checkpoint
    that does not fit (another recipe's, a changed recipe, a damaged file) is one ModkitError."""
    try:
        model.load_state_dict(ckpt[MODEL])
        if optimizer is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler"):
            scheduler.load_state_dict(ckpt["scheduler"])
        if sampler is not None:
            sampler.load_state_dict(ckpt["sampler"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        error = ModkitError(f"the checkpoint in {where} does not fit the model its recipe builds ({first_line(exc)}); was "
                            f"recipe.yaml changed, or the checkpoint copied from another run? Use the recipe it was trained "
                            f"with, or start a new run")
        error.shown_by_rank0 = True  # every rank reaches the same verdict
        raise error from None


def has_checkpoint(run_dir: Path) -> bool:
    return any((Path(run_dir) / name).exists() for name in NEWEST_FIRST)


def legacy_checkpoint(run_dir: Path) -> Path | None:
    """An old pickled checkpoint, if that is all the folder holds."""
    if has_checkpoint(run_dir):
        return None
    return next((Path(run_dir) / n for n in LEGACY if (Path(run_dir) / n).exists()), None)


def refuse_legacy(run_dir: Path) -> None:
    """One line naming the old format and what to do, for a folder that holds only ``checkpoint.pt``."""
    old = legacy_checkpoint(run_dir)
    if old is not None:
        raise ModkitError(f"{old} is a checkpoint in modkit's old format 2 (a torch.save pickle, which can run code when "
                          f"opened); modkit {CHECKPOINT_FORMAT} reads only {CHECKPOINT}. If you trust where it came from, "
                          f"convert it with: modkit convert {run_dir}")


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write the new checkpoint completely, then keep the old one as ``checkpoint.prev.safetensors``."""
    run_dir = Path(run_dir)
    data = state_file.to_bytes({**state, "format": CHECKPOINT_FORMAT}, KIND, CHECKPOINT_FORMAT)
    current, staged = run_dir / CHECKPOINT, run_dir / STAGED
    try:
        files.atomic_write_bytes(staged, data)
    except ModkitError as exc:
        raise ModkitError(str(exc).replace(str(staged), str(current), 1)) from None
    try:
        if current.exists():
            os.replace(current, run_dir / PREVIOUS)
        os.replace(staged, current)
    except OSError as exc:  # both checkpoints are still complete files; load_checkpoint finds either
        raise ModkitError(f"cannot write {current}: {exc.strerror or exc}") from None
    files.fsync_dir(run_dir)


def load_checkpoint(run_dir: Path, model_only: bool = False) -> dict[str, Any]:
    """The newest complete checkpoint (the previous one if the newest is torn), its format checked and its
    weights finite. ``model_only`` reads just the weights (``{"model": state_dict}``)."""
    run_dir = Path(run_dir)
    refuse_legacy(run_dir)
    errors = []
    for name in NEWEST_FIRST:
        path = run_dir / name
        if not path.exists():
            continue
        try:
            state = state_file.read(path, KIND, CHECKPOINT_FORMAT, prefix=MODEL + "/" if model_only else None)
        except ModkitError as exc:
            errors.append(str(exc))
            continue
        check_weights(path, state.get(MODEL))
        train_state.check_counters(state, path)  # a hand-edited counter: one line naming this file
        if errors:  # the newest was torn or damaged: say which one is used instead, never silently
            import sys

            print(f"warning: {'; '.join(errors)}; using {path} instead", file=sys.stderr)
        return state
    if not errors:
        raise ModkitError(f"{run_dir} has no checkpoint yet: it was stopped before its first one. Start it again "
                          f"with: modkit train --resume {run_dir}")
    raise ModkitError(f"no usable checkpoint in {run_dir}: {'; '.join(errors)}")


def first_line(exc: BaseException) -> str:
    """An exception's first line, short enough for a one-line error."""
    return state_file.first_line(exc)


def check_weights(path: Path, weights: Any) -> None:
    """A checkpoint whose weights are not a name → tensor map, or hold NaN/inf, is refused (modkit never writes one)."""
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise ModkitError(f"{path} holds no model weights")
    for key, value in weights.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ModkitError(f"{path}: weight '{key}' holds NaN or infinite values; modkit never checkpoints such a "
                              f"model, so the file was changed or damaged. Not loading it")


def newest_step(path: Path) -> int | None:
    """A checkpoint's global step from its header alone, or None if it is unreadable."""
    return train_state.newest_step(path)


def recover(run_dir: Path) -> list[str]:
    """Tidy a run directory a killed process left (call it holding the run's lock): remove the temporary
    files of interrupted atomic writes, and finish or drop an interrupted checkpoint rotation.
    Returns what it did, one phrase per file."""
    run_dir = Path(run_dir)
    done = []
    for tmp in sorted(run_dir.glob(".*.tmp")):  # atomic_write_bytes' temporaries: never complete files
        tmp.unlink(missing_ok=True)
        done.append(f"removed {tmp.name}")
    staged, current = run_dir / STAGED, run_dir / CHECKPOINT
    if staged.exists():
        new, old = newest_step(staged), newest_step(current) if current.exists() else None
        if new is not None and (old is None or new > old):
            if current.exists():
                os.replace(current, run_dir / PREVIOUS)
            os.replace(staged, current)
            done.append(f"completed the checkpoint of step {new}")
        else:
            staged.unlink()
            done.append(f"removed {STAGED}")
        files.fsync_dir(run_dir)
    return done


def convert_legacy(run_dir: Path) -> Path:
    """``modkit convert``: read an old ``checkpoint.pt`` with ``torch.load(weights_only=True)`` (the safe
    unpickler, with numpy's array types allowed for the RNG state) and write ``checkpoint.safetensors``.
    The old file stays; it is never opened again."""
    import numpy as np

    run_dir = Path(run_dir)
    old = legacy_checkpoint(run_dir)
    if old is None:
        raise ModkitError(f"{run_dir} holds no old-format checkpoint to convert" +
                          (" (it is already in the current format)" if has_checkpoint(run_dir) else ""))
    multiarray = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
    allowed = [multiarray.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    try:
        with torch.serialization.safe_globals(allowed):
            state = torch.load(old, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the safe unpickler refuses anything but tensors and plain values
        raise ModkitError(f"{old} cannot be converted safely: {state_file.first_line(exc)}") from None
    if not isinstance(state, dict) or MODEL not in state:
        raise ModkitError(f"{old} is not a modkit checkpoint")
    refuse_inflated(old, state)
    save_checkpoint(run_dir, state)
    return run_dir / CHECKPOINT


def weight_shapes(run_dir: Path | str) -> tuple[Path, dict[str, tuple[int, ...]]] | None:
    """The file the weights of ``run_dir`` would be read from and their shapes, from its header alone (None
    when no readable one exists: loading then says why in full)."""
    run_dir = Path(run_dir)
    if (run_dir / WEIGHTS).is_file() and not has_checkpoint(run_dir):
        candidates = [(run_dir / WEIGHTS, None)]
    else:
        candidates = [(run_dir / name, MODEL) for name in NEWEST_FIRST if (run_dir / name).is_file()]
    for path, entry in candidates:
        try:
            return path, state_file.shapes(path, entry)
        except ModkitError:
            continue
    return None


def _tensors(value: Any, path: str = ""):
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _tensors(v, f"{path}/{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _tensors(v, f"{path}/{i}")


def refuse_inflated(path: Path, state: Any) -> None:
    """A pickle can hold a view larger than the storage under it (``expand``: one value seen a billion times);
    written out, every value becomes real. Such a tensor, or tensors adding up to far more than the file
    itself, is refused before anything is written (a checkpoint torch.save wrote holds each value once)."""
    total, limit = 0, 2 * path.stat().st_size + 2**20
    for name, tensor in _tensors(state):
        size = tensor.numel() * tensor.element_size()
        held = tensor.untyped_storage().nbytes() - tensor.storage_offset() * tensor.element_size()
        if size > held:
            raise ModkitError(f"{path}: tensor '{name}' is a view of {size:,} bytes over {max(held, 0):,} bytes of "
                              f"storage (an expanded or overlapping view, which modkit never saves); not converting it")
        total += size
        if total > limit:
            raise ModkitError(f"{path}: its tensors add up to more than {limit:,} bytes, far more than the file's "
                              f"{path.stat().st_size:,}; the file was crafted or damaged. Not converting it")


def load_weights(run_dir: Path | str) -> dict[str, torch.Tensor]:
    """A run's (or an exported folder's) model weights alone, checked as :func:`load` checks them."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ModkitError(f"{run_dir} is not a run directory (no such directory)")
    if (run_dir / WEIGHTS).is_file() and not has_checkpoint(run_dir):
        files.check_regular(run_dir / WEIGHTS)
        try:
            weights = load_file(str(run_dir / WEIGHTS))
        except Exception as exc:  # noqa: BLE001 - any malformed file
            raise ModkitError(f"{run_dir / WEIGHTS} is not a readable safetensors file ({first_line(exc)})") from None
        check_weights(run_dir / WEIGHTS, weights)
        return weights
    return load_checkpoint(run_dir, model_only=True)[MODEL]
