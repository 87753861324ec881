"""A portable copy of a trained run: the recipe, the weights and the files its modalities fitted."""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from modkit.errors import ModkitError
from modkit.storage import checkpoint as checkpoints
from modkit.storage import files
from modkit.storage.layout import RUN_ONLY, RunDir, check_new_run_dir  # noqa: F401 - RUN_ONLY: its old place (modkit.runs.lifecycle), kept


def export(run, dest: Path | str) -> Path:
    """A portable copy of ``run`` (a :class:`~modkit.runs.loading.LoadedRun`) in ``dest``: ``recipe.yaml``,
    ``model.safetensors`` and the files its modalities fitted (tokenizers), nothing of training
    (:func:`modkit.storage.layout.exports` says which). :func:`modkit.load` reads it without the data or the
    source run."""
    from safetensors.torch import save_file

    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise ModkitError(f"cannot export into {dest}: it is a file; export into a new or empty folder")
    if dest.is_dir() and any(dest.iterdir()):
        what = "holds an exported model" if (dest / checkpoints.WEIGHTS).is_file() else "is not empty"
        raise ModkitError(f"cannot export into {dest}: it {what}; export into a new or empty folder (remove it to export again)")
    check_new_run_dir(dest)
    files.ensure_writable(dest)
    for item in RunDir(run.run_dir).exported_items():
        if item.is_dir():
            shutil.copytree(item, dest / item.name)
        else:
            shutil.copy2(item, dest / item.name)
    portable_recipe(dest / files.RECIPE)
    weights = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in run.model.state_dict().items()}
    save_file(weights, str(dest / checkpoints.WEIGHTS),
              metadata={"modkit.kind": "weights", "modkit.format": str(checkpoints.CHECKPOINT_FORMAT)})
    return dest


def portable_recipe(path: Path) -> None:
    """Drop what only held on the author's machine from an exported recipe: an absolute ``data.root`` (the
    resolved recipe records the project's data folder as an absolute path). An export reads no data; where the
    recipient's project keeps its data is their ``modkit.toml``'s business."""
    recipe = yaml.safe_load(path.read_text())
    data = recipe.get("data") if isinstance(recipe, dict) else None
    if isinstance(data, dict) and isinstance(data.get("root"), str) and Path(data["root"]).is_absolute():
        del data["root"]
        files.atomic_write_text(path, yaml.safe_dump(recipe, sort_keys=False))
