"""The page's verdicts: scale, plateau and whose question (planted tables); the setup table read from recipes; the
page rendered from the stored JSON alone; tuning on a validation split; the paper tier's refusals."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from reproductions import claims as catalogue
from reproductions import setups, verdicts
from reproductions.__main__ import main
from reproductions.claim_spec import Arm, Claim, Plateau, Setting
from reproductions.reproduce import HISTORY, best_of, cells

ROOT = Path(__file__).resolve().parents[2]


def cell(mean, sd=0.01, n=3, history=None):
    return {"mean": mean, "sd": sd, "n": n, **({"history": history} if history else {})}


# -- the vocabulary -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("measured, kwargs, expected", [
    ("contradicted", {}, "contradicted"),  # every key setting matches: the failure stands
    ("contradicted", {"deviations": ["λ (modkit 2; paper 50)"]}, "not reproduced at this scale"),
    ("not reproduced", {"deviations": ["latent"]}, "not reproduced at this scale"),
    ("reproduced", {"deviations": ["latent"]}, "reproduced"),  # a success at another scale is still one
    ("contradicted", {"plateau": {"state": "improving"}}, "inconclusive (still improving)"),
    ("contradicted", {"plateau": {"state": "not checked"}}, "contradicted"),  # not checked is never guessed
    ("contradicted", {"question": "modkit", "deviations": ["x"]}, "does not hold (modkit's own question)"),
    ("reproduced", {"question": "modkit"}, "holds (modkit's own question)"),
    ("inconclusive", {"deviations": ["x"]}, "inconclusive"),
])
def test_the_page_verdict_qualifies_the_measured_one(measured, kwargs, expected):
    assert verdicts.qualified(measured, **kwargs) == expected


def test_the_plateau_rule_on_planted_histories():
    rule = Plateau(window=0.2, tolerance=0.01)
    falling = [100.0 - 5 * i for i in range(10)]  # still falling 5 a step: the last two epochs beat the best before by 10 %
    flat = [100.0, 80.0, 70.0, 65.0, 64.0, 63.5, 63.4, 63.3, 63.3, 63.2]  # the last 2 gain 0.1 on 63.3: < 1 %
    assert verdicts.improving(falling, rule) is True
    assert verdicts.improving(flat, rule) is False
    assert verdicts.improving([3.0, 2.0, 1.0], rule) is None  # too short to tell
    assert verdicts.improving([3.0, None, 2.0, 1.0, 0.5], rule) is None
    rising = Plateau(lower_is_better=False)
    assert verdicts.improving([0.1 * i for i in range(1, 11)], rising) is True
    table = {"a": {"0.1": cell(0.5, history={"key": rule.key, "mean": flat})},
             "b": {"0.1": cell(0.6, history={"key": rule.key, "mean": falling}), "0.3": cell(0.7)}}
    state = verdicts.plateau_state({"table": table}, rule, ["a", "b"])
    assert state["state"] == "improving" and state["improving"] == [("b", "0.1")]
    assert verdicts.plateau_state({"table": {"a": table["a"]}}, rule, ["a"])["state"] == "plateaued"
    # a stored cell without history (or with another key's) is reported as not checked
    assert verdicts.plateau_state({"table": {"b": {"0.3": cell(0.7)}}}, rule, ["b"])["state"] == "not checked"
    other = {"a": {"0.1": cell(0.5, history={"key": "train/rec", "mean": flat})}}
    assert verdicts.plateau_state({"table": other}, rule, ["a"])["state"] == "not checked"


def test_new_runs_store_the_mean_per_epoch_history_the_rule_reads():
    values = {0.1: {0: {"m": 0.5, HISTORY: [3.0, 2.0, 1.0]}, 1: {"m": 0.7, HISTORY: [5.0, 4.0, 3.0]}},
              0.3: {0: {"m": 0.9, HISTORY: [1.0, 1.0]}, 1: {"m": 0.8, HISTORY: None}}}
    found = cells(values, "m", "train/loss")
    assert found[0.1]["history"] == {"key": "train/loss", "mean": [4.0, 3.0, 2.0]} and found[0.1]["mean"] == pytest.approx(0.6)
    assert "history" not in found[0.3]  # one seed recorded none: no history rather than a partial one


def test_a_diagnosis_is_supported_only_by_a_control_with_a_result():
    results = {"c": {"table": {"ctl": {"0.1": cell(0.4)}, "empty": {"0.1": cell(None)}}},
               "other": {"table": {"x": {"None": cell(1.0)}}}}
    assert verdicts.control_result("ctl", "c", results)
    assert not verdicts.control_result("empty", "c", results)
    assert not verdicts.control_result("shapes-colour-label", "c", results)
    assert verdicts.control_result("other", "c", results) and verdicts.control_result("other/x", "c", results)
    assert not verdicts.control_result("other/y", "c", results)


# -- the setup table ------------------------------------------------------------------------------------------------

def planted_claim(**fields) -> Claim:
    arms = (Arm("poe", "digits-poe-partial.yaml", ("model.latent_dim=64",), label="PoE"),
            Arm("logreg", "digits-poe-partial.yaml", kind="logreg", label="regression"))
    base = Claim(id="planted", title="t", source="s", statement="st", paper_number="p", metric="m", metric_label="ml",
                 arms=arms, subject="poe", baseline="logreg", x_key="data.paired_fraction", xs=(0.03, 0.1),
                 setup=(Setting("λ", "50", "modalities.label.weight", 50, key=True),
                        Setting("latent size", "64", "@latent", 64, key=True),
                        Setting("β schedule", "over 40 epochs", "@beta", 40.0, key=True),
                        Setting("pairs", "not stated", "@pairs"), Setting("baseline", "used", "@baseline")))
    return dataclasses.replace(base, **fields)


def test_the_setup_table_is_read_from_the_arms_resolved_recipe_and_the_dataset():
    from modkit.config.recipe import load_recipe
    from modkit.plugins.loader import load_plugins
    from modkit.training.builder import build

    claim = planted_claim()
    rows = {r["name"]: r for r in setups.setup_rows(claim)}
    assert rows["λ"]["modkit"] == "2" and rows["λ"]["matches"] is False  # the recipe's weight: 2
    assert rows["latent size"]["modkit"] == "64" and rows["latent size"]["matches"]  # the arm's --set wins
    assert rows["β schedule"]["matches"] and rows["pairs"]["key"] is False and rows["baseline"]["modkit"] == "regression"
    # the absolute pairs are what the data layer pairs: counted independently on the built training rows
    for x in claim.xs:
        setup = build(load_recipe(setups.find_recipe("digits-poe-partial.yaml"), [f"data.paired_fraction={x}"])[0], load_plugins())
        paired = int(setup.train.presence.all(dim=1).sum())
        assert f"{paired} ({x:g})" in rows["pairs"]["modkit"]
    assert setups.deviations(list(rows.values())) == ["λ (modkit 2; paper 50)"]


def test_every_declared_claim_has_a_setup_whose_key_settings_state_the_papers_value():
    for claim in catalogue.CLAIMS:
        assert claim.setup, claim.id
        for s in claim.setup:
            assert s.paper and s.read, (claim.id, s.name)
            assert not s.key or s.value is not None, (claim.id, s.name)
        for d in claim.diagnoses:
            assert d.control and d.text
        assert claim.question in ("paper", "modkit")
    own = {c.id for c in catalogue.CLAIMS if c.question == "modkit"}
    assert {"nineteen-modalities", "mvae-vision-transforms-edges", "mvae-vision-transforms-colourisation"} <= own
    shapes = next(c for c in catalogue.CLAIMS if c.id == "mvae-weak-supervision-shapes")
    assert any(d.control == "shapes-colour-label" and "never decodes one" in d.text for d in shapes.diagnoses)
    assert "colour and position" not in shapes.diagnosis


def test_a_changed_declaration_changes_the_digest_and_labels_do_not():
    claim = planted_claim()
    assert setups.digest(claim) == setups.digest(dataclasses.replace(claim, title="other", diagnosis="notes"))
    assert setups.digest(claim) != setups.digest(dataclasses.replace(claim, xs=(0.1,)))
    arms = (dataclasses.replace(claim.arms[0], sets=("model.latent_dim=32",)), claim.arms[1])
    assert setups.digest(claim) != setups.digest(dataclasses.replace(claim, arms=arms))


# -- tuning on a validation split ------------------------------------------------------------------------------------

def test_a_tuned_arm_chooses_by_its_validation_twins_never_the_test_scenes():
    claim = planted_claim()
    arm = Arm("tuned", kind="best", best_of=("a", "b"), select_on=("a-val", "b-val"))
    table = {"a": {0.1: cell(0.9)}, "b": {0.1: cell(0.5)}}  # on the test scenes a is better …
    tuning = {"a-val": {0.1: cell(0.2)}, "b-val": {0.1: cell(0.6)}}  # … on the validation split b is
    runs = {"a": {0.1: {0: {}}}, "b": {0.1: {0: {}}}}
    _, found = best_of(claim, arm, runs, table, tuning)
    assert found[0.1]["arm"] == "b" and found[0.1]["mean"] == 0.5
    _, on_test = best_of(claim, dataclasses.replace(arm, select_on=()), runs, table)
    assert on_test[0.1]["arm"] == "a"



@pytest.mark.parametrize("other, decides", [(0.2, False), (0.1, True)])
def test_a_best_of_baseline_chosen_on_test_counts_as_a_deviation_only_where_the_choice_matters(other, decides):
    """The subject is far below candidate `a`; against `b` it is far below too (the choice decides nothing) or level
    (then picking `a` by its test mean is what makes the verdict contradicted)."""
    from reproductions import render

    arms = (Arm("s", "digits-poe-partial.yaml"), Arm("a", "digits-poe-partial.yaml"), Arm("b", "digits-poe-partial.yaml"),
            Arm("best", kind="best", best_of=("a", "b")))
    claim = planted_claim(arms=arms, subject="s", baseline="best", setup=())
    table = {"s": {"0.03": cell(0.1), "0.1": cell(0.1)}, "a": {"0.03": cell(0.5), "0.1": cell(0.5)},
             "b": {"0.03": cell(other), "0.1": cell(other)}}
    table["best"] = {x: {**table["a"][x], "arm": "a"} for x in table["a"]}
    stored = {"verdict": "contradicted", "table": table,
              "arms": [{"name": "best", "best_of": ["a", "b"]}, {"name": "s"}, {"name": "a"}, {"name": "b"}]}
    alone = render.candidate_verdicts(stored, claim, stored["arms"][0])
    assert alone["a"] == "contradicted" and (alone["b"] == "contradicted") is not decides
    assert render.choice_decides(stored, claim, stored["arms"][0]) is decides
    flagged = any("chosen on the test scenes" in d for d in render.assess(stored, claim)["deviations"])
    assert flagged is decides

def test_the_segmentation_claim_takes_the_papers_settings_and_tunes_neither_side():
    claim = next(c for c in catalogue.CLAIMS if c.id == "m2-segmentation")
    rows = {r["name"]: r for r in setups.setup_rows(claim)}
    assert rows["α (weight of log q(y|x))"]["matches"] and rows["batch composition"]["matches"]
    arms = {a.name: a for a in claim.arms}
    assert set(arms) == {claim.subject, claim.baseline, "m2-alpha-10"} and all(a.kind == "model" for a in arms.values())
    subject, baseline = arms[claim.subject], arms[claim.baseline]
    # the control: the subject with the labelled term weighted 100× less (the last α set wins), at one x
    control = arms["m2-alpha-10"]
    assert control.sets == (*subject.sets, "model.fusion.alpha=10") and control.at == 0.05
    # the same settings on both sides (no learning rate chosen anywhere), the baseline only switching the objective
    assert not any(s.startswith("train.lr") for s in subject.sets + baseline.sets)
    assert [s for s in baseline.sets if s not in subject.sets] == ["model.fusion.objective=supervised"]
    translation = next(c for c in catalogue.CLAIMS if c.id == "translation-weak-supervision")
    assert setups.x_counts(translation) == {"0.01": 24, "0.05": 120, "0.5": 1200}  # round(x · 2,400 training scenes)
    assert {r["name"]: r for r in setups.setup_rows(translation)}["word dropout"]["matches"]


# -- rendering from the JSON alone ----------------------------------------------------------------------------------

def stored(claim: Claim, verdict: str, **extra) -> dict:
    reported = [a for a in claim.arms if a.kind not in ("pretrain", "tune")]
    return {"id": claim.id, "title": claim.title, "source": claim.source, "statement": claim.statement,
            "paper_number": claim.paper_number, "metric": claim.metric, "metric_label": claim.metric_label,
            "subject": claim.subject, "baseline": claim.baseline, "x_key": claim.x_key, "xs": list(claim.xs),
            "arms": [{"name": a.name, "title": a.title, "kind": a.kind, "recipe": a.recipe, "sets": list(a.sets),
                      "after": a.after, "metric": claim.metric, **({"best_of": list(a.best_of)} if a.best_of else {})}
                     for a in reported],
            "stages": [], "not_run": {}, "also": {}, "above_baseline": None, "evidence": [], "rule": claim.rule,
            "diagnosis": "", "figure": None, "verdict": verdict,
            "table": {a.name: {str(x): cell(0.5) for x in claim.xs} for a in reported},
            "meta": {"commit": "abc1234", "date": "2026-01-01T00:00:00+00:00", "machine": "m",
                     "command": "python -m reproductions " + claim.id}, **extra}


def test_the_page_is_rendered_from_the_json_alone_keeping_each_claims_stamp(tmp_path, monkeypatch):
    weak = next(c for c in catalogue.CLAIMS if c.id == "mvae-weak-supervision")
    shapes = next(c for c in catalogue.CLAIMS if c.id == "mvae-weak-supervision-shapes")
    seg = next(c for c in catalogue.CLAIMS if c.id == "m2-segmentation")
    own = next(c for c in catalogue.CLAIMS if c.id == "nineteen-modalities")
    old_seg = stored(seg, "contradicted")
    old_seg["arms"] = [{"name": "m2", "title": "M2", "kind": "model", "recipe": "shapes-m2-seg.yaml", "sets": [],
                        "after": "", "metric": seg.metric},  # measured under the earlier declaration: α 10, random batches
                       {"name": "tuned", "title": "tuned", "kind": "best", "recipe": "", "sets": [], "after": "",
                        "metric": seg.metric, "best_of": ["m2"]}]  # chosen on the test scenes (no chosen_on stored)
    old_seg["subject"], old_seg["baseline"] = "m2", "tuned"
    old_seg["table"] = {"m2": {"0.05": cell(0.3), "0.1": cell(0.3)}, "tuned": {"0.05": cell(0.3), "0.1": cell(0.3)}}
    data = {"meta": {"commit": "f00ba12", "date": "2026-01-02T00:00:00+00:00", "machine": "m", "load": "",
                     "command": "python -m reproductions --no-train"}, "quick": False,
            "claims": [stored(weak, "contradicted", declaration=setups.digest(weak)), stored(shapes, "contradicted"),
                       old_seg, stored(own, "contradicted")]}
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "reproductions.json").write_text(json.dumps(data))
    before = (docs / "reproductions.json").read_bytes()
    result = CliRunner().invoke(main, ["--render", "--report", str(docs / "reproductions.md")])
    assert result.exit_code == 0, result.output
    assert (docs / "reproductions.json").read_bytes() == before  # the stored results are not touched
    page = (docs / "reproductions.md").read_text()
    assert page.startswith("# Reproductions\n\nGenerated by `")
    assert "rendered from [reproductions.json](reproductions.json) alone, training nothing, by `python -m reproductions" in page
    assert page.count("Measured by `python -m reproductions mvae-weak-supervision`") == 1  # each claim keeps its stamp
    assert "| [MVAE under weak supervision: image → label with few paired examples](#mvae-weak-supervision) | " \
           "Wu & Goodman 2018, §5.1 and Fig. 3 | **not reproduced at this scale** |" in page
    assert "λ (label weight) (modkit 2; paper" in page  # the deviation named
    assert "| setting | modkit | paper | key setting |" in page and "| **differs** |" in page
    assert "Plateau rule:" in page and "Not checked" in page
    assert "**does not hold (modkit's own question)**" in page
    assert "Unsupported diagnosis (its control `shapes-colour-label` has no result yet" in page
    assert "Diagnosis (control: `poe-pairs-steps`)" in page
    seg_part = page[page.index('<a id="m2-segmentation">'):page.index('<a id="nineteen-modalities">')]
    assert "The claim's declaration has changed since this run" in seg_part
    assert "α (weight of log q(y|x)) (modkit 10; paper 1000" in seg_part  # the run's settings, not today's
    assert "0.05 (100 labelled masks)" in seg_part
    assert "`tuned` chosen on the test scenes (tuned by its test means)" in seg_part
    weak_part = page[page.index('<a id="mvae-weak-supervision">'):page.index('<a id="mvae-weak-supervision-shapes">')]
    assert "declaration has changed" not in weak_part and "Stored before declarations" not in weak_part
    # a stored digest that no longer matches is detected
    data["claims"][0]["declaration"] = "0" * 16
    (docs / "reproductions.json").write_text(json.dumps(data))
    assert CliRunner().invoke(main, ["--render", "--report", str(docs / "reproductions.md")]).exit_code == 0
    page = (docs / "reproductions.md").read_text()
    weak_part = page[page.index('<a id="mvae-weak-supervision">'):page.index('<a id="mvae-weak-supervision-shapes">')]
    assert "declaration has changed since this run" in weak_part


def test_render_refuses_a_file_that_is_not_a_report_in_one_line(tmp_path):
    (tmp_path / "reproductions.json").write_text(json.dumps({"something": 1}))
    result = CliRunner().invoke(main, ["--render", "--report", str(tmp_path / "reproductions.md")])
    assert result.exit_code != 0 and "not a report python -m reproductions wrote" in result.output
    assert len(result.output.strip().splitlines()) == 1


# -- the paper tier -------------------------------------------------------------------------------------------------

def test_every_paper_tier_resolves_for_every_arm():
    from modkit.config.recipe import load_recipe
    from reproductions.tiers import at_paper_tier

    tiered = [c for c in catalogue.CLAIMS if c.paper_tier is not None]
    assert {"mvae-weak-supervision", "mvae-likelihood", "m2-semi-supervised", "stability"} <= {c.id for c in tiered}
    for claim in tiered:
        paper = at_paper_tier(claim)
        for arm in paper.arms:
            if arm.recipe:
                recipe = load_recipe(setups.find_recipe(arm.recipe), list(arm.sets))[0]
                assert recipe.data.dataset.type == "mnist"
    weak = at_paper_tier(next(c for c in catalogue.CLAIMS if c.id == "mvae-weak-supervision"))
    rows = {r["name"]: r for r in setups.setup_rows(weak) if r["key"]}
    assert all(r["matches"] for r in rows.values()), rows  # at the paper tier every key setting is the paper's


def test_the_paper_tier_refuses_in_one_line_naming_the_missing_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/ here
    result = CliRunner().invoke(main, ["mvae-weak-supervision", "--tier", "paper"])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "needs mnist" in lines[0] and "mvae-weak-supervision" in lines[0]
    result = CliRunner().invoke(main, ["translation-weak-supervision", "--tier", "paper"])
    assert result.exit_code != 0 and "declares no paper tier" in result.output
    assert not (tmp_path / "runs").exists()  # refused before anything ran
