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

    @classmethod
    def stored(cls, raw: Any, where: str) -> "SweepConfig":
        """The definition a study keeps, checked field by field: a tampered or damaged one is one line naming
        ``where``, never a traceback deep inside a worker."""
        import dataclasses

        from modkit.errors import ModkitError

        kinds = {"str": str, "int": int, "bool": bool, "dict[str, Any]": dict, "list[str]": list, "str | None": (str, type(None))}
        problem = None
        if not isinstance(raw, dict):
            problem = "it is not a mapping"
        else:
            names = {f.name: f for f in dataclasses.fields(cls)}
            unknown = sorted(set(raw) - set(names))
            missing = [n for n, f in names.items() if n not in raw and f.default is dataclasses.MISSING]
            wrong = [n for n in names if n in raw and (not isinstance(raw[n], kinds[names[n].type])
                                                      or (names[n].type == "int" and isinstance(raw[n], bool)))]
            wrong += [n for n in ("overrides", "plot") if n in raw and isinstance(raw[n], list)
                      and not all(isinstance(v, str) for v in raw[n])]
            if unknown or missing or wrong:
                problem = (f"unknown field '{unknown[0]}'" if unknown else f"field '{missing[0]}' is missing" if missing
                           else f"field '{wrong[0]}' has the wrong type")
            elif raw["sampler"] not in SAMPLERS or raw["trials"] < 1 or raw["direction"] not in ("maximize", "minimize"):
                problem = "its sampler, trials or direction is out of range"
        if problem is None:
            config = cls(**raw)
            try:
                config.space  # noqa: B018 - the swept values parse, as they did when the sweep was made
                return config
            except ModkitError as exc:
                problem = f"its --set values do not parse ({exc})"
        raise ModkitError(f"the sweep definition in {where} is damaged ({problem}); it was changed by hand or by "
                          f"another program. Start a new sweep")


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
