"""The optimiser and learning-rate schedule a recipe's ``train`` section asks for."""
from __future__ import annotations

import torch

from modkit.config.recipe import TrainSpec


def make_optimizer(model: torch.nn.Module, spec: TrainSpec, params=None) -> torch.optim.Optimizer:
    """Adam(W), fused where the device has fused kernels: they can skip a step on a device-side flag.
    ``params``: the parameters it updates (a stage's unfrozen ones); default all of the model's."""
    cls = torch.optim.AdamW if spec.optimizer == "adamw" else torch.optim.Adam
    kwargs = dict(lr=spec.lr, weight_decay=spec.weight_decay, amsgrad=spec.amsgrad)
    params = list(model.parameters() if params is None else params)
    try:
        return cls(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return cls(params, **kwargs)


def make_scheduler(optimizer: torch.optim.Optimizer, spec: TrainSpec, epochs: int | None = None):
    """The recipe's schedule over ``epochs`` (a stage's; default the run's ``train.epochs``)."""
    s = spec.scheduler
    if s is None:
        return None
    if s.type == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs or spec.epochs, eta_min=s.min_lr)
    if s.type == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=s.step_epochs, gamma=s.gamma)
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=s.gamma)


def scale_learning_rate(optimizer: torch.optim.Optimizer, scheduler, ratio: float) -> None:
    """Multiply the learning rate by ``ratio`` now and for the rest of the schedule."""
    for group in optimizer.param_groups:
        group["lr"] *= ratio
        if "initial_lr" in group:
            group["initial_lr"] *= ratio
    if scheduler is not None:
        scheduler.base_lrs = [lr * ratio for lr in scheduler.base_lrs]
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
