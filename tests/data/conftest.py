"""Helpers shared by the dataset tests: load a dataset plugin the way the build does."""
from __future__ import annotations

from pathlib import Path

import pytest

from modkit.plugins.loader import load_plugins


@pytest.fixture(scope="session")
def registry():
    plugins = load_plugins()
    assert not plugins.broken, [i.error for i in plugins.broken]
    return plugins.registry


@pytest.fixture
def load(registry):
    """``load(name, root, **options)`` → (the DatasetSource, its splits)."""

    def _load(name: str, root: Path, **options):
        cls = registry.get("dataset", name)
        source = cls(cls.Config(type=name, **options), Path(root))
        return source, source.load()

    return _load
