"""`modkit new modality NAME`: the generated package installs, registers, and its own test passes unchanged."""
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from modkit.cli.main import main
from modkit.scaffold.generator import names_for, template_files

TEMPLATES = Path(__file__).resolve().parents[2] / "modkit" / "scaffold" / "templates" / "modality"


def test_generates_every_template_with_names_filled(tmp_path):
    result = CliRunner().invoke(main, ["new", "modality", "heart_rate", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    target = tmp_path / "modkit-heart-rate"
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == ["README.md", "modkit_heart_rate/__init__.py", "modkit_heart_rate/example.yaml",
                     "modkit_heart_rate/modality.py", "modkit_heart_rate/toy.py", "pyproject.toml", "tests/test_heart_rate.py"]
    assert len(template_files("modality")) == len(list(TEMPLATES.rglob("*.tmpl"))) == len(files)
    for path in target.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(), path
    assert 'heart_rate = "modkit_heart_rate"' in (target / "pyproject.toml").read_text()
    assert "class HeartRate(Modality)" in (target / "modkit_heart_rate" / "modality.py").read_text()
    for path in target.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


@pytest.mark.parametrize("name, message", [("Bad-Name", "must start with a lowercase letter"),
                                           ("image", "already registered by plugin 'image'")])
def test_bad_names_are_one_line_errors(tmp_path, name, message):
    result = CliRunner().invoke(main, ["new", "modality", name, "--dir", str(tmp_path)])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())


def test_an_existing_folder_is_not_overwritten(tmp_path):
    (tmp_path / "modkit-spectrum").mkdir()
    result = CliRunner().invoke(main, ["new", "modality", "spectrum", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and "already exists" in result.output


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def can_build_without_isolation() -> bool:
    """setuptools builds editable wheels itself from 70.1; before that it needs the `wheel` package."""
    import setuptools

    version = tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


def test_round_trip_pip_install_plugins_and_its_own_test(tmp_path, monkeypatch):
    """Generate; `pip install -e` it into this environment (removed afterwards); `modkit plugins` lists
    it from its entry point; its generated test passes unchanged (run in-process to save a second
    torch start-up: the editable install's path hook is mirrored by putting the folder on sys.path)."""
    name = f"roundtrip{os.getpid()}"
    names = names_for(name)
    assert CliRunner().invoke(main, ["new", "modality", name, "--dir", str(tmp_path)]).exit_code == 0
    target = tmp_path / names["dist"]
    isolation = [] if can_build_without_isolation() else ["--use-pep517"]
    flags = ["--no-build-isolation"] if not isolation else []
    try:
        done = pip("install", "-q", "--no-deps", *flags, "-e", str(target))
        assert done.returncode == 0, done.stderr[-2000:]
        assert importlib.metadata.distribution(names["dist"]).entry_points.select(group="modkit")[name].value == names["package"]
        monkeypatch.syspath_prepend(str(target))
        monkeypatch.chdir(tmp_path)
        listed = CliRunner().invoke(main, ["plugins"])
        assert listed.exit_code == 0, listed.output
        assert f"  {name}  {name} ({names['dist']})" in listed.output
        assert f"{name}_toy" in listed.output
        assert any(line.split()[:2] == [name, names["dist"]] and line.rstrip().endswith("entry point  ok")
                   for line in listed.output.splitlines()), listed.output
        code = pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", str(target), str(target / "tests")])
        assert code == 0
    finally:
        pip("uninstall", "-y", "-q", names["dist"])
        monkeypatch.undo()  # off sys.path again (the folder holds the build's egg-info)
        for module in [m for m in sys.modules if m.startswith(names["package"]) or m == f"test_{name}"]:
            del sys.modules[module]
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution(names["dist"])
