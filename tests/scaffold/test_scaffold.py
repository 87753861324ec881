"""`modkit new modality|fusion|dataset|metric NAME`: a plugin package that works from its first commit.

Every kind's package is generated with its names filled; then the round trip, as a third party would do
it: the four packages are installed into ONE throwaway virtual environment (``--system-site-packages``,
so torch, pip and modkit come from this one; ``--no-deps --no-build-isolation``, so nothing is downloaded),
``modkit plugins`` run there lists each from its entry point, each package's generated tests pass
unchanged (one pytest run for all four), and uninstalling removes them. This environment is never touched.
"""
from __future__ import annotations

import os
import re
import site
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

import modkit
from modkit import DISTRIBUTION
from modkit.cli.main import main
from modkit.scaffold.generator import KINDS, names_for, template_files

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "modkit" / "scaffold" / "templates"
PLUGIN_FILES = {"modality": ["modality.py", "toy.py", "example.yaml"], "fusion": ["fusion.py", "example.yaml"],
                "dataset": ["dataset.py", "example.yaml"], "metric": ["metric.py"]}


@pytest.mark.parametrize("kind", list(KINDS))
def test_generates_every_template_with_names_filled(tmp_path, kind):
    result = CliRunner().invoke(main, ["new", kind, "heart_rate", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    target = tmp_path / "modkit-heart-rate"
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    expected = ["README.md", "modkit_heart_rate/__init__.py", *(f"modkit_heart_rate/{f}" for f in PLUGIN_FILES[kind]),
                "pyproject.toml", "tests/test_heart_rate.py"]
    assert files == sorted(expected)
    assert len(template_files(kind)) == len(files)
    for path in target.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(), path
    pyproject = (target / "pyproject.toml").read_text()
    assert 'heart_rate = "modkit_heart_rate"' in pyproject and f"The 'heart_rate' {kind} for modkit" in pyproject
    assert "modkit.testing" in (target / "tests" / "test_heart_rate.py").read_text()
    for path in target.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
        internal = re.findall(r"^\s*(?:from|import) (modkit\.(?!(?:testing|distributions)\b)[\w.]+)", path.read_text(), re.M)
        assert not internal, (f"{path.name} imports modkit internals {internal}: the public API is `from modkit import ...` "
                              "and `from modkit.distributions import ...`")


def test_no_template_depends_on_a_package_that_is_not_this_project():
    """The index's `modkit` is an unrelated project: templates name modkit's own distribution, and it is the one
    setup.py builds."""
    assert DISTRIBUTION == "modkit-vae"
    assert re.search(r'name=META\["DISTRIBUTION"\]', (ROOT / "setup.py").read_text())
    for kind in KINDS:
        pyproject = dict(template_files(kind))["pyproject.toml"]
        deps = re.search(r"^dependencies = \[(.*)\]$", pyproject, re.M).group(1)
        named = [re.split(r"[<>=!~ ;\[]", d.strip().strip('"'))[0] for d in deps.split(",") if d.strip()]
        assert named == ["{{modkit_dist}}"], (kind, named)
        filled = names_for("x", kind)
        assert f'dependencies = ["{DISTRIBUTION}>={modkit.__version__}"]' in pyproject.replace("{{modkit_dist}}", filled["modkit_dist"]).replace("{{modkit_version}}", filled["modkit_version"])
    texts = [text for path in TEMPLATES.rglob("*.tmpl") for text in [path.read_text()]]
    for text in texts:  # no install line naming a bare `modkit` distribution
        assert not re.search(r"pip install(\s+-\S+)*\s+[\"']?modkit(?![-_.\w])", text), text[:200]


@pytest.mark.parametrize("kind, name, message", [
    ("modality", "Bad-Name", "must start with a lowercase letter"),
    ("modality", "image", "a modality 'image' is already registered by plugin 'image'"),
    ("fusion", "poe", "a fusion 'poe' is already registered by plugin 'poe'"),
    ("dataset", "digits", "a dataset 'digits' is already registered"),
    ("metric", "bleu", "a metric 'bleu' is already registered"),
])
def test_bad_names_are_one_line_errors(tmp_path, kind, name, message):
    result = CliRunner().invoke(main, ["new", kind, name, "--dir", str(tmp_path)])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
    assert not any(tmp_path.iterdir())


def test_an_existing_folder_is_not_overwritten(tmp_path):
    (tmp_path / "modkit-spectrum").mkdir()
    (tmp_path / "modkit-spectrum" / "mine.txt").write_text("keep")
    result = CliRunner().invoke(main, ["new", "fusion", "spectrum", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and "already exists" in result.output
    assert [p.name for p in (tmp_path / "modkit-spectrum").iterdir()] == ["mine.txt"]


# -- the round trip ----------------------------------------------------------------------------
def _env() -> dict[str, str]:
    """This interpreter's modkit (and its first-party plugins) first on the path, inside the venv too."""
    source = Path(modkit.__file__).resolve().parents[1]
    # and this environment's packages (torch, pluggy, ...): --system-site-packages reaches the base interpreter's,
    # which on a fresh machine (CI's virtual environment) holds none of them
    paths = [str(source), str(source / "plugins"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)),
             *site.getsitepackages()]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=_env(), **kwargs)


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    """Generate one package per kind, install them into a fresh venv, list the plugins there and run their tests."""
    base = tmp_path_factory.mktemp("scaffold")
    tag = f"rt{os.getpid()}"
    names = {kind: f"{tag}{kind}" for kind in KINDS}
    for kind, name in names.items():
        assert CliRunner().invoke(main, ["new", kind, name, "--dir", str(base)]).exit_code == 0
    venv = base / "venv"
    # without a pip of its own, the venv runs this environment's pip and setuptools (a recent one builds editable
    # wheels without the `wheel` package), and pip run by the venv's python installs into the venv
    made = _run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    packages = [base / names_for(name)["dist"] for name in names.values()]
    installed = _run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                     *[a for p in packages for a in ("-e", p)])
    assert installed.returncode == 0, installed.stderr[-3000:]
    listed = _run(python, "-m", "modkit", "plugins", cwd=base)
    (base / "empty.ini").write_text("[pytest]\n")
    report = base / "report.xml"
    tests = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", base / "empty.ini", "--rootdir", base,
                 f"--junitxml={report}", *[p / "tests" for p in packages], cwd=base, timeout=600)
    results: dict[str, list[tuple[str, str]]] = {}
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            outcome = "failed" if case.find("failure") is not None or case.find("error") is not None else \
                "skipped" if case.find("skipped") is not None else "passed"
            results.setdefault(case.get("classname", "").split(".")[-1], []).append((case.get("name"), outcome))
    uninstalled = _run(python, "-m", "pip", "uninstall", "-y", "-q", *[names_for(n)["dist"] for n in names.values()])
    # what `modkit plugins` reads, without a second torch start-up: the venv's `modkit` entry points
    after = _run(python, "-c", "import importlib.metadata as m; print(' '.join(e.name for e in m.entry_points(group='modkit')))")
    return {"names": names, "listed": listed, "tests": tests, "results": results, "uninstalled": uninstalled, "after": after,
            "python": python}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_round_trip_install_list_test_uninstall(round_trip, kind):
    name = round_trip["names"][kind]
    dist = names_for(name)["dist"]
    listed = round_trip["listed"]
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert re.search(rf"^  {name}\s+{name} \({dist}\)", listed.stdout, re.M), listed.stdout  # the component, its plugin, package
    assert any(line.split()[:2] == [name, dist] and line.rstrip().endswith("entry point  ok")
               for line in listed.stdout.splitlines()), listed.stdout
    ran = round_trip["results"].get(f"test_{name}")
    assert ran, (f"no results for test_{name}", round_trip["tests"].stdout[-3000:])
    assert all(outcome == "passed" for _, outcome in ran), (ran, round_trip["tests"].stdout[-3000:])
    assert len(ran) >= 2
    assert round_trip["uninstalled"].returncode == 0, round_trip["uninstalled"].stderr
    after = round_trip["after"]
    assert after.returncode == 0 and "digits" in after.stdout.split() and name not in after.stdout.split(), after


@pytest.mark.slow
def test_the_round_trip_left_this_environment_alone(round_trip):
    import importlib.metadata

    for name in round_trip["names"].values():
        with pytest.raises(importlib.metadata.PackageNotFoundError):
            importlib.metadata.distribution(names_for(name)["dist"])
    assert round_trip["uninstalled"].returncode == 0  # they were installed there, and removed there
