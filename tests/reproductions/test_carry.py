"""A rerun that measured only some of a claim's arms keeps the stored cells of the others (same definition, same x
values), says where they came from, and judges the claim on the combined table."""
from __future__ import annotations

import json

import pytest

from reproductions import claims as catalogue
from reproductions import peer, setups

RECIPE = "digits-poe-partial.yaml"
METRIC = "balanced_accuracy/image->label"
OLD = {"commit": "abc1234", "date": "2026-11-30T19:15:14+00:00", "trained": "2026-11-30T12:51:39 to 2026-11-30T18:20:48",
       "machine": "vm", "command": "python -m reproductions --no-train --out old-runs"}


def toy() -> catalogue.Claim:
    return catalogue.Claim(
        id="toy", title="toy", source="s", statement="st", paper_number="p", metric=METRIC, metric_label="m",
        arms=(catalogue.Arm("peer", RECIPE, kind=peer.KIND, peer="MVAE"),
              catalogue.Arm("kept", RECIPE),
              catalogue.Arm("changed", RECIPE, ("data.unpaired=drop",))),
        subject="peer", baseline="kept", x_key="data.paired_fraction", xs=(0.1, 1.0))


def cell(mean, sd, n):
    return {"mean": mean, "sd": sd, "n": n}


def stored_entry() -> dict:
    """The claim as an earlier run stored it: `kept` as declared now, `changed` under other settings, no peer arm."""
    arms = [{"name": "kept", "title": "kept", "kind": "model", "recipe": RECIPE, "sets": [], "after": "", "metric": METRIC},
            {"name": "changed", "title": "changed", "kind": "model", "recipe": RECIPE, "sets": [], "after": "", "metric": METRIC}]
    return {"id": "toy", "title": "toy", "source": "s", "statement": "st", "paper_number": "p", "metric": METRIC,
            "metric_label": "m", "subject": "kept", "baseline": "kept", "x_key": "data.paired_fraction", "xs": [0.1, 1.0],
            "arms": arms, "tuning": {}, "declaration": "0" * 16, "measured": "inconclusive", "stages": [], "not_run": {},
            "table": {"kept": {"0.1": cell(0.5, 0.01, 3), "1.0": cell(0.7, 0.01, 3)},
                      "changed": {"0.1": cell(0.4, 0.01, 3), "1.0": cell(0.6, 0.01, 3)}},
            "also": {}, "above_baseline": [], "verdict": "inconclusive", "rule": "r", "evidence": [], "diagnosis": "",
            "figure": None, "meta": OLD}


def plant(tmp_path, claim, scores: dict[float, list[float]]):
    """The peer arm's finished seeds as its worker writes them: one result.json per x and seed."""
    out = tmp_path / "runs"
    base = peer.peer_folder(claim, claim.arms[0], False, out)
    for x, values in scores.items():
        for seed, v in enumerate(values):
            folder = base / f"x-{x}" / f"seed-{seed}"
            folder.mkdir(parents=True)
            (folder / peer.RESULT).write_text(json.dumps({"metrics": {METRIC: v}, "started": "2026-12-07T01:00:00",
                                                          "finished": "2026-12-07T01:10:00"}))
    return out


@pytest.fixture
def rerun(tmp_path, monkeypatch):
    from reproductions.reproduce import reproduce

    claim = toy()
    monkeypatch.setattr(catalogue, "CLAIMS", (claim,))
    report = tmp_path / "docs" / "r.md"
    report.parent.mkdir()
    report.with_suffix(".json").write_text(json.dumps({"meta": OLD, "quick": False, "claims": [stored_entry()]}))
    out = plant(tmp_path, claim, {0.1: [0.60, 0.62, 0.61], 1.0: [0.71, 0.69, 0.70]})
    lines: list[str] = []
    reproduce(["toy"], False, 3, 0, out, report, tmp_path / "fig", ["python", "-m", "reproductions", "toy", "--no-train"],
              echo=lines.append)
    entry = json.loads(report.with_suffix(".json").read_text())["claims"][0]
    return claim, entry, report.read_text(), lines


def test_an_unmeasured_arm_of_the_same_definition_keeps_its_stored_cells_and_says_whence(rerun):
    claim, entry, _, lines = rerun
    arms = {a["name"]: a for a in entry["arms"]}
    assert entry["table"]["kept"] == stored_entry()["table"]["kept"]
    assert arms["kept"]["carried_from"] == {k: OLD[k] for k in ("command", "commit", "date", "trained")}
    assert "carried_from" not in arms["peer"] and entry["table"]["peer"]["0.1"]["n"] == 3
    assert any("stored cells are kept" in line for line in lines)
    # the entry is measured under the declaration as it is now: its own digest, not the stored entry's
    assert entry["declaration"] == setups.digest(claim)


def test_an_arm_whose_definition_changed_is_not_carried(rerun):
    _, entry, text, _ = rerun
    assert entry["table"]["changed"] == {} and "carried_from" not in {a["name"]: a for a in entry["arms"]}["changed"]
    assert "`changed`" not in next(line for line in text.splitlines() if line.startswith("Arms `kept`"))


def test_the_verdict_is_the_rule_on_the_combined_table(rerun):
    _, entry, _, _ = rerun
    # the peer's 0.61 ± 0.01 and 0.70 ± 0.01 against the carried 0.5 and 0.7: a gap of 0.11 at 0.1, none at 1.0
    assert entry["measured"] == entry["verdict"] == "reproduced"
    gaps = {e["x"]: e["gap"] for e in entry["evidence"]}
    assert gaps[0.1] == pytest.approx(0.61 - 0.5) and gaps[1.0] == pytest.approx(0.70 - 0.7, abs=1e-12)


def test_the_page_names_which_run_measured_which_arm_and_no_changed_declaration(rerun):
    _, _, text, _ = rerun
    section = text.split('<a id="toy"></a>')[1]
    assert "Measured by `python -m reproductions toy --no-train`" in section
    assert "Arms `peer`: measured by the run above." in section
    assert ("Arms `kept`: stored cells from `python -m reproductions --no-train --out old-runs` (commit `abc1234`, "
            f"written {OLD['date']}, runs trained {OLD['trained']}), carried over") in section
    assert "declaration has changed" not in section


def test_cells_at_other_x_values_are_not_carried(tmp_path):
    from reproductions.reproduce import carried

    claim = toy()
    assert carried(claim, claim.arms[1], [0.1, 1.0], stored_entry())["table"][1.0] == cell(0.7, 0.01, 3)
    assert carried(claim, claim.arms[1], [0.1, 0.3, 1.0], stored_entry()) is None
    assert carried(claim, claim.arms[2], [0.1, 1.0], stored_entry()) is None  # its --set values differ
    assert carried(claim, claim.arms[1], [0.1, 1.0], None) is None
