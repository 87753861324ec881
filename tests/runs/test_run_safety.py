"""A run directory you can trust and share: nothing in it runs code when opened, runs cannot
clobber each other, and every hostile or careless case ends with one `error:` line."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
import yaml

from modkit.storage import checkpoint as checkpoints
from modkit.runs import lifecycle
from run_helpers import COMMANDS, cli, one_error_line, payload_bytes, tiny_raw




# which files each command must read (and so must refuse when they hold a payload)
READS = {
    (checkpoints.CHECKPOINT, checkpoints.PREVIOUS): ["sample", "generate", "eval", "report", "resume"],
    ("judges.safetensors",): ["eval --judges"],
    ("eval.json",): ["report"],
    ("recipe.yaml",): ["sample", "resume"],
    ("metrics.jsonl",): ["report", "resume"],
}


@pytest.mark.parametrize("names", list(READS), ids=lambda n: n[0])
def test_a_payload_in_a_run_file_never_runs_and_the_command_fails_with_one_line(copy, tmp_path, names):
    marker = tmp_path / "PWNED"
    run = copy()
    for i, name in enumerate(names):
        (run / name).write_bytes(payload_bytes(marker, torch_zip=i % 2 == 0))
    for command in READS[names]:
        line = one_error_line(cli(*COMMANDS[command](run)))
        assert not marker.exists(), (command, names)
        assert any(n in line for n in (*names, "recipe", "checkpoint")), line


def test_a_payload_in_every_file_at_once(copy, tmp_path):
    marker = tmp_path / "PWNED"
    run = copy()
    files = [p for p in run.rglob("*") if p.is_file()]
    assert {"checkpoint.safetensors", "judges.safetensors", "eval.json", "summary.json", "recipe.yaml"} <= {p.name for p in files}
    for i, path in enumerate(files):
        path.write_bytes(payload_bytes(marker, torch_zip=i % 2 == 0))
    for command, args in COMMANDS.items():
        one_error_line(cli(*args(run)))
        assert not marker.exists(), command


def test_an_old_pickled_run_is_refused_naming_its_format_and_converted_safely(copy, tmp_path):
    marker = tmp_path / "PWNED"
    run = copy()
    state = checkpoints.load_checkpoint(run)
    for name in (checkpoints.CHECKPOINT, checkpoints.PREVIOUS, "judges.safetensors"):
        (run / name).unlink()
    (run / "checkpoint.pt").write_bytes(payload_bytes(marker, torch_zip=True))
    (run / "judges.pkl").write_bytes(payload_bytes(marker, torch_zip=False))
    for command, args in COMMANDS.items():
        line = one_error_line(cli(*args(run)))
        assert "checkpoint.pt" in line and "old format 2" in line and f"modkit convert {run}" in line, (command, line)
    line = one_error_line(cli("convert", run))  # the safe unpickler refuses the payload instead of running it
    assert "cannot be converted safely" in line and not marker.exists()
    # a genuine old checkpoint (numpy RNG state and all) converts, and the run works again; judges.pkl is never opened
    torch.save(state, run / "checkpoint.pt")
    assert cli("convert", run).exit_code == 0
    assert cli(*COMMANDS["sample"](run)).exit_code == 0
    assert cli(*COMMANDS["eval"](run)).exit_code == 0 and not marker.exists()


def test_checkpoint_format_is_checked_and_nan_weights_are_refused(copy):
    from modkit.storage import state_file

    run = copy()
    state = checkpoints.load_checkpoint(run)
    (run / checkpoints.PREVIOUS).unlink()
    (run / checkpoints.CHECKPOINT).write_bytes(state_file.to_bytes(state, checkpoints.KIND, 2))
    assert "in format '2'; this modkit reads format 3" in one_error_line(cli(*COMMANDS["sample"](run)))
    key = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][key] = state["model"][key].clone().fill_(float("nan"))
    checkpoints.save_checkpoint(run, state)
    (run / checkpoints.PREVIOUS).unlink()
    for command in ("sample", "resume"):
        line = one_error_line(cli(*COMMANDS[command](run)))
        assert f"weight '{key}' holds NaN" in line, line


def test_resume_with_a_changed_recipe_or_a_foreign_checkpoint_is_one_line(copy, tmp_path):
    run = copy()
    raw = yaml.safe_load((run / "recipe.yaml").read_text())
    raw["model"]["latent_dim"] = 6  # the checkpoint's tensors no longer fit
    (run / "recipe.yaml").write_text(yaml.safe_dump(raw))
    line = one_error_line(cli(*COMMANDS["resume"](run)))
    assert "does not fit the model its recipe builds" in line
    # a checkpoint of the wrong shape (another run's), recipe intact
    other = copy("other")
    state = checkpoints.load_checkpoint(other)
    state["model"] = {k: torch.zeros(3, 3) for k in state["model"]}
    checkpoints.save_checkpoint(other, state)
    checkpoints.save_checkpoint(other, state)
    for command in ("sample", "resume"):
        assert "does not fit the model its recipe builds" in one_error_line(cli(*COMMANDS[command](other)))


# -- runs cannot clobber each other ------------------------------------------------------------

def test_out_refuses_every_non_empty_folder(copy, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_raw()))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    assert "is not empty" in one_error_line(cli("train", recipe, "--out", mine))
    assert (mine / "notes.txt").read_text() == "precious" and len(list(mine.iterdir())) == 1
    run = copy()
    os.replace(run / checkpoints.CHECKPOINT, run / checkpoints.STAGED)  # a newest checkpoint --resume accepts
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    line = one_error_line(cli("train", recipe, "--out", run))
    assert "holds a run" in line and f"--resume {run}" in line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    assert cli("train", recipe, "--out", tmp_path / "empty").exit_code == 0


def test_a_locked_run_cannot_be_trained_twice(copy, tmp_path):
    run = copy()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from filelock import FileLock; "
                               f"lock = FileLock({str(run / lifecycle.LOCK)!r}); lock.acquire(); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = (run / checkpoints.CHECKPOINT).read_bytes()
        line = one_error_line(cli(*COMMANDS["resume"](run)))
        assert "is being trained by another process" in line
        assert (run / checkpoints.CHECKPOINT).read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    assert cli(*COMMANDS["resume"](run)).exit_code == 0  # the lock dies with its process


def test_resume_sweeps_what_a_killed_write_left(copy):
    run = copy()
    state = checkpoints.load_checkpoint(run)
    (run / ".checkpoint.safetensors.new.abc123.tmp").write_bytes(b"half")
    (run / ".metrics.jsonl.x.tmp").write_bytes(b"half")
    assert checkpoints.recover(run) == ["removed .checkpoint.safetensors.new.abc123.tmp", "removed .metrics.jsonl.x.tmp"]
    # a kill between writing checkpoint.safetensors.new and renaming it: the newer one is completed, an older one dropped
    from modkit.storage import files, state_file

    newer = {**state, "global_step": state["global_step"] + 1}
    files.atomic_write_bytes(run / checkpoints.STAGED, state_file.to_bytes(newer, checkpoints.KIND, checkpoints.CHECKPOINT_FORMAT))
    assert checkpoints.recover(run) == [f"completed the checkpoint of step {newer['global_step']}"]
    assert checkpoints.load_checkpoint(run)["global_step"] == newer["global_step"] and not (run / checkpoints.STAGED).exists()
    files.atomic_write_bytes(run / checkpoints.STAGED, state_file.to_bytes(state, checkpoints.KIND, checkpoints.CHECKPOINT_FORMAT))
    (run / ".checkpoint.safetensors.new.zz.tmp").write_bytes(b"half")
    result = cli(*COMMANDS["resume"](run))
    assert result.exit_code == 0 and "tidied" in result.output
    assert not [p.name for p in run.iterdir() if p.name.endswith((".tmp", ".new"))]


def test_a_run_killed_before_its_first_checkpoint_says_so_and_restarts(copy, tmp_path):
    run = tmp_path / "early"
    run.mkdir()
    shutil.copy(copy() / "recipe.yaml", run / "recipe.yaml")  # what a kill while building leaves
    line = one_error_line(cli(*COMMANDS["sample"](run)))
    assert "stopped before its first" in line and f"modkit train --resume {run}" in line
    result = cli("train", "--resume", run)
    assert result.exit_code == 0 and "starting it from the beginning" in result.output
    assert (run / checkpoints.CHECKPOINT).exists() and (run / "summary.json").exists()


@pytest.mark.slow
@pytest.mark.distributed
def test_a_real_second_training_on_a_running_run_fails_at_once(tmp_path):
    """Two processes: the first trains (slowly, many epochs), the second tries --resume on the same folder."""
    raw = tiny_raw()
    raw["train"]["epochs"] = 200
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "modkit", "train", "tiny.yaml", "--out", "run"], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "run" / "recipe.yaml").exists() and time.time() < deadline:  # written once it holds the lock
            time.sleep(0.2)
        second = subprocess.run([sys.executable, "-m", "modkit", "train", "--resume", "run"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode != 0 and second.stderr.strip().startswith("error: run is being trained by another process")
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.kill()
        first.wait()
