"""One tiny finished and evaluated run, trained once per session, for the run-directory tests to copy."""
from __future__ import annotations

import os
import shutil
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


@pytest.fixture
def copy(trained, tmp_path, monkeypatch):
    """A fresh copy of the trained run in this test's folder (the working directory), to tamper with."""
    monkeypatch.chdir(tmp_path)

    def make(name: str = "run") -> Path:
        dest = tmp_path / name
        shutil.copytree(trained, dest)
        return dest
    return make
