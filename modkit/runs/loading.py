"""Load a finished (or checkpointed) run back: its recipe, the rebuilt components and the trained model.

Evaluation, generation and reports all start here, so a run directory is the only thing a user
has to keep: ``recipe.yaml`` rebuilds the components (tokenizers and vocabularies are reused from
the run directory by ``Modality.prepare``) and ``checkpoint.safetensors`` supplies the weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from modkit.storage import checkpoint as checkpoints
from modkit.storage import files as rundir
from modkit.storage import train_state
from modkit.training.accel import resolve_device
from modkit.training.builder import Setup, build, dataset_source
from modkit.data.dataset import DatasetSource, ModalityView
from modkit.core.engine import MultimodalVAE
from modkit.errors import ModkitError
from modkit.plugins.loader import PluginSet, plugins_for_loading
from modkit.config.project import load_project
from modkit.config.recipe import Recipe, read_yaml, resolve_raw


@dataclass
class LoadedRun:
    run_dir: Path
    recipe: Recipe
    resolved: dict[str, Any]
    plugins: PluginSet
    setup: Setup
    device: torch.device
    checkpoint_epoch: int | None

    exported: bool = False  # an exported folder: the model and its files, no data and no training state

    @property
    def model(self) -> MultimodalVAE:
        return self.setup.model

    def dataset_source(self) -> DatasetSource:
        """The dataset plugin object (not loaded again): its ``attributes`` and ``judge`` hooks."""
        return dataset_source(self.recipe, self.plugins)

    def train_rows(self) -> np.ndarray:
        """The distinct training rows (weak supervision repeats unpaired rows once per modality)."""
        return np.unique(self.setup.train.rows.numpy())

    def seen_rows(self, field: str, together_with: Sequence[str] = ()) -> np.ndarray | None:
        """The training rows on which the model was shown ``field`` in the same example as every modality
        in ``together_with`` (weak supervision shows an unpaired row's label alone, never beside its image).

        None when no modality reads ``field``: the model never saw it, and weak supervision says
        nothing about it.
        """
        train = self.setup.train
        names = list(train.modalities)
        columns = [j for j, name in enumerate(names) if train.fields[name] == field]
        if not columns:
            return None
        others = [names.index(m) for m in together_with if train.fields[m] != field]
        shown = train.presence[:, columns].any(1) & train.presence[:, others].all(1)
        return np.unique(train.rows.numpy()[shown.numpy()])

    def view(self, rows: np.ndarray) -> ModalityView:
        """Rows of the dataset seen fully (only the dataset's own missing values are missing)."""
        train = self.setup.train
        return ModalityView(train.records, train.modalities, train.fields, rows, skip_bad=train.skip_bad)


def is_run_dir(path: Path) -> bool:
    return (Path(path) / rundir.RECIPE).is_file()


def _plugins(recipe: Recipe, folder: Path, trusted: bool | Sequence[str]) -> PluginSet:
    """Installed plugins, the user's own ``modkit.toml`` modules (never one inside the folder being loaded: that
    file came with the folder) and, only when ``trusted`` names them, the modules the recipe lists."""
    project = load_project()
    inside = project.path is not None and project.path.resolve().is_relative_to(folder.resolve())
    return plugins_for_loading(recipe.plugins, [] if inside else project.plugins, trusted, str(folder / rundir.RECIPE))


def refuse_misfit(recipe: Recipe, plugins: PluginSet, folder: Path, source: str) -> None:
    """Compare the model the recipe describes (built on the meta device: nothing allocated) with the shapes in the
    weights file's header, before the model is built for real: a recipe edited to ask for a huge model is one
    line, not gigabytes allocated before the checkpoint is even read."""
    from modkit.training.builder import model_shapes, state_bytes

    found = checkpoints.weight_shapes(folder)
    if found is None:
        return  # no readable weights: loading them says why
    path, stored = found
    wanted = model_shapes(recipe, plugins, folder, source)
    if wanted is None:
        return
    wrong = next((k for k in wanted if stored.get(k) != wanted[k]), None)
    if wrong is not None or state_bytes(wanted) > state_bytes(stored):
        what = (f"'{wrong}' is {list(wanted[wrong])} in the model but {list(stored[wrong]) if wrong in stored else 'absent'} in "
                f"{path.name}") if wrong is not None else "the model is larger than its weights"
        raise ModkitError(f"the checkpoint in {path} does not fit the model its recipe builds ({what}); was recipe.yaml "
                          f"changed, or the weights copied from another run? Nothing was built. Use the recipe they were "
                          f"trained with")


def load_run(run_dir: Path | str, device: str | torch.device | None = "auto", plugins: bool | Sequence[str] = ()) -> LoadedRun:
    """Rebuild a run's model from ``recipe.yaml`` and load ``checkpoint.pt``; the model is in eval mode on ``device``.

    ``plugins``: the recipe's plugin modules that may be imported (True: all of them); the others must be
    installed plugins, since the folder may come from anyone."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ModkitError(f"{run_dir} is not a run directory (no such directory)")
    if not is_run_dir(run_dir):
        raise ModkitError(f"{run_dir} is not a run directory (no {rundir.RECIPE})")
    checkpoints.refuse_legacy(run_dir)
    if not checkpoints.has_checkpoint(run_dir):
        raise ModkitError(f"{run_dir} has no checkpoint yet: it was stopped before its first one, so there is nothing to "
                          f"load. Start it again with: modkit train --resume {run_dir}")
    source = str(run_dir / rundir.RECIPE)
    recipe, resolved = resolve_raw(read_yaml(run_dir / rundir.RECIPE), [], None, source)
    plugin_set = _plugins(recipe, run_dir, plugins)
    torch_device = resolve_device(device)
    refuse_misfit(recipe, plugin_set, run_dir, source)
    torch.manual_seed(recipe.seed)
    setup = build(recipe, plugin_set, run_dir, source)
    checkpoint = checkpoints.load_checkpoint(run_dir, model_only=True)
    checkpoints.restore_components(checkpoint, run_dir, setup.model)
    setup.model.to(torch_device).eval()
    epoch = train_state.read_counters(checkpoint, run_dir / checkpoints.CHECKPOINT).epoch
    return LoadedRun(run_dir, recipe, resolved, plugin_set, setup, torch_device, epoch)


def load_exported(folder: Path | str, device: str | torch.device | None = "auto", plugins: bool | Sequence[str] = ()) -> LoadedRun:
    """An exported folder (``recipe.yaml``, ``model.safetensors``, the modalities' files): the model alone, no data read."""
    from modkit.training.builder import build_model

    folder = Path(folder)
    source = str(folder / rundir.RECIPE)
    recipe, resolved = resolve_raw(read_yaml(folder / rundir.RECIPE), [], None, source)
    plugin_set = _plugins(recipe, folder, plugins)
    torch_device = resolve_device(device)
    refuse_misfit(recipe, plugin_set, folder, source)
    torch.manual_seed(recipe.seed)
    model = build_model(recipe, plugin_set, folder, source)
    checkpoints.restore_components({checkpoints.MODEL: checkpoints.load_weights(folder)}, folder, model)
    model.to(torch_device).eval()
    return LoadedRun(folder, recipe, resolved, plugin_set, Setup(recipe, model, None, None, None), torch_device, None, exported=True)
