"""Multistage training (train.stages): the recipe's checks, what a stage freezes, and a resume in the middle of a
stage that ends where an uninterrupted run does, bit for bit."""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch

import modkit
from modkit.config.recipe import validate_recipe
from modkit.errors import RecipeError
from modkit.storage import checkpoint, state_file
from modkit.training import stages as staging
from modkit.training.trainer import Trainer
from tiny_recipes import tiny_recipe_dict

STEPS_PER_EPOCH = 23  # ceil(1438 training digits / 64)
FAST = ("train.device=cpu", "train.progress=false", "eval.coherence=false", "eval.samples=1",
        "train.optimizer=adamw", "train.weight_decay=0.1")
ENCODERS = "modalities.*.encoder"


def staged(*stages: dict, sets: tuple[str, ...] = ()) -> dict:
    raw = tiny_recipe_dict(*FAST, *sets)
    del raw["train"]["epochs"]
    raw["train"]["stages"] = list(stages)
    return raw


def two_stages(first: int = 2, second: int = 2) -> dict:
    return staged({"name": "warm", "epochs": first}, {"name": "decoders", "epochs": second, "freeze": [ENCODERS]})


def ckpt(run) -> dict:
    return state_file.read(run / "checkpoint.safetensors", checkpoint.KIND, checkpoint.CHECKPOINT_FORMAT)


def rows(run) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in ("time_s", "cpu_s")}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


# -- the recipe ------------------------------------------------------------------------------------

def test_stage_epochs_make_the_run_length():
    assert validate_recipe(two_stages(2, 3)).train.epochs == 5


def test_train_epochs_that_disagree_with_the_stages_is_an_error():
    raw = two_stages(2, 3)
    raw["train"]["epochs"] = 4
    with pytest.raises(RecipeError, match="train.epochs is 4 but the stages' epochs add up to 5"):
        validate_recipe(raw)


def test_a_stage_name_given_twice_is_an_error():
    with pytest.raises(RecipeError, match="stage name 'a' is given twice"):
        validate_recipe(staged({"name": "a", "epochs": 1}, {"name": "a", "epochs": 1}))


def _build(raw: dict):
    from modkit.plugins.loader import load_plugins
    from modkit.training.builder import build

    recipe = validate_recipe(raw)
    setup = build(recipe, load_plugins(recipe.plugins))
    return recipe, setup.model


def test_a_freeze_pattern_that_matches_nothing_names_its_key():
    recipe, model = _build(staged({"name": "a", "epochs": 1}, {"name": "b", "epochs": 1, "freeze": ["modalities.*.decodr"]}))
    with pytest.raises(RecipeError) as info:
        staging.resolve(recipe, model)
    assert info.value.key == "train.stages.1.freeze.0"
    assert "'modalities.*.decodr' matches no parameter" in str(info.value) and "\n" not in str(info.value)


def test_freezing_everything_is_an_error():
    recipe, model = _build(staged({"name": "a", "epochs": 1, "freeze": ["modalities"]}))
    with pytest.raises(RecipeError, match="freezes every parameter"):
        staging.resolve(recipe, model)


def test_an_objective_for_a_fusion_without_objectives_is_an_error():
    recipe, model = _build(staged({"name": "a", "epochs": 1, "objective": "joint"}))
    with pytest.raises(RecipeError) as info:
        staging.resolve(recipe, model)
    assert info.value.key == "train.stages.0.objective"


def test_patterns_match_whole_components():
    assert staging.matches("modalities.image.decoder.net.0.weight", "modalities.*.decoder")
    assert staging.matches("fusion.joint.head.mu.weight", "fusion.joint")
    assert not staging.matches("fusion.jointly.weight", "fusion.joint")  # a prefix of a component is not a part
    assert not staging.matches("modalities.image.encoder.decoder", "modalities.*.decoder")


# -- training --------------------------------------------------------------------------------------

def _model(run) -> dict[str, torch.Tensor]:
    return ckpt(run)[checkpoint.MODEL]


