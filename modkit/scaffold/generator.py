"""``modkit new modality NAME``: generate a pip-installable plugin package for a new modality.

The package is what a third party would write: a pyproject with the ``modkit`` entry point, a
modality class whose encoder, decoder and likelihood work as generated, a toy dataset, a test
that trains it, and a README. Templates live in ``modkit/scaffold/templates/modality``; in their text and
file names ``{{name}}``, ``{{Class}}``, ``{{package}}`` and ``{{dist}}`` are filled in, and the
``package`` folder is renamed to the package.
"""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import click

from modkit.cli.errors import user_errors
from modkit.errors import ModkitError

TEMPLATE_SUFFIX = ".tmpl"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


def names_for(name: str) -> dict[str, str]:
    """The spellings of NAME the templates use."""
    return {
        "name": name,
        "Class": "".join(part.capitalize() for part in name.split("_") if part),
        "package": f"modkit_{name}",
        "dist": f"modkit-{name.replace('_', '-')}",
    }


def fill(text: str, names: dict[str, str]) -> str:
    for key, value in names.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def template_files(kind: str) -> list[tuple[str, str]]:
    """(relative path, text) of every template file of ``kind``."""
    root = resources.files("modkit.scaffold") / "templates" / kind
    found: list[tuple[str, str]] = []

    def walk(node, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name == "__pycache__":
                continue
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(TEMPLATE_SUFFIX):
                found.append((prefix + child.name[: -len(TEMPLATE_SUFFIX)], child.read_text(encoding="utf-8")))

    walk(root, "")
    if not found:
        raise ModkitError(f"modkit's templates for '{kind}' are missing (is modkit installed with its package data?)")
    return found


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise ModkitError(f"modality name '{name}' must start with a lowercase letter and use a-z, 0-9 and '_' only")
    from modkit.plugins.loader import load_plugins

    registry = load_plugins().registry
    if registry.has("modality", name):
        owner = next(e for e in registry.entries("modality") if e.name == name)
        raise ModkitError(f"a modality '{name}' is already registered by plugin '{owner.plugin}' (package {owner.package}); choose another name")


def generate_modality(name: str, directory: Path) -> Path:
    """Write the package for modality ``name`` into ``directory/modkit-<name>``; returns that folder."""
    check_name(name)
    names = names_for(name)
    target = directory / names["dist"]
    if target.exists():
        raise ModkitError(f"{target} already exists; remove it or choose another --dir")
    files = [(fill(path.replace("package/", names["package"] + "/", 1), names), fill(text, names))
             for path, text in template_files("modality")]
    for path, text in files:
        out = target / path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return target


@click.group("new")
def new() -> None:
    """Generate a plugin package to extend modkit."""


@new.command("modality")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Where to create the package folder modkit-NAME.")
def new_modality(name: str, directory: Path) -> None:
    """Generate a pip-installable package for a new modality NAME: entry point, modality class,
    toy dataset, a test that trains it, README."""
    user_errors(report_new_modality)(name, directory)


def report_new_modality(name: str, directory: Path) -> None:
    target = generate_modality(name, directory)
    click.echo(f"created {target}")
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        click.echo(f"  {path.relative_to(target)}")
    click.echo(f"next: pip install -e {target} && modkit plugins && pytest {target}")
