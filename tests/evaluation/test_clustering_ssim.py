"""k-means clustering of the embeddings and SSIM of reconstructions, each against an independent computation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

import modkit
from modkit.evaluation.metrics.ssim import ssim, window_size
from modkit.evaluation.suite import EvalSettings, evaluate_run
from modkit.runs.loading import load_run

REPO = Path(__file__).resolve().parents[2]


def reference_ssim(a: np.ndarray, b: np.ndarray, k: int, sigma: float = 1.5) -> float:
    """Wang et al. 2004 on one grey image pair, with scipy's 2-D convolution over the valid window positions."""
    axis = np.arange(k) - (k - 1) / 2
    g = np.exp(-axis ** 2 / (2 * sigma ** 2))
    w = np.outer(g, g) / g.sum() ** 2
    f = lambda im: convolve2d(im, w, mode="valid")  # noqa: E731
    m1, m2 = f(a), f(b)
    s11, s22, s12 = f(a * a) - m1 ** 2, f(b * b) - m2 ** 2, f(a * b) - m1 * m2
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return float((((2 * m1 * m2 + c1) * (2 * s12 + c2)) / ((m1 ** 2 + m2 ** 2 + c1) * (s11 + s22 + c2))).mean())


@pytest.mark.parametrize("size", [8, 16, 28])
def test_ssim_is_wang_et_al(size):
    rng = np.random.default_rng(size)
    a = rng.random((4, 1, size, size))
    b = np.clip(a + 0.2 * rng.normal(size=a.shape), 0, 1)
    got = ssim(torch.as_tensor(b), torch.as_tensor(a)).numpy()
    k = window_size(size, size)
    assert k == min(11, size - (size % 2 == 0))
    assert got == pytest.approx([reference_ssim(b[i, 0], a[i, 0], k) for i in range(4)], rel=1e-9)
    assert ssim(torch.as_tensor(a), torch.as_tensor(a)).numpy() == pytest.approx(1.0)


def test_torchmetrics_ssim_is_not_the_valid_window_definition_on_small_images():
    """Why ssim() is computed here (docs/evaluation.md): torchmetrics' Gaussian-window SSIM ignores kernel_size and
    averages over reflected borders, so on 8×8 digits it is not Wang et al.'s valid-window index. Should a
    torchmetrics release honour kernel_size over the valid positions, this fails and the library can take over."""
    from torchmetrics.functional.image import structural_similarity_index_measure as library_ssim

    rng = np.random.default_rng(8)
    a = rng.random((4, 1, 8, 8))
    b = np.clip(a + 0.2 * rng.normal(size=a.shape), 0, 1)
    wanted = np.array([reference_ssim(b[i, 0], a[i, 0], 7) for i in range(4)])
    got = {k: library_ssim(torch.as_tensor(b), torch.as_tensor(a), kernel_size=k, sigma=1.5, data_range=1.0,
                           reduction="none").numpy() for k in (3, 7)}
    assert got[3] == pytest.approx(got[7], rel=1e-12)  # the window size asked for is not the one used
    assert np.abs(got[7] - wanted).max() > 1e-2


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clustering") / "digits"
    modkit.train(str(REPO / "recipes" / "digits-poe.yaml"), ["train.epochs=3", "train.progress=false", "train.device=cpu"],
                 out=out, echo=lambda s: None)
    return out


def test_clustering_and_ssim_on_a_run_match_a_direct_computation(run_dir):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    run = load_run(run_dir, torch.device("cpu"))
    result = evaluate_run(run, EvalSettings(metrics=["clustering", "ssim"], batch_size=100))
    test = run.setup.test
    batch = test.__getitems__(list(range(len(test))))
    y = batch.data["label"].numpy()
    with torch.no_grad():
        for subset in (["image"], ["label"], ["image", "label"]):
            z = run.model.posterior(batch, subset).mean.reshape(len(batch), -1).numpy()
            found = KMeans(n_clusters=10, n_init=10, random_state=0).fit_predict(z)
            cell = result["clustering"]["+".join(subset)]["label"]
            assert cell["k"] == 10 and cell["items"] == len(test)
            assert cell["ari"] == pytest.approx(adjusted_rand_score(y, found), abs=0.02)
            assert cell["nmi"] == pytest.approx(normalized_mutual_info_score(y, found), abs=0.02)
        # SSIM of image -> image: the reconstruction from the posterior mean against the real image
        image = run.model.modalities["image"]
        recon = image.predict(image.decode(run.model.posterior(batch, ["image"]).mean.reshape(len(batch), -1)))
    x = batch.data["image"].numpy()
    expected = np.mean([reference_ssim(recon[i, 0].numpy().astype(np.float64), x[i, 0].astype(np.float64), 7) for i in range(len(x))])
    assert result["ssim"]["image->image"]["ssim"] == pytest.approx(expected, abs=1e-5)
    assert result["summary"]["ssim/image->image"] == result["ssim"]["image->image"]["ssim"]
    assert "clustering/image+label/label/ari" in result["summary"]
