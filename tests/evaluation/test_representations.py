"""W2, relatedness, probes and judges on inputs whose right answers are known."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm

from modkit.evaluation.judges import JudgeSet, balanced_accuracy, plan_judges
from modkit.evaluation.representations import derangement, linear_probe, relatedness, w2_diag, w2_pairwise


def w2_general(m1, c1, m2, c2) -> float:
    """The Gaussian 2-Wasserstein distance for full covariances (Dowson & Landau / Olkin & Pukelsheim)."""
    r2 = sqrtm(c2)
    cross = sqrtm(r2 @ c1 @ r2)
    return float(np.sqrt(np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * np.real(cross))))


def test_w2_diag_matches_the_general_gaussian_formula():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        mu1, mu2 = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
        s1, s2 = torch.rand(6, generator=g, dtype=torch.float64) + 0.1, torch.rand(6, generator=g, dtype=torch.float64) + 0.1
        expected = w2_general(mu1.numpy(), np.diag(s1.numpy() ** 2), mu2.numpy(), np.diag(s2.numpy() ** 2))
        assert w2_diag(mu1, s1, mu2, s2).item() == pytest.approx(expected, rel=1e-6)


def test_w2_in_one_dimension_matches_the_quantile_integral():
    from scipy.stats import norm

    u = (np.arange(20_000) + 0.5) / 20_000  # W2² = ∫ (F1⁻¹(u) − F2⁻¹(u))² du
    numeric = np.sqrt(np.mean((norm.ppf(u, 0.3, 0.5) - norm.ppf(u, -1.0, 1.7)) ** 2))
    closed = w2_diag(torch.tensor([0.3]), torch.tensor([0.5]), torch.tensor([-1.0]), torch.tensor([1.7])).item()
    assert closed == pytest.approx(numeric, rel=1e-3)


def test_pairwise_equals_a_double_loop_and_chunks_agree():
    g = torch.Generator().manual_seed(1)
    a, sa, b, sb = (torch.randn(7, 3, generator=g) for _ in range(4))
    full = w2_pairwise(a, sa.abs(), b, sb.abs(), chunk=3)
    for i in range(7):
        for j in range(7):
            assert full[i, j].item() == pytest.approx(w2_diag(a[i], sa[i].abs(), b[j], sb[j].abs()).item(), rel=1e-5)


def test_derangement_has_no_fixed_point():
    for n in (2, 3, 10, 101):
        p = derangement(n, seed=n)
        assert sorted(p.tolist()) == list(range(n)) and not np.any(p == np.arange(n))


def test_relatedness_known_geometry():
    """Classes sit at known centres; the second modality's posterior is the first shifted by a fixed δ."""
    n, d = 60, 4
    y = np.repeat(np.arange(3), 20)
    centres = torch.tensor([[0.0] * d, [10.0] + [0.0] * (d - 1), [0.0, 10.0] + [0.0] * (d - 2)])
    mu_a = centres[torch.as_tensor(y)]
    std = torch.ones(n, d)
    delta = torch.tensor([0.3, 0.4, 0.0, 0.0])  # |δ| = 0.5
    out = relatedness(mu_a, std, mu_a + delta, std * 1.0, {"cls": y}, bins=10)
    assert out["paired_mean"] == pytest.approx(0.5, abs=1e-6)
    assert out["auc"] > 0.6  # pairs with a same-class partner tie, the rest are far: paired beats unpaired
    m = np.asarray(out["class_distance"]["cls"]["matrix"])
    assert m[0, 0] == pytest.approx(0.5, abs=1e-6)  # same class: only δ apart
    assert m[0, 1] == pytest.approx(float(torch.linalg.norm(centres[1] + delta - centres[0])), abs=1e-5)
    assert sum(out["histogram"]["paired"]) == n and sum(out["histogram"]["unpaired"]) == n


def test_linear_probe_separable_and_random():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    x = np.eye(3)[y] * 5 + rng.normal(0, 0.3, (400, 3))
    assert linear_probe(x[:300], y[:300], x[300:], y[300:]) == 1.0
    noise = rng.normal(size=(400, 3))
    assert linear_probe(noise[:300], y[:300], noise[300:], y[300:]) < 0.6  # chance is 1/3


def test_balanced_accuracy_weights_classes_equally():
    y = np.array([0] * 90 + [1] * 10)
    pred = np.zeros(100, dtype=int)  # always the majority class
    assert balanced_accuracy(y, pred) == pytest.approx(0.5)
    assert balanced_accuracy(np.array([]), np.array([])) is None


class _View:
    """Enough of a ModalityView for plan_judges: fields and a batch of four rows."""

    def __init__(self, data, fields=None):
        from modkit.core.batch import Batch

        self.fields = fields or {"pic": "pic", "cls": "cls"}
        self.batch = Batch(data, torch.ones(4, 2, dtype=torch.bool))

    def __len__(self):
        return 4

    def __getitems__(self, index):
        return self.batch


class _Model:
    names = ["pic", "cls"]

    class _M:
        judge_features = staticmethod(lambda x: x.flatten(1).float() if not isinstance(x, dict) else None)
        render = staticmethod(lambda x: x.numpy())

    modalities = {"pic": _M(), "cls": _M()}


class _Procedural:
    """A dataset that can tell the class of any picture: the brightest of 3 pixels."""

    def judge(self, field, data):
        return {"cls": np.array([int(np.argmax(r)) for r in data])} if field == "pic" else None


def test_judge_kinds_self_dataset_and_classifier():
    data = {"pic": torch.rand(4, 3), "cls": torch.tensor([0, 1, 2, 1])}
    judges = plan_judges(_Model(), _View(data), ["cls"], source=None)
    assert judges.kinds == {("cls", "cls"): "self", ("pic", "cls"): "classifier"}
    judges = plan_judges(_Model(), _View(data), ["cls"], source=_Procedural())
    assert judges.kinds == {("cls", "cls"): "self", ("pic", "cls"): "dataset"}
    pics = torch.eye(3)[[2, 0, 1]]
    assert judges.judge(_Model(), "pic", pics)["cls"].tolist() == [2, 0, 1]
    assert judges.judge(_Model(), "cls", torch.tensor([1, 1]))["cls"].tolist() == [1, 1]
    assert isinstance(judges, JudgeSet)


def test_vector_attributes_are_found_read_and_self_judged():
    """A field of 0/1 vectors (CelebA-style) becomes one binary attribute per entry."""
    from modkit.data.dataset import ArrayRecords
    from modkit.evaluation.judges import attribute_fields, attribute_values

    attrs = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0], [0, 0, 0]], dtype=np.float32)
    records = ArrayRecords({"pic": np.random.rand(4, 3).astype(np.float32), "cls": attrs})
    found = attribute_fields(records, None, [0, 1, 2, 3])
    assert found == ["cls[0]", "cls[1]", "cls[2]"]
    values = attribute_values(records, found, np.array([3, 0, 1]))
    assert values["cls[1]"].tolist() == [0, 1, 0] and values["cls[2]"].tolist() == [0, 1, 1]
    data = {"pic": torch.rand(4, 3), "cls": torch.as_tensor(attrs)}
    judges = plan_judges(_Model(), _View(data), found, source=None)
    assert {k: v for k, v in judges.kinds.items() if k[0] == "cls"} == {("cls", a): "self" for a in found}
    assert judges.kinds[("pic", "cls[0]")] == "classifier"
    verdict = judges.judge(_Model(), "cls", torch.tensor([[1.0, 0.0, 1.0]]))
    assert {a: v.tolist() for a, v in verdict.items()} == {"cls[0]": [1], "cls[1]": [0], "cls[2]": [1]}
