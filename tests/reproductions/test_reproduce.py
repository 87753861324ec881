"""python -m reproductions: the verdict rule, the supervised baseline's data, and the quick tier end to end."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from reproductions import claims as catalogue
from reproductions.__main__ import main
from reproductions.reproduce import gap_verdict, logreg_on_pairs, stats


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
    accuracy = logreg_on_pairs(claim, arm, 0.1, quick=True)["balanced_accuracy/image->label"]
    # digits: 1,797 images, 20 % test → 1,437 training rows, 10 % of them paired
    assert fitted == [round(0.1 * 1437)] and 0.5 < accuracy <= 1.0


@pytest.mark.slow
def test_the_entry_runs_from_the_checkout_and_no_installed_command_needs_one():
    """``python -m reproductions`` from the repository's root lists the catalogue; the installed CLI has no
    ``reproduce`` (it would need the checkout's recipes/ and docs/)."""
    import subprocess
    import sys

    from modkit.cli.main import main as modkit_main

    root = Path(__file__).resolve().parents[2]
    listed = subprocess.run([sys.executable, "-m", "reproductions", "--list"], cwd=root, capture_output=True, text=True, check=True)
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [c.id for c in catalogue.CLAIMS]
    gone = CliRunner().invoke(modkit_main, ["reproduce", "--list"])
    assert gone.exit_code == 2 and "No such command 'reproduce'" in gone.output


#: one claim per path through the runner, trained at the quick tier below (the other claims take the same paths
#: with other recipes: each of those recipes validates in tests/config, each claim's fields in the test above;
#: pre-training stages and the arms started from them are trained in tests/reproductions/test_two_stage.py):
QUICK_CLAIMS = (
    "mvae-weak-supervision",  # model, logistic-regression and not-applicable arms; a secondary metric (test/elbo)
    "meme-partial-observation-label-only",  # secondary metrics read from each arm's eval.json
    "mvae-likelihood",  # an evaluation-only metric; reported again by --no-train below
    "stability",  # a claim without x values; continued, not retrained, by the second command below
    "shapes-flagship",  # the flagship's task metrics and CPU seconds
    "m2-segmentation",  # balanced labelled + unlabelled batches (data.paired_per_batch)
    "translation-weak-supervision",  # a reference arm trained at its one x
)


@pytest.mark.slow
def test_quick_tier_runs_and_writes_a_stamped_report(tmp_path):
    out = tmp_path / "reproduce"
    result = CliRunner().invoke(main, ["--quick", *QUICK_CLAIMS, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = (out / "reproductions.md").read_text()
    data = json.loads((out / "reproductions.json").read_text())
    for key in ("commit", "date", "machine", "load", "command"):
        assert data["meta"][key] and f"- {key}" in report.replace("load average when written", "load")
    assert data["quick"] and [c["id"] for c in data["claims"]] == [c.id for c in catalogue.CLAIMS if c.id in QUICK_CLAIMS]
    assert all(c["verdict"] == "inconclusive" for c in data["claims"])  # one seed, an epoch or three: nothing is decided
    weak = next(c for c in data["claims"] if c["id"] == "mvae-weak-supervision")
    # every arm measured at x = 0.1, except a MultiVae peer arm where MultiVae's own venv is absent (CI): that one is
    # reported as not run, with its reason
    skipped = {a["name"] for a in weak["arms"] if a["name"] in weak["not_run"]}
    assert all(a["kind"] == "multivae" and weak["not_run"][a["name"]] for a in weak["arms"] if a["name"] in skipped)
    assert all(0 <= weak["table"][a["name"]]["0.1"]["mean"] <= 1 for a in weak["arms"] if a["name"] not in skipped)
    elbo = weak["also"]["test/elbo"]["table"]
    assert elbo["m2"]["0.1"]["n"] == 0 and elbo["poe"]["0.1"]["mean"] < 0  # M2 defines no test ELBO; PoE does
    meme = next(c for c in data["claims"] if c["id"] == "meme-partial-observation-label-only")
    for metric in ("coherence/label->image/label", "coherence_mean/label->image/label",  # sampled and posterior-mean
                   "relatedness/image~label/auc"):  # MEME's own measures, from eval.json
        assert all(0 <= meme["also"][metric]["table"][a]["0.1"]["mean"] <= 1 for a in ("meme", "poe", "moe"))
    lik = next(c for c in data["claims"] if c["id"] == "mvae-likelihood")
    assert lik["also"]["log_w_var/log p(label|image)"]["table"]["poe"]["None"]["mean"] >= 0
    assert all(lik["table"][arm]["None"]["mean"] < 0 for arm in ("poe", "vae"))  # log p(image) from each arm's eval.json
    # the shapes claims: every arm, two-stage ones included, measured by the key it names
    from reproductions.claims_shapes import SHAPES_CLAIMS

    for claim in (c for c in SHAPES_CLAIMS if c.id in QUICK_CLAIMS):
        found = next(c for c in data["claims"] if c["id"] == claim.id)
        assert all(cell["mean"] is not None for cells in found["table"].values() for cell in cells.values()), claim.id
    flagship = next(c for c in data["claims"] if c["id"] == "shapes-flagship")  # every metric beside the verdict's
    assert flagship["also"]["train_cpu_seconds"]["table"]["flagship"]["None"]["mean"] > 0
    assert 0 <= flagship["also"]["task/bleu/caption->translation"]["table"]["untrained"]["None"]["mean"] <= 100
    assert 0 <= flagship["also"]["task/miou/image->mask"]["table"]["poe"]["None"]["mean"] <= 1
    # run again: the arms' sweeps are continued, not retrained
    again = CliRunner().invoke(main, ["--quick", "stability", "--out", str(out)], catch_exceptions=False)
    assert again.exit_code == 0 and "epoch 1/3" not in again.output
    # --no-train reports what has finished and trains nothing: the same numbers here, nothing where nothing ran
    same = CliRunner().invoke(main, ["--quick", "--no-train", "mvae-likelihood", "--out", str(out),
                                     "--report", str(tmp_path / "same.md")], catch_exceptions=False)
    assert same.exit_code == 0 and "epoch 1/" not in same.output
    assert json.loads((tmp_path / "same.json").read_text())["claims"][0]["table"] == lik["table"]
    empty = CliRunner().invoke(main, ["--quick", "--no-train", "m2-semi-supervised", "--out", str(tmp_path / "none"),
                                      "--report", str(tmp_path / "none.md")], catch_exceptions=False)
    assert empty.exit_code == 0 and "epoch 1/" not in empty.output and not (tmp_path / "none" / "arms").exists()
    table = json.loads((tmp_path / "none.json").read_text())["claims"][0]["table"]
    assert table["m2"] == {} and table["supervised"] == {} and table["logreg"]["0.1"]["n"] == 1


def test_every_arm_is_checked_against_the_baseline_and_also_metrics_are_reported(tmp_path):
    from reproductions.reproduce import above_baseline, write_report

    claim = catalogue.Claim(
        id="toy", title="toy", source="s", statement="st", paper_number="p", metric="m", metric_label="m",
        arms=(catalogue.Arm("a", "r.yaml"), catalogue.Arm("b", "r.yaml"), catalogue.Arm("base", "r.yaml", kind="logreg")),
        subject="a", baseline="base", x_key="x", xs=(0.1, 0.3))
    table = {"a": {0.1: cell(0.5, 0.01, 3), 0.3: cell(0.9, 0.01, 3)},
             "b": {0.1: cell(0.8, 0.01, 3), 0.3: cell(0.7, 0.01, 3)},
             "base": {0.1: cell(0.6, None, 1), 0.3: cell(0.8, None, 1)}}
    found = above_baseline(claim, table)
    # a wins only at 0.3, b only at 0.1 (se = 0.01/√3 each): every arm, not only the subject
    assert [(f["arm"], f["x"]) for f in found] == [("a", 0.3), ("b", 0.1)]
    assert found[0]["gap"] == pytest.approx(0.1) and found[0]["se"] == pytest.approx(0.01 / math.sqrt(3))
    result = {"id": "toy", "title": "toy", "source": "s", "statement": "st", "paper_number": "p", "metric": "m",
              "metric_label": "m", "subject": "a", "baseline": "base", "x_key": "x", "xs": [0.1, 0.3],
              "arms": [{"name": n, "title": n.upper(), "kind": "model"} for n in table],
              "table": {a: {str(x): c for x, c in cells.items()} for a, cells in table.items()},
              "also": {"test/elbo": {"label": "test ELBO", "table": {"a": {"0.1": cell(-20.25, 0.5, 3)}}}},
              "above_baseline": found, "verdict": "reproduced", "rule": "r", "evidence": [], "diagnosis": "", "figure": None}
    meta = {"commit": "c", "date": "d", "machine": "m", "load": "l", "command": "cmd"}
    text = write_report([result], meta, tmp_path / "r.md", tmp_path, quick=False).read_text()
    assert "Also measured (no verdict): test ELBO (`test/elbo`)." in text and "| 0.1 | -20.250 ± 0.500 (3) | — | — |" in text
    assert "A at 0.3 (by 0.100" in text and "B at 0.1 (by 0.200" in text


def test_eval_metrics_are_summarised_by_todays_code(tmp_path):
    from reproductions.reproduce import eval_metrics

    assert eval_metrics(tmp_path) == {}
    (tmp_path / "eval.json").write_text(json.dumps({"modalities": ["image"], "likelihood": {
        "log p(image)": {"mean": -23.5, "stderr": 0.1, "log_w_var": 1.25, "items": 10}}}))
    assert eval_metrics(tmp_path) == {"likelihood/log p(image)": -23.5, "log_w_var/log p(image)": 1.25}


@pytest.mark.slow
def test_a_command_given_some_claims_rewrites_theirs_and_keeps_the_others(tmp_path, monkeypatch):
    from reproductions.reproduce import previous_results, reproduce

    def toy(name: str) -> catalogue.Claim:
        return catalogue.Claim(id=name, title=name, source="s", statement="st", paper_number="p",
                               metric="balanced_accuracy/image->label", metric_label="m",
                               arms=(catalogue.Arm("m", "digits-poe.yaml", ("train.epochs=1", f"train.lr={1e-3 if name == 'a' else 2e-3}")),
                                     catalogue.Arm("base", "digits-poe.yaml", kind="logreg")),
                               subject="m", baseline="base", x_key="data.paired_fraction", xs=(1.0,))

    monkeypatch.setattr(catalogue, "CLAIMS", (toy("a"), toy("b")))
    out, report = tmp_path / "runs", tmp_path / "docs" / "r.md"
    reproduce(["b", "a"], False, 1, 1, out, report, tmp_path / "fig", ["first"], echo=lambda s: None)
    first = json.loads(report.with_suffix(".json").read_text())["claims"]
    assert [c["id"] for c in first] == ["a", "b"] and all(c["meta"]["command"] == "first" for c in first)
    # --no-train where b has no runs: b's row is kept as it was, stamp and all (its regression not even fitted)
    from reproductions import reproduce as module

    fitted: list[str] = []
    fit = module.logreg_on_pairs
    monkeypatch.setattr(module, "logreg_on_pairs", lambda claim, *a: fitted.append(claim.id) or fit(claim, *a))
    lines: list[str] = []
    reproduce(["b"], False, 1, 0, tmp_path / "elsewhere", report, tmp_path / "fig", ["second"], echo=lines.append)
    second = json.loads(report.with_suffix(".json").read_text())
    assert second["claims"] == first and any("earlier row is kept" in line for line in lines) and fitted == []
    assert "Measured by `first`" in report.read_text()
    # a measured again from its runs: its row gets the new stamp, b keeps the old one
    reproduce(["a"], False, 1, 0, out, report, tmp_path / "fig", ["third"], echo=lambda s: None)
    third = {c["id"]: c for c in json.loads(report.with_suffix(".json").read_text())["claims"]}
    assert third["a"]["meta"]["command"] == "third" and third["a"]["table"] == first[0]["table"] and fitted == ["a"]
    assert [arm["name"] for arm in third["a"]["arms"]] == ["m", "base"] and list(third["a"]["table"]) == ["m", "base"]
    assert third["b"] == first[1] and list(third) == ["a", "b"]
    # a report written before claims had their own stamp: each row gets the file's
    data = json.loads(report.with_suffix(".json").read_text())
    for c in data["claims"]:
        del c["meta"]
    data["meta"]["command"] = "old"
    report.with_suffix(".json").write_text(json.dumps(data))
    assert {c["meta"]["command"] for c in previous_results(report).values()} == {"old"}


@pytest.mark.parametrize("lower", [False, True])
def test_a_tuned_arm_is_at_each_x_the_candidate_with_the_best_mean(lower):
    from reproductions.reproduce import best_of

    arm = catalogue.Arm("tuned", kind="best", best_of=("a", "b"))
    claim = catalogue.Claim(id="t", title="t", source="s", statement="st", paper_number="p", metric="m", metric_label="m",
                            arms=(catalogue.Arm("a"), catalogue.Arm("b"), arm), subject="a", baseline="tuned",
                            lower_is_better=lower)
    table = {"a": {0.1: cell(0.5, 0.1, 3), 0.3: cell(0.9, 0.1, 3)}, "b": {0.1: cell(0.7, 0.2, 3), 0.3: cell(None, None, 0)}}
    runs = {"a": {0.1: {0: {"m": 0.5}}, 0.3: {0: {"m": 0.9}}}, "b": {0.1: {0: {"m": 0.7}}, 0.3: {}}}
    found_runs, found = best_of(claim, arm, runs, table)
    best = "a" if lower else "b"  # at 0.1: 0.5 is the better error, 0.7 the better score; at 0.3 only a measured
    assert found == {0.1: {**table[best][0.1], "arm": best}, 0.3: {**table["a"][0.3], "arm": "a"}}
    assert found_runs == {0.1: runs[best][0.1], 0.3: runs["a"][0.3]}


def test_the_library_never_imports_the_research_and_the_research_reads_sweeps_through_their_results_api():
    """modkit/ installs without reproductions/; reproductions/ reads each arm's runs with modkit.sweep.load_results,
    not from Optuna's trial records (the sweep's own bookkeeping)."""
    import ast

    root = Path(__file__).resolve().parents[2]
    importers = []
    for path in (root / "modkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            importers += [str(path.relative_to(root)) for n in names if n.split(".")[0] == "reproductions"]
    assert importers == []
    research = "\n".join(p.read_text() for p in (root / "reproductions").rglob("*.py"))
    assert "optuna" not in research and "user_attrs" not in research and "load_results(" in research
