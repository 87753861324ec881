"""The MultiVae peer arm: it sees the modkit arm's rows, mirrors its networks and budget, is scored as modkit scores
itself, keeps finished seeds, and is reported as not run (one line) without MultiVae's venv."""
from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from reproductions import claims as catalogue
from reproductions import peer
from reproductions.reproduce import arm_sets as modkit_arm_sets, recipe_path

FUSION = {"MVAE": "poe", "MoPoE": "mopoe"}


def peer_and_modkit_arms():
    """Every peer arm of the catalogue with the modkit arm it stands beside."""
    for claim in catalogue.CLAIMS:
        for arm in claim.arms:
            if arm.kind == peer.KIND:
                yield claim, arm, next(a for a in claim.arms if a.name == FUSION[arm.peer])


def test_both_weak_supervision_claims_and_the_colour_control_carry_mvae_and_mopoe_peers():
    for claim_id in ("mvae-weak-supervision", "mvae-weak-supervision-shapes", "shapes-colour-label"):
        claim = catalogue.find([claim_id])[0]
        assert {a.peer for a in claim.arms if a.kind == peer.KIND} == {"MVAE", "MoPoE"}, claim_id


def test_each_peer_arm_uses_its_modkit_arms_recipe_and_settings():
    from modkit.config.recipe import load_recipe

    pairs = list(peer_and_modkit_arms())
    assert len(pairs) == 6
    for claim, arm, modkit_arm in pairs:
        assert (arm.recipe, arm.sets) == (modkit_arm.recipe, modkit_arm.sets), (claim.id, arm.name)
        fusion = load_recipe(recipe_path(modkit_arm), list(modkit_arm.sets))[0].model.fusion
        assert (fusion if isinstance(fusion, str) else fusion.type) == FUSION[arm.peer]


def test_the_peer_sees_exactly_the_rows_the_modkit_arm_trains_and_tests_on():
    """The rows handed to the worker against the modkit arm's own training view, built as its sweep builds it,
    and against the weak-supervision protocol counted independently from the digits' size."""
    from modkit.config.recipe import load_recipe
    from modkit.plugins.loader import load_plugins
    from modkit.training.builder import build

    claim = catalogue.find(["mvae-weak-supervision"])[0]
    arm = next(a for a in claim.arms if a.name == "multivae-mvae")
    modkit_arm = next(a for a in claim.arms if a.name == "poe")
    _, setup = peer.setup_for(claim, arm, False, 0.1)
    rows = peer.rows_of(setup)

    theirs = build(load_recipe(recipe_path(modkit_arm), [*modkit_arm_sets(claim, modkit_arm, False), f"{claim.x_key}=0.1"])[0],
                   load_plugins())
    train = theirs.train.__getitems__(list(range(len(theirs.train))))
    test = theirs.test.__getitems__(list(range(len(theirs.test))))
    names = list(theirs.train.modalities)
    image, label = names.index("image"), names.index("label")
    present = train.present[:, [image, label]]
    assert torch.equal(rows["train_present"], present)
    assert torch.equal(rows["train_image"][present[:, 0]], train.data["image"][present[:, 0]].float())
    assert torch.equal(rows["train_label"][present[:, 1]], train.data["label"].reshape(-1)[present[:, 1]])
    assert torch.equal(rows["test_image"], test.data["image"].float())
    assert torch.equal(rows["test_label"], test.data["label"].reshape(-1))
    # MVAE's protocol, counted from the dataset: 1,797 digits, 359 (20 %) test → 1,438 training rows, 10 % of
    # them paired, every other row split into an image-only and a label-only row
    paired = round(0.1 * 1438)
    assert int(present.all(1).sum()) == paired
    assert int((present[:, 0] & ~present[:, 1]).sum()) == int((~present[:, 0] & present[:, 1]).sum()) == 1438 - paired
    assert len(rows["test_label"]) == 359


def test_the_worker_is_handed_the_recipes_networks_and_budget():
    claim = catalogue.find(["mvae-weak-supervision"])[0]
    arm = next(a for a in claim.arms if a.name == "multivae-mopoe")
    recipe, setup = peer.setup_for(claim, arm, False, 0.1)
    config = peer.worker_config(recipe, setup, arm, seed=2)
    # recipes/digits-mopoe-partial.yaml, read by eye
    assert config["model"] == "MoPoE" and config["seed"] == 2
    assert (config["latent_dim"], config["image_hidden"], config["label_hidden"]) == (32, [256, 256], [256, 256])
    assert (config["epochs"], config["lr"], config["batch_size"]) == (100, 5e-4, 64)
    assert config["beta"] == {"start": 0.0, "end": 1.0, "anneal_epochs": 40.0}
    assert config["weights"] == {"image": 1.0, "label": 2.0}
    colour = catalogue.find(["shapes-colour-label"])[0]
    arm = next(a for a in colour.arms if a.name == "multivae-mvae")
    recipe, setup = peer.setup_for(colour, arm, True, None)
    config = peer.worker_config(recipe, setup, arm, seed=0)
    assert config["num_classes"] == 6 and config["image_shape"] == [3, 16, 16] and config["weights"]["label"] == 50
    assert bool(peer.rows_of(setup)["train_present"].all())  # every pair shown


