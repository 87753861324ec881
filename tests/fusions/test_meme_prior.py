"""MEME has no unconditional prior: what needs p(z) is reported as not applicable, never scored under N(0, I)."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from modkit.cli.main import main
from modkit.data.dataset import EpochBatchSampler, make_loader
from modkit.evaluation import epoch_metrics
from modkit.evaluation.suite import EvalSettings, evaluate_run
from modkit.runs.loading import load_run

REPO = Path(__file__).resolve().parents[2]
TINY = ["--set", "train.epochs=1", "--set", "modalities.image.hidden=[16]", "--set", "modalities.label.hidden=[16]",
        "--set", "model.latent_dim=4", "--set", "train.progress=false", "--set", "train.device=cpu", "--set", "eval.samples=1",
        "--set", "model.fusion.pseudo_samples=4"]


@pytest.fixture(scope="module")
def meme_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("meme") / "run"
    result = CliRunner().invoke(main, ["train", str(REPO / "recipes" / "digits-meme.yaml"), *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_test_elbo_is_not_scored_without_a_prior(tiny):
    with_pseudo = tiny("digits-meme", "model.fusion.pseudo_samples=4")
    without = tiny("digits-meme", "model.fusion.pseudo_samples=0")
    assert with_pseudo.model.fusion.prior() is None and without.model.fusion.prior() is not None
    for setup, has_prior in ((with_pseudo, False), (without, True)):
        loader = make_loader(setup.test, EpochBatchSampler(len(setup.test), 256, shuffle=False))
        metrics = epoch_metrics.test_metrics(setup.model, loader, torch.device("cpu"))
        assert (metrics["test/elbo"] is not None and math.isfinite(metrics["test/elbo"])) == has_prior
        assert 0 <= metrics["balanced_accuracy/image->label"] <= 1  # cross-modal numbers do not need p(z)


def test_eval_reports_joint_coherence_and_likelihoods_as_not_applicable(meme_run):
    run = load_run(meme_run, device="cpu")
    settings = EvalSettings(metrics=["coherence", "likelihood"], iw_samples=4, prior_samples=8, iw_items=16, max_items=64,
                            joint_samples=20, judge_rows=200)
    result = evaluate_run(run, settings)
    assert set(result["not_applicable"]) == {"coherence.joint", "likelihood"}
    assert all("defines no unconditional prior" in r for r in result["not_applicable"].values())
    assert "likelihood" not in result and result["coherence"]["joint"] == {}
    assert result["coherence"]["cross"]  # cross-modal coherence is still measured


@pytest.mark.slow
def test_sampling_from_the_prior_fails_with_one_line(meme_run):
    out = subprocess.run([sys.executable, "-m", "modkit", "sample", str(meme_run), "-n", "4", "--device", "cpu"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "cannot sample from the prior" in out.stderr and "--given" in out.stderr
