"""A run or exported folder from someone else: opening it never runs code, never exhausts memory, never
leaks a secret, and every bad file in it is one `error:` line. Each test builds the hostile folder for real
and runs the real command (in a subprocess where the case is about the process: its path, its memory)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modkit.errors import ModkitError
from run_helpers import ROOT, cli, one_error_line

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])}


def modkit_process(*args, cwd: Path, timeout: int = 180, preexec=None) -> subprocess.CompletedProcess:
    """The command line in its own process, as ``python -m modkit`` (the form that puts the folder on the path)."""
    return subprocess.run([sys.executable, "-m", "modkit", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=ENV, timeout=timeout, preexec_fn=preexec)


@pytest.fixture
def copy(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def make(name: str = "run") -> Path:
        dest = tmp_path / name
        shutil.copytree(trained, dest)
        return dest
    return make


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

