"""End to end: `modkit train` on a tiny recipe, its run directory, then `--resume`."""
import json
import subprocess
import sys

import pytest
import torch
import yaml
from click.testing import CliRunner

from modkit.cli.main import main
from modkit.config.project import load_project
from modkit.config.recipe import load_recipe
from modkit.storage.checkpoint import load_checkpoint


def run_cli(args, cwd):
    result = subprocess.run([sys.executable, "-m", "modkit", *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.slow
def test_train_writes_run_directory_and_resume_continues_exactly(tiny_recipe, tmp_path):
    run = tmp_path / "run"
    out = run_cli(["train", str(tiny_recipe), "--out", str(run)], cwd=tmp_path).stdout
    assert "epoch 2/2" in out and "summary.json" in out.splitlines()[-1]
    assert "balanced_accuracy/image->label" in (run / "summary.json").read_text()
    for name in ["recipe.yaml", "metrics.jsonl", "metrics.csv", "checkpoint.safetensors", "samples.png", "samples.md", "summary.json"]:
        assert (run / name).is_file(), name
    text = (run / "samples.md").read_text()  # the label renders as text: its class names, per source column
    assert "| modality | data | from all | from image | from label |" in text and "| label |" in text
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train/loss", "train/kl", "train/rec/image", "train/rec/label", "beta", "lr"} <= set(rows[0])
    assert (run / "metrics.csv").read_text().splitlines()[0].startswith("epoch,step,lr,beta")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["test/elbo"] < 0 and 0 <= summary["balanced_accuracy/image->label"] <= 1
    resolved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert resolved["train"]["epochs"] == 2 and resolved["model"]["sampler"]["type"] == "mvae"

    # resume to 3 epochs; must equal a straight 3-epoch run (epoch-seeded batches, restored RNG and optimizer)
    out = run_cli(["train", "--resume", str(run), "--set", "train.epochs=3"], cwd=tmp_path).stdout
    assert "resuming" in out and "epoch 3/3" in out and "epoch 1/3" not in out
    straight = tmp_path / "straight"
    run_cli(["train", str(tiny_recipe), "--set", "train.epochs=3", "--out", str(straight)], cwd=tmp_path)
    a = load_checkpoint(run)["model"]
    b = load_checkpoint(straight)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    rows_resumed = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows_straight = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/loss"] for r in rows_resumed] == [r["train/loss"] for r in rows_straight]
    # what training cost: the epochs' own seconds summed, over both lives of the resumed run
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_seconds"] == pytest.approx(sum(r["time_s"] for r in rows_resumed), abs=1e-2)
    assert summary["train_cpu_seconds"] == pytest.approx(sum(r["cpu_s"] for r in rows_resumed), abs=1e-2)
    assert all(r["time_s"] > 0 and r["cpu_s"] > 0 for r in rows_resumed)


def test_out_dir_holding_a_run_is_not_overwritten(tiny_recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"precious")
    result = CliRunner().invoke(main, ["train", str(tiny_recipe), "--out", str(run)])
    assert result.exit_code != 0 and "--resume" in result.stderr
    assert (run / "checkpoint.pt").read_bytes() == b"precious"


def test_precedence_toml_recipe_set(tmp_path, tiny_recipe):
    (tmp_path / "modkit.toml").write_text('[modkit]\nruns_dir = "out"\ndevice = "cpu"\nseed = 11\n')
    sub = tmp_path / "deep" / "er"
    sub.mkdir(parents=True)
    project = load_project(sub)  # found from a subdirectory upward
    assert project.runs_dir == tmp_path / "out" and project.seed == 11
    raw = yaml.safe_load(tiny_recipe.read_text())
    raw.pop("seed", None)
    raw["train"].pop("device", None)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    recipe, _ = load_recipe(path, [], project)
    assert recipe.seed == 11 and recipe.train.device == "cpu"  # toml fills what the recipe lacks
    raw["seed"] = 3
    path.write_text(yaml.safe_dump(raw))
    recipe, _ = load_recipe(path, ["seed=4", "train.lr=3e-4", "model.sampler.k=2"], project)
    assert recipe.seed == 4 and recipe.train.lr == 3e-4 and recipe.model.sampler.options == {"k": 2}


def test_default_runs_dir_from_toml(tmp_path, tiny_recipe, monkeypatch):
    (tmp_path / "modkit.toml").write_text('[modkit]\nruns_dir = "myruns"\n')
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["train", str(tiny_recipe), "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.output + str(result.exception)
    runs = list((tmp_path / "myruns").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("tiny-") and (runs[0] / "summary.json").is_file()


def test_bad_toml_is_a_clear_error(tmp_path, tiny_recipe, monkeypatch):
    (tmp_path / "modkit.toml").write_text('[modkit]\nrun_dir = "x"\n')
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["train", str(tiny_recipe)])
    assert result.exit_code == 2 and "modkit.run_dir" in result.stderr and "allowed" in result.stderr
