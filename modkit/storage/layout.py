"""Every file of a run directory, named in one place.

A run directory is what a user keeps: training writes the recipe, the metrics, the checkpoint (and
the previous one), ``summary.json`` and the samples; evaluation adds ``eval.json``, the judges and the
generated images; a modality may keep what it fitted (a tokenizer under ``tokenizers/``). Code that
opens one of these files asks :class:`RunDir` for its path, so a name changes in one place.

Export copies by an allow-list: the recipe, ``tokenizers/`` and the names the run's modalities declare in
``Modality.run_files`` (the weights are written fresh). Anything else in the folder (notes, a key someone
linked in, files of a newer modkit) stays behind, and nothing is copied through a symbolic link.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from modkit.storage import checkpoint as checkpoints
from modkit.errors import ModkitError, redact
from modkit.storage import files

RECIPE = files.RECIPE
METRICS_JSONL, METRICS_CSV = files.METRICS_JSONL, files.METRICS_CSV
SUMMARY = files.SUMMARY
SAMPLES_PNG, SAMPLES_MD = files.SAMPLES_PNG, files.SAMPLES_MD
CHECKPOINT, PREVIOUS, STAGED = checkpoints.CHECKPOINT, checkpoints.PREVIOUS, checkpoints.STAGED
WEIGHTS = checkpoints.WEIGHTS
EVAL_JSON = "eval.json"
JUDGES = "judges.safetensors"
LEGACY_JUDGES = "judges.pkl"
TOKENIZERS = "tokenizers"
SAMPLERS = "samplers"  # fitted post-hoc latent samplers: part of the generative model, so an export carries them
LOCK = ".modkit.lock"
GENERATED = "generated"
REPORT_MD = "report.md"
REPORT_DIR = "report"
TENSORBOARD_PREFIX = "events.out.tfevents"  # TensorBoard's own file names

#: what belongs to training or evaluation, not to the model: an export leaves these out
RUN_ONLY = frozenset({CHECKPOINT, PREVIOUS, STAGED, *checkpoints.LEGACY, LOCK, METRICS_JSONL, METRICS_CSV, SUMMARY,
                      SAMPLES_PNG, SAMPLES_MD, EVAL_JSON, JUDGES, LEGACY_JUDGES, REPORT_MD, REPORT_DIR, GENERATED})


class RunDir:
    """The files of one run directory: ``RunDir(path).summary`` is ``path / "summary.json"``, and so on."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    recipe = property(lambda self: self.path / RECIPE)
    metrics_jsonl = property(lambda self: self.path / METRICS_JSONL)
    metrics_csv = property(lambda self: self.path / METRICS_CSV)
    checkpoint = property(lambda self: self.path / CHECKPOINT)
    previous_checkpoint = property(lambda self: self.path / PREVIOUS)
    staged_checkpoint = property(lambda self: self.path / STAGED)
    weights = property(lambda self: self.path / WEIGHTS)
    summary = property(lambda self: self.path / SUMMARY)
    samples_png = property(lambda self: self.path / SAMPLES_PNG)
    samples_md = property(lambda self: self.path / SAMPLES_MD)
    eval_json = property(lambda self: self.path / EVAL_JSON)
    judges = property(lambda self: self.path / JUDGES)
    tokenizers = property(lambda self: self.path / TOKENIZERS)
    samplers = property(lambda self: self.path / SAMPLERS)
    lock = property(lambda self: self.path / LOCK)
    generated = property(lambda self: self.path / GENERATED)
    report_md = property(lambda self: self.path / REPORT_MD)
    report_dir = property(lambda self: self.path / REPORT_DIR)

    def latent_sampler(self, name: str) -> tuple[Path, Path]:
        """A fitted latent sampler's two files: its tensors (``samplers/NAME.safetensors``) and its config (``.json``)."""
        return self.samplers / f"{name}.safetensors", self.samplers / f"{name}.json"

    def is_run(self) -> bool:
        """A run directory has its recipe (written before anything else)."""
        return self.recipe.is_file()

    def write_recipe(self, resolved: dict[str, Any]) -> None:
        """The resolved recipe, the first file of a run: a run killed while it builds can be resumed from it."""
        write_recipe(self.path, resolved)

    def exported_items(self, declared: tuple[str, ...] | list[str] = ()) -> list[Path]:
        """What :func:`modkit.runs.export.export` copies: the recipe, ``tokenizers/`` and the files the modalities
        ``declared`` (``Modality.run_files``) that exist; never one of training's."""
        names = dict.fromkeys([RECIPE, *EXPORTED, *declared])
        return [self.path / name for name in names if exports(name) and os.path.lexists(self.path / name)]


#: what every export copies besides the recipe and the modalities' declared files: the fitted tokenizers and the
#: fitted post-hoc latent samplers (both part of the generative model)
EXPORTED = (TOKENIZERS, SAMPLERS)


def exports(name: str) -> bool:
    """Whether an export may copy the run directory's entry ``name``: a plain name (no folder, not hidden), not
    one of training's or evaluation's files."""
    return (name not in RUN_ONLY and not name.startswith((".", TENSORBOARD_PREFIX)) and "/" not in name and "\\" not in name
            and name not in ("", "..", "."))


def check_new_run_dir(out: Path) -> None:
    """A new run goes into a folder that does not exist yet or is empty: nothing of the user's is overwritten."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ModkitError(f"--out {out} is a file, not a folder; choose another --out")
    if out.is_dir() and any(p.name != LOCK for p in out.iterdir()):
        what = "holds a run" if (out / RECIPE).exists() else "is not empty"
        raise ModkitError(f"{out} {what}; modkit starts a run only in a new or empty folder. Continue a run there with "
                          f"--resume {out}, or choose another --out")


def write_recipe(run_dir: Path, resolved: dict[str, Any]) -> None:
    """The resolved recipe, every password in it masked (a tracking URI's ``user:***@``): a run directory is
    shared, so a credential never lands in it; tracking takes it from MLFLOW_TRACKING_PASSWORD on resume."""
    files.atomic_write_text(Path(run_dir) / RECIPE, yaml.safe_dump(_redacted(resolved), sort_keys=False))


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value
