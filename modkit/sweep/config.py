"""A sweep's definition (stored in its study, so any worker can join) and its validation: every value is
resolved into a recipe and checked before anything trains."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from modkit.errors import RecipeError
from modkit.sweep.space import Space, parse_space

SAMPLERS = ("grid", "random", "tpe")
#: in a fixed --set value, replaced by each run's seed (e.g. a fine-tuning run that starts from the
#: pre-training run of its own seed: ``model.fusion.downstream.init_from=PRE/trial-0000/seed-{seed}``)
SEED_FIELD = "{seed}"
MAX_CHECKS = 4096  # value combinations resolved up front for random/TPE (grid: all of them)


@dataclass
class SweepConfig:
    study: str
    out: str
    recipe: dict[str, Any]  # the recipe file's contents: workers elsewhere need not have the file
    source: str
    overrides: list[str]
    sampler: str
    trials: int
    objective: str
    direction: str
    evaluate: bool
    settings: dict[str, Any]
    plot: list[str]
    device: str | None = None
    heartbeat: int = 30
    created: str = ""

    @property
    def space(self) -> Space:
        return parse_space(self.overrides)


def resolve(config: SweepConfig, values: dict[str, str], seed: int | None, project) -> tuple[Any, dict[str, Any]]:
    from modkit.config.recipe import resolve_raw

    space = config.space
    fixed = space.fixed if seed is None else [s.replace(SEED_FIELD, str(seed)) for s in space.fixed]
    sets = fixed + [f"{k}={v}" for k, v in values.items()] + ([f"seed={seed}"] if seed is not None else [])
    sets += [f"train.device={config.device}"] if config.device else []
    recipe, resolved = resolve_raw(config.recipe, sets, project, config.source)
    if recipe.tracking.mlflow not in (None, False) and not recipe.tracking.experiment:  # a sweep's runs: one experiment
        recipe.tracking.experiment = resolved["tracking"]["experiment"] = config.study
    return recipe, resolved


def check_components(recipe: Any, plugins: Any, source: str | None) -> None:
    """Every plugin-level option (modalities, fusion, sampler, dataset) validated without loading data."""
    from modkit.config.recipe import component_config
    from modkit.data.dataset import DatasetSource
    from modkit.training.builder import lookup

    plugins.require_ok(recipe.plugins)
    for name, spec in recipe.modalities.items():
        cls = lookup(plugins, "modality", spec, f"modalities.{name}.type", source)
        component_config(spec, cls.Config, f"modalities.{name}", source)
    for kind, spec, key in (("fusion", recipe.model.fusion, "model.fusion"), ("sampler", recipe.model.sampler, "model.sampler")):
        component_config(spec, lookup(plugins, kind, spec, key, source).Config, key, source)
    cls = lookup(plugins, "dataset", recipe.data.dataset, "data.dataset", source)
    component_config(recipe.data.dataset, getattr(cls, "Config", None) or DatasetSource.Config, "data.dataset", source)


def validate(config: SweepConfig, project) -> int:
    """Resolve the recipe for every value (and, for grid search, every combination) before anything trains.
    A bad value is one RecipeError naming ``--set key=value``. Returns how many recipes were checked."""
    from modkit.plugins.loader import plugins_for

    space = config.space
    grid = config.sampler == "grid"
    options = [d.grid_values() if grid else d.candidates() for d in space.dimensions]
    seeds = space.seeds or [None]
    plugins_by_list: dict[tuple, Any] = {}
    checked = 0

    def check(values: dict[str, str], seed: int | None, blame: str) -> None:
        nonlocal checked
        try:
            recipe, _ = resolve(config, values, seed, project)
            key = tuple(recipe.plugins)
            if key not in plugins_by_list:
                plugins_by_list[key] = plugins_for(recipe.plugins, project.plugins)
            check_components(recipe, plugins_by_list[key], config.source)
        except RecipeError as exc:
            if not blame:
                raise
            detail = f"{exc.key}: {exc.message}" if exc.key else exc.message
            raise RecipeError("--set", f"{blame}: {detail}") from None
        checked += 1

    check({}, None, "")  # the recipe with the fixed --set values alone
    for d, values in zip(space.dimensions, options):  # each value alone: the error names it
        for v in values:
            check({d.key: v}, None, f"{d.key}={v}")
    for seed in space.seeds or []:
        check({}, seed, f"seed={seed}")
    combos = itertools.islice(itertools.product(*options), None if grid else MAX_CHECKS)
    for combo in combos if len(space.dimensions) > 1 else ():  # then their combinations
        values = dict(zip(space.keys, combo))
        check(values, seeds[0], ", ".join(f"{k}={v}" for k, v in values.items()))
    return checked
