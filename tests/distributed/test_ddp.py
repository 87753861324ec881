"""Two CPU processes (torchrun, gloo) against one: same global batch, same result.

Where randomness differs: each rank draws its own reparameterisation noise (it must — ranks drawing
the same ε for different samples would correlate the noise across the batch), so a 2-process run and a
1-process run see different ε and their losses differ by Monte Carlo noise (≈3e-4 relative per epoch
on this recipe). To compare the *distributed machinery* — sharding, gradient averaging, metric
reduction — the test runs both with the noise switched off (z = μ, via fault_plugin): then the only
difference is float32 summation order (the gradient all-reduce adds two half-batch gradients instead
of summing 64 rows at once), measured at ≤2e-7 relative on the losses and ≤3e-7 on any parameter after
46 Adam steps. The tolerance 1e-5 leaves a 50× margin and is 30× tighter than the noise effect, so a
wrong shard, a double-counted sample or a missing gradient average fails it.
"""
from __future__ import annotations

import json

import pytest
import torch

from dist_helpers import load, modkit_here, modkit_subprocess
from modkit.data.dataset import EpochBatchSampler


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.distributed
def test_two_gloo_processes_match_one_process(project, monkeypatch):
    import modkit.core.gaussian

    monkeypatch.setattr(modkit.core.gaussian, "reparameterize", lambda mu, logvar, generator=None: mu)
    single = modkit_here(["train", "tiny.yaml", "--out", "single"])
    assert single.exit_code == 0, single.output

    done = modkit_subprocess(["train", "tiny.yaml", "--nproc", "2"], project, MODKIT_TEST_NOISE_FREE="1")
    assert done.returncode == 0, done.stdout + done.stderr
    runs = list((project / "runs").iterdir())
    assert len(runs) == 1, runs  # rank 1 wrote nothing of its own
    run = runs[0]
    assert done.stdout.count("run directory:") == 1 and done.stdout.count("epoch 2/2") == 1  # only rank 0 prints
    assert "2 processes, cpu (gloo), 32 samples per process per step" in done.stdout
    assert {"checkpoint.safetensors", "metrics.jsonl", "summary.json", "recipe.yaml"} <= {p.name for p in run.iterdir()}
    assert json.loads((run / "summary.json").read_text())["processes"] == 2
    assert len(list(run.glob("events.out.tfevents*"))) == 1  # rank 0 alone writes TensorBoard events

    one, two = _metrics(project / "single"), _metrics(run)
    assert [r["step"] for r in two] == [r["step"] for r in one] == [23, 46]  # same global batch, same steps
    for a, b in zip(one, two):
        for key in ("train/loss", "train/kl", "train/rec/image", "train/rec/label"):
            assert abs(a[key] - b[key]) <= 1e-5 * abs(a[key]), (key, a[key], b[key])
    p1, p2 = load(project / "single")["model"], load(run)["model"]
    worst = max((p1[k] - p2[k]).abs().max().item() for k in p1)
    assert worst <= 1e-5, worst
    assert load(run)["world"] == 2 and len(load(run)["rng_ranks"]) == 2  # every rank's RNG is kept for resume


def test_shards_make_up_the_single_process_batch():
    """Per-rank batches of B/W from EpochBatchSampler, put together, are exactly the 1-process batch of B
    at every step (an odd n pads by wrap-around, as DistributedSampler does)."""
    for n, world in ((1438, 2), (1001, 4), (97, 3)):
        single = EpochBatchSampler(n, 12 * world, seed=5)
        single.set_epoch(3)
        ranks = [EpochBatchSampler(n, 12, seed=5, rank=r, world=world) for r in range(world)]
        for r in ranks:
            r.set_epoch(3)
        assert all(r.steps() == single.steps() for r in ranks)
        for step, (whole, *parts) in enumerate(zip(single, *ranks)):
            joined = torch.tensor(sum(parts, []))
            padded = step == single.steps() - 1 and n % world
            if padded:
                assert set(whole) <= set(joined.tolist())
            else:
                assert sorted(joined.tolist()) == sorted(whole)
        # and a later start (a resumed epoch) skips the same global steps on every rank
        for r in ranks:
            r.set_epoch(3, start=2)
        assert [len(list(r)) for r in ranks] == [single.steps() - 2] * world
