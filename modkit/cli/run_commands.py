"""CLI commands for finished runs: ``eval``, ``generate``, ``sample``, ``fit-sampler``, ``report`` and ``sweep``."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

import click

from modkit.errors import user_errors

RUN = click.Path(path_type=Path)


def eval_options(fn):
    """Options shared by ``eval``, ``report`` and ``sweep``."""
    options = [
        click.option("--metrics", "metrics", multiple=True, metavar="NAME",
                     help="Groups (likelihood, coherence, probe, relatedness, reconstruction, task) or registered metric names; "
                          "repeat or comma-separate. Default: all."),
        click.option("--iw-samples", type=click.IntRange(1), default=1000, show_default=True, help="K importance samples per item."),
        click.option("--prior-samples", type=click.IntRange(1), default=5000, show_default=True,
                     help="Prior samples for log p(x_given) in conditionals."),
        click.option("--denominator", type=click.Choice(["prior", "posterior"]), default="prior", show_default=True,
                     help="Proposal for log p(x_given) in conditionals: the paper's prior, or the lower-variance posterior."),
        click.option("--iw-items", type=click.IntRange(0), default=32, show_default=True,
                     help="Test items for the likelihoods (a seeded random subset; 0: every test item)."),
        click.option("--subsets", default="default", show_default=True, metavar="default|all|A+B,C",
                     help="Subsets to condition on: every single modality, every leave-one-out set and all together (default), "
                          "all 2^N-1, or a comma-separated list."),
        click.option("--likelihoods", type=click.Choice(["default", "all"]), default="default", show_default=True,
                     help="default: log p(x_i) and the full joint; all: also every pair and the N^2 conditionals."),
        click.option("--max-items", type=click.IntRange(1), default=None, help="Cap test items for everything else."),
        click.option("--joint-samples", type=click.IntRange(1), default=1000, show_default=True, help="Prior samples for joint coherence."),
        click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True),
        click.option("--coherence-draws", type=click.IntRange(1), default=1, show_default=True,
                     help="Latents z ~ q(z | X_S) per test item and subset for the sampled cross-modal coherence."),
        click.option("--judges", type=click.Path(dir_okay=False), default=None,
                     help="A dataset judges file (safetensors) to score coherence with, instead of the dataset's own."),
        click.option("--retrain-judges", is_flag=True, help="Fit the coherence classifiers on this run's training split instead of "
                                                            "using the dataset's fixed judges."),
        click.option("--seed", type=int, default=0, show_default=True),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def settings_from(kwargs: dict):
    from modkit.evaluation.suite import EvalSettings

    metrics = [m.strip() for item in kwargs.pop("metrics", ()) for m in item.split(",") if m.strip()]
    if kwargs.get("iw_items") == 0:
        kwargs["iw_items"] = None  # every test item
    return EvalSettings(metrics=metrics or None, **kwargs)


TRUST = click.option("--trust-plugins", is_flag=True,
                     help="Import the plugin modules the run's recipe.yaml names (default: installed plugins only; "
                          "a folder from someone else could name any code).")


def _load(run: Path, device: str | None, needs_data: bool = False, trust: bool = False):
    """A run directory, or an exported model (generate and sample only: it has no data to evaluate on)."""
    from modkit.errors import ModkitError
    from modkit.runs import lifecycle

    loaded = lifecycle.load(run, device or "auto", plugins=trust)
    if needs_data and loaded.exported:
        raise ModkitError(f"{run} is an exported model (no data, no training state): evaluate the run directory it came from")
    return loaded


def _threads(loaded) -> int:
    """The intra-op thread count the run's ``train.threads`` asks for, chosen as training chose it (so evaluation
    runs with the threads training found fastest)."""
    from modkit.training.threads import apply_threads

    return apply_threads(loaded.recipe.train.threads, loaded.device, loaded.model, loaded.recipe.data.batch_size)


@click.command("eval")
@click.argument("run", type=RUN)
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (default: auto).")
@TRUST
@eval_options
@user_errors
def eval_command(run: Path, device: str | None, trust_plugins: bool, **kwargs) -> None:
    """Evaluate the run in RUN and write RUN/eval.json."""
    from modkit.evaluation.suite import EVAL_JSON, evaluate_run, write_eval

    loaded = _load(run, device, needs_data=True, trust=trust_plugins)
    settings = settings_from(kwargs)
    _threads(loaded)
    result = evaluate_run(loaded, settings, echo=click.echo)
    write_eval(loaded, result)
    for metric, cells in result.get("task", {}).items():
        if "error" in cells:
            click.echo(f"warning: {cells['error']}", err=True)
    summary = result["summary"]
    for key, value in summary.items():
        attribute = key.rsplit("/", 1)[-1]
        beside = f"   (chance {summary[f'chance/{attribute}']:.3g})" if key.startswith("coherence") and f"chance/{attribute}" in summary else ""
        target = key.split("->", 1)[1].split("/", 1)[0] if key.startswith("coherence") and "->" in key else None
        if target is not None and f"ceiling/{target}/{attribute}" in summary:
            beside += f"   (judge's ceiling {summary[f'ceiling/{target}/{attribute}']:.3g})"
        click.echo(f"  {key:<48} {value:.4g}{beside}")
    for key, reason in result.get("not_applicable", {}).items():
        click.echo(f"  {key:<48} {reason}")
    click.echo(f"wrote {loaded.run_dir / EVAL_JSON}")


@click.command("generate")
@click.argument("run", type=RUN)
@click.option("--given", "given", multiple=True, metavar="MODALITY=VALUE",
              help="A conditioning value: a file path or a literal (label=seven, caption=\"a red circle\"). Repeat for several.")
@click.option("--target", required=True, help="The modality to generate.")
@click.option("-n", "n", type=int, default=16, show_default=True, help="How many samples.")
@click.option("--mean", is_flag=True, help="Decode the posterior mean instead of posterior samples.")
@click.option("--each", is_flag=True, help="Also write every generated image as its own file at native resolution.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output file (default: RUN/generated/...).")
@click.option("--device", default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@TRUST
@user_errors
def generate_command(run: Path, given: tuple[str, ...], target: str, n: int, mean: bool, each: bool, out: Path | None,
                     device: str | None, seed: int, trust_plugins: bool) -> None:
    """Generate TARGET given any subset of the other modalities (none: from the prior)."""
    import torch

    from modkit.reporting.generation import generate, parse_given, summarize_strings

    loaded = _load(run, device, trust=trust_plugins)
    torch.manual_seed(seed)
    values = parse_given(given, loaded.model.names)
    path, renders = generate(loaded, values, target, n, out, mean, each)
    if all(isinstance(r, str) for r in renders):
        click.echo(summarize_strings(renders))
    click.echo(f"wrote {path}" + (f" and {path.stem}_000.png … beside it" if each and not all(isinstance(r, str) for r in renders) else ""))


@click.command("sample")
@click.argument("run", type=RUN)
@click.option("-n", "n", type=int, default=64, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="PNG path (default: RUN/generated/prior_samples.png, or prior_samples_SAMPLER.png).")
@click.option("--sampler", default=None, metavar="NAME",
              help="Draw z from the latent sampler fitted under NAME (modkit fit-sampler) instead of the prior.")
@click.option("--device", default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@TRUST
@user_errors
def sample_command(run: Path, n: int, out: Path | None, sampler: str | None, device: str | None, seed: int,
                   trust_plugins: bool) -> None:
    """Unconditional samples z ~ p(z) (or a fitted latent sampler), every modality decoded."""
    from modkit.reporting.generation import sample_prior

    loaded = _load(run, device, trust=trust_plugins)
    path, _ = sample_prior(loaded, n, out, seed, sampler)
    click.echo(f"wrote {path}")


@click.command("fit-sampler")
@click.argument("run", type=RUN)
@click.argument("sampler", metavar="SAMPLER")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE", help="A sampler option (n_components=20, epochs=50); repeat.")
@click.option("--name", default=None, help="Store it under this name (default: SAMPLER), as RUN/samplers/NAME.safetensors.")
@click.option("--batch-size", type=click.IntRange(1), default=512, show_default=True, help="Examples embedded at once.")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (default: auto).")
@click.option("--seed", type=int, default=0, show_default=True)
@user_errors
def fit_sampler_command(run: Path, sampler: str, options: tuple[str, ...], name: str | None, batch_size: int,
                        device: str | None, seed: int) -> None:
    """Fit a post-hoc latent sampler (gmm, maf, iaf, or a plugin's) to RUN's training set, embedded with the
    joint posterior's mean; "modkit sample RUN --sampler NAME" then draws z from it instead of the prior."""
    from modkit.training.latent_samplers import fit_latent_sampler, parse_options

    loaded = _load(run, device, needs_data=True)
    _threads(loaded)
    fitted = fit_latent_sampler(loaded.model, loaded.setup.train, loaded.plugins.registry, loaded.run_dir, sampler,
                                parse_options(options), seed=seed, batch_size=batch_size, echo=click.echo, store_as=name)
    click.echo(f"wrote {fitted.path}")


@click.command("report")
@click.argument("run", type=RUN)
@click.option("--refresh", is_flag=True, help="Re-run the evaluation even if eval.json exists.")
@click.option("--device", default=None)
@TRUST
@eval_options
@user_errors
def report_command(run: Path, refresh: bool, device: str | None, trust_plugins: bool, **kwargs) -> None:
    """Write RUN/report.md with loss curves, samples, coherence, relatedness and likelihood figures."""
    from modkit.reporting.report import write_report

    loaded = _load(run, device, needs_data=True, trust=trust_plugins)
    _threads(loaded)
    path = write_report(loaded, settings_from(kwargs), refresh, echo=click.echo)
    click.echo(f"wrote {path} (figures in {path.parent / 'report'})")


@click.command("sweep")
@click.argument("recipe", required=False, type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=SPACE",
              help="A swept key: a list a,b,c, range(lo,hi[,step]) or log(lo,hi); seed=0,1,2 repeats every trial. "
                   "KEY=VALUE without a list or range is a fixed override.")
@click.option("--sampler", type=click.Choice(["grid", "random", "tpe"]), default=None,
              help="Default: grid when every swept key has finite values, else tpe.")
@click.option("--trials", type=click.IntRange(1), default=None, help="How many trials (grid: its size; random/tpe: 20).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Trials run in parallel processes on this machine, each with cores/N threads.")
@click.option("--storage", default=None, metavar="URL",
              help="Optuna storage (postgresql://..., sqlite:///...). Default: study.db in the sweep folder.")
@click.option("--study", "study_name", default=None, help="Study name (default: the sweep folder's name).")
@click.option("--resume", default=None, metavar="SWEEP_DIR|STUDY",
              help="Join an existing sweep (its folder, or a study name with --storage): run its remaining trials, "
                   "retry interrupted ones from their checkpoints.")
@click.option("--objective", default="test/elbo", show_default=True, help="The metric the search optimises (mean over seeds).")
@click.option("--direction", type=click.Choice(["maximize", "minimize"]), default=None,
              help="Default: minimize for a loss, else maximize.")
@click.option("--eval/--no-eval", "evaluate", default=True, show_default=True,
              help="Run modkit eval on every run (its metrics join summary.json's).")
@click.option("--plot", "plot_metrics", multiple=True, metavar="PATTERN",
              help="Summary metrics to plot and tabulate (glob, e.g. 'coherence/*'). Default: coherence, probe, relatedness.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Sweep folder (default: RUNS_DIR/sweep-NAME-TIMESTAMP).")
@click.option("--device", default=None)
@click.option("--heartbeat", type=click.IntRange(1), default=30, show_default=True,
              help="Seconds between a worker's heartbeats; a trial silent for 3 heartbeats is retried by another worker.")
@click.option("--as-worker", is_flag=True, hidden=True)
@eval_options
@user_errors
def sweep_command(recipe: Path | None, overrides: tuple[str, ...], sampler: str | None, trials: int | None, workers: int,
                  storage: str | None, study_name: str | None, resume: str | None, objective: str, direction: str | None,
                  evaluate: bool, plot_metrics: tuple[str, ...], out: Path | None, device: str | None, heartbeat: int,
                  as_worker: bool, **kwargs) -> None:
    """Search RECIPE's --set space with Optuna (grid, random, TPE); write sweep.md (mean ± sd), sweep.csv and plots.

    Several processes or machines share one study: start with --storage URL, then run
    'modkit sweep --resume STUDY --storage URL' anywhere (docs/sweeps.md)."""
    import dataclasses
    import os

    from modkit.errors import ModkitError
    from modkit import sweep
    from modkit.training.trainer import Interrupted

    if as_worker:  # a process started by --workers N: its thread share, no tables
        import torch

        torch.set_num_threads(int(os.environ.get("MODKIT_SWEEP_THREADS", "1")))
        config, url = sweep.locate(resume, os.environ.get("MODKIT_SWEEP_STORAGE", storage), out)
        sweep.work(config, url, click.echo, recovering=False)  # the parent queued dead trials once
        return
    if resume is not None:
        if recipe is not None or overrides:
            raise ModkitError("--resume joins a sweep as it was defined: give no RECIPE or --set with it")
        config, url = sweep.locate(resume, storage, out)
    else:
        if recipe is None:
            raise ModkitError("missing RECIPE (a YAML file) or --resume SWEEP_DIR|STUDY; see 'modkit sweep --help'")
        if out is None:
            from modkit.config.project import load_project

            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            out = load_project().runs_dir / f"sweep-{recipe.stem}-{stamp}"
        settings = dataclasses.asdict(settings_from(kwargs))
        config, url = sweep.new_sweep(recipe, list(overrides), out, storage=storage, study=study_name, sampler=sampler,
                                      trials=trials, objective=objective, direction=direction, evaluate=evaluate,
                                      settings=settings, plot=list(plot_metrics), device=device, heartbeat=heartbeat,
                                      echo=click.echo)
    try:
        sweep.run_workers(config, url, workers, click.echo)
    except Interrupted as exc:
        click.echo(str(exc).split(";")[0] + f"; continue the sweep with: modkit sweep --resume {resume or config.out}", err=True)
        raise SystemExit(exc.exit_code)
    result = sweep.finish(config, url, click.echo)
    if result is not None:
        click.echo(f"wrote {Path(config.out) / sweep.SWEEP_MD}")
