"""Helpers for the distributed and fault-tolerance tests (a uniquely named module: ``conftest`` is taken)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

HERE = Path(__file__).parent
STEPS_PER_EPOCH = 23  # ceil(1438 training digits / 64)


def modkit_subprocess(args: list[str], cwd: Path, timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    """``python -m modkit ARGS`` in a fresh interpreter, as a user would run it."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in [str(HERE), os.environ.get("PYTHONPATH", "")] if p), **env}
    return subprocess.run([sys.executable, "-m", "modkit", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def modkit_here(args: list[str]):
    """The CLI inside this process (monkeypatches apply); returns click's Result."""
    from modkit.cli.main import main

    return CliRunner().invoke(main, args, catch_exceptions=False)


def load(run: Path, name: str = "checkpoint.safetensors") -> dict:
    from modkit.storage import checkpoint, state_file

    return state_file.read(run / name, checkpoint.KIND, checkpoint.CHECKPOINT_FORMAT)


def leftovers(run: Path) -> list[str]:
    """Temporary or staged files that a complete write would not leave behind."""
    return sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp") or p.name.endswith(".new"))
