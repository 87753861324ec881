"""One tiny finished and evaluated run, trained once per session, for the run-directory tests to copy."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from run_helpers import cli, tiny_raw


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """One tiny finished and evaluated run: recipe, checkpoints, metrics, summary, samples, eval.json, judges."""
    base = tmp_path_factory.mktemp("trained")
    recipe = base / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_raw()))
    cwd = os.getcwd()
    os.chdir(base)
    try:
        assert cli("train", recipe, "--out", base / "run", "--set", "train.checkpoint_every=5").exit_code == 0
        assert cli("eval", base / "run", "--metrics", "coherence", "--max-items", "40", "--device", "cpu").exit_code == 0
    finally:
        os.chdir(cwd)
    return base / "run"
