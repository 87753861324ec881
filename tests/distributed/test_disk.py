"""Disk full and read-only run directories: one clear error line, no half-written file, the last checkpoint intact."""
from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path

import pytest
import torch

from dist_helpers import leftovers, load, modkit_here
from modkit.storage import checkpoint as checkpoints
from modkit.storage import files as rundir
from modkit.errors import ModkitError
from modkit.training.trainer import Trainer


def _disk_full(_fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@contextlib.contextmanager
def read_only(folder: Path):
    """A directory nobody can write to, root included (root ignores chmod, not the immutable attribute)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)


def test_disk_full_leaves_every_file_as_it_was(tmp_path, monkeypatch):
    checkpoints.save_checkpoint(tmp_path, {"step": 1, "model": {}})
    checkpoints.save_checkpoint(tmp_path, {"step": 2, "model": {}})
    rundir.write_metrics(tmp_path, [{"epoch": 1, "loss": 3.0}])
    rundir.write_json(tmp_path / rundir.SUMMARY, {"ok": True})
    before = _snapshot(tmp_path)
    monkeypatch.setattr(os, "fsync", _disk_full)  # where a full disk (or quota, or NFS) reports it
    writes = [lambda: checkpoints.save_checkpoint(tmp_path, {"step": 3, "model": {}, "weights": torch.zeros(10_000)}),
              lambda: rundir.write_metrics(tmp_path, [{"epoch": 1}, {"epoch": 2}]),
              lambda: rundir.write_json(tmp_path / rundir.SUMMARY, {"ok": False})]
    for write in writes:
        with pytest.raises(ModkitError, match="No space left on device"):
            write()
    monkeypatch.undo()
    assert _snapshot(tmp_path) == before  # nothing half-written, nothing left over
    assert checkpoints.load_checkpoint(tmp_path)["step"] == 2


def test_a_torn_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    checkpoints.save_checkpoint(tmp_path, {"step": 1, "model": {}})
    checkpoints.save_checkpoint(tmp_path, {"step": 2, "model": {}})
    (tmp_path / checkpoints.CHECKPOINT).write_bytes(b"half a file")  # what a non-atomic writer could leave
    assert checkpoints.load_checkpoint(tmp_path)["step"] == 1


def test_disk_full_during_training_is_one_clear_error(project, monkeypatch):
    accumulate = Trainer.accumulate

    def fill_the_disk_after_step_7(self, *args, **kwargs):
        accumulate(self, *args, **kwargs)
        if self.state.global_step == 7:
            monkeypatch.setattr(os, "fsync", _disk_full)

    monkeypatch.setattr(Trainer, "accumulate", fill_the_disk_after_step_7)
    result = modkit_here(["train", "tiny.yaml", "--out", "run", "--set", "train.checkpoint_every=5"])
    monkeypatch.undo()
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: cannot write run/checkpoint.safetensors: No space left on device. "
                                                            "run keeps its last complete checkpoint")
    assert "Traceback" not in result.output
    run = project / "run"
    assert leftovers(run) == [] and load(run)["global_step"] == 5


def test_read_only_run_directory_is_refused_before_training(project):
    run = project / "run"
    assert modkit_here(["train", "tiny.yaml", "--out", "run", "--set", "train.epochs=1"]).exit_code == 0
    before = _snapshot(run)
    with read_only(run):
        result = modkit_here(["train", "--resume", "run"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: run directory run is not writable: {os.strerror(errno.EPERM if os.geteuid() == 0 else errno.EACCES)}"]
    assert _snapshot(run) == before


def test_run_directory_turning_read_only_mid_run(project, monkeypatch):
    run = project / "run"
    stack = contextlib.ExitStack()
    accumulate = Trainer.accumulate
    locked: dict[str, bytes] = {}

    def lock_after_step_7(self, *args, **kwargs):
        accumulate(self, *args, **kwargs)
        if self.state.global_step == 7:
            locked.update(_snapshot(run))
            stack.enter_context(read_only(run))

    monkeypatch.setattr(Trainer, "accumulate", lock_after_step_7)
    with stack:
        result = modkit_here(["train", "tiny.yaml", "--out", "run", "--set", "train.checkpoint_every=5"])
    assert result.exit_code == 1
    assert "error: cannot write run/checkpoint.safetensors:" in result.output and "Traceback" not in result.output
    assert _snapshot(run) == locked and load(run)["global_step"] == 5
