"""What a sweep writes: sweep.csv (every seed run), sweep.md (mean ± sd per trial, best first), sweep.png and
Optuna's own plots. ``finish`` is the entry point the CLI calls once the workers stop."""
from __future__ import annotations

import csv
import fnmatch
import io
import warnings
from pathlib import Path
from typing import Any, Callable

from modkit.errors import ModkitError
from modkit.storage import files as rundir
from modkit.sweep.config import SweepConfig
from modkit.sweep.results import mean_sd, results_of
from modkit.sweep.study import counts, load_study, open_storage

SWEEP_CSV = "sweep.csv"
SWEEP_MD = "sweep.md"
SWEEP_PNG = "sweep.png"
DEFAULT_METRICS = ["coherence/given_*", "coherence/joint/*", "probe/*", "relatedness/*/auc"]


def pick_metrics(names: list[str], patterns: list[str]) -> list[str]:
    chosen = [k for p in patterns for k in names if fnmatch.fnmatchcase(k, p) or k == p]
    return list(dict.fromkeys(chosen))


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        m, s = value
        return f"{m:.4g}" if s is None else f"{m:.4g} ± {s:.2g}"
    return f"{value:.4g}" if isinstance(value, float) else ("–" if value is None else str(value))


def write_results(study, config: SweepConfig, echo: Callable[[str], None]) -> dict[str, Any]:
    """sweep.csv (every seed run), sweep.md (mean ± sd per trial, best first), sweep.png and Optuna's plots."""
    from modkit.reporting import figures

    out = Path(config.out)
    keys = config.space.keys
    results = results_of(study, config)
    trials = [t for t in results.complete() if t.runs]
    if not trials:
        raise ModkitError(f"no trial of study '{config.study}' has finished yet")
    # every seed run, every metric
    runs = [{"trial": t.number, "run": f"{t.folder.name}/{r.run_dir.name}", **{k: t.values.get(k) for k in keys}, **r.metrics}
            for t in trials for r in t.runs]
    columns = list(dict.fromkeys(c for r in runs for c in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(runs)
    rundir.atomic_write_text(out / SWEEP_CSV, buffer.getvalue())
    # per trial: mean ± sd over seeds
    names = list(dict.fromkeys(k for t in trials for r in t.runs for k in r.metrics))
    chosen = [m for m in [config.objective, *pick_metrics(names, config.plot or DEFAULT_METRICS)] if m in names]
    chosen = list(dict.fromkeys(chosen))
    rows = []
    for t in trials:
        per_seed = [r.metrics for r in t.runs]
        stats = {m: mean_sd([s[m] for s in per_seed if m in s]) for m in chosen if any(m in s for s in per_seed)}
        rows.append({"trial": t.number, **{k: t.values.get(k) for k in keys}, "seeds": len(per_seed), **stats,
                     "run_dir": str(t.folder)})
    reverse = config.direction == "maximize"
    rows.sort(key=lambda r: r[config.objective][0], reverse=reverse)
    best = rows[0]
    header = ["trial", *keys, "seeds", *chosen]
    md = [f"# Sweep {config.study}", "",
          f"{len(trials)} trial(s), {config.sampler} search over {', '.join(keys) or 'seeds'}; "
          f"objective {config.objective} ({config.direction}), mean ± sd over seeds, best first.", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(_fmt(r.get(c)) for c in header) + " |" for r in rows]
    md += ["", f"Best: trial {best['trial']} ({', '.join(f'{k}={best[k]}' for k in keys) or 'seeds only'}), "
               f"{config.objective} {_fmt(best[config.objective])}; run directories: `{best['run_dir']}`.", ""]
    plots = optuna_plots(study, out)
    if keys:
        x_key = keys[0]
        xs = sorted({r[x_key] for r in rows}, key=lambda v: (not isinstance(v, (int, float)), v if isinstance(v, (int, float)) else str(v)))
        series = {m: [next((r[m][0] for r in rows if r[x_key] == x and m in r), None) for x in xs] for m in chosen}
        try:
            xs_num = [float(x) for x in xs]
            xs = xs_num
        except (TypeError, ValueError):
            pass
        figures.sweep_plot(x_key, xs, series, out / SWEEP_PNG)
        plots.insert(0, SWEEP_PNG)
    pruned = [t for t in results.trials if t.state == "pruned"]
    if pruned:
        md += ["Diverged (pruned): " + "; ".join(f"trial {t.number} ({', '.join(f'{k}={v}' for k, v in t.values.items())}): "
                                                 f"{t.error or 'pruned'}" for t in pruned), ""]
    md += [f"![{p}]({p})" for p in plots]
    md += ["", f"Every metric of every seed run: `{SWEEP_CSV}`; the study: `{config.study}`.", ""]
    rundir.atomic_write_text(out / SWEEP_MD, "\n".join(md))
    echo("| " + " | ".join(header) + " |")
    for r in rows:
        echo("| " + " | ".join(_fmt(r.get(c)) for c in header) + " |")
    echo(f"best: trial {best['trial']}, {config.objective} {_fmt(best[config.objective])}: {best['run_dir']}")
    return {"rows": rows, "best": best, "metrics": chosen, "keys": keys, "plots": plots}


def optuna_plots(study, out: Path) -> list[str]:
    """Optuna's own matplotlib figures where they have something to show (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ov

    made = []
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    plots = [("optimization_history.png", ov.plot_optimization_history, 1)]
    if complete and complete[0].params:
        plots += [("slice.png", ov.plot_slice, 2)]
        if len(complete[0].params) > 1:
            plots += [("param_importances.png", ov.plot_param_importances, 3)]
    for name, plot, needs in plots:
        if len(complete) < needs:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                axes = plot(study)
            except Exception:  # noqa: BLE001 - a plot Optuna cannot draw for this study is left out
                plt.close("all")
                continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
        figure.savefig(out / name, dpi=110, bbox_inches="tight")
        plt.close("all")
        made.append(name)
    return made




def finish(config: SweepConfig, url: str, echo: Callable[[str], None]) -> dict[str, Any] | None:
    """Tables and plots of whatever has finished; None if nothing has."""
    study, _ = load_study(config.study, open_storage(url, config.heartbeat))
    c = counts(study)
    echo(f"study '{config.study}': {c['complete']} complete, {c['pruned']} pruned, {c['running']} running, "
         f"{c['fail']} failed trial(s)")
    if not c["complete"]:
        return None
    return write_results(study, config, echo)
