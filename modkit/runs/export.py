"""A portable copy of a trained run: the recipe, the weights and the files its modalities fitted."""
from __future__ import annotations

import shutil
from pathlib import Path

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
    check_new_run_dir(dest)
    files.ensure_writable(dest)
    for item in RunDir(run.run_dir).exported_items():
        if item.is_dir():
            shutil.copytree(item, dest / item.name)
        else:
            shutil.copy2(item, dest / item.name)
    weights = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in run.model.state_dict().items()}
    save_file(weights, str(dest / checkpoints.WEIGHTS),
              metadata={"modkit.kind": "weights", "modkit.format": str(checkpoints.CHECKPOINT_FORMAT)})
    return dest
