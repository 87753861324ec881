"""A fitted latent sampler on disk: ``samplers/NAME.safetensors`` (its tensors) beside ``samplers/NAME.json``
(which sampler, its options, the latent size and what it was fitted on).

Both files are data only: the tensors go through :mod:`modkit.storage.state_file` (safetensors, no pickle)
and the config is plain JSON, so opening a sampler someone else fitted runs nothing of theirs; the
sampler class is looked up by name in the registry and rebuilt from the config. The tensors are written
first and the config last, each atomically: a config names a complete tensor file.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from modkit.errors import ModkitError
from modkit.storage import files, state_file
from modkit.storage.layout import RunDir

KIND = "latent sampler"
FORMAT = 1
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_name(name: str) -> str:
    """A sampler's file name is a plain word: it becomes a path inside the run directory."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or name.endswith("."):
        raise ModkitError(f"latent sampler name {name!r}: use letters, digits, '_', '-' or '.', at most 64 characters")
    return name


def write(run_dir: Path | str, name: str, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """Store a fitted sampler under ``run_dir/samplers/``; returns the tensor file's path."""
    tensor_path, config_path = RunDir(run_dir).latent_sampler(check_name(name))
    bad = [k for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(f"latent sampler state {bad[0]!r} is a {type(tensors[bad[0]]).__name__}, not a tensor")
    try:
        tensor_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModkitError(f"cannot write {tensor_path.parent}: {exc.strerror or exc}") from None
    files.atomic_write_bytes(tensor_path, state_file.to_bytes(dict(tensors), KIND, FORMAT))
    files.write_json(config_path, config)
    return tensor_path


def read(run_dir: Path | str, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the config of a stored sampler; a ModkitError naming what is missing or damaged."""
    tensor_path, config_path = RunDir(run_dir).latent_sampler(check_name(name))
    if not config_path.is_file() or not tensor_path.is_file():
        have = stored(run_dir)
        raise ModkitError(f"{run_dir} has no fitted latent sampler '{name}' "
                          f"({'fitted: ' + ', '.join(have) if have else 'none fitted'}); fit one with modkit fit-sampler {run_dir} NAME")
    config = files.read_json(config_path)
    if not isinstance(config, dict) or not isinstance(config.get("sampler"), str) or not isinstance(config.get("options"), dict) \
            or not isinstance(config.get("latent_dim"), int):
        raise ModkitError(f"{config_path} is not a latent sampler config (it needs sampler, options and latent_dim)")
    state = state_file.read(tensor_path, KIND, FORMAT)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModkitError(f"{tensor_path} is damaged (not a table of tensors)")
    return state, config


def stored(run_dir: Path | str) -> list[str]:
    """The names of the samplers fitted in ``run_dir``."""
    folder = RunDir(run_dir).samplers
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if (folder / f"{p.stem}.safetensors").is_file())
