"""Tiny builds of this area's digits recipes, for tests that need real modalities and batches."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modkit.training.builder import build
from modkit.plugins.loader import load_plugins
from modkit.config.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["modalities.image.hidden=[32]", "modalities.label.hidden=[32]", "modalities.label.embedding_dim=8"]


@pytest.fixture(scope="session")
def plugins():
    return load_plugins()


@pytest.fixture
def tiny(plugins):
    """``tiny("digits-m2-partial", "model.fusion.alpha=1")`` → a built Setup with small networks, seeded."""

    def make(recipe: str, *overrides: str):
        torch.manual_seed(0)
        parsed, _ = load_recipe(ROOT / "recipes" / f"{recipe}.yaml", [*SMALL, *overrides])
        return build(parsed, plugins)

    return make


@pytest.fixture
def first_batch():
    """``first_batch(view, n)`` → the view's first n rows as one batch."""
    return lambda view, n=64: view.__getitems__(list(range(min(n, len(view)))))
