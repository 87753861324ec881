"""Shared fixtures: a tiny digits recipe and a CLI runner that behaves like the shell."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


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
