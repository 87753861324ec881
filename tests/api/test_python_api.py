"""docs/python-api.md's examples run as written (one epoch of recipes/digits.yaml), and the export they
make loads without the data or the source run."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import modkit

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "python-api.md"


def doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_api_is_public():
    assert {"train", "load", "load_weights", "Run"} <= set(modkit.__all__)
    assert all(callable(getattr(modkit, name)) for name in ("train", "load", "load_weights"))


@pytest.mark.slow
def test_the_documented_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    blocks = doc_blocks()
    assert len(blocks) == 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - the documentation's own code
    run, images, captions, prior = namespace["run"], namespace["images"], namespace["captions"], namespace["prior"]
    assert run.run_dir == Path("runs/digits-api") and (run.run_dir / "checkpoint.safetensors").is_file()
    assert len(images) == 4 and all(isinstance(i, np.ndarray) and i.shape == (8, 8, 3) for i in images)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    assert set(prior) == set(run.model.names) and all(len(v) == 3 for v in prior.values())
    assert namespace["posterior"].mean.shape == (1, 1, run.recipe.model.latent_dim)
    assert 0 <= namespace["result"]["summary"]["coherence/image->label/label"] <= 1
    exported = Path("exported/digits")
    assert sorted(p.name for p in exported.iterdir()) == ["model.safetensors", "recipe.yaml", "tokenizers"]

    # the export is self-contained: no source run, no data (the dataset would fail if it were read)
    shutil.rmtree("runs")
    import modkit.training.builder as builder

    def no_data(*_a, **_k):
        raise AssertionError("an exported model read the dataset")

    monkeypatch.setattr(builder, "load_records", no_data)
    again = modkit.load(exported, "cpu")
    for key, value in namespace["run"].model.state_dict().items():
        assert (again.model.state_dict()[key].cpu() == value.cpu()).all(), key
    assert isinstance(again.generate(given={"label": "three"}, target="caption", n=1)[0], str)
    with pytest.raises(modkit.ModkitError, match="exported model"):
        again.evaluate()
    # the command line reads an export too: generate and sample work, eval says why it cannot
    from run_helpers import cli, one_error_line

    assert cli("sample", exported, "-n", "2", "--device", "cpu", "--out", "prior.png").exit_code == 0
    assert Path("prior.png").is_file() and not (exported / "generated").exists()
    assert "is an exported model" in one_error_line(cli("eval", exported, "--device", "cpu"))


def test_train_from_a_dict_and_resume(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from run_helpers import tiny_raw

    run = modkit.train(tiny_raw(), overrides=["train.epochs=1"], out="a", echo=lambda s: None)
    assert run.recipe.train.epochs == 1 and (tmp_path / "a" / "recipe.yaml").is_file()
    resumed = modkit.train(resume="a", overrides={"train.epochs": 2}, echo=lambda s: None)
    assert yaml.safe_load((tmp_path / "a" / "recipe.yaml").read_text())["train"]["epochs"] == 1  # the run's recipe stays
    assert len((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()) == 2 and resumed.checkpoint_epoch == 2
    with pytest.raises(modkit.ModkitError, match="holds a run"):
        modkit.train(tiny_raw(), out="a")
    assert set(modkit.load_weights("a")) == set(run.model.state_dict())
