"""``modkit new modality|fusion|dataset|metric NAME``: generate a pip-installable plugin package.

The package is what a third party would write: a pyproject with the ``modkit`` entry point and a
dependency on modkit's distribution, the plugin's code working as generated, tests that run modkit's
contract checks (:mod:`modkit.testing`) and pass unchanged, and a README. Templates live in
``modkit/scaffold/templates/<kind>`` (``common`` holds what every kind shares); in their text and file
names ``{{name}}``, ``{{Class}}``, ``{{package}}``, ``{{dist}}``, ``{{kind}}``, ``{{modkit_dist}}`` and
``{{modkit_version}}`` are filled in, and the ``package`` folder is renamed to the package.
"""
from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

import click

from modkit._meta import DISTRIBUTION, VERSION
from modkit.errors import ModkitError, user_errors

TEMPLATE_SUFFIX = ".tmpl"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
COMMON = "common"
#: kind → what the generated package holds, for ``modkit new KIND --help``
KINDS = {
    "modality": "modality class, toy dataset, contract and learning tests",
    "fusion": "fusion class (a product of experts with learned temperatures), contract and training tests",
    "dataset": "dataset reading .npz files, contract tests on toy files, a training test",
    "metric": "task metric for `modkit eval` (mean absolute error), contract test and a check against numpy",
}


def names_for(name: str, kind: str = "modality") -> dict[str, str]:
    """The spellings of NAME (and of modkit's own distribution) the templates use."""
    return {
        "name": name,
        "Class": "".join(part.capitalize() for part in name.split("_") if part),
        "package": f"modkit_{name}",
        "dist": f"modkit-{name.replace('_', '-')}",
        "kind": kind,
        "modkit_dist": DISTRIBUTION,
        "modkit_version": VERSION,
    }


def fill(text: str, names: dict[str, str]) -> str:
    for key, value in names.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _walk(node, prefix: str, found: dict[str, str]) -> None:
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            _walk(child, f"{prefix}{child.name}/", found)
        elif child.name.endswith(TEMPLATE_SUFFIX):
            found[prefix + child.name[: -len(TEMPLATE_SUFFIX)]] = child.read_text(encoding="utf-8")


def template_files(kind: str) -> list[tuple[str, str]]:
    """(relative path, text) of every template file of ``kind``: the common ones, then the kind's own (which win)."""
    root = resources.files("modkit.scaffold") / "templates"
    found: dict[str, str] = {}
    for folder in (COMMON, kind):
        if root.joinpath(folder).is_dir():
            _walk(root / folder, "", found)
    if not any(path.startswith("package/") for path in found):
        raise ModkitError(f"modkit's templates for '{kind}' are missing (is modkit installed with its package data?)")
    return sorted(found.items())


def template_identifiers(kind: str) -> set[str]:
    """The Python names the ``kind`` templates use themselves (their imports, classes, variables): a plugin named
    like one of them would shadow it and the generated package would not work."""
    import io
    import tokenize

    found: set[str] = set()
    for path, text in template_files(kind):
        if not path.endswith(".py"):
            continue
        code = re.sub(r"\{\{\w+\}\}", "placeholder", text)
        try:
            found |= {t.string for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type == tokenize.NAME}
        except (tokenize.TokenError, SyntaxError):  # a template that does not tokenize: nothing to learn from it
            continue
    return found - {"placeholder"}


def check_name(kind: str, name: str, directory: Path | None = None) -> None:
    import keyword

    if not NAME_PATTERN.match(name):
        raise ModkitError(f"{kind} name '{name[:60]}{'…' if len(name) > 60 else ''}' must start with a lowercase letter "
                          f"and use a-z, 0-9 and '_' only")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise ModkitError(f"{kind} name '{name}' is a Python keyword; the generated code would not compile. Choose another name")
    names = names_for(name, kind)
    longest = max(len(names["dist"]), len(names["package"]), len(f"test_{name}.py"))
    try:
        limit = os.pathconf(directory if directory is not None and directory.is_dir() else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if longest > limit:
        raise ModkitError(f"{kind} name of {len(name)} characters is too long: its file names would have {longest}, "
                          f"more than the {limit} this file system allows. Choose a shorter name")
    from modkit.plugins.loader import load_plugins

    registry = load_plugins().registry
    if registry.has(kind, name):
        owner = next(e for e in registry.entries(kind) if e.name == name)
        raise ModkitError(f"a {kind} '{name}' is already registered by plugin '{owner.plugin}' (package {owner.package}); choose another name")
    taken = template_identifiers(kind)
    clash = next((n for n in (name, names["Class"], names["package"]) if n in taken), None)
    if clash is not None:
        raise ModkitError(f"{kind} name '{name}' gives '{clash}', a name the generated code already uses for something "
                          f"else; choose another name")


def generate(kind: str, name: str, directory: Path) -> Path:
    """Write the package for the ``kind`` plugin ``name`` into ``directory/modkit-<name>``; returns that folder."""
    if kind not in KINDS:
        raise ModkitError(f"unknown kind '{kind}' (kinds: {', '.join(KINDS)})")
    check_name(kind, name, directory)
    names = names_for(name, kind)
    target = directory / names["dist"]
    if target.exists():
        raise ModkitError(f"{target} already exists; remove it or choose another --dir")
    files = [(fill(path.replace("package/", names["package"] + "/", 1), names), fill(text, names))
             for path, text in template_files(kind)]
    for path, text in files:
        out = target / path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return target


def generate_modality(name: str, directory: Path) -> Path:
    """``generate("modality", ...)``, kept for callers of the first scaffold."""
    return generate("modality", name, directory)


@click.group("new")
def new() -> None:
    """Generate a pip-installable plugin package to extend modkit."""


def report(kind: str, name: str, directory: Path) -> None:
    target = generate(kind, name, directory)
    click.echo(f"created {target}")
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        click.echo(f"  {path.relative_to(target)}")
    click.echo(f"next: pip install -e {target} && modkit plugins && pytest {target}")


def _command(kind: str, holds: str) -> click.Command:
    @click.argument("name")
    @click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
                  help="Where to create the package folder modkit-NAME.")
    def command(name: str, directory: Path) -> None:
        user_errors(report)(kind, name, directory)

    command.__doc__ = f"Generate a pip-installable package for a new {kind} NAME: entry point, {holds}, README."
    return new.command(kind)(command)


for _kind, _holds in KINDS.items():
    _command(_kind, _holds)
