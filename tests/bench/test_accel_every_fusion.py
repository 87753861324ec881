"""``train.compile`` and ``train.amp: bf16`` through a whole epoch of every registered fusion, on the CPU.

Written after the CUDA tests' CPU dry run (tests/cuda/cuda_helpers.py) met two faults the existing CPU tests
missed because they take a few equal-sized steps: a compiled model failed at the epoch's short last batch
(dynamo traces ``torch.randn(shape, generator=None)`` at a symbolic batch size as an error), and MoE's DReG
hook returned a float32 gradient for a bf16 tensor under autocast. Compile uses the ``eager`` backend here
(dynamo's tracing, which is where the first fault was; inductor on a CPU needs a C++ compiler and minutes).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

import modkit
from modkit.plugins.loader import load_plugins

ROOT = Path(__file__).resolve().parents[2]


def tiny(fusion: str, **train) -> dict:
    """recipes/digits-FUSION.yaml (or digits-poe.yaml with the fusion swapped in), small nets, one epoch over a
    tenth of the digits: steps of 64, 64 and 52 samples."""
    path = ROOT / "recipes" / f"digits-{fusion}.yaml"
    raw = yaml.safe_load((path if path.exists() else ROOT / "recipes" / "digits-poe.yaml").read_text())
    if not path.exists():
        raw["model"]["fusion"] = {"type": fusion}
    raw["data"].update(test_fraction=0.9, batch_size=64)
    for spec in raw["modalities"].values():
        if isinstance(spec.get("hidden"), list):
            spec["hidden"] = [16]
    if isinstance(raw["model"]["fusion"], dict) and isinstance(raw["model"]["fusion"].get("hidden"), list):
        raw["model"]["fusion"]["hidden"] = [16]
    raw["model"]["latent_dim"] = 16 if fusion == "m2" else 8
    raw["train"] = {**raw["train"], "epochs": 1, "device": "cpu", "progress": False, **train}
    objectives = load_plugins([]).registry.get("fusion", fusion).objectives
    if objectives:  # a fusion that trains in stages: one epoch of each, so every stage's objective runs
        raw["train"].update(epochs=len(objectives), stages=[{"name": o, "epochs": 1} for o in objectives])
    raw["eval"] = {"samples": 2, "coherence": False}
    return raw


@pytest.mark.slow
@pytest.mark.parametrize("fusion", load_plugins([]).registry.names("fusion"))
def test_compiled_bf16_epoch_with_a_short_last_batch(fusion, tmp_path, monkeypatch):
    monkeypatch.setenv("MODKIT_COMPILE_BACKEND", "eager")
    run = modkit.train(tiny(fusion, amp="bf16", compile=True), out=tmp_path / "run", echo=lambda *_: None)
    summary = json.loads((Path(run.run_dir) / "summary.json").read_text())
    assert summary["steps"] == 3 * run.recipe.train.epochs and summary["skipped_steps"] == 0, summary
    assert all(math.isfinite(v) for v in summary["train"].values()), summary["train"]
