"""Multistage training under torchrun (two gloo processes): each stage wraps the model anew for DDP (the parameters
that take part change), and a frozen parameter stays where the first stage left it on every rank."""
from __future__ import annotations

import pytest
import torch
import yaml

from dist_helpers import load, modkit_subprocess
from modkit.training.stages import matches

FROZEN = ["modalities.*.encoder", "modalities.*.head"]
STAGES = [{"name": "warm", "epochs": 1}, {"name": "decoders", "epochs": 1, "freeze": FROZEN}]


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_train_in_stages_and_keep_frozen_parameters(project):
    runs = {}
    for name, stages in (("staged", STAGES), ("warm", STAGES[:1])):
        raw = yaml.safe_load((project / "tiny.yaml").read_text())
        del raw["train"]["epochs"]
        raw["train"]["stages"] = stages
        (project / f"{name}.yaml").write_text(yaml.safe_dump(raw))
        done = modkit_subprocess(["train", f"{name}.yaml", "--nproc", "2", "--out", name], project, MODKIT_TEST_NOISE_FREE="1")
        assert done.returncode == 0, done.stdout + done.stderr
        runs[name] = load(project / name)
    staged, warm = runs["staged"], runs["warm"]
    assert staged["stage"] == "decoders" and staged["epoch"] == 2
    frozen = [k for k in staged["model"] if any(matches(k, pattern) for pattern in FROZEN)]
    moved = [k for k in staged["model"] if ".decoder." in k]
    assert frozen and moved
    for key in frozen:
        assert torch.equal(staged["model"][key], warm["model"][key]), key
    assert all(not torch.equal(staged["model"][key], warm["model"][key]) for key in moved)
