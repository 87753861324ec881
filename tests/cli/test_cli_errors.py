"""Bad recipes exit non-zero with one line naming the key and what is allowed, and no traceback."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_recipes import base_recipe

ROOT = Path(__file__).resolve().parents[2]


def modkit(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "modkit", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def write(tmp_path, raw, name="r.yaml"):
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return path


base = base_recipe


def mutate(fn):
    raw = base()
    fn(raw)
    return raw


CASES = [
    ("unknown modality", mutate(lambda r: r["modalities"]["image"].update(type="imagez")), "modalities.image.type", "available: "),
    ("unknown fusion", mutate(lambda r: r["model"].update(fusion="nope")), "model.fusion", "available:"),
    ("unknown sampler", mutate(lambda r: r["model"].update(sampler={"type": "most"})), "model.sampler", "available: all, full, mvae, random, singles"),
    ("unknown dataset", mutate(lambda r: r["data"].update(dataset="mnist9")), "data.dataset", "available:"),
    ("unknown top key", mutate(lambda r: r.update(trian={})), "trian", "unknown key (allowed: name, seed, plugins"),
    ("unknown train key", mutate(lambda r: r["train"].update(epoch=3)), "train.epoch", "allowed: epochs"),
    ("unknown modality option", mutate(lambda r: r["modalities"]["image"].update(hiden=[3])), "modalities.image.hiden", "allowed:"),
    ("wrong type", mutate(lambda r: r["train"].update(lr="fast")), "train.lr", "number"),
    ("bad literal", mutate(lambda r: r["modalities"]["image"].update(likelihood="poisson")), "modalities.image.likelihood", "bernoulli"),
    ("missing key", mutate(lambda r: r["modalities"]["label"].pop("num_classes")), "modalities.label.num_classes", "missing"),
    ("inconsistent shape", mutate(lambda r: r["modalities"]["image"].update(shape=[1, 28, 28])), "modalities.image", "shape"),
    ("too few classes", mutate(lambda r: r["modalities"]["label"].update(num_classes=5, class_names=None)), "modalities.label", "num_classes 5"),
    ("unknown field", mutate(lambda r: r["modalities"]["label"].update(field="digit")), "modalities.label.field", "fields: image, label"),
    ("bad device", mutate(lambda r: r["train"].update(device="tpu")), "train.device", "auto, cpu, cuda"),
    ("no modalities", mutate(lambda r: r.update(modalities={})), "modalities", "at least one"),
    ("names mismatch", mutate(lambda r: r["modalities"]["label"].update(class_names=["a", "b"])), "modalities.label.class_names", "2 names for 10"),
]


@pytest.mark.parametrize("title,raw,key,allowed", CASES, ids=[c[0] for c in CASES])
def test_bad_recipe_clear_error(tmp_path, monkeypatch, title, raw, key, allowed):
    """In-process (fast): the CLI must exit through SystemExit with a one-line message, not an exception."""
    from click.testing import CliRunner

    from modkit.cli.main import main

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["train", str(write(tmp_path, raw)), "--out", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and key in line and allowed in line, line
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


@pytest.mark.slow
def test_bad_recipe_in_a_real_process(tmp_path):
    raw = mutate(lambda r: r["model"].update(fusion="nope"))
    result = modkit("train", str(write(tmp_path, raw)), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip().splitlines()[-1]]
    assert "model.fusion: unknown fusion 'nope'" in result.stderr


@pytest.mark.slow
def test_missing_file_and_bad_yaml(tmp_path):
    result = modkit("train", str(tmp_path / "absent.yaml"), cwd=tmp_path)
    assert result.returncode == 2 and "recipe file not found" in result.stderr and "Traceback" not in result.stderr
    result = modkit("train", str(write(tmp_path, "name: [unclosed\n")), cwd=tmp_path)
    assert result.returncode == 2 and "not valid YAML at line" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_bad_set_override(tmp_path):
    result = modkit("train", str(write(tmp_path, base())), "--set", "train.epochs", cwd=tmp_path)
    assert result.returncode == 2 and "--set" in result.stderr and "key=value" in result.stderr
    result = modkit("train", str(write(tmp_path, base())), "--set", "train.epochs=-1", cwd=tmp_path)
    assert result.returncode == 2 and "train.epochs" in result.stderr


@pytest.mark.slow
def test_resume_of_a_non_run_dir(tmp_path):
    result = modkit("train", "--resume", str(tmp_path), cwd=tmp_path)
    assert result.returncode != 0 and "not a run directory" in result.stderr and "Traceback" not in result.stderr
