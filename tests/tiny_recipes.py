"""The tiny digits recipe most tests train: recipes/digits-poe.yaml (image + label) shrunk to seconds.

One definition, used as a dict (``tiny_recipe_dict``), as ``--set`` arguments of the command line
(``tiny_sets``) or as a file (the ``tiny_recipe`` fixture of tests/conftest.py). A test that needs it
smaller, longer or on the CPU passes ``key=value`` overrides, applied after these in the same way
``--set`` applies them. (A module of its own because ``import conftest`` finds whichever conftest.py
pytest loaded first.)
"""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "digits-poe.yaml"

TINY = ("modalities.image.hidden=[32]", "modalities.label.hidden=[32]", "model.latent_dim=8", "train.epochs=2", "eval.samples=2")
SMALLER = ("modalities.image.hidden=[16]", "modalities.label.hidden=[16]", "model.latent_dim=4", "train.epochs=1")
CPU = ("train.device=cpu", "train.progress=false")


def base_recipe() -> dict:
    """recipes/digits-poe.yaml: the default recipe's image and label alone (the core tests exercise the engine, not text models)."""
    return yaml.safe_load(RECIPE.read_text())


def tiny_recipe_dict(*sets: str) -> dict:
    """The tiny recipe as a dict, with ``key=value`` overrides (values in YAML, as ``--set`` reads them)."""
    raw = base_recipe()
    raw["name"] = "tiny"
    for item in (*TINY, *sets):
        key, _, value = item.partition("=")
        *parents, last = key.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return raw


def tiny_sets(*sets: str) -> list[str]:
    """The same overrides as ``--set`` arguments, for a command line run on recipes/digits-poe.yaml."""
    return [arg for item in (*TINY, *sets) for arg in ("--set", item)]
