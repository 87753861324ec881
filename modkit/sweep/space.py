"""The ``--set`` grammar of ``modkit sweep``: which keys are swept and over what.

A swept key is a list (``a,b,c``), a range (``range(lo,hi)`` or ``range(lo,hi,step)``, both ends
included) or a log-range (``log(1e-4,1e-2)``); any other ``--set`` is fixed. ``seed`` is not searched:
its values repeat every trial.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from modkit.errors import ModkitError, RecipeError


def split_values(text: str) -> list[str]:
    """Split on commas outside brackets and quotes: ``a=[1,2],[3,4]`` → ``["[1,2]", "[3,4]"]``."""
    parts, depth, quote, current = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return [p.strip() for p in parts]


def _number(text: str, where: str) -> int | float:
    """An int if it reads as one, else a float (``1e-4`` too, which YAML would keep as a string)."""
    for kind in (int, float):
        try:
            value = kind(text.strip())
        except ValueError:
            continue
        if math.isfinite(value):
            return value
    raise RecipeError("--set", f"{where}: '{text}' is not a number")


@dataclass
class Dimension:
    """One swept key: a list of raw values (as typed after ``key=``), or a numeric range."""

    key: str
    values: list[str] = field(default_factory=list)
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None

    @property
    def integer(self) -> bool:
        return all(isinstance(v, int) for v in (self.low, self.high, self.step) if v is not None)

    def candidates(self) -> list[str]:
        """The values checked before training: every listed value, a range's ends (and steps, if few)."""
        if not self.is_range:
            return self.values
        if (self.step is not None or self.integer) and not self.log and self.count() <= 50:
            return self.grid_values()
        return [str(self.low), str(self.high)]

    def count(self) -> int:
        """How many values a grid takes from this key, counted, never listed (``range(1,1000000000)`` is a number)."""
        if not self.is_range:
            return len(self.values)
        if self.log or (self.step is None and not self.integer):
            raise ModkitError(f"grid search needs finite values for {self.key}: give a list or range(lo,hi,step)")
        return int(math.floor((self.high - self.low) / (self.step or 1) + 1e-9)) + 1

    def grid_values(self) -> list[str]:
        """A finite list for grid search (at most :data:`MAX_GRID` values, checked before one is listed)."""
        if not self.is_range:
            return self.values
        count = self.count()
        if count > MAX_GRID:
            raise RecipeError("--set", f"{self.key}: a grid of {count:,} values; at most {MAX_GRID:,} (give a larger step, "
                                       f"or --sampler tpe to search the range)")
        step = self.step or 1
        values = [self.low + i * step for i in range(count)]
        return [str(v if self.integer else round(v, 12)) for v in values]

    def suggest(self, trial: Any, grid: bool) -> str:
        """This trial's value, as the text after ``key=``."""
        if grid or not self.is_range:
            return str(trial.suggest_categorical(self.key, self.grid_values() if grid else self.values))
        if self.integer:
            return str(trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log))
        return repr(trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log))


MAX_GRID = 10_000  # values of one key, and trials of one grid: a sweep larger than this never finishes anyway
_RANGE = re.compile(r"^(range|log)\((.*)\)$")


def parse_dimension(key: str, raw: str) -> Dimension | None:
    """``raw`` as a swept dimension, or None for a fixed value."""
    text = f"{key}={raw}"
    match = _RANGE.match(raw.strip())
    if match:
        kind, inner = match.groups()
        parts = split_values(inner)
        if len(parts) not in (2, 3) or (kind == "log" and len(parts) != 2):
            raise RecipeError("--set", f"'{text}': write {kind}(lo,hi){'' if kind == 'log' else ' or range(lo,hi,step)'}")
        low, high = _number(parts[0], text), _number(parts[1], text)
        step = _number(parts[2], text) if len(parts) == 3 else None
        if not low < high:
            raise RecipeError("--set", f"'{text}': the low end must be below the high end")
        if kind == "log" and low <= 0:
            raise RecipeError("--set", f"'{text}': a log-range needs positive ends")
        if step is not None and step <= 0:
            raise RecipeError("--set", f"'{text}': the step must be positive")
        if isinstance(low, int) != isinstance(high, int) or (step is not None and isinstance(step, float) and isinstance(low, int)):
            low, high, step = float(low), float(high), None if step is None else float(step)
        return Dimension(key, low=low, high=high, step=step, log=kind == "log")
    values = split_values(raw)
    if len(values) == 1:
        return None
    if any(v == "" for v in values):
        raise RecipeError("--set", f"'{text}' has an empty value in its list")
    if len(set(values)) != len(values):
        raise RecipeError("--set", f"'{text}' repeats a value")
    return Dimension(key, values=values)


@dataclass
class Space:
    fixed: list[str]
    dimensions: list[Dimension]
    seeds: list[int] | None  # None: the recipe's own seed

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.dimensions]


def parse_space(overrides: list[str]) -> Space:
    fixed, dims, seeds = [], [], None
    for text in overrides:
        if "=" not in text:
            raise RecipeError("--set", f"'{text}' is not key=value")
        key, raw = (s.strip() for s in text.split("=", 1))
        dim = parse_dimension(key, raw)
        if key == "seed":  # seeds repeat every trial, one of them too
            values = [raw] if dim is None else (dim.grid_values() if dim.is_range else dim.values)
            seeds = []
            for v in values:
                number = _number(v, f"seed={v}")
                if not isinstance(number, int):
                    raise RecipeError("--set", f"seed={v}: a seed must be an integer")
                seeds.append(number)
        elif dim is None:
            fixed.append(f"{key}={raw}")
        else:
            if key in {d.key for d in dims}:
                raise RecipeError("--set", f"{key} is swept twice")
            dims.append(dim)
    if not dims and not seeds:
        raise ModkitError("nothing to sweep: give at least one --set KEY=V1,V2,... (or range(lo,hi), log(lo,hi), seed=0,1,2)")
    return Space(fixed, dims, seeds)


def grid_size(space: Space) -> int:
    """The number of grid points, counted (never listed) and refused above :data:`MAX_GRID`."""
    size = 1
    for d in space.dimensions:
        size *= d.count()
        if size > MAX_GRID:
            raise RecipeError("--set", f"the grid has more than {MAX_GRID:,} points ({', '.join(space.keys)}); sweep fewer "
                                       f"values, or use --sampler tpe with --trials")
    return size
