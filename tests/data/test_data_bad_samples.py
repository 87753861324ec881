"""Bad data end to end through `modkit train`: a clear one-line error naming the file and row, or
skipped and counted per epoch in metrics.jsonl (and in summary.json for the test split)."""
import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from modkit.cli.main import main

GOOD = 20


def write_data(root, corrupt_train=True, bad_label=True, inconsistent=True, corrupt_test=True):
    """A manifest of 4×4 grey images and labels 0-2; each flag plants one bad training or test row."""
    (root / "img").mkdir(parents=True)
    lines = []
    for i in range(GOOD):
        Image.fromarray(np.full((4, 4), 10 * i, dtype=np.uint8)).save(root / "img" / f"{i}.png")
        lines.append({"image": f"img/{i}.png", "label": i % 3, "split": "test" if i % 4 == 0 else "train"})
    (root / "img" / "broken.png").write_bytes(b"this is not a PNG file")
    if corrupt_train:
        lines.insert(2, {"image": "img/broken.png", "label": 1, "split": "train"})
    if bad_label:
        lines.insert(5, {"image": "img/3.png", "label": 7, "split": "train"})
    if inconsistent:
        lines.insert(7, {"image": "img/4.png", "label": "seven", "split": "train"})
    if corrupt_test:
        lines.append({"image": "img/broken.png", "label": 0, "split": "test"})
    (root / "m.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return lines


def write_recipe(root, on_bad_sample, workers=0):
    recipe = {
        "name": "bad",
        "data": {"dataset": {"type": "manifest", "path": "m.jsonl"}, "root": str(root), "batch_size": 4,
                 "on_bad_sample": on_bad_sample, "num_workers": workers},
        "modalities": {"image": {"type": "image", "shape": [1, 4, 4], "hidden": [16]},
                       "label": {"type": "label", "num_classes": 3, "hidden": [16], "embedding_dim": 4}},
        "model": {"latent_dim": 4},
        "train": {"epochs": 2, "progress": False, "device": "cpu"},
        "eval": {"samples": 2},
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return root / "recipe.yaml"


def train(root, recipe):
    return CliRunner().invoke(main, ["train", str(recipe), "--out", str(root / "run")])


def test_inconsistent_row_stops_before_training(tmp_path):
    write_data(tmp_path)
    result = train(tmp_path, write_recipe(tmp_path, "error"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'm.jsonl'} line 8: field 'label' is a string")
    assert "set data.on_bad_sample: skip" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


@pytest.mark.parametrize("bad, message", [({"corrupt_train": True, "bad_label": False}, "line 3, field 'image': cannot read image"),
                                          ({"corrupt_train": False, "bad_label": True}, "line 6, field 'label': label 7 is outside 0..2")])
def test_bad_values_name_the_file_and_line(tmp_path, bad, message):
    write_data(tmp_path, inconsistent=False, corrupt_test=False, **bad)
    result = train(tmp_path, write_recipe(tmp_path, "error"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"error: {tmp_path / 'm.jsonl'} {message}"), last


@pytest.mark.parametrize("workers", [0, 1])
def test_skip_counts_every_bad_sample_per_epoch(tmp_path, workers):
    write_data(tmp_path)
    result = train(tmp_path, write_recipe(tmp_path, "skip", workers))
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["skipped_samples"] for row in metrics] == [3, 3]  # corrupt image, label 7, inconsistent row
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test/skipped_samples"] == 1
    assert "skipped 3 bad samples" in result.output
    assert (tmp_path / "run" / "samples.png").exists()


def test_clean_data_logs_no_skips(tmp_path):
    write_data(tmp_path, corrupt_train=False, bad_label=False, inconsistent=False, corrupt_test=False)
    result = train(tmp_path, write_recipe(tmp_path, "skip"))
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("skipped_samples" not in row for row in metrics)
