"""Shared fixtures: a tiny digits recipe, and a real PostgreSQL server for the tracking and sweep tests.

This folder is on ``sys.path`` (pytest puts a root conftest's folder there), so the helper modules that
several test folders share (``tiny_recipes``, ``run_helpers``, ``sweep_helpers``) sit here beside it."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tiny_recipes import tiny_recipe_dict


@pytest.fixture(autouse=True, scope="session")
def _private_judges_cache(tmp_path_factory):
    """Judges fitted during the tests are cached in a temporary folder, never in the user's ~/.cache/modkit."""
    import os

    before = os.environ.get("MODKIT_CACHE_DIR")
    os.environ["MODKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("modkit-cache"))
    yield
    if before is None:
        os.environ.pop("MODKIT_CACHE_DIR", None)
    else:
        os.environ["MODKIT_CACHE_DIR"] = before


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    """The image + label digits recipe shrunk to seconds: small nets, 2 epochs."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_dict()))
    return path


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server in a temp folder on a free localhost port, stopped at the end (skipped,
    saying why, without the binaries); for the database-backed tracking and sweep tests."""
    from sweep_helpers import start_postgres

    yield from start_postgres()
