"""FID: torchmetrics' Fréchet distance against the closed form with scipy.linalg.sqrtm, and the metric on a run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

import modkit
from modkit.evaluation.metrics.fid import frechet_distance, inception_weights_path
from modkit.evaluation.suite import EvalSettings, evaluate_run
from modkit.runs.loading import load_run

REPO = Path(__file__).resolve().parents[2]


def closed_form(real: np.ndarray, fake: np.ndarray) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2}) from the sample moments, with scipy's matrix square root."""
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def test_frechet_distance_is_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3000, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(2500, 6)) @ rng.normal(size=(6, 6)) + 0.7
    got = frechet_distance(torch.as_tensor(a), torch.as_tensor(b))
    assert got == pytest.approx(closed_form(a, b), rel=1e-6)
    # of a set against itself: zero; against a shifted copy: the squared shift
    assert frechet_distance(torch.as_tensor(a), torch.as_tensor(a)) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(torch.as_tensor(a), torch.as_tensor(a + 2.0)) == pytest.approx(4.0 * 6, rel=1e-6)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fid") / "digits"
    sets = ["train.epochs=3", "train.progress=false", "train.device=cpu"]
    modkit.train(str(REPO / "recipes" / "digits-poe.yaml"), sets, out=out, echo=lambda s: None)
    return out


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # the digits' always-blank corner pixels: singular covariances
def test_fid_on_a_run_names_its_features_and_sits_above_real_to_real(run_dir):
    assert not inception_weights_path().exists()  # the tests' private cache: no Inception weights, nothing downloaded
    run = load_run(run_dir, torch.device("cpu"))
    result = evaluate_run(run, EvalSettings(metrics=["fid"], batch_size=128))
    fid = result["fid"]
    assert fid["network"] == "judge-features"
    assert set(fid["conditional"]) == {"label->image"} and set(fid["unconditional"]) == {"prior->image"}
    assert fid["items"]["real image"] == len(run.setup.test) == fid["items"]["label->image"]
    assert result["summary"]["fid/judge-features/label->image"] == fid["conditional"]["label->image"]
    assert all(k.startswith("fid/judge-features/") for k in result["summary"] if k.startswith("fid"))
    # the features are the dataset judge's: real training images sit far closer to the real test images than a
    # barely trained model's samples do (closed form on the same features)
    from modkit.evaluation.judges import DatasetJudges

    judges = DatasetJudges.load(REPO / "plugins" / "modkit_digits" / "judges.safetensors")
    features = lambda view: judges.reducers["image"].transform(view.__getitems__(list(range(len(view)))).data["image"].flatten(1).numpy())  # noqa: E731
    real_to_real = closed_form(features(run.setup.test), features(run.view(run.train_rows())))
    assert 0 < real_to_real < fid["unconditional"]["prior->image"] and real_to_real < fid["conditional"]["label->image"]
