"""The PolyMNIST comparison: a claim whose x is part of the metric's key (coherence given x modalities), each arm
trained once per seed and read at every x, on the stand-in drawn in memory."""
from __future__ import annotations

import json

import pytest

from reproductions import claims as catalogue
from reproductions.claim_spec import find_recipe
from reproductions.claims_polymnist import POLYMNIST_CLAIMS
from reproductions.reproduce import at_x, cells, reproduce, verdict

CLAIM = next(c for c in catalogue.CLAIMS if c.id == POLYMNIST_CLAIMS[0].id)  # as declared, with its paper setup joined


def test_x_names_the_metrics_key_at_each_x():
    assert at_x("coherence/given_{x}", 2) == at_x("coherence/given_{x}", 2.0) == "coherence/given_2"
    assert at_x("ceiling/*/label", 3) == "ceiling/*/label"  # no {x}: the same key at every x
    per_seed = {0: {"coherence/given_1": 0.2, "coherence/given_2": 0.4}, 1: {"coherence/given_1": 0.4, "coherence/given_2": 0.6}}
    table = cells({1: per_seed, 2: per_seed}, "coherence/given_{x}")
    assert table[1]["mean"] == pytest.approx(0.3) and table[2]["mean"] == pytest.approx(0.5) and table[2]["n"] == 2


def test_the_claim_is_registered_with_its_arms_recipes_and_a_rule_written_before_the_run():
    assert POLYMNIST_CLAIMS[0].id in {c.id for c in catalogue.CLAIMS} and CLAIM.setup and CLAIM.x_in_metric and "{x}" in CLAIM.metric
    arms = {a.name: a for a in CLAIM.arms}
    assert set(arms) == {"mvae", "mmvae", "mopoe", "mmvae_plus", "mvae-or-mmvae"}
    assert arms[CLAIM.baseline].best_of == ("mvae", "mmvae") and CLAIM.subject == "mopoe"
    assert all(find_recipe(a.recipe).is_file() for a in CLAIM.arms if a.kind == "model")
    assert set(CLAIM.region) <= set(CLAIM.xs) == {1, 2, 3, 4}
    for word in ("60,000", "300 epochs", "β = 2.5", "latent 512", "1,500 training"):  # the paper's setup and the stand-in's
        assert word in CLAIM.paper_number, word


def test_mopoe_must_beat_the_better_of_mvae_and_mmvae_at_the_larger_input_counts():
    def cell(mean):
        return {"mean": mean, "sd": 0.01, "n": 3}

    table = {"mopoe": {1: cell(0.3), 3: cell(0.6), 4: cell(0.7)}, "mvae-or-mmvae": {1: cell(0.5), 3: cell(0.5), 4: cell(0.5)}}
    assert verdict(CLAIM, table, {})[0] == "reproduced"  # behind at one input does not matter: the region is 3 and 4
    table["mopoe"] = {1: cell(0.9), 3: cell(0.4), 4: cell(0.4)}
    assert verdict(CLAIM, table, {})[0] == "contradicted"


@pytest.mark.slow
def test_quick_tier_trains_each_arm_once_per_seed_and_reads_it_at_every_x(tmp_path, monkeypatch):
    monkeypatch.setenv("MODKIT_CACHE_DIR", str(tmp_path / "cache"))  # the judges are fitted once and shared by the arms
    out = tmp_path / "r"
    result = reproduce([CLAIM.id], True, 1, 1, out, out / "r.md", out / "fig", ["toy"], echo=lambda s: None)["results"][0]
    runs = sorted((out / "arms").glob("*/trial-*/seed-*"))
    assert len(runs) == 4  # four model arms, one seed, trained at no x
    sources = {json.loads((r / "eval.json").read_text())["judge_source"]["classifiers"] for r in runs}
    assert sources == {"fitted now, cached", "cache"}  # the first arm fits the judges, the others reuse them
    summaries = [json.loads((r / "eval.json").read_text())["coherence"]["by_inputs"] for r in runs]
    assert all(set(s) == {"m0", "m1", "m2", "m3", "m4"} and set(s["m0"]) == {"1", "2", "3", "4"} for s in summaries)
    table = result["table"]
    assert set(table["mopoe"]) == {"1", "4"} and table["mopoe"]["1"] != table["mopoe"]["4"]
    for arm in ("mvae", "mmvae", "mopoe", "mmvae_plus"):
        assert all(0 <= table[arm][x]["mean"] <= 1 for x in ("1", "4")), arm
    assert table["mvae-or-mmvae"]["1"]["arm"] in ("mvae", "mmvae")
    ceiling = result["also"]["ceiling/*/label"]["table"]["mopoe"]
    assert ceiling["1"] == ceiling["4"] and 0.1 < ceiling["1"]["mean"] <= 1  # the judges read real views well above chance
    assert result["also"]["chance/label"]["table"]["mopoe"]["1"]["mean"] == pytest.approx(0.1)
    assert result["verdict"] == "inconclusive"
