"""Shared fixtures: a tiny digits recipe, and a real PostgreSQL server for the tracking and sweep tests.

This folder is on ``sys.path`` (pytest puts a root conftest's folder there), so the helper modules that
several test folders share (``run_helpers``, ``sweep_helpers``) sit here beside it."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def base_recipe() -> dict:
    """recipes/digits-poe.yaml: the default recipe's image and label alone (the core tests exercise the engine, not text models)."""
    return yaml.safe_load((ROOT / "recipes" / "digits-poe.yaml").read_text())


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    """The image + label digits recipe shrunk to seconds: small nets, 2 epochs."""
    raw = base_recipe()
    raw["name"] = "tiny"
    raw["modalities"]["image"]["hidden"] = [32]
    raw["modalities"]["label"]["hidden"] = [32]
    raw["model"]["latent_dim"] = 8
    raw["train"]["epochs"] = 2
    raw["eval"]["samples"] = 2
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server in a temp folder on a free localhost port, stopped at the end (skipped,
    saying why, without the binaries); for the database-backed tracking and sweep tests."""
    from sweep_helpers import start_postgres

    yield from start_postgres()
