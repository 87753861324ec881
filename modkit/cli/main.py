"""The ``modkit`` command line. User errors print one line on stderr and exit non-zero, no traceback."""
from __future__ import annotations

import datetime as _dt
import os
import shutil
import sys
from pathlib import Path

import click

from modkit import __version__

from modkit.runs import files as rundir
from modkit.errors import ModkitError
from modkit.cli.errors import user_errors
from modkit.plugins.loader import plugins_for
from modkit.config.project import load_project
from modkit.config.recipe import load_recipe, resolve_raw


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
@click.option("--nproc", type=click.IntRange(min=1), default=None, metavar="N",
              help="Train with N processes on this machine (torchrun + DistributedDataParallel): one per GPU, or CPU processes with gloo.")
@user_errors
def train(recipe: Path | None, overrides: tuple[str, ...], device: str | None, out: Path | None, resume: Path | None,
          nproc: int | None) -> None:
    """Train a model described by RECIPE (a YAML file), or continue one with --resume RUN_DIR.

    Under torchrun (``torchrun --nproc_per_node=N -m modkit train RECIPE``) every process runs this
    command; rank 0 alone writes the run directory and prints.
    """
    from modkit.training import distributed
    from modkit.training.trainer import Interrupted, Trainer, resolve_device, write_recipe

    project = load_project()
    sets = list(overrides) + ([f"train.device={device}"] if device else [])
    if resume is not None:
        if recipe is not None:
            raise ModkitError("give either RECIPE or --resume RUN_DIR, not both")
        if not (resume / rundir.RECIPE).is_file():
            raise ModkitError(f"{resume} is not a run directory (no {rundir.RECIPE})")
        source = str(resume / rundir.RECIPE)
        from modkit.config.recipe import read_yaml

        parsed, resolved = resolve_raw(read_yaml(resume / rundir.RECIPE), sets, None, source)
    else:
        if recipe is None:
            raise ModkitError("missing RECIPE (a YAML file) or --resume RUN_DIR; see 'modkit train --help'")
        source = str(recipe)
        parsed, resolved = load_recipe(recipe, sets, project)
        if out is not None and (out / rundir.CHECKPOINT).exists():
            raise ModkitError(f"{out} already holds a run; use --resume {out} to continue it or choose another --out")

    def choose_run_dir() -> Path:
        if resume is not None:
            return resume
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return out if out is not None else rundir.unique_run_dir(project.runs_dir, parsed.name, stamp)

    if nproc is not None and nproc > 1 and "WORLD_SIZE" not in os.environ:
        run_dir = choose_run_dir()
        args = [str(recipe)] if resume is None else ["--resume", str(resume)]
        args += [a for s in overrides for a in ("--set", s)] + (["--device", device] if device else [])
        args += ["--out", str(run_dir)] if resume is None else []
        click.echo(f"starting {nproc} processes with torchrun")
        code = distributed.launch(nproc, args)
        if code:
            sys.exit(code)
        return

    dist, dist_device = distributed.init(parsed.train.device)
    try:
        def prepare_run_dir() -> tuple[Path, bool]:
            run_dir = choose_run_dir()
            created = not run_dir.exists()
            rundir.ensure_writable(run_dir)
            return run_dir, created

        run_dir, created = _on_rank0(prepare_run_dir, dist)
        plugins = plugins_for(parsed.plugins, project.plugins)
        torch_device = dist_device or resolve_device(parsed.train.device)
        try:
            trainer = Trainer(parsed, resolved, plugins, run_dir, torch_device, source, echo=click.echo, dist=dist)
        except BaseException:
            if created and dist.main:  # a recipe that fails to build leaves no empty run directory behind
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        if resume is None and dist.main:
            write_recipe(run_dir, resolved)
        if resume is not None:
            trainer.restore()
            trainer.echo(f"resuming {run_dir} at epoch {trainer.state.epoch + 1} (step {trainer.state.global_step})")
        else:
            trainer.echo(f"run directory: {run_dir}")
        if dist.active:
            trainer.echo(f"{dist.world} processes, {trainer.device.type} ({'nccl' if trainer.device.type == 'cuda' else 'gloo'}), "
                         f"{parsed.data.batch_size // dist.world} samples per process per step")
        trainer.fit()
        summary = trainer.finish()
    except Interrupted as exc:
        if dist.main:
            click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    except ModkitError as exc:
        if dist.main:
            raise
        if not getattr(exc, "shown_by_rank0", False):  # rank 0 reports errors every rank shares
            click.echo(f"error (rank {dist.rank}): {exc}", err=True)
        sys.exit(exc.exit_code)
    finally:
        distributed.shutdown()
    if dist.main:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in summary.items() if isinstance(v, float))
        click.echo(f"done: {shown}")
        click.echo(f"wrote {run_dir / rundir.SUMMARY}")


def _on_rank0(fn, dist):
    """Run ``fn`` on rank 0 and give its result (or its user error) to every rank, so none waits forever."""
    from modkit.training import distributed

    result: object
    if dist.main:
        try:
            result = fn()
        except ModkitError as exc:
            result = exc
    else:
        result = None
    result = distributed.broadcast(result, dist)
    if isinstance(result, ModkitError):
        result.shown_by_rank0 = True
        raise result
    return result


@main.command("plugins")
@user_errors
def plugins_command() -> None:
    """List every registered modality, fusion, sampler, dataset and metric, and who supplied it."""
    project = load_project()
    plugins = plugins_for([], project.plugins)
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
main.add_command(__import__("modkit.scaffold.generator", fromlist=["new"]).new)
main.add_command(__import__("modkit.cli.run_commands", fromlist=["eval_command"]).eval_command)
main.add_command(__import__("modkit.cli.run_commands", fromlist=["generate_command"]).generate_command)
main.add_command(__import__("modkit.cli.run_commands", fromlist=["sample_command"]).sample_command)
main.add_command(__import__("modkit.cli.run_commands", fromlist=["report_command"]).report_command)
main.add_command(__import__("modkit.cli.run_commands", fromlist=["sweep_command"]).sweep_command)


if __name__ == "__main__":  # pragma: no cover
    main()
