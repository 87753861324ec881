"""A run or exported folder from someone else: opening it never runs code, never exhausts memory, never
leaks a secret, and every bad file in it is one `error:` line. Each test builds the hostile folder for real
and runs the real command (in a subprocess where the case is about the process: its path, its memory)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modkit.errors import ModkitError
from run_helpers import ROOT, cli, one_error_line

# no empty entry: an empty PYTHONPATH entry means the working directory, the very thing these tests keep off the path
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")] if p)}


def modkit_process(*args, cwd: Path, timeout: int = 180, preexec=None) -> subprocess.CompletedProcess:
    """The command line in its own process, as ``python -m modkit`` (the form that puts the folder on the path)."""
    return subprocess.run([sys.executable, "-m", "modkit", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=ENV, timeout=timeout, preexec_fn=preexec)




def set_recipe(run: Path, **changes) -> None:
    raw = yaml.safe_load((run / "recipe.yaml").read_text())
    raw.update(changes)
    (run / "recipe.yaml").write_text(yaml.safe_dump(raw))


# -- opening a folder runs no code ------------------------------------------------------------------

def test_a_recipe_naming_a_module_is_refused_on_load_naming_it_and_the_opt_in(copy):
    run = copy()
    set_recipe(run, plugins=["this"])  # the standard library's Zen of Python prints when imported
    result = modkit_process("sample", run, "-n", "2", "--device", "cpu", cwd=run.parent)
    assert result.returncode != 0 and "Beautiful is better" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'this'" in lines[0] and "--trust-plugins" in lines[0], result.stderr
    for command in (["generate", run, "--target", "image", "-n", "1", "--device", "cpu"],
                    ["eval", run, "--metrics", "coherence", "--max-items", "10", "--device", "cpu"]):
        assert "--trust-plugins" in one_error_line(cli(*command))


def test_the_python_api_imports_a_recipe_module_only_when_named(copy, tmp_path, monkeypatch):
    import modkit

    shared = copy("shared")
    marker = tmp_path / "RAN"
    (shared / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    set_recipe(shared, plugins=["shared.evil"])
    monkeypatch.syspath_prepend(str(tmp_path))  # a notebook started here has its folder on the path
    with pytest.raises(ModkitError, match=r"'shared.evil'.*plugins=\['shared.evil'\]"):
        modkit.load("shared", "cpu")
    assert not marker.exists()
    run = modkit.load("shared", "cpu", plugins=["shared.evil"])  # the explicit opt-in imports it
    assert marker.exists() and run.model is not None


def test_a_modkit_toml_inside_the_folder_is_ignored_and_the_folder_is_not_on_the_path(copy, tmp_path):
    run = copy()
    marker = tmp_path / "RAN"
    (run / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (run / "click.py").write_text(f"open({str(marker)!r}, 'w').close()\n")  # shadows a module modkit imports
    (run / "modkit.toml").write_text('[modkit]\nplugins = ["evil"]\n')
    result = modkit_process("sample", ".", "-n", "2", "--device", "cpu", "--out", tmp_path / "s.png", cwd=run)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()


def test_child_processes_start_with_a_safe_path(monkeypatch, tmp_path):
    """Sweep workers run ``python -P`` with PYTHONSAFEPATH; torchrun's workers inherit PYTHONSAFEPATH."""
    import torch.distributed.run as torchrun

    from modkit.training import distributed

    seen = {}
    monkeypatch.delenv("PYTHONSAFEPATH", raising=False)
    monkeypatch.setattr(torchrun, "run", lambda args: seen.update(env=os.environ.get("PYTHONSAFEPATH"), args=args))
    assert distributed.launch(2, ["r.yaml"]) == 0
    assert seen["env"] == "1" and "PYTHONSAFEPATH" not in os.environ
    # and the interpreter honours it: a ./click.py beside a `python -m modkit` child is never imported
    (tmp_path / "click.py").write_text("raise SystemExit('stray click.py ran')\n")
    env = {**ENV, "PYTHONSAFEPATH": "1"}
    out = subprocess.run([sys.executable, "-P", "-m", "modkit", "--version"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "stray" not in out.stderr



# -- tiny files never make huge allocations ---------------------------------------------------------

def grown_kib(fn) -> tuple[object, int]:
    """What ``fn`` returns (or raises) and how far this process's peak memory grew meanwhile (KiB)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = fn()
    return result, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before


def test_a_recipe_asking_for_a_huge_model_is_refused_before_it_is_built(copy):
    run = copy()
    raw = yaml.safe_load((run / "recipe.yaml").read_text())
    raw["modalities"]["image"]["hidden"] = [60000, 60000]  # 14 GB of weights; the checkpoint holds 16-wide layers
    (run / "recipe.yaml").write_text(yaml.safe_dump(raw))
    assert len((run / "recipe.yaml").read_bytes()) < 2000
    result, grew = grown_kib(lambda: cli("sample", run, "-n", "2", "--device", "cpu"))
    line = one_error_line(result)
    assert "does not fit the model its recipe builds" in line and "[60000, 64]" in line and "Nothing was built" in line
    assert grew < 300_000  # KiB: the model was counted on the meta device, never allocated


def test_training_a_model_larger_than_memory_is_refused_before_anything_is_allocated(tmp_path, monkeypatch):
    from run_helpers import tiny_raw

    monkeypatch.chdir(tmp_path)
    raw = tiny_raw()
    raw["modalities"]["image"]["hidden"] = [60000, 60000]
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(raw))
    result, grew = grown_kib(lambda: cli("train", tmp_path / "big.yaml", "--out", tmp_path / "big"))
    line = one_error_line(result)
    assert "parameters" in line and "GiB" in line and "hidden sizes smaller" in line
    assert grew < 300_000 and not (tmp_path / "big").exists()


def test_convert_refuses_an_expanded_view_before_writing(copy):
    import torch

    run = copy()
    for name in ("checkpoint.safetensors", "checkpoint.prev.safetensors"):
        (run / name).unlink(missing_ok=True)
    huge = torch.zeros(1).expand(1_600_000_000)  # 4 bytes of storage seen as 6.4 GB
    torch.save({"model": {"w": huge}, "epoch": 1}, run / "checkpoint.pt")
    assert (run / "checkpoint.pt").stat().st_size < 4000
    result, grew = grown_kib(lambda: cli("convert", run))
    line = one_error_line(result)
    assert "checkpoint.pt" in line and "expanded or overlapping view" in line
    assert grew < 300_000 and not (run / "checkpoint.safetensors").exists()


def test_too_many_samples_is_one_line_before_any_is_drawn(trained):
    for command in (["sample", trained, "-n", "1000000000", "--device", "cpu"],
                    ["generate", trained, "--target", "image", "-n", "1000000000", "--device", "cpu"]):
        result, grew = grown_kib(lambda: cli(*command))
        assert "-n 1000000000 is more than 10,000 samples" in one_error_line(result) and grew < 300_000


def test_a_sweep_grid_is_counted_not_listed(tmp_path):
    import time

    from run_helpers import tiny_raw

    (tmp_path / "r.yaml").write_text(yaml.safe_dump(tiny_raw()))
    for spec in ("train.epochs=range(1,1000000000)", "seed=range(0,1000000000)"):
        start = time.perf_counter()
        line = one_error_line(cli("sweep", tmp_path / "r.yaml", "--set", spec, "--out", tmp_path / "s"))
        assert "10,000" in line and time.perf_counter() - start < 20


# -- export copies by allow-list, never through a link, all or nothing ------------------------------

def test_export_copies_only_the_model_files_and_never_follows_a_link(copy, tmp_path):
    import modkit

    run = copy()
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    (run / "notes.txt").symlink_to(secret)
    (run / "scratch.bin").write_bytes(b"x" * 100)  # not the model's: an allow-list leaves it behind
    (run / "tokenizers").mkdir()
    (run / "tokenizers" / "caption.model").write_bytes(b"tok")
    out = modkit.load(run, "cpu").export(tmp_path / "exported")
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "recipe.yaml", "tokenizers"]
    assert (out / "tokenizers" / "caption.model").read_bytes() == b"tok"
    assert not any("PRIVATE" in p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file())

    (run / "tokenizers" / "leak.model").symlink_to(secret)  # a link inside an exported folder: refused
    with pytest.raises(ModkitError, match="leak.model is a symbolic link, not a regular file"):
        modkit.load(run, "cpu").export(tmp_path / "second")
    assert not (tmp_path / "second").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".second")]  # the staging folder is gone too


def test_a_failed_export_leaves_no_folder_behind(copy, tmp_path, monkeypatch):
    import safetensors.torch

    import modkit

    loaded = modkit.load(copy(), "cpu")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(ModkitError, match="No space left on device; nothing was left there"):
        loaded.export(tmp_path / "out")
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


@pytest.mark.slow
def test_a_fifo_named_like_the_checkpoint_never_blocks(copy, tmp_path):
    run = copy()
    (run / "checkpoint.safetensors").unlink()
    os.mkfifo(run / "checkpoint.safetensors")
    result = modkit_process("sample", run, "-n", "2", "--device", "cpu", "--out", tmp_path / "s.png", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr  # the previous checkpoint is used, and the user told why
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "is a named pipe, not a regular file" in warning[0] and "checkpoint.prev.safetensors" in warning[0]
    (run / "checkpoint.prev.safetensors").unlink()
    line = one_error_line(cli("sample", run, "-n", "2", "--device", "cpu"))
    assert "named pipe" in line


def test_a_truncated_checkpoint_falls_back_to_the_previous_one_with_a_warning(copy, tmp_path):
    run = copy()
    data = (run / "checkpoint.safetensors").read_bytes()
    (run / "checkpoint.safetensors").write_bytes(data[: len(data) // 2])
    result = cli("sample", run, "-n", "2", "--device", "cpu", "--out", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "checkpoint.safetensors" in result.stderr and "using" in result.stderr


# -- every bad file is one line -------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["folder", "symlink"])
def test_a_lock_that_is_not_a_file_is_one_line(copy, tmp_path, kind):
    run = copy()
    target = tmp_path / "elsewhere"
    target.write_text("mine")
    (run / ".modkit.lock").unlink(missing_ok=True)  # the plain file training left
    if kind == "folder":
        (run / ".modkit.lock").mkdir()
    else:
        (run / ".modkit.lock").symlink_to(target)
    line = one_error_line(cli("train", "--resume", run, "--set", "train.epochs=2"))
    assert ".modkit.lock is a" in line and "Remove it" in line
    assert target.read_text() == "mine"  # the link was never followed


def test_a_read_only_place_to_write_is_one_line(trained, tmp_path, monkeypatch):
    from modkit.reporting import figures

    def refused(items, out, **kwargs):
        raise PermissionError(13, "Permission denied", str(out))
    monkeypatch.setattr(figures, "grid", refused)
    for command in (["sample", trained, "-n", "2", "--device", "cpu", "--out", tmp_path / "s.png"],
                    ["generate", trained, "--target", "image", "-n", "2", "--device", "cpu", "--out", tmp_path / "g.png"]):
        line = one_error_line(cli(*command))
        assert "cannot write" in line and "Permission denied" in line and "choose another --out" in line


@pytest.mark.parametrize("name, message", [
    ("class", "is a Python keyword"),
    ("x" * 300, "too long"),
    ("np", "a name the generated code already uses"),
])
def test_scaffold_names_that_would_break_the_package_are_refused_before_writing(tmp_path, name, message):
    line = one_error_line(cli("new", "metric", name, "--dir", tmp_path))
    assert message in line and len(line) < 400
    assert not any(tmp_path.iterdir())


def test_a_generated_package_compiles_for_an_accepted_name(tmp_path):
    import py_compile

    assert cli("new", "metric", "klass", "--dir", tmp_path).exit_code == 0
    for path in (tmp_path / "modkit-klass").rglob("*.py"):
        py_compile.compile(str(path), doraise=True)


@pytest.mark.parametrize("content", ["[]", '{"study": 3}', '{"study": "s", "storage": ["x"]}'])
def test_a_tampered_sweep_json_is_one_line(tmp_path, content):
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_text(content)
    line = one_error_line(cli("sweep", "--resume", tmp_path / "sweep"))
    assert "sweep.json is damaged" in line


@pytest.mark.parametrize("change, problem", [
    ({"trials": "5"}, "field 'trials' has the wrong type"),
    ({"overrides": [3]}, "field 'overrides' has the wrong type"),
    ({"sampler": "evil"}, "out of range"),
    ({"extra": 1}, "unknown field 'extra'"),
    ({"overrides": ["x=range(5,1)"]}, "do not parse"),
])
def test_a_tampered_study_definition_is_one_line(change, problem):
    from modkit.sweep.config import SweepConfig

    good = dict(study="s", out="/tmp/s", recipe={}, source="r.yaml", overrides=["train.lr=1,2"], sampler="grid", trials=2,
                objective="test/elbo", direction="maximize", evaluate=False, settings={}, plot=[])
    assert SweepConfig.stored(good, "study 's'").trials == 2
    with pytest.raises(ModkitError, match=f"sweep definition in study 's' is damaged .*{problem}"):
        SweepConfig.stored({**good, **change}, "study 's'")


def test_an_empty_tokenizer_is_one_line(tmp_path):
    from modkit_caption.tokenizer import Tokenizer

    (tmp_path / "caption.model").write_bytes(b"")
    with pytest.raises(ModkitError, match="caption.model is an empty tokenizer"):
        Tokenizer.load(tmp_path / "caption.model")


@pytest.mark.parametrize("name, data", [("w.safetensors", b"\x00" * 64), ("w.pt", b"garbage, not a zip"), ("w.pt", None)])
def test_garbage_backbone_weights_are_one_line(tmp_path, name, data):
    import torch

    from modkit_image.backbone import _read_state_dict

    path = tmp_path / name
    if data is None:
        torch.save([1, 2, 3], path)  # readable, but not a name → tensor map
    else:
        path.write_bytes(data)
    with pytest.raises(ModkitError, match=r"modalities.image.backbone.weights: .*(not a readable weights file|holds no weights)"):
        _read_state_dict(path, "modalities.image.backbone.weights")


def test_a_failed_init_from_leaves_no_out_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_error_line(cli("train", ROOT / "recipes" / "digits-latent_mix-partial.yaml", "--set", "model.fusion.downstream.task=label",
                              "--set", f"model.fusion.downstream.init_from={tmp_path / 'no-such-run'}", "--set", "train.epochs=1",
                              "--out", tmp_path / "fine"))
    assert "init_from" in line and "not found" in line
    assert not (tmp_path / "fine").exists()


@pytest.mark.parametrize("key, value", [("sums", []), ("epoch", "3"), ("global_step", 1.5), ("sampler", 3), ("bad_streak", []),
                                        ("lr_scale", "a"), ("world", "2")])
def test_a_checkpoint_state_of_the_wrong_structure_is_one_line_on_resume(copy, key, value):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    run = copy()
    (run / "checkpoint.prev.safetensors").unlink()
    path = run / "checkpoint.safetensors"
    with safe_open(str(path), "pt") as handle:
        meta, tensors = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}
    structure = json.loads(meta["modkit.structure"])
    structure[key] = value
    save_file(tensors, str(path), metadata={**meta, "modkit.structure": json.dumps(structure)})
    line = one_error_line(cli("train", "--resume", run, "--set", "train.epochs=2"))
    assert "checkpoint" in line and ("changed or damaged" in line or "does not fit" in line)


@pytest.mark.parametrize("tamper", ["width", "type"])
def test_tampered_judges_are_one_line_naming_the_file(copy, tamper):
    import json

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    run = copy()
    path = run / "judges.safetensors"
    with safe_open(str(path), "pt") as handle:
        meta, tensors = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}
    coef = next(k for k in tensors if k.endswith("/coef"))
    if tamper == "width":  # one feature fewer than its reducer gives: predictions would silently go wrong
        tensors[coef] = torch.zeros(tensors[coef].shape[0], tensors[coef].shape[1] - 1, dtype=tensors[coef].dtype)
    else:  # the coefficients replaced by a string in the header
        meta["modkit.structure"] = json.dumps(_replace_tensor(json.loads(meta["modkit.structure"]), coef, "oops"))
    save_file(tensors, str(path), metadata=meta)
    # the dataset's fixed judges score coherence; a judges file is read when it is named
    line = one_error_line(cli("eval", run, "--metrics", "coherence", "--max-items", "20", "--device", "cpu", "--judges", path))
    assert "judges.safetensors" in line, line


def _replace_tensor(node, name, value):
    if isinstance(node, dict):
        if name in (node.get("$tensor"), node.get("$array")):
            return value
        return {k: _replace_tensor(v, name, value) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_tensor(v, name, value) for v in node]
    return node
