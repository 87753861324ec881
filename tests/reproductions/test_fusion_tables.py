"""reproductions.fusion_tables: arms reach their fusion's page through their recipes, each row carries
the claim's baseline at the same x, secondary metrics (``also``) get their own rows, and the pages' blocks are
rewritten in place without touching the prose around them."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from reproductions import fusion_tables as ft

ROOT = Path(__file__).resolve().parents[2]


def _recipes(tmp: Path) -> Path:
    folder = tmp / "recipes"
    folder.mkdir()
    (folder / "a-poe.yaml").write_text(yaml.safe_dump({"model": {"fusion": "poe"}}))
    (folder / "a-moe.yaml").write_text(yaml.safe_dump({"model": {"fusion": {"type": "moe", "k": 10}}}))
    return folder


def _cell(mean: float, sd: float | None = 0.01, n: int = 3) -> dict:
    return {"mean": mean, "sd": sd, "n": n}


def _data(also: bool = True) -> dict:
    claim = {
        "id": "c1", "title": "A claim", "metric": "acc", "metric_label": "accuracy of q(y|x)", "subject": "moe",
        "baseline": "lr", "x_key": "data.paired_fraction", "xs": [0.1, 1.0],
        "arms": [{"name": "moe", "title": "MoE", "kind": "model", "recipe": "a-moe.yaml", "sets": []},
                 {"name": "quot", "title": "quotient", "kind": "model", "recipe": "a-poe.yaml",
                  "sets": ["model.fusion=poe_quotient"]},
                 {"name": "lr", "title": "logistic regression", "kind": "logreg", "recipe": "a-poe.yaml", "sets": []}],
        "table": {"moe": {"0.1": _cell(0.61), "1.0": _cell(0.92)},
                  "quot": {"0.1": _cell(0.33), "1.0": {"mean": None, "sd": None, "n": 0}},
                  "lr": {"0.1": _cell(0.87, None, 1), "1.0": _cell(0.97, None, 1)}},
    }
    if also:
        claim["also"] = {"test/elbo": {"label": "test ELBO", "table": {"moe": {"0.1": _cell(-25.5, 0.25)}}}}
    return {"meta": {"commit": "abc1234", "date": "2026-11-30T00:00:00+00:00", "machine": "m", "command": "modkit reproduce"},
            "quick": False, "claims": [claim]}


def test_an_arm_maps_to_the_fusion_its_recipe_trains_after_its_sets(tmp_path: Path):
    recipes = _recipes(tmp_path)
    arms = {a["name"]: ft.arm_fusion(a, recipes) for a in _data()["claims"][0]["arms"]}
    assert arms == {"moe": "moe", "quot": "poe_quotient", "lr": None}
    # the real claims: every model arm's recipe names a fusion that has a page
    data = json.loads((ROOT / "docs" / "reproductions.json").read_text())
    fusions = {ft.arm_fusion(a, ROOT / "recipes") for c in data["claims"] for a in c["arms"] if a["kind"] == "model"}
    assert fusions and fusions <= set(ft.pages(ROOT / "docs"))


def test_rows_carry_the_baseline_at_the_same_x_and_the_secondary_metrics(tmp_path: Path):
    recipes = _recipes(tmp_path)
    block = ft.render(_data(), "moe", recipes)
    rows = [line for line in block.splitlines() if line.startswith("| [c1]")]
    assert rows == [
        "| [c1](../reproductions.md#c1) | MoE (subject) | `data.paired_fraction` = 0.1 | accuracy of q(y\\|x) | 0.610 ± 0.010 (3) | logistic regression: 0.870 (1) |",
        "| [c1](../reproductions.md#c1) | MoE (subject) | `data.paired_fraction` = 1.0 | accuracy of q(y\\|x) | 0.920 ± 0.010 (3) | logistic regression: 0.970 (1) |",
        "| [c1](../reproductions.md#c1) | MoE (subject) | `data.paired_fraction` = 0.1 | test ELBO | -25.500 ± 0.250 (3) | logistic regression: — |",
        "| [c1](../reproductions.md#c1) | MoE (subject) | `data.paired_fraction` = 1.0 | test ELBO | — | logistic regression: — |",
    ]
    assert "commit `abc1234`" in block and "`modkit reproduce`" in block
    assert block.startswith(ft.BEGIN) and block.endswith(ft.END)
    # without the optional field only the claim's metric is shown
    assert sum(line.startswith("| [c1]") for line in ft.render(_data(also=False), "moe", recipes).splitlines()) == 2
    quotient = ft.render(_data(), "poe_quotient", recipes)
    assert "| quotient | `data.paired_fraction` = 1.0 | accuracy of q(y\\|x) | — |" in quotient


def test_a_fusion_without_an_arm_says_how_to_get_one(tmp_path: Path):
    block = ft.render(_data(), "latent_mix", _recipes(tmp_path))
    assert "No generated result exists yet for `latent_mix`" in block
    assert "python -m reproductions CLAIM" in block and "--set model.fusion=latent_mix" in block
    assert not any(line.startswith("|") for line in block.splitlines())


def test_write_replaces_the_block_in_place_and_check_finds_a_hand_edit(tmp_path: Path, capsys):
    recipes = _recipes(tmp_path)
    docs = tmp_path / "docs"
    (docs / "fusions").mkdir(parents=True)
    source = docs / "reproductions.json"
    source.write_text(json.dumps(_data()))
    moe = docs / "fusions" / "moe.md"
    moe.write_text(f"# moe\n\nprose before\n\n{ft.BEGIN}\nold\n{ft.END}\n\nprose after\n")
    (docs / "fusions" / "poe.md").write_text("# poe\n\nno block yet\n")
    assert sorted(p.name for p in ft.write(source, docs, recipes)) == ["moe.md", "poe.md"]
    text = moe.read_text()
    assert text.startswith("# moe\n\nprose before\n\n" + ft.BEGIN) and text.endswith(ft.END + "\n\nprose after\n")
    assert "old" not in text and "0.610 ± 0.010 (3)" in text
    assert "## Measured results" in (docs / "fusions" / "poe.md").read_text()
    assert ft.write(source, docs, recipes) == []  # idempotent
    assert ft.stale(source, docs, recipes) == []
    moe.write_text(text.replace("0.610 ± 0.010", "0.710 ± 0.010"))
    assert ft.stale(source, docs, recipes) == [moe]


def test_the_command_line_checks_and_reports_errors_in_one_line(tmp_path: Path, capsys, monkeypatch):
    docs = tmp_path / "docs"
    (docs / "fusions").mkdir(parents=True)
    (docs / "fusions" / "moe.md").write_text("# moe\n")
    (docs / "reproductions.json").write_text(json.dumps(_data()))
    monkeypatch.chdir(tmp_path)
    recipes = ["--recipes", str(_recipes(tmp_path))]
    assert ft.main(["--check", *recipes]) == 1
    assert "docs/fusions/moe.md: generated block differs" in capsys.readouterr().err
    assert ft.main(recipes) == 0 and ft.main(["--check", *recipes]) == 0
    assert ft.main(["--json", "missing.json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: missing.json") and "Traceback" not in err
