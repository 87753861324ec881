"""Multistage training: which stage an epoch belongs to, and what each stage freezes.

A run trains in the stages of its recipe's ``train.stages``, or else in the stages its fusion declares
(:meth:`modkit.Fusion.stages`), or else in one stage that freezes nothing. Each stage has its own number of
epochs (one after another, in one run directory), the parameters it freezes and the objective the fusion is
told through ``model.stage`` (:class:`modkit.Engine`). The trainer enters a stage at the epoch it begins:
frozen parameters stop requiring a gradient and a fresh optimizer and schedule are made over the others (as
MultiVae's multistage trainer resets its optimizer), so no weight decay or momentum moves a frozen parameter.

Freeze patterns name model parts by their parameter names, dotted (``fusion.joint``,
``modalities.image.decoder``): a pattern selects every parameter whose name begins with it, component by
component, and each component may be a shell glob (``modalities.*.decoder``). A pattern that selects nothing
is a recipe error naming its key, never a silent no-op.
"""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

import torch
from pydantic import ValidationError

from modkit.config.recipe import Recipe, StageSpec, format_validation_error
from modkit.errors import RecipeError


@dataclass(frozen=True)
class Stage:
    """One resolved stage: where it sits in the run, what it freezes, what the fusion is told."""

    index: int
    name: str
    objective: str
    first_epoch: int  # 0-based epoch it begins at
    epochs: int
    freeze: tuple[str, ...]
    frozen: frozenset[str]  # the parameter names it freezes

    @property
    def end_epoch(self) -> int:
        return self.first_epoch + self.epochs


def matches(name: str, pattern: str) -> bool:
    """Whether parameter ``name`` lies under ``pattern``: its first components match the pattern's, glob by glob."""
    parts, want = name.split("."), pattern.split(".")
    return len(parts) >= len(want) and all(fnmatchcase(p, w) for p, w in zip(parts, want))


def parts_of(model: torch.nn.Module, depth: int = 3) -> list[str]:
    """The model's parts a pattern can name, to depth ``depth`` (for error messages)."""
    seen: dict[str, None] = {}
    for name, _ in model.named_parameters():
        seen[".".join(name.split(".")[:depth])] = None
    return list(seen)


def resolve(recipe: Recipe, model: torch.nn.Module, source: str | None = None) -> list[Stage]:
    """The run's stages (recipe's, else the fusion's, else none: an empty list), checked against the model."""
    fusion = model.fusion
    specs, key = recipe.train.stages, "train.stages"
    if not specs:
        declared = type(fusion).stages(fusion.config, recipe.train.epochs)
        if not declared:
            return []
        key = "model.fusion"
        try:
            specs = [StageSpec.model_validate(d) for d in declared]
        except ValidationError as exc:
            raise RecipeError(key, f"the {fusion.config.type} fusion declares a bad stage: "
                                   f"{format_validation_error(exc, source).message}", source) from None
        total = sum(s.epochs for s in specs)
        if total != recipe.train.epochs:
            raise RecipeError(key, f"the {fusion.config.type} fusion's stages last {total} epochs, not train.epochs "
                                   f"({recipe.train.epochs})", source)
    names = [n for n, _ in model.named_parameters()]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    known = type(fusion).objectives
    stages: list[Stage] = []
    first = 0
    for i, spec in enumerate(specs):
        where = f"{key}.{i}" if key == "train.stages" else key
        if known and spec.goal not in known:
            field = "objective" if spec.objective else "name"
            raise RecipeError(f"{where}.{field}" if key == "train.stages" else where,
                              f"'{spec.goal}' is not an objective of the {fusion.config.type} fusion "
                              f"(it has: {', '.join(known)})" + ("" if spec.objective else "; set objective:"), source)
        if not known and spec.objective:
            raise RecipeError(f"{where}.objective", f"the {fusion.config.type} fusion has one objective; a stage "
                                                    "may freeze parts of it but not choose another", source)
        frozen: set[str] = set()
        for j, pattern in enumerate(spec.freeze):
            hit = {n for n in names if matches(n, pattern)}
            if not hit:
                raise RecipeError(f"{where}.freeze.{j}" if key == "train.stages" else where,
                                  f"'{pattern}' matches no parameter of the model (its parts: "
                                  f"{', '.join(parts_of(model))})", source)
            frozen |= hit
        if trainable <= frozen:
            raise RecipeError(f"{where}.freeze", f"stage '{spec.name}' freezes every parameter; nothing would train",
                              source)
        stages.append(Stage(i, spec.name, spec.goal, first, spec.epochs, tuple(spec.freeze), frozenset(frozen)))
        first += spec.epochs
    return stages


def stage_at(stages: list[Stage], epoch: int) -> Stage:
    """The stage 0-based ``epoch`` belongs to (the last stage past the end, where a finished run stands)."""
    for stage in stages:
        if epoch < stage.end_epoch:
            return stage
    return stages[-1]


def apply(model: torch.nn.Module, stage: Stage | None, trainable_names: set[str]) -> list[torch.nn.Parameter]:
    """Freeze ``stage``'s parameters, unfreeze the others of ``trainable_names`` (those that trained before any
    stage froze them: a part its plugin keeps frozen stays so), tell the model the objective; returns the
    parameters that train."""
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable_names and (stage is None or name not in stage.frozen))
        if param.requires_grad:
            trainable.append(param)
    model.stage = None if stage is None else stage.objective
    return trainable
