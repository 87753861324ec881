"""Opt-in speed for the training step: mixed precision (``train.amp``) and ``torch.compile`` (``train.compile``).

Both are applied to the model object once (:func:`accelerate`), so the training loop stays the same:

* ``amp: bf16`` or ``fp16`` runs the model's forward under ``torch.autocast`` on the model's device type
  (CUDA or CPU). The fusion arithmetic that needs range (products of experts, KL, log-densities) is
  kept in float32 by :mod:`modkit.core.gaussian` and the PoE fusion, whatever autocast does around them.
* ``fp16`` also needs loss scaling so small gradients do not flush to zero: :class:`Accel` holds a
  ``torch.amp.GradScaler``; the trainer scales the backward, unscales before its gradient check and
  updates the scale after its (fused, device-flag-guarded) step: no host sync per step.
* ``compile: true`` compiles the model's forward in place with ``nn.Module.compile`` (parameter names and
  checkpoints are unchanged). ``MODKIT_COMPILE_BACKEND`` picks another dynamo backend (e.g. ``aot_eager``
  to debug tracing without a C++ compiler).
"""
from __future__ import annotations

import functools
import os
from typing import Callable

import torch
from torch import Tensor, nn

from modkit.errors import ModkitError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device | str, amp: str = "off"):
    """An autocast context for ``amp`` on ``device``'s type; a disabled one for ``off``."""
    device_type = torch.device(device).type
    dtype = AMP_DTYPES.get(amp)
    return torch.autocast(device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def with_autocast(forward: Callable, device: torch.device, amp: str) -> Callable:
    @functools.wraps(forward)
    def wrapped(*args, **kwargs):
        with autocast(device, amp):
            return forward(*args, **kwargs)

    return wrapped


class Accel:
    """What the trainer needs from mixed precision: a loss-scaled backward, an unscale before the
    gradient check, and the scale's update after the step (all no-ops unless ``amp: fp16``).

    The step itself stays the trainer's: with a fused optimizer it passes the non-finite flag to the
    kernel (``found_inf``), so an fp16 overflow skips the update on the device, with no host sync.
    """

    def __init__(self, device: torch.device, amp: str = "off"):
        self.amp = amp
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    def backward(self, loss: Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Before the gradient norm and clipping: bring the gradients back to their true scale."""
        if self.scaler.is_enabled():
            self.scaler.unscale_(optimizer)

    def update(self) -> None:
        """After the optimizer step: grow the scale, or shrink it after an overflow."""
        if self.scaler.is_enabled():
            self.scaler.update()


def accelerate(model: nn.Module, device: torch.device, amp: str = "off", compile: bool = False) -> Accel:
    """Apply ``amp`` and ``compile`` to ``model`` in place and return the :class:`Accel` for its step."""
    if amp not in ("off", *AMP_DTYPES):
        raise ValueError(f"amp must be off, bf16 or fp16 (got {amp!r})")
    if amp != "off":
        model.forward = with_autocast(model.forward, device, amp)  # instance attribute: DDP and compile see it
    if compile:
        model.compile(backend=os.environ.get("MODKIT_COMPILE_BACKEND", "inductor"))
    return Accel(device, amp)


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``train.device`` (or ``--device``) as a torch device: ``auto`` (and None) is CUDA when there is one, else the CPU;
    a device this machine lacks is one error saying what to use."""
    if isinstance(name, torch.device):
        return name
    name = name or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not (name.startswith("cuda") and name[4:] in ("",) + tuple(f":{i}" for i in range(64))):
        raise ModkitError(f"device '{name}' is not one modkit runs on: use auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModkitError(f"device '{name}' requested but CUDA is not available on this machine (use --device cpu or auto)")
    return torch.device(name)
