"""Running the command line in a subprocess for the benchmark-dataset tests: exit code and the one error line."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def modkit(*args, cwd=REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "modkit", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The single ``error: …`` line a user mistake prints, after checking the exit code and the absence of a traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def small_sets(root: Path, *sets: str) -> list[str]:
    """The overrides that point a benchmark recipe at ``root`` and shrink it to one quick epoch on the CPU."""
    return ["data.root=" + str(root), "train.epochs=1", "train.progress=false", "train.device=cpu", *sets]


def train_small(recipe: str, root: Path, out: Path, *sets: str) -> subprocess.CompletedProcess:
    """``modkit train recipes/RECIPE --set …`` (:func:`small_sets`) in a subprocess: for what the command line prints."""
    return modkit("train", REPO / "recipes" / recipe, *[f for s in small_sets(root, *sets) for f in ("--set", s)], "--out", out)


def train_small_here(recipe: str, root: Path, out: Path, *sets: str) -> None:
    """The same training through the Python API in this process: a run that is only read afterwards need not pay
    a fresh interpreter's imports (seconds per recipe); a failure raises with its message."""
    import modkit as api

    api.train(str(REPO / "recipes" / recipe), small_sets(root, *sets), out=out, echo=lambda line: None)
