"""The runner features the shapes claims use: a reference arm at one x, errors (lower is better), metric patterns,
``data.withhold``, split attributes for the logistic regression and the coherence judges."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import yaml

from modkit.errors import RecipeError
from reproductions import claims as catalogue
from reproductions.claim_spec import Arm, Claim
from reproductions.claims_shapes import NINETEEN
from reproductions.reproduce import metric_value, project_root, reproduce, verdict


def cell(mean, sd, n):
    return {"mean": mean, "sd": sd, "n": n}


@pytest.mark.slow
def test_a_reference_arm_is_trained_at_its_one_x_and_shown_at_every_x(tmp_path, monkeypatch):
    claim = Claim(id="toy-reference", title="t", source="s", statement="st", paper_number="p",
                  metric="balanced_accuracy/image->label", metric_label="m",
                  arms=(Arm("all-paired", "digits-poe-partial.yaml", ("train.epochs=1", "data.batch_size=512"), at=1.0),
                        Arm("logreg", "digits-poe-partial.yaml", kind="logreg")),
                  subject="all-paired", baseline="logreg", x_key="data.paired_fraction", xs=(0.1, 0.3))
    monkeypatch.setattr(catalogue, "CLAIMS", (claim,))
    out = tmp_path / "r"
    result = reproduce([], False, 1, 1, out, out / "r.md", out / "fig", ["toy"], echo=lambda s: None)["results"][0]
    runs = list((out / "arms").glob("*/trial-*/seed-*"))
    assert len(runs) == 1 and yaml.safe_load((runs[0] / "recipe.yaml").read_text())["data"]["paired_fraction"] == 1.0
    ref, logreg = result["table"]["all-paired"], result["table"]["logreg"]
    assert set(ref) == {"0.1", "0.3"} and ref["0.1"] == ref["0.3"] and 0 < ref["0.1"]["mean"] <= 1
    assert logreg["0.1"]["mean"] != logreg["0.3"]["mean"]  # the baseline still follows x


def test_an_error_is_judged_with_the_sign_turned():
    claim = Claim(id="e", title="t", source="s", statement="st", paper_number="p", metric="mse", metric_label="m",
                  arms=(Arm("a", "r.yaml"), Arm("b", "r.yaml")), subject="a", baseline="b", judge="not_worse",
                  lower_is_better=True)
    lower = {"a": {None: cell(0.05, 0.001, 3)}, "b": {None: cell(0.08, 0.001, 3)}}
    result, rows = verdict(claim, lower, {})
    assert result == "reproduced" and rows[0]["gap"] == pytest.approx(0.03)  # the subject's error is the smaller
    higher = {"a": {None: cell(0.10, 0.001, 3)}, "b": {None: cell(0.08, 0.001, 3)}}
    assert verdict(claim, higher, {})[0] == "contradicted"


def test_a_metric_pattern_is_the_mean_of_the_keys_it_matches():
    metrics = {"balanced_accuracy/image->attr_a": 0.5, "balanced_accuracy/image->attr_b": 0.9,
               "balanced_accuracy/attr_a->attr_b": 0.1, "balanced_accuracy/image->attr_c": float("nan")}
    assert metric_value(metrics, "balanced_accuracy/image->attr_*") == pytest.approx(0.7)
    assert metric_value(metrics, "balanced_accuracy/image->attr_a") == 0.5
    assert metric_value(metrics, "nothing/*") is None


def test_withheld_modalities_are_missing_from_every_training_row_and_kept_for_testing():
    from modkit.config.recipe import load_recipe
    from modkit.plugins.loader import load_plugins
    from modkit.training.builder import build

    path = project_root() / "recipes" / "digits-poe-partial.yaml"
    plain = build(load_recipe(path)[0], load_plugins())
    setup = build(load_recipe(path, ["data.withhold=[label]"])[0], load_plugins())
    image, label = list(setup.train.modalities).index("image"), list(setup.train.modalities).index("label")
    assert not setup.train.presence[:, label].any() and setup.train.presence[:, image].all()
    # paired and image-only rows keep their image; label-only rows had nothing left and are gone
    assert len(setup.train) == int(plain.train.presence[:, image].sum()) < len(plain.train)
    assert setup.test.presence.all()
    for bad, message in (("[sound]", "'sound' is not a modality"), ("[image,label]", "withholds every modality")):
        with pytest.raises(RecipeError, match=message):
            build(load_recipe(path, [f"data.withhold={bad}"])[0], load_plugins())


def test_the_nineteen_claim_names_the_recipes_split_modalities():
    recipe = yaml.safe_load((project_root() / "recipes" / "shapes-19.yaml").read_text())
    assert NINETEEN == tuple(f"attr_{n.replace('/', '_')}" for n in recipe["modalities"]["attr"]["select"])


def test_conditioned_generation_is_scored_on_what_the_given_modalities_said():
    from modkit.evaluation.suite import summarize

    result = {"judges": {"a/attributes[0]": {"kind": "self"}, "b/attributes[3]": {"kind": "self"},
                         "image/attributes[0]": {"kind": "dataset"}, "image/attributes[3]": {"kind": "dataset"},
                         "image/attributes[5]": {"kind": "dataset"}},
              "coherence": {"cross": {"a+b->image": {"attributes[0]": 0.9, "attributes[3]": 0.7, "attributes[5]": 0.1},
                                      "a->image": {"attributes[0]": 0.8, "attributes[3]": 0.5, "attributes[5]": 0.5}}}}
    out = summarize(result, ["a", "b", "image"])
    assert out["coherence/a+b->image/given"] == pytest.approx((0.9 + 0.7) / 2)  # attributes[5]: nobody said it
    assert not any(k.endswith("/given") and k.startswith("coherence/a->") for k in out)  # one modality: its own keys


def test_a_split_attribute_is_judged_by_its_own_column():
    from modkit.evaluation.judges import JudgeSet

    judges = JudgeSet(["attributes[0]", "attributes[7]"], {"attr_x": "attributes"},
                      kinds={("attr_x", "attributes[7]"): "self"})
    found = judges.judge(None, "attr_x", torch.tensor([[1.0], [0.0], [1.0]]))  # the modality's one bit per sample
    assert list(found) == ["attributes[7]"] and found["attributes[7]"].tolist() == [1, 0, 1]
    whole = JudgeSet(["attributes[2]"], {"a": "attributes"}, kinds={("a", "attributes[2]"): "self"})
    assert whole.judge(None, "a", torch.tensor([[0.0, 1.0, 1.0]]))["attributes[2]"].tolist() == [1]  # a whole vector


def test_every_two_stage_arm_of_the_shapes_claims_starts_from_a_pretraining_of_the_same_recipe():
    for claim in catalogue.CLAIMS:
        arms = {a.name: a for a in claim.arms}
        for arm in claim.arms:
            if arm.after:
                assert arms[arm.after].kind == "pretrain" and arms[arm.after].recipe == arm.recipe
        assert claim.subject in arms and arms[claim.subject].kind != "pretrain"


def test_an_arm_whose_extra_is_missing_is_reported_not_run_with_the_arms_that_start_from_it(tmp_path, monkeypatch):
    claim = Claim(id="toy-extra", title="t", source="s", statement="st", paper_number="p",
                  metric="balanced_accuracy/image->label", metric_label="m",
                  arms=(Arm("pre", "digits-latent_mix.yaml", kind="pretrain", requires=("no_such_module_for_modkit",)),
                        Arm("down", "digits-latent_mix.yaml", ("model.fusion.downstream.task=label",), after="pre"),
                        Arm("logreg", "digits-latent_mix.yaml", kind="logreg")),
                  subject="down", baseline="logreg")
    monkeypatch.setattr(catalogue, "CLAIMS", (claim,))
    out = tmp_path / "r"
    result = reproduce([], False, 1, 1, out, out / "r.md", out / "fig", ["toy"], echo=lambda s: None)["results"][0]
    assert not (out / "arms").exists()  # nothing trained
    assert set(result["not_run"]) == {"pre", "down"} and "no_such_module_for_modkit" in result["not_run"]["pre"]
    assert result["table"]["down"] == {} and result["table"]["logreg"]["None"]["mean"] > 0.5
    assert result["verdict"] == "inconclusive"
    assert "Not run: `pre` (needs the module no_such_module_for_modkit" in (out / "r.md").read_text()


def test_a_grouped_key_is_read_as_it_is():
    assert metric_value({"coherence_mean/a->image/attributes[*]": 0.75}, "coherence_mean/a->image/attributes[*]") == 0.75


def test_the_transform_floors_are_scored_as_the_models_are(tmp_path):
    """copy and ridge on a small shapes set: per-pixel error per element (copying the image onto itself is exact) and
    the scene read back by the parser (exact for the image itself, near chance for an all-grey guess)."""
    from reproductions.claims_shapes import transform_claim
    from reproductions.reproduce import pixel_floor

    small = ("data.dataset.n=120",)
    claim = transform_claim("image_watermark", "Watermark removal")
    copy = pixel_floor(claim, Arm("copy", "shapes-transforms.yaml", small, kind="copy"), None, False)
    ridge = pixel_floor(claim, Arm("ridge", "shapes-transforms.yaml", small, kind="ridge"), None, False)
    key, objects = "reconstruction/image_watermark->image/mse", "coherence_mean/image_watermark->image/attributes[*]"
    assert 0 < copy[key] < 0.05 and 0 < ridge[key]
    assert 0.5 <= ridge[objects] <= 1 and 0.5 <= copy[objects] <= 1
    itself = transform_claim("image", "Identity")  # the image as its own source: exact, and read back perfectly
    exact = pixel_floor(dataclasses.replace(itself, metric="reconstruction/image->image/mse", also=()),
                        Arm("copy", "shapes-transforms.yaml", small, kind="copy"), None, False)
    assert exact["reconstruction/image->image/mse"] == 0 and exact["coherence_mean/image->image/attributes[*]"] > 0.95
