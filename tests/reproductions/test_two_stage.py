"""python -m reproductions: two-stage arms (pre-train, then fine-tune from the run of the same seed and x) on digits
latent mixing, resumed without retraining; the sweep engine's ``{seed}`` field they rely on."""
from __future__ import annotations

import json

import pytest
import yaml

from modkit.errors import ModkitError
from reproductions import claims as catalogue
from reproductions.claims import INIT_KEY, Arm, Claim
from reproductions.reproduce import reproduce

FAST = ("train.epochs=1", "data.batch_size=512")
DOWN = ("model.fusion.downstream.task=label",)


def toy(*arms: Arm) -> Claim:
    return Claim(id="toy-two-stage", title="toy", source="s", statement="st", paper_number="p",
                 metric="balanced_accuracy/image->label", metric_label="m", arms=arms, subject=arms[1].name,
                 baseline=arms[-1].name, x_key="data.paired_fraction", xs=(0.5, 1.0))


def init_from(run_dir) -> str | None:
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    return recipe["model"]["fusion"].get("downstream", {}).get("init_from")


@pytest.mark.slow
def test_each_fine_tuning_run_starts_from_the_pretraining_run_of_its_seed_and_x(tmp_path, monkeypatch):
    claim = toy(Arm("pre", "digits-latent_mix.yaml", FAST, kind="pretrain"),  # once per seed, at no x
                Arm("down", "digits-latent_mix.yaml", FAST + DOWN, after="pre"),
                Arm("pre-x", "digits-latent_mix.yaml", FAST),  # swept over x: the start depends on x too
                Arm("down-x", "digits-latent_mix.yaml", FAST + DOWN, after="pre-x"))
    monkeypatch.setattr(catalogue, "CLAIMS", (claim,))
    out, lines = tmp_path / "r", []
    result = reproduce([], False, 2, 1, out, out / "r.md", out / "fig", ["toy"], echo=lines.append)
    runs = sorted((out / "arms").glob("*/trial-*/seed-*"))
    recipes = {str(r): yaml.safe_load((r / "recipe.yaml").read_text()) for r in runs}
    assert len(runs) == 2 + 2 * 2 + 2 * 2 + 2 * 2  # pre: a run per seed; the others: one per x and seed
    sweeps: dict = {}
    for r in runs:
        sweeps.setdefault(r.parents[1], []).append(r)
    starts = {r: init_from(r) for r in runs if init_from(r)}
    pre = next(folder for folder, rs in sweeps.items() if len(rs) == 2 and not init_from(rs[0]))  # the only one at no x
    # `down-x` is one sweep per x (each x starts from another trial of `pre-x`), `down` one over both x
    assert sorted(len(rs) for rs in sweeps.values()) == [2, 2, 2, 4, 4]
    assert len(starts) == 8 and all(s in recipes for s in starts.values())
    for run, start in starts.items():
        assert start.endswith(f"/{run.name}")  # the same seed
        source, fine = recipes[start], recipes[str(run)]
        assert not source["model"]["fusion"].get("downstream") and fine["model"]["fusion"]["downstream"]["task"] == "label"
        if not start.startswith(str(pre)):  # from `pre-x`: the run at the same x
            assert source["data"]["paired_fraction"] == fine["data"]["paired_fraction"]
    assert {s for s in starts.values() if s.startswith(str(pre))} == {str(r) for r in sweeps[pre]}
    assert len({s for s in starts.values() if not s.startswith(str(pre))}) == 4  # pre-x: 2 x × 2 seeds
    # the pre-training arm is a start, not a row; the report says which arm starts from which
    data = json.loads((out / "r.json").read_text())["claims"][0]
    assert [a["name"] for a in data["arms"]] == ["down", "pre-x", "down-x"] and data["stages"][0]["name"] == "pre"
    assert set(data["table"]["down"]) == {"0.5", "1.0"} and all(c["n"] == 2 for c in data["table"]["down-x"].values())
    assert "`down-x` starts from `pre-x`'s run of the same seed" in (out / "r.md").read_text()
    # same seed, same start, same fine-tuning: `down` and `down-x` at x = 1.0 are the same computation
    assert data["table"]["down"]["1.0"] == data["table"]["down-x"]["1.0"]
    # run again: every stage's sweep is continued, nothing retrains
    again: list[str] = []
    second = reproduce([], False, 2, 1, out, out / "r.md", out / "fig", ["toy"], echo=again.append)
    assert not any("run directory" in line for line in again)
    assert second["results"][0]["table"] == result["results"][0]["table"]


