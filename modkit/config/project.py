"""Project defaults from ``modkit.toml``, found from the working directory upward.

Precedence: modkit.toml < recipe < ``--set key=value``. Relative paths in modkit.toml are
resolved against the directory that holds it, so a run started anywhere inside the project
writes to the same runs directory.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from modkit.errors import RecipeError

FILENAME = "modkit.toml"
_KEYS = {"runs_dir", "data_dir", "device", "seed", "plugins", "tracking"}
_TRACKING_KEYS = {"tensorboard", "mlflow", "experiment"}  # [modkit.tracking]: defaults for the recipe's tracking:


@dataclass
class ProjectConfig:
    path: Path | None = None
    runs_dir: Path = Path("runs")
    data_dir: Path = Path("data")
    device: str = "auto"
    seed: int = 0
    plugins: list[str] = field(default_factory=list)
    tracking: dict = field(default_factory=dict)


def find_project_file(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / FILENAME
        if candidate.is_file():
            return candidate
    return None


def load_project(start: Path | None = None) -> ProjectConfig:
    path = find_project_file(start)
    if path is None:
        base = (start or Path.cwd()).resolve()
        return ProjectConfig(runs_dir=base / "runs", data_dir=base / "data")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise RecipeError("", f"cannot read project file: {exc}", source=str(path)) from None
    table = raw.get("modkit", {})
    if not isinstance(table, dict):
        raise RecipeError("modkit", "must be a table", source=str(path))
    unknown = set(table) - _KEYS
    if unknown:
        raise RecipeError(f"modkit.{sorted(unknown)[0]}", f"unknown key (allowed: {', '.join(sorted(_KEYS))})", source=str(path))
    base = path.parent
    plugins = table.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise RecipeError("modkit.plugins", "must be a list of module names", source=str(path))
    seed = table.get("seed", 0)
    if not isinstance(seed, int):
        raise RecipeError("modkit.seed", "must be an integer", source=str(path))
    tracking = table.get("tracking", {})  # defaults for every recipe's tracking: section
    if not isinstance(tracking, dict) or set(tracking) - _TRACKING_KEYS:
        raise RecipeError("modkit.tracking", f"must be a table with keys {', '.join(sorted(_TRACKING_KEYS))}", source=str(path))
    return ProjectConfig(
        path=path,
        runs_dir=base / table.get("runs_dir", "runs"),
        data_dir=base / table.get("data_dir", "data"),
        device=str(table.get("device", "auto")),
        seed=seed,
        plugins=plugins,
        tracking=tracking,
    )
