"""The ``modkit`` command line. User errors print one line on stderr and exit non-zero, no traceback."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from modkit._meta import VERSION
from modkit.cli.run_commands import (eval_command, fit_sampler_command, generate_command, report_command, sample_command,
                                     sweep_command)
from modkit.config.project import load_project
from modkit.errors import ModkitError, user_errors
from modkit.plugins.loader import plugins_for
from modkit.storage import files as rundir
from modkit.scaffold.generator import new


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(VERSION, prog_name="modkit")
def main() -> None:
    """Multimodal VAEs from plugins: train, inspect and extend."""


@main.command()
@click.argument("recipe", required=False, type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key, e.g. --set train.lr=3e-4.")
@click.option("--device", type=str, default=None, help="auto, cpu, cuda or cuda:N (default: recipe, then modkit.toml).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run directory (default: RUNS_DIR/NAME-TIMESTAMP).")
@click.option("--resume", "resume", type=click.Path(path_type=Path), default=None, metavar="RUN_DIR", help="Continue a run from its last checkpoint.")
@click.option("--nproc", type=click.IntRange(min=1), default=None, metavar="N",
              help="Train with N processes on this machine (torchrun + DistributedDataParallel): one per GPU, or CPU processes with gloo.")
@user_errors
def train(recipe: Path | None, overrides: tuple[str, ...], device: str | None, out: Path | None, resume: Path | None,
          nproc: int | None) -> None:
    """Train a model described by RECIPE (a YAML file), or continue one with --resume RUN_DIR.

    Under torchrun (``torchrun --nproc_per_node=N -m modkit train RECIPE``) every process runs this
    command; rank 0 alone writes the run directory and prints.
    """
    from modkit.runs import lifecycle
    from modkit.training import distributed
    from modkit.training.trainer import Interrupted

    sets = list(overrides) + ([f"train.device={device}"] if device else [])
    if nproc is not None and nproc > 1 and "WORLD_SIZE" not in os.environ:
        planned = lifecycle.plan(recipe, sets, out, resume)  # validated (and --out checked) before any process starts
        args = [str(recipe)] if resume is None else ["--resume", str(resume)]
        args += [a for s in overrides for a in ("--set", s)] + (["--device", device] if device else [])
        args += ["--out", str(planned.run_dir)] if resume is None else []
        click.echo(f"starting {nproc} processes with torchrun")
        code = distributed.launch(nproc, args)
        if code:
            sys.exit(code)
        return
    try:
        trained = lifecycle.train(recipe, overrides=sets, out=out, resume=resume, echo=click.echo)
    except Interrupted as exc:
        if getattr(exc, "rank", 0) == 0:
            click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    except ModkitError as exc:
        rank = getattr(exc, "rank", 0)
        if rank == 0:
            raise
        if not getattr(exc, "shown_by_rank0", False):  # rank 0 reports errors every rank shares
            click.echo(f"error (rank {rank}): {exc}", err=True)
        sys.exit(exc.exit_code)
    if trained.main:
        summary = trained.summary
        shown = [f"{summary['train_seconds']:.0f} s"] if isinstance(summary.get("train_seconds"), (int, float)) else []
        shown += [f"{k} {summary[k]:.4g}" for k in ("test/elbo",) if isinstance(summary.get(k), (int, float))]
        click.echo(f"done: {', '.join(shown) or 'trained'}; every number in {trained.run_dir / rundir.SUMMARY}")


@main.command("plugins")
@user_errors
def plugins_command() -> None:
    """List every registered modality, fusion, sampler, dataset, metric and latent sampler, and who supplied it."""
    project = load_project()
    plugins = plugins_for([], project.plugins)
    registry = plugins.registry
    for kind in ("modality", "fusion", "sampler", "dataset", "metric", "latent_sampler"):
        entries = list(registry.entries(kind))
        click.echo(f"{kind.replace('_', ' ')}s:" if not kind.endswith("y") else "modalities:")
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


@main.command("convert")
@click.argument("run", type=click.Path(path_type=Path))
@user_errors
def convert_command(run: Path) -> None:
    """Convert RUN's old checkpoint.pt (modkit's format 2, a pickle) to checkpoint.safetensors.

    It is read with torch.load(weights_only=True), the unpickler that builds only tensors and plain
    values, so a file that would run code is refused rather than run."""
    from modkit.storage import checkpoint as checkpoints

    path = checkpoints.convert_legacy(run)
    click.echo(f"wrote {path}; the old files were not changed and are never read again (delete them when you like)")


# -- commands kept in their own modules: each module imports only click at load time (their work is imported
# inside the commands), so registering them here costs `modkit --help` nothing measurable
main.add_command(new)
for _command in (eval_command, generate_command, sample_command, fit_sampler_command, report_command, sweep_command):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
