"""Plugin discovery: entry points, modkit.toml and recipe modules; broken plugins are isolated."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modkit import Modality
from modkit.errors import PluginError
from modkit.plugins.loader import load_plugins
from modkit.plugins.registry import Registry

FIRST_PARTY = {"image", "label", "digits", "poe"}


def modkit(*args, cwd, extra_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [str(extra_path), os.environ.get("PYTHONPATH", "")] if p))
    return subprocess.run([sys.executable, "-m", "modkit", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def plugin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "plugs"
    folder.mkdir()
    (folder / "good_plugin.py").write_text(textwrap.dedent('''
        """A third-party plugin: a copy of the label modality under another name."""
        from modkit import hookimpl
        from modkit_label import Label

        class Tag(Label):
            """A tag: the label modality registered by a local plugin."""

        @hookimpl
        def modkit_register(registry):
            registry.add_modality("tag", Tag)
    '''))
    (folder / "import_error_plugin.py").write_text("import no_such_module_anywhere\n")
    (folder / "clash_plugin.py").write_text(textwrap.dedent('''
        from modkit import hookimpl
        from modkit_image import Image

        @hookimpl
        def modkit_register(registry):
            registry.add_modality("extra_ok_name", Image)
            registry.add_modality("image", Image)   # already taken by the first-party image plugin
    '''))
    return folder


def test_first_party_plugins_come_from_entry_points():
    plugins = load_plugins()
    sources = {i.name: i.source for i in plugins.infos}
    assert FIRST_PARTY <= set(sources) and all(sources[n] == "entry point" for n in FIRST_PARTY)
    assert {"image", "label"} <= set(plugins.registry.names("modality"))
    assert plugins.registry.names("fusion") == sorted(plugins.registry.names("fusion"))
    assert not plugins.broken


def test_broken_and_clashing_plugins_are_isolated(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir(tmp_path)))
    plugins = load_plugins(["good_plugin", "import_error_plugin", "clash_plugin"])
    status = {i.name: i.error for i in plugins.infos}
    assert status["good_plugin"] is None
    assert "no_such_module_anywhere" in status["import_error_plugin"]
    assert "modality 'image'" in status["clash_plugin"] and "already registered" in status["clash_plugin"]
    # a failing plugin leaves nothing behind, not even the names it registered before failing
    assert "extra_ok_name" not in plugins.registry.names("modality")
    assert "tag" in plugins.registry.names("modality")
    with pytest.raises(PluginError, match="clash_plugin"):
        plugins.require_ok(["clash_plugin"])


def test_registry_clash_names_both_plugins():
    registry = Registry()
    stage = registry.staged("first", "pkg-a")
    stage.add_modality("x", Modality)
    registry.commit(stage)
    stage = registry.staged("second", "pkg-b")
    with pytest.raises(PluginError, match="plugin 'second' registers modality 'x', which plugin 'first' \\(package pkg-a\\)"):
        stage.add_modality("x", Modality)


@pytest.mark.slow
def test_modkit_plugins_command_lists_registry_and_broken(tmp_path):
    folder = plugin_dir(tmp_path)
    (tmp_path / "modkit.toml").write_text('[modkit]\nplugins = ["good_plugin", "import_error_plugin"]\n')
    result = modkit("plugins", cwd=tmp_path, extra_path=folder)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in ["image", "label", "poe", "digits", "mvae", "tag"]:
        assert f"  {name} " in out
    assert "good_plugin" in out and "modkit.toml" in out
    assert "import_error_plugin" in out and "BROKEN" in out and "Traceback" not in out + result.stderr


@pytest.mark.slow
def test_recipe_plugins_and_broken_plugin_named(tmp_path):
    import yaml

    folder = plugin_dir(tmp_path)
    root = Path(__file__).resolve().parents[2]
    raw = yaml.safe_load((root / "recipes" / "digits-poe.yaml").read_text())
    raw["plugins"] = ["good_plugin"]
    raw["modalities"]["label"]["type"] = "tag"
    raw["modalities"]["label"]["hidden"] = [16]
    raw["modalities"]["image"]["hidden"] = [16]
    raw["train"]["epochs"] = 1
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    result = modkit("train", "r.yaml", "--out", "run", cwd=tmp_path, extra_path=folder)
    assert result.returncode == 0, result.stderr
    raw["plugins"] = ["import_error_plugin"]
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    result = modkit("train", "r.yaml", "--out", "run2", cwd=tmp_path, extra_path=folder)
    assert result.returncode != 0 and "import_error_plugin" in result.stderr and "Traceback" not in result.stderr
