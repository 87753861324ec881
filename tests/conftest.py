"""Shared fixtures: a tiny digits recipe and a CLI runner that behaves like the shell."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    """The digits recipe shrunk to seconds: small nets, 2 epochs."""
    raw = yaml.safe_load((ROOT / "recipes" / "digits.yaml").read_text())
    raw["name"] = "tiny"
    raw["modalities"]["image"]["hidden"] = [32]
    raw["modalities"]["label"]["hidden"] = [32]
    raw["model"]["latent_dim"] = 8
    raw["train"]["epochs"] = 2
    raw["eval"]["samples"] = 2
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
