"""modkit reproduce: the verdict rule, the supervised baseline's data, and the quick tier end to end."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from modkit.cli.main import main
from modkit.experiments import claims as catalogue
from modkit.experiments.reproduce import gap_verdict, logreg_on_pairs, stats


def cell(mean, sd, n):
    return {"mean": mean, "sd": sd, "n": n}


@pytest.mark.parametrize("subject, baseline, expected", [
    ({0.1: cell(0.80, 0.01, 3)}, {0.1: cell(0.70, 0.01, 3)}, "reproduced"),  # gap 0.10, se 0.008
    ({0.1: cell(0.60, 0.01, 3), 0.3: cell(0.70, 0.01, 3)}, {0.1: cell(0.70, 0.01, 3), 0.3: cell(0.80, 0.01, 3)}, "contradicted"),
    ({0.1: cell(0.71, 0.05, 3)}, {0.1: cell(0.70, 0.05, 3)}, "reproduced in direction only"),
    ({0.1: cell(0.69, 0.05, 3)}, {0.1: cell(0.70, 0.05, 3)}, "not reproduced"),
    ({0.1: cell(0.90, None, 1)}, {0.1: cell(0.70, None, 1)}, "inconclusive"),
])
def test_gap_rule(subject, baseline, expected):
    result, rows = gap_verdict(subject, baseline, list(subject))
    assert result == expected
    for r in rows:
        s, b = subject[r["x"]], baseline[r["x"]]
        assert r["gap"] == pytest.approx(s["mean"] - b["mean"])
        if r["se"] is not None:
            assert r["se"] == pytest.approx(math.sqrt(s["sd"] ** 2 / s["n"] + b["sd"] ** 2 / b["n"]))


def test_stats_are_mean_and_sample_sd_and_skip_missing():
    assert stats([1.0, 2.0, 3.0, None, float("nan")]) == {"mean": 2.0, "sd": 1.0, "n": 3}
    assert stats([]) == {"mean": None, "sd": None, "n": 0}


def test_every_claim_names_its_paper_number_baseline_and_rule():
    for claim in catalogue.CLAIMS:
        names = {a.name for a in claim.arms}
        assert claim.subject in names and claim.baseline in names
        assert claim.paper_number and claim.rule and claim.statement and claim.source
        assert not claim.x_key or set(claim.quick_xs) <= set(claim.xs)


def test_logreg_fits_on_exactly_the_pairs_the_models_see(monkeypatch):
    import sklearn.pipeline

    fitted = []
    real_fit = sklearn.pipeline.Pipeline.fit

    def spy(self, x, y, **kw):
        fitted.append(len(y))
        return real_fit(self, x, y, **kw)

    monkeypatch.setattr(sklearn.pipeline.Pipeline, "fit", spy)
    claim = catalogue.find(["mvae-weak-supervision"])[0]
    arm = next(a for a in claim.arms if a.kind == "logreg")
    accuracy = logreg_on_pairs(claim, arm, 0.1, quick=True)
    # digits: 1,797 images, 20 % test → 1,437 training rows, 10 % of them paired
    assert fitted == [round(0.1 * 1437)] and 0.5 < accuracy <= 1.0


def test_quick_tier_runs_and_writes_a_stamped_report(tmp_path):
    out = tmp_path / "reproduce"
    result = CliRunner().invoke(main, ["reproduce", "--quick", "--out", str(out)], catch_exceptions=False)  # every claim
    assert result.exit_code == 0, result.output
    report = (out / "reproductions.md").read_text()
    data = json.loads((out / "reproductions.json").read_text())
    for key in ("commit", "date", "machine", "load", "command"):
        assert data["meta"][key] and f"- {key}" in report.replace("load average when written", "load")
    assert data["quick"] and [c["id"] for c in data["claims"]] == [c.id for c in catalogue.CLAIMS]
    assert all(c["verdict"] == "inconclusive" for c in data["claims"])  # one seed, three epochs: nothing is decided
    weak = next(c for c in data["claims"] if c["id"] == "mvae-weak-supervision")
    assert all(0 <= weak["table"][a["name"]]["0.1"]["mean"] <= 1 for a in weak["arms"])  # every arm measured at x = 0.1
    lik = next(c for c in data["claims"] if c["id"] == "mvae-likelihood")
    assert all(lik["table"][arm]["None"]["mean"] < 0 for arm in ("poe", "vae"))  # log p(image) from each arm's eval.json
    # run again: the arms' sweeps are continued, not retrained
    again = CliRunner().invoke(main, ["reproduce", "--quick", "stability", "--out", str(out)], catch_exceptions=False)
    assert again.exit_code == 0 and "epoch 1/3" not in again.output
