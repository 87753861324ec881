"""``modkit sweep``: train and evaluate a recipe over a grid of ``--set`` values, then tabulate and plot.

``--set data.paired_fraction=0.01,0.1,1.0`` sweeps; a ``--set`` without a top-level comma is a fixed
override. Several swept keys give their Cartesian product. Runs go in-process, one after another,
each in its own run directory under the sweep directory, and each gets its own ``eval.json``.
"""
from __future__ import annotations

import csv
import fnmatch
import io
import itertools
from pathlib import Path
from typing import Any, Callable

from modkit.reporting import figures

from modkit.runs import files as rundir
from modkit.errors import ModkitError, RecipeError
from modkit.evaluation.suite import EVAL_JSON, EvalSettings, evaluate_run
from modkit.config.recipe import parse_override

SWEEP_CSV = "sweep.csv"
SWEEP_MD = "sweep.md"
SWEEP_PNG = "sweep.png"
DEFAULT_METRICS = ["coherence/given_*", "coherence/joint/*", "probe/*", "relatedness/*/auc"]


def split_values(text: str) -> list[str]:
    """Split on commas outside brackets and quotes: ``a=[1,2],[3,4]`` → ``["[1,2]", "[3,4]"]``."""
    parts, depth, quote, current = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return [p.strip() for p in parts]


def parse_grid(overrides: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Fixed overrides and swept (key, raw values)."""
    fixed, swept = [], []
    for text in overrides:
        if "=" not in text:
            raise RecipeError("--set", f"'{text}' is not key=value")
        key, raw = text.split("=", 1)
        values = split_values(raw)
        if len(values) > 1:
            if any(v == "" for v in values):
                raise RecipeError("--set", f"'{text}' has an empty value in its list")
            swept.append((key.strip(), values))
        else:
            fixed.append(text)
    if not swept:
        raise ModkitError("nothing to sweep: give at least one --set KEY=V1,V2,...")
    return fixed, swept


def pick_metrics(summary_keys: list[str], patterns: list[str]) -> list[str]:
    chosen = [k for p in patterns for k in summary_keys if fnmatch.fnmatchcase(k, p) or k == p]
    return list(dict.fromkeys(chosen))


def run_sweep(recipe_path: Path, overrides: list[str], out: Path, device: str | None, settings: EvalSettings,
              metrics: list[str] | None, echo: Callable[[str], None] = print) -> dict[str, Any]:
    from modkit.config.project import load_project
    from modkit.config.recipe import load_recipe
    from modkit.runs import lifecycle

    project = load_project()
    fixed, swept = parse_grid(overrides)
    keys = [k for k, _ in swept]
    combos = list(itertools.product(*[v for _, v in swept]))
    rundir.ensure_writable(out)
    rows: list[dict[str, Any]] = []
    for i, combo in enumerate(combos):
        sets = fixed + [f"{k}={v}" for k, v in zip(keys, combo)] + ([f"train.device={device}"] if device else [])
        recipe, _ = load_recipe(recipe_path, sets, project)  # validates every value before training starts
        label = ", ".join(f"{k}={v}" for k, v in zip(keys, combo))
        run_dir = out / f"run-{i:02d}"
        echo(f"[{i + 1}/{len(combos)}] {label} → {run_dir}")
        if (run_dir / EVAL_JSON).exists():
            echo("  already done; reusing its eval.json")
        else:
            if (run_dir / rundir.SUMMARY).exists():
                echo("  already trained; evaluating")
            elif (run_dir / rundir.RECIPE).exists():  # a sweep stopped during this run: continue it
                lifecycle.train(overrides=sets, resume=run_dir, echo=lambda s: echo("  " + s))
            else:
                lifecycle.train(recipe_path, overrides=sets, out=run_dir, echo=lambda s: echo("  " + s))
            run = lifecycle.load(run_dir, recipe.train.device)
            rundir.write_json(run_dir / EVAL_JSON, evaluate_run(run, settings))
        result = rundir.read_json(run_dir / EVAL_JSON)
        rows.append({"run": run_dir.name, **{k: _value(v) for k, v in zip(keys, combo)}, **result.get("summary", {})})
    summary_keys = list(dict.fromkeys(k for r in rows for k in r if k not in ("run", *keys)))
    chosen = pick_metrics(summary_keys, metrics or DEFAULT_METRICS)
    write_outputs(out, keys, rows, chosen)
    return {"rows": rows, "metrics": chosen, "keys": keys}


def _value(raw: str) -> Any:
    return parse_override(f"x={raw}")[1]


def write_outputs(out: Path, keys: list[str], rows: list[dict[str, Any]], chosen: list[str]) -> None:
    columns = ["run", *keys, *[c for c in dict.fromkeys(k for r in rows for k in r) if c not in ("run", *keys)]]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    rundir.atomic_write_text(out / SWEEP_CSV, buffer.getvalue())
    header = [*keys, *chosen]
    md = [f"# Sweep over {', '.join(keys)}", "", f"![metrics vs {keys[0]}]({SWEEP_PNG})", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        md.append("| " + " | ".join(_fmt(r.get(c)) for c in header) + " |")
    md += ["", f"Every metric of every run: `{SWEEP_CSV}`; each run's `eval.json` is in its run directory.", ""]
    rundir.atomic_write_text(out / SWEEP_MD, "\n".join(md))
    # one line per metric (and per combination of the other swept keys)
    x_key, others = keys[0], keys[1:]
    xs = list(dict.fromkeys(r[x_key] for r in rows))
    series: dict[str, list] = {}
    for metric in chosen:
        groups = dict.fromkeys(tuple(r[k] for k in others) for r in rows)
        for g in groups:
            name = metric + ("" if not others else " (" + ", ".join(f"{k}={v}" for k, v in zip(others, g)) + ")")
            lookup = {r[x_key]: r.get(metric) for r in rows if tuple(r[k] for k in others) == g}
            series[name] = [lookup.get(x) for x in xs]
    figures.sweep_plot(x_key, xs, series, out / SWEEP_PNG)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else ("–" if v is None else str(v))
