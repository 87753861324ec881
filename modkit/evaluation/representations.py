"""What the latent space knows: linear probes on posterior means, and 2-Wasserstein relatedness.

Relatedness follows MEME (Joy et al. 2022, §4.2): the distance between the unimodal posteriors
of two modalities should be small for a pair that belongs together (the same item) and larger
for an unrelated pair; between classes it shows which concepts the model keeps apart. For
diagonal Gaussians the 2-Wasserstein distance has the closed form
W2² = ‖μ1 − μ2‖² + ‖σ1 − σ2‖².
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from modkit.evaluation.judges import balanced_accuracy


def w2_diag(mu1: Tensor, std1: Tensor, mu2: Tensor, std2: Tensor) -> Tensor:
    """Elementwise-paired W2 between diagonal Gaussians (…, D) → (…)."""
    return ((mu1 - mu2).pow(2).sum(-1) + (std1 - std2).pow(2).sum(-1)).sqrt()


def w2_pairwise(mu1: Tensor, std1: Tensor, mu2: Tensor, std2: Tensor, chunk: int = 1024) -> Tensor:
    """All-pairs W2, (n, D) × (m, D) → (n, m), in row chunks so memory stays O(chunk · m)."""
    rows = []
    for s in range(0, len(mu1), chunk):
        d2 = torch.cdist(mu1[s:s + chunk].double(), mu2.double()).pow(2) + torch.cdist(std1[s:s + chunk].double(), std2.double()).pow(2)
        rows.append(d2.sqrt())
    return torch.cat(rows)


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A random permutation with no fixed point: each item is paired with some other item."""
    if n < 2:
        return np.arange(n)
    perm = np.random.default_rng(seed).permutation(n)
    return perm[(np.argsort(perm) + 1) % n]  # position i → the item after i's in a random cycle


def relatedness(mu_a: Tensor, std_a: Tensor, mu_b: Tensor, std_b: Tensor, classes: dict[str, np.ndarray],
                bins: int = 30, max_items: int = 2000, seed: int = 0) -> dict:
    """Paired vs unpaired W2 between two modalities' unimodal posteriors over the same items.

    Returns means, the AUC of telling paired from unpaired by distance (0.5: no relation), a shared-bin
    histogram of both, and per attribute the class × class mean distance matrix (items capped at ``max_items``).
    """
    from sklearn.metrics import roc_auc_score

    n = len(mu_a)
    paired = w2_diag(mu_a, std_a, mu_b, std_b).double().cpu().numpy()
    other = derangement(n, seed)
    unpaired = w2_diag(mu_a, std_a, mu_b[other], std_b[other]).double().cpu().numpy()
    edges = np.histogram_bin_edges(np.concatenate([paired, unpaired]), bins=bins)
    auc = float(roc_auc_score(np.r_[np.ones(n), np.zeros(n)], -np.r_[paired, unpaired])) if n > 1 else None
    out = {
        "paired_mean": float(paired.mean()), "unpaired_mean": float(unpaired.mean()), "auc": auc, "items": n,
        "histogram": {"edges": edges.tolist(), "paired": np.histogram(paired, edges)[0].tolist(),
                      "unpaired": np.histogram(unpaired, edges)[0].tolist()},
        "class_distance": {},
    }
    keep = np.arange(n) if n <= max_items else np.sort(np.random.default_rng(seed).permutation(n)[:max_items])
    if classes:
        dist = w2_pairwise(mu_a[keep], std_a[keep], mu_b[keep], std_b[keep]).cpu().numpy()
        for attr, y in classes.items():
            y = y[keep]
            labels = np.unique(y[y >= 0])
            if len(labels) < 2:
                continue
            onehot = (y[:, None] == labels[None, :]).astype(np.float64)  # rows with a missing class drop out
            counts = onehot.sum(0)
            matrix = onehot.T @ dist @ onehot / np.outer(counts, counts)
            out["class_distance"][attr] = {"classes": labels.tolist(), "matrix": matrix.tolist()}
    return out


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float | None:
    """Balanced accuracy of a logistic regression from latent means to a class (scikit-learn)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    tr, te = train_y >= 0, test_y >= 0
    if len(np.unique(train_y[tr])) < 2 or te.sum() == 0:
        return None
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(train_x[tr], train_y[tr])
    return balanced_accuracy(test_y[te], clf.predict(test_x[te]))