def test_an_arm_can_only_start_from_an_earlier_arm():
    for claim in catalogue.CLAIMS:
        seen: set[str] = set()
        for arm in claim.arms:
            assert not arm.after or arm.after in seen, (claim.id, arm.name)
            assert arm.kind in ("model", "logreg", "copy", "ridge", "pretrain", "best", "tune", "multivae")
            assert (arm.kind == "multivae") == bool(arm.peer)
            assert set(arm.best_of) <= seen and (arm.kind == "best") == bool(arm.best_of)
            assert set(arm.select_on) <= seen and (not arm.select_on or len(arm.select_on) == len(arm.best_of))
            seen.add(arm.name)


def test_the_sweeps_seed_field_is_each_runs_seed(tmp_path):
    from modkit import sweep
    from modkit.config.project import load_project
    from modkit.config.recipe import read_yaml
    from reproductions.reproduce import project_root

    path = project_root() / "recipes" / "digits-latent_mix.yaml"
    config = sweep.SweepConfig(study="s", out=str(tmp_path), recipe=read_yaml(path), source=str(path),
                               overrides=[f"{INIT_KEY}=runs/pre/seed-{sweep.SEED_FIELD}", "model.fusion.downstream.task=label",
                                          "seed=3,4"], sampler="grid", trials=1, objective="o", direction="maximize",
                               evaluate=False, settings={}, plot=[])
    for seed in (3, 4):
        recipe, _ = sweep.resolve(config, {}, seed, load_project())
        assert recipe.model.fusion.options["downstream"]["init_from"] == f"runs/pre/seed-{seed}" and recipe.seed == seed


@pytest.mark.slow
def test_a_later_stage_starts_from_the_folder_an_interrupted_and_retried_pretraining_continued(tmp_path, monkeypatch):
    """Ctrl-C in the pre-training's first epoch: the rerun retries its trial as a new trial number that continues
    the first trial's folder, and the fine-tuning starts from that folder (not from one named by the retry)."""
    import os
    import signal

    import optuna

    from modkit import sweep
    from modkit.training.trainer import Interrupted, Trainer

    claim = toy(Arm("pre", "digits-latent_mix.yaml", ("train.epochs=2", "data.batch_size=256"), kind="pretrain"),
                Arm("down", "digits-latent_mix.yaml", FAST + DOWN, after="pre"),
                Arm("base", "digits-latent_mix.yaml", FAST))
    monkeypatch.setattr(catalogue, "CLAIMS", (claim,))
    original, calls = Trainer.end_epoch, []

    def interrupt_once(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if not calls:
            calls.append(1)
            os.kill(os.getpid(), signal.SIGINT)  # the trainer checkpoints after its next step and stops

    monkeypatch.setattr(Trainer, "end_epoch", interrupt_once)
    out = tmp_path / "r"
    with pytest.raises(Interrupted):
        reproduce([], False, 1, 1, out, out / "r.md", out / "fig", ["toy"], echo=lambda s: None)
    result = reproduce([], False, 1, 1, out, out / "r.md", out / "fig", ["toy"], echo=lambda s: None)
    pre = next(p.parent for p in (out / "arms").glob("*/sweep.json") if not (p.parent / "trial-0001").exists()
               and len(list(p.parent.glob("trial-*/seed-*"))) == 1 and not init_from(next(p.parent.glob("trial-*/seed-*"))))
    config, url = sweep.locate(str(pre), None, None)
    trials = optuna.load_study(study_name=config.study, storage=url).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"] and trials[1].user_attrs["first_trial"] == 0
    starts = {init_from(r) for r in (out / "arms").glob("*/trial-*/seed-*") if init_from(r)}
    assert starts == {str(pre / "trial-0000" / "seed-0")}  # the retry's runs are in its first trial's folder
    assert all(c["n"] == 1 for c in result["results"][0]["table"]["down"].values())
