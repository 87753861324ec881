"""The ``modkit`` command line. User errors print one line on stderr and exit non-zero, no traceback."""
from __future__ import annotations

import datetime as _dt
import functools
import shutil
import sys
from pathlib import Path

import click

from modkit import __version__, rundir
from modkit.errors import ModkitError
from modkit.plugins import PluginSet, load_plugins
from modkit.project import load_project
from modkit.recipe import load_recipe, resolve_raw


def user_errors(fn):
    """Turn :class:`ModkitError` into ``error: …`` and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ModkitError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modkit")
def main() -> None:
    """Multimodal VAEs from plugins: train, inspect and extend."""


@main.command()
@click.argument("recipe", required=False, type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key, e.g. --set train.lr=3e-4.")
@click.option("--device", type=str, default=None, help="auto, cpu, cuda or cuda:N (default: recipe, then modkit.toml).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run directory (default: RUNS_DIR/NAME-TIMESTAMP).")
@click.option("--resume", "resume", type=click.Path(path_type=Path), default=None, metavar="RUN_DIR", help="Continue a run from its last checkpoint.")
@user_errors
def train(recipe: Path | None, overrides: tuple[str, ...], device: str | None, out: Path | None, resume: Path | None) -> None:
    """Train a model described by RECIPE (a YAML file), or continue one with --resume RUN_DIR."""
    from modkit.trainer import Trainer, resolve_device, write_recipe

    project = load_project()
    sets = list(overrides) + ([f"train.device={device}"] if device else [])
    if resume is not None:
        if recipe is not None:
            raise ModkitError("give either RECIPE or --resume RUN_DIR, not both")
        if not (resume / rundir.RECIPE).is_file():
            raise ModkitError(f"{resume} is not a run directory (no {rundir.RECIPE})")
        run_dir = resume
        source = str(resume / rundir.RECIPE)
        from modkit.recipe import read_yaml

        parsed, resolved = resolve_raw(read_yaml(resume / rundir.RECIPE), sets, None, source)
    else:
        if recipe is None:
            raise ModkitError("missing RECIPE (a YAML file) or --resume RUN_DIR; see 'modkit train --help'")
        source = str(recipe)
        parsed, resolved = load_recipe(recipe, sets, project)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = out if out is not None else rundir.unique_run_dir(project.runs_dir, parsed.name, stamp)
        if out is not None and (out / rundir.CHECKPOINT).exists():
            raise ModkitError(f"{out} already holds a run; use --resume {out} to continue it or choose another --out")
    plugins = _plugins(parsed.plugins, project.plugins)
    torch_device = resolve_device(parsed.train.device)
    created = not run_dir.exists()
    rundir.ensure_writable(run_dir)
    try:
        trainer = Trainer(parsed, resolved, plugins, run_dir, torch_device, source, echo=click.echo)
    except BaseException:
        if created:  # a recipe that fails to build leaves no empty run directory behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if resume is not None:
        trainer.restore()
        click.echo(f"resuming {run_dir} at epoch {trainer.state.epoch + 1} (step {trainer.state.global_step})")
    else:
        write_recipe(run_dir, resolved)
        click.echo(f"run directory: {run_dir}")
    trainer.fit()
    summary = trainer.finish()
    shown = ", ".join(f"{k} {v:.4g}" for k, v in summary.items() if isinstance(v, float))
    click.echo(f"done: {shown}")
    click.echo(f"wrote {run_dir / rundir.SUMMARY}")


def _plugins(recipe_plugins: list[str], project_plugins: list[str]) -> PluginSet:
    plugins = load_plugins(project_plugins, source="modkit.toml")
    for name in recipe_plugins:
        plugins.add_module(name, source="recipe")
    return plugins


@main.command("plugins")
@user_errors
def plugins_command() -> None:
    """List every registered modality, fusion, sampler, dataset and metric, and who supplied it."""
    project = load_project()
    plugins = _plugins([], project.plugins)
    registry = plugins.registry
    for kind in ("modality", "fusion", "sampler", "dataset", "metric"):
        entries = list(registry.entries(kind))
        click.echo(f"{kind}s:" if not kind.endswith("y") else "modalities:")
        if not entries:
            click.echo("  (none)")
        width = max([len(e.name) for e in entries] + [4])
        for e in entries:
            click.echo(f"  {e.name:<{width}}  {e.plugin} ({e.package})  {e.summary}".rstrip())
    click.echo("plugins:")
    for info in plugins.infos:
        status = "ok" if info.ok else f"BROKEN: {info.error}"
        click.echo(f"  {info.name:<12} {info.package:<14} {info.source:<12} {status}")
    if plugins.broken:
        click.echo(f"{len(plugins.broken)} plugin(s) broken; commands that do not need them keep working.", err=True)


# -- commands kept in their own modules: one add_command line each -------------------------------
main.add_command(__import__("modkit.scaffold", fromlist=["new"]).new)
main.add_command(__import__("modkit.cli_eval", fromlist=["eval_command"]).eval_command)
main.add_command(__import__("modkit.cli_eval", fromlist=["generate_command"]).generate_command)
main.add_command(__import__("modkit.cli_eval", fromlist=["sample_command"]).sample_command)
main.add_command(__import__("modkit.cli_eval", fromlist=["report_command"]).report_command)
main.add_command(__import__("modkit.cli_eval", fromlist=["sweep_command"]).sweep_command)


if __name__ == "__main__":  # pragma: no cover
    main()
