"""What the CUDA tests share: the device they run on, the skip marks, and tiny recipes of every fusion.

``DEVICE`` is ``cuda``. ``MODKIT_CUDA_TESTS_DEVICE=cpu`` runs the same tests on the CPU instead: not a
test of anything CUDA does, only a dry run of the tests' own logic on a machine without a card (the
sync-debug test then skips, as ``torch.cuda.set_sync_debug_mode`` needs CUDA, and ``train.compile``
uses the ``eager`` backend, since inductor on a CPU needs a C++ compiler and minutes).
"""
from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEVICE = os.environ.get("MODKIT_CUDA_TESTS_DEVICE", "cuda")
ON_CUDA = DEVICE.startswith("cuda")
HAS_DEVICE = torch.cuda.is_available() if ON_CUDA else True

#: every test module in tests/cuda starts with ``pytestmark = CUDA``
CUDA = [pytest.mark.cuda,
        pytest.mark.skipif(not HAS_DEVICE, reason="no CUDA device: torch.cuda.is_available() is false on this machine")]


def registered_fusions() -> list[str]:
    from modkit.plugins.loader import load_plugins

    return list(load_plugins([]).registry.names("fusion"))


def tiny_recipe(fusion: str = "poe", **train) -> dict:
    """recipes/digits-FUSION.yaml (digits-poe.yaml with the fusion swapped in where a fusion has no digits recipe),
    shrunk to seconds: nets of 32 units, latent 8, one epoch over a tenth of the digits (three steps of 64),
    evaluation reduced to two samples and no coherence."""
    path = ROOT / "recipes" / f"digits-{fusion}.yaml"
    raw = yaml.safe_load((path if path.exists() else ROOT / "recipes" / "digits-poe.yaml").read_text())
    if not path.exists():
        raw["model"]["fusion"] = {"type": fusion}
    raw = copy.deepcopy(raw)
    raw["name"] = f"tiny-{fusion}"
    raw["data"]["test_fraction"] = 0.9
    raw["data"]["batch_size"] = 64
    for spec in raw["modalities"].values():
        if isinstance(spec.get("hidden"), list):
            spec["hidden"] = [32]
    fusion_spec = raw["model"]["fusion"]
    if isinstance(fusion_spec, dict) and isinstance(fusion_spec.get("hidden"), list):
        fusion_spec["hidden"] = [32]
    raw["model"]["latent_dim"] = 16 if fusion == "m2" else 8  # M2 keeps 10 of its latents for the one-hot label
    raw["train"] = {**raw["train"], "epochs": 1, "device": DEVICE, "progress": False, **train}
    from modkit.plugins.loader import load_plugins

    objectives = load_plugins([]).registry.get("fusion", fusion).objectives
    if objectives and "epochs" not in train:  # a fusion that trains in stages: one epoch of each, every objective runs
        raw["train"].update(epochs=len(objectives), stages=[{"name": o, "epochs": 1} for o in objectives])
    raw["eval"] = {"samples": 2, "coherence": False}
    return raw


def compile_env(monkeypatch) -> None:
    """Inductor on CUDA (what a user gets); the eager backend in a CPU dry run."""
    if not ON_CUDA:
        monkeypatch.setenv("MODKIT_COMPILE_BACKEND", "eager")


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
