"""Shared fixtures: a tiny digits recipe, and a real PostgreSQL server for the tracking and sweep tests.

This folder is on ``sys.path`` (pytest puts a root conftest's folder there), so the helper modules that
several test folders share (``tiny_recipes``, ``run_helpers``, ``sweep_helpers``) sit here beside it."""
from __future__ import annotations

import os
from pathlib import Path

# Under pytest-xdist (pyproject.toml runs two workers) each worker is one of two processes on CI's 2 cores: one
# thread each, or the two workers' OpenMP pools fight over the cores (two busy threads per core run several times
# slower). Set before torch is imported, and inherited by the subprocesses tests start; a value the user set wins.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

import pytest  # noqa: E402
import yaml  # noqa: E402
from tiny_recipes import tiny_recipe_dict  # noqa: E402


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("OMP_NUM_THREADS") == "1":
        import torch

        torch.set_num_threads(1)  # torch may have been imported (by a plugin) before the environment was set


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