def test_frozen_parameters_do_not_move_and_the_others_do(tmp_path):
    """The two-stage run's encoders end where a run of its first stage alone ends (same seed, same steps):
    no gradient, no weight decay, no momentum moved them in the second stage; its decoders moved on."""
    out = []
    modkit.train(two_stages(), out=tmp_path / "staged", echo=out.append)
    modkit.train(staged({"name": "warm", "epochs": 2}), out=tmp_path / "first")
    both, first = _model(tmp_path / "staged"), _model(tmp_path / "first")
    encoders = [k for k in both if staging.matches(k, ENCODERS)]
    decoders = [k for k in both if staging.matches(k, "modalities.*.decoder")]
    assert encoders and decoders
    for key in encoders:
        assert torch.equal(both[key], first[key]), key
    assert all(not torch.equal(both[key], first[key]) for key in decoders)
    # the optimizer of the second stage holds the unfrozen parameters alone
    state = ckpt(tmp_path / "staged")
    assert state["stage"] == "decoders"
    assert len(state["optimizer"]["param_groups"][0]["params"]) == len(both) - len(encoders)
    # one run directory; its history and console say which stage each epoch belongs to
    assert [r["stage"] for r in rows(tmp_path / "staged")] == ["warm", "warm", "decoders", "decoders"]
    text = "\n".join(out)
    assert "stage 1/2 'warm': epochs 1-2, objective 'warm', nothing frozen" in text
    assert f"stage 2/2 'decoders': epochs 3-4, objective 'decoders', freezing {ENCODERS}" in text
    assert "epoch 3/4  [decoders]" in text


class _Recorder:
    """A fusion-side view of the seam: what ``model.stage`` was at each loss call."""

    def __init__(self, monkeypatch):
        from modkit.core.engine import MultimodalVAE

        self.seen: list[str | None] = []
        forward = MultimodalVAE.forward

        def record(model, *args, **kwargs):
            self.seen.append(model.stage)
            return forward(model, *args, **kwargs)

        monkeypatch.setattr(MultimodalVAE, "forward", record)


def test_the_fusion_is_told_each_stages_objective(tmp_path, monkeypatch):
    recorder = _Recorder(monkeypatch)
    raw = staged({"name": "warm", "epochs": 1}, {"name": "decoders", "epochs": 1, "freeze": [ENCODERS]})
    modkit.train(raw, out=tmp_path / "run")
    assert recorder.seen == ["warm"] * STEPS_PER_EPOCH + ["decoders"] * STEPS_PER_EPOCH


@pytest.mark.parametrize("stop_at", [2 * STEPS_PER_EPOCH + 1, 2 * STEPS_PER_EPOCH + 10])
def test_resume_in_the_middle_of_a_stage_equals_an_uninterrupted_run(tmp_path, monkeypatch, stop_at):
    """Ctrl-C in the second stage (its first step, and mid-epoch), then --resume: the same stage, the same frozen set,
    and at the end the same parameters, optimizer state and history as a run never interrupted."""
    modkit.train(two_stages(), out=tmp_path / "reference")
    accumulate = Trainer.accumulate

    def interrupt(self, *args, **kwargs):
        accumulate(self, *args, **kwargs)
        if self.state.global_step == stop_at:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Trainer, "accumulate", interrupt)
    with pytest.raises(modkit.ModkitError, match="interrupted by SIGINT"):
        modkit.train(two_stages(), out=tmp_path / "run")
    monkeypatch.setattr(Trainer, "accumulate", accumulate)
    saved = ckpt(tmp_path / "run")
    assert saved["global_step"] == stop_at and saved["stage"] == "decoders"
    out = []
    modkit.train(resume=tmp_path / "run", echo=out.append)
    assert any(line.startswith("stage 2/2 'decoders'") for line in out) and not any("stage 1/2" in line for line in out)
    a, b = ckpt(tmp_path / "reference"), ckpt(tmp_path / "run")
    for key, value in a[checkpoint.MODEL].items():
        assert torch.equal(value, b[checkpoint.MODEL][key]), key
    for pid, state in a["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][pid][key]), (pid, key)
    assert rows(tmp_path / "run") == rows(tmp_path / "reference")
