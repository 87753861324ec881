"""The Python API over a run's life (docs/python-api.md): what ``modkit train``/``generate``/``sample``/
``eval`` do, from a notebook. ``modkit.train`` and ``modkit.load`` resolve here on first use."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import torch

from modkit.runs import lifecycle
from modkit.runs.lifecycle import load_weights
from modkit.errors import ModkitError
from modkit.runs.loading import LoadedRun

__all__ = ["Run", "train", "load", "load_weights"]


@dataclass
class Run(LoadedRun):
    """A trained run (or an exported model) in memory: ``.model``, ``.recipe``, ``.run_dir`` and the methods below."""

    @classmethod
    def of(cls, loaded: LoadedRun) -> "Run":
        return cls(**{f.name: getattr(loaded, f.name) for f in fields(LoadedRun)})

    def generate(self, given: dict[str, Any] | None = None, target: str | None = None, n: int = 1, mean: bool = False) -> list:
        """``n`` renders of ``target`` (arrays for images, strings for text, class names for labels) drawn from
        q(z | given); nothing given: from the prior. A given value is what the CLI's ``--given`` takes (a file
        path, a literal such as a label's name) or an array."""
        from modkit.reporting.generation import generate_renders

        if target is None:
            raise ModkitError(f"generate needs a target modality (this run has {', '.join(self.model.names)})")
        return generate_renders(self, dict(given or {}), target, n, mean)

    def sample(self, n: int = 1, seed: int | None = None) -> dict[str, list]:
        """``n`` draws z ~ p(z), every modality decoded: modality → ``n`` renders."""
        from modkit.reporting.generation import prior_renders

        return prior_renders(self, n, seed)

    def encode(self, given: dict[str, Any]):
        """q(z | given) for one item as a DiagGaussian (``.mean``, ``.logvar``; shape (1, 1, latent_dim))."""
        from modkit.reporting.generation import given_batch

        if not given:
            raise ModkitError("encode needs at least one given modality")
        with torch.no_grad():
            return self.model.posterior(given_batch(self, dict(given)), list(given))

    def evaluate(self, **settings: Any) -> dict[str, Any]:
        """The evaluation ``modkit eval`` runs (needs the run's data); keyword arguments are
        :class:`~modkit.evaluation.suite.EvalSettings` fields (``metrics=["coherence"]``, ``max_items=200``)."""
        from modkit.evaluation.suite import EvalSettings, evaluate_run

        if self.exported:
            raise ModkitError(f"{self.run_dir} is an exported model: it has no data to evaluate on; evaluate the run directory")
        try:
            chosen = EvalSettings(**settings)
        except TypeError as exc:
            raise ModkitError(f"evaluate: {exc}") from None
        return evaluate_run(self, chosen)

    def export(self, dest: Path | str) -> Path:
        """A portable folder (recipe, ``model.safetensors``, tokenizers) that ``modkit.load`` reads without the data."""
        from modkit.runs.export import export

        return export(self, dest)



def train(recipe: Path | str | dict[str, Any] | None = None, overrides: dict[str, Any] | list[str] | None = None, out: Path | str | None = None,
          resume: Path | str | None = None, device: str | None = None, echo: Callable[[str], None] = print) -> Run:
    """Train ``recipe`` (a YAML path or a dict, as a recipe file holds) into ``out`` (default: the project's
    runs folder) and return the trained run, loaded. ``overrides`` are ``--set`` values: ``{"train.epochs": 2}``
    or ``["train.epochs=2"]``. ``resume`` continues a run directory instead (``recipe`` then ``None``)."""
    sets = [f"{k}={_yaml(v)}" for k, v in overrides.items()] if isinstance(overrides, dict) else list(overrides or [])
    if device is not None:
        sets.append(f"train.device={device}")
    trained = lifecycle.train(recipe, overrides=sets, out=out, resume=resume, echo=echo)
    return load(trained.run_dir, device or "auto", plugins=True)  # your own recipe: its plugins were imported to train


def load(run_dir: Path | str, device: str | torch.device | None = "auto", plugins: bool | list[str] = ()) -> Run:
    """A run directory, or a folder ``Run.export`` wrote: the model in eval mode, ready to generate.

    Only installed plugins are used: the folder may come from anyone, and a module its recipe names could run
    code. ``plugins=["my_plugin"]`` (or True for all) imports the recipe's modules you trust."""
    return Run.of(lifecycle.load(run_dir, device, plugins))


def _yaml(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)
