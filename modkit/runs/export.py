"""A portable copy of a trained run: the recipe, the weights and the files its modalities fitted.

The copy is made by allow-list (:meth:`modkit.storage.layout.RunDir.exported_items`): the recipe,
``tokenizers/`` and the names the modalities declare in ``Modality.run_files``. Only regular files and
folders are copied, each checked with ``lstat`` first: a symbolic link (a ``notes.txt`` pointing at a
private key), a FIFO or a device is refused, never followed. Everything is written into a hidden temporary
folder beside ``dest``, which is renamed to ``dest`` once complete and removed if anything fails, so a
folder at ``dest`` is always a whole export.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import yaml

from modkit.errors import ModkitError, redact
from modkit.storage import checkpoint as checkpoints
from modkit.storage import files
from modkit.storage.layout import RUN_ONLY, RunDir, check_new_run_dir  # noqa: F401 - RUN_ONLY: its old place (modkit.runs.lifecycle), kept


def declared_files(model) -> tuple[str, ...]:
    """The run files the model's modalities declare (``Modality.run_files``)."""
    names: list[str] = []
    for modality in getattr(model, "modalities", {}).values():
        names.extend(getattr(type(modality), "run_files", ()) or ())
    return tuple(dict.fromkeys(names))


def copy_tree(source: Path, dest: Path) -> None:
    """Copy a regular file, or a folder of them, without following a symbolic link anywhere."""
    mode = os.lstat(source).st_mode
    if stat.S_ISDIR(mode):
        dest.mkdir()
        for child in sorted(os.listdir(source)):
            copy_tree(source / child, dest / child)
    elif stat.S_ISREG(mode):
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(source, flags)  # lstat, then an open that refuses a link swapped in meanwhile
        with os.fdopen(fd, "rb") as src, open(dest, "xb") as out:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                raise ModkitError(f"{source} is not a regular file; export copies only regular files")
            shutil.copyfileobj(src, out)
    else:
        files.check_regular(source)  # names what it is: a symbolic link, a pipe, a device


def export(run, dest: Path | str) -> Path:
    """A portable copy of ``run`` (a :class:`~modkit.runs.loading.LoadedRun`) in ``dest``: ``recipe.yaml``,
    ``model.safetensors`` and the files its modalities fitted (tokenizers), nothing of training.
    :func:`modkit.load` reads it without the data or the source run."""
    from safetensors.torch import save_file

    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise ModkitError(f"cannot export into {dest}: it is a file; export into a new or empty folder")
    if dest.is_dir() and any(dest.iterdir()):
        what = "holds an exported model" if (dest / checkpoints.WEIGHTS).is_file() else "is not empty"
        raise ModkitError(f"cannot export into {dest}: it {what}; export into a new or empty folder (remove it to export again)")
    check_new_run_dir(dest)
    files.ensure_writable(dest.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".export", dir=dest.parent))
    try:
        for item in RunDir(run.run_dir).exported_items(declared_files(run.model)):
            copy_tree(item, staging / item.name)
        recipe = staging / RunDir(staging).recipe.name
        if recipe.exists():  # a run written before recipes were stored masked: no password leaves with the copy
            recipe.write_text(redact(recipe.read_text(encoding="utf-8")), encoding="utf-8")
            portable_recipe(recipe)
        weights = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in run.model.state_dict().items()}
        save_file(weights, str(staging / checkpoints.WEIGHTS),
                  metadata={"modkit.kind": "weights", "modkit.format": str(checkpoints.CHECKPOINT_FORMAT)})
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would hide the export from the user's group
        if dest.is_dir():
            dest.rmdir()  # empty (checked above): the complete copy takes its place
        os.rename(staging, dest)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise ModkitError(f"cannot export to {dest}: {exc.strerror or exc}; nothing was left there") from None
        raise
    files.fsync_dir(dest.parent)
    return dest


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def portable_recipe(path: Path) -> None:
    """Drop what only held on the author's machine from an exported recipe: an absolute ``data.root`` (the
    resolved recipe records the project's data folder as an absolute path). An export reads no data; where the
    recipient's project keeps its data is their ``modkit.toml``'s business."""
    recipe = yaml.safe_load(path.read_text())
    data = recipe.get("data") if isinstance(recipe, dict) else None
    if isinstance(data, dict) and isinstance(data.get("root"), str) and Path(data["root"]).is_absolute():
        del data["root"]
        files.atomic_write_text(path, yaml.safe_dump(recipe, sort_keys=False))