def test_the_score_is_the_mean_recall_over_the_classes_present():
    truth = [0, 0, 0, 1, 2, 2]
    predictions = [0, 1, 1, 1, 2, 0]
    # recalls: class 0 1/3, class 1 1/1, class 2 1/2 → mean 11/18
    assert peer.score(predictions, np.array(truth))[peer.METRIC] == pytest.approx((1 / 3 + 1 + 1 / 2) / 3)


def test_without_the_venv_the_arm_is_not_run_with_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv(peer.PYTHON_ENV, str(tmp_path / "nowhere" / "python"))
    claim = catalogue.find(["mvae-weak-supervision"])[0]
    arm = next(a for a in claim.arms if a.name == "multivae-mvae")
    found, why = peer.run_peer_arm(claim, arm, [0.1], [0], tmp_path, False, True, lambda s: None)
    assert found == {} and "no MultiVae venv" in why and "\n" not in why
    # --no-train asks for no venv: nothing finished, nothing to say
    assert peer.run_peer_arm(claim, arm, [0.1], [0], tmp_path, False, False, lambda s: None) == ({}, None)


def test_unknown_arm_names_in_only_are_one_line(tmp_path):
    from modkit.errors import ModkitError
    from reproductions.reproduce import reproduce

    with pytest.raises(ModkitError, match="--arms: no arm 'nope' in mvae-weak-supervision"):
        reproduce(["mvae-weak-supervision"], True, 1, 0, tmp_path, tmp_path / "r.md", tmp_path / "f", ["x"],
                  echo=lambda s: None, only=["poe", "nope"])


def venv_python():
    python, why = peer.peer_python()
    if python is None:
        pytest.skip(why)
    return python


@pytest.mark.slow
def test_a_tiny_real_run_through_multivaes_venv_is_scored_and_kept(tmp_path, monkeypatch):
    venv_python()
    claim = catalogue.find(["mvae-weak-supervision"])[0]
    arm = replace(next(a for a in claim.arms if a.name == "multivae-mvae"), sets=("train.epochs=2",))
    lines: list[str] = []
    found, why = peer.run_peer_arm(claim, arm, [0.3], [0], tmp_path, False, True, lines.append)
    assert why is None and lines == ["  MultiVae MVAE: x 0.3, seed 0"]
    score = found[0.3][0][peer.METRIC]
    assert 0.0 <= score <= 1.0
    result = json.loads(next(tmp_path.glob(f"peer/*/x-0.3/seed-0/{peer.RESULT}")).read_text())
    assert result["finite"] and math.isfinite(result["last_epoch_loss"]) and result["partial"]
    assert result["multivae"] == "1.0.3" and result["config"]["epochs"] == 2
    # the networks are modkit's sizes: the same parameter count per modality as modkit's PoE of the recipe
    _, setup = peer.setup_for(claim, arm, False, 0.3)
    for name in ("image", "label"):
        assert result["parameters"][name] == sum(p.numel() for p in setup.model.modalities[name].parameters()), name
    # a finished seed is read back, never trained again
    monkeypatch.setattr(peer, "train_seed", lambda *a, **k: pytest.fail("a finished seed was trained again"))
    again, _ = peer.run_peer_arm(claim, arm, [0.3], [0], tmp_path, False, True, lines.append)
    assert again == found


def test_only_the_named_arms_train_and_the_others_report_what_has_finished(monkeypatch, tmp_path):
    from reproductions import reproduce as runner

    asked: dict[str, int] = {}

    def model_arm(claim, arm, xs, seeds, out, quick, workers, *args, **kwargs):
        asked[arm.name] = workers
        return {}

    def peer_arm(claim, arm, xs, seeds, out, quick, train, *args):
        asked[arm.name] = int(train)
        return {}, None

    monkeypatch.setattr(runner, "run_model_arm", model_arm)
    monkeypatch.setattr(runner.peer, "run_peer_arm", peer_arm)
    monkeypatch.setattr(runner, "logreg_on_pairs", lambda *a: {peer.METRIC: 0.5})
    runner.reproduce(["mvae-weak-supervision"], True, 1, 1, tmp_path, tmp_path / "r.md", tmp_path / "f", ["x"],
                     echo=lambda s: None, only=["poe", "multivae-mvae"])
    claim = catalogue.find(["mvae-weak-supervision"])[0]
    assert asked == {a.name: int(a.name in ("poe", "multivae-mvae")) for a in claim.arms if a.kind != "logreg"}
