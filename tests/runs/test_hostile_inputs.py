"""The hostile and careless cases that are not about run files: each is one `error:` line
(or, for summary.json, a documented null and a warning), never a traceback, a hang or an escape."""
from __future__ import annotations

import json
import math
import resource
import shutil
from pathlib import Path

import pytest
import yaml
from modkit.config.recipe import load_recipe, read_yaml
from modkit.errors import RecipeError
from modkit.storage import files

from run_helpers import COMMANDS, cli, one_error_line, tiny_raw


def write(tmp_path: Path, text: str | bytes, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x]"] + [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, "
                  f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]"
                  for i in range(8)]) + "\nmodalities: {image: {type: image, options: *i}}\n"


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    assert len(BOMB) < 1000  # 9**9 ≈ 387 million strings if expanded
    path = write(tmp_path, BOMB)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(RecipeError, match="line 1: YAML anchors and aliases .* are not allowed"):
        read_yaml(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: nothing was expanded
    line = one_error_line(cli("train", path))
    assert "anchors and aliases" in line


def test_an_alias_in_a_set_value_is_refused_too(tmp_path):
    path = write(tmp_path, yaml.safe_dump(tiny_raw()))
    with pytest.raises(RecipeError, match="anchors and aliases"):
        load_recipe(path, ["train.epochs=[&a 1, *a]"])


def test_duplicate_keys_are_refused_naming_key_and_line(tmp_path):
    text = yaml.safe_dump(tiny_raw(), sort_keys=False)
    text = text.replace("modalities:\n", "modalities:\n  image:\n    type: label\n", 1)  # `image` twice; last used to win
    line = one_error_line(cli("train", write(tmp_path, text)))
    assert "key 'image' is given twice in one mapping" in line and "line " in line


@pytest.mark.parametrize("name", ["../x", "/tmp/abs", "x" * 5000, ".hidden", "a/b"])
def test_a_run_name_cannot_leave_runs_dir(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    raw = tiny_raw()
    raw["name"] = name
    line = one_error_line(cli("train", write(tmp_path, yaml.safe_dump(raw))))
    assert "name:" in line and len(line) < 400
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]  # no folder made anywhere


@pytest.mark.parametrize("key, value", [("train.lr", ".inf"), ("train.lr", ".nan"), ("model.beta.end", ".inf"),
                                        ("modalities.image.weight", ".nan")])
def test_non_finite_numbers_are_refused(tmp_path, key, value):
    path = write(tmp_path, yaml.safe_dump(tiny_raw()))
    line = one_error_line(cli("train", path, "--set", f"{key}={value}"))
    assert key in line and "finite" in line


def test_a_non_utf8_recipe_is_one_line(tmp_path):
    path = write(tmp_path, yaml.safe_dump(tiny_raw()).encode() + b"# caf\xe9\n")
    line = one_error_line(cli("train", path))
    assert "not UTF-8 text" in line and str(path) in line


@pytest.mark.parametrize("command", ["sample", "eval", "generate"])
def test_an_unknown_device_is_one_line(trained, command):
    args = [a for a in COMMANDS[command](trained) if a != "cpu"]
    args[args.index("--device") + 1:args.index("--device") + 1] = ["tpu"]
    assert "device 'tpu' is not one modkit runs on" in one_error_line(cli(*args))


@pytest.mark.parametrize("content", ["{}", "[]", '{"modalities": ["image"], "coherence": {"cross": 3}}'])
def test_a_malformed_eval_json_is_one_line(trained, tmp_path, content):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "eval.json").write_text(content)
    line = one_error_line(cli(*COMMANDS["report"](run)))
    assert "eval.json" in line and "--refresh" in line


def test_pair_names_from_eval_json_never_reach_a_path(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    result = json.loads((run / "eval.json").read_text())
    evil = "../../../escaped"
    result["relatedness"] = {f"{evil}~{evil}": {"paired_mean": 1.0, "unpaired_mean": 2.0, "auc": 0.5,
                                                "histogram": {"edges": [0, 1, 2], "paired": [1, 1], "unpaired": [1, 1]}}}
    (run / "eval.json").write_text(json.dumps(result))
    cli(*COMMANDS["report"](run))
    assert not list(tmp_path.rglob("*escaped*.png")) or all(run / "report" in p.parents for p in tmp_path.rglob("*escaped*.png"))
    assert not (tmp_path.parent / "escaped").exists() and not list(tmp_path.parent.glob("*escaped*"))


def test_summary_json_never_holds_infinity(tmp_path, monkeypatch):
    bad: list[str] = []
    files.write_json(tmp_path / "s.json", {"a": math.inf, "b": {"c": math.nan}, "d": [1.0, -math.inf], "e": 2.5})
    text = (tmp_path / "s.json").read_text()
    assert json.loads(text) == {"a": None, "b": {"c": None}, "d": [1.0, None], "e": 2.5} and "Infinity" not in text
    assert files.write_json(tmp_path / "s.json", {"a": math.inf}) == ["a"]
    del bad
    # a training whose test metric is infinite: exit 0, null in summary.json, and a warning naming it
    from modkit.runs import callbacks

    real = callbacks.test_metrics
    monkeypatch.setattr(callbacks, "test_metrics", lambda *a, **k: {**real(*a, **k), "test/elbo": -math.inf})
    monkeypatch.chdir(tmp_path)
    result = cli("train", write(tmp_path, yaml.safe_dump(tiny_raw())), "--out", "run")
    assert result.exit_code == 0, result.output
    assert "warning: test/elbo was not finite (NaN or infinite); summary.json holds null for it" in result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test/elbo"] is None
