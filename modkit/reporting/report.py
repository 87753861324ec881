"""``modkit report``: ``report.md`` and the figures a person would rather look at than read.

Everything comes from the run directory: ``metrics.jsonl`` (loss curves), ``eval.json`` (computed
first when missing), the checkpoint (sample grids).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from modkit.reporting import figures

from modkit.storage import files as rundir
from modkit.errors import ModkitError
from modkit.evaluation.suite import EVAL_JSON, EvalSettings, evaluate_run, grouped, summarize, write_eval
from modkit.evaluation.likelihood import no_prior_reason, prior_of
from modkit.reporting.generation import sample_prior
from modkit.runs.loading import LoadedRun

REPORT_MD = "report.md"
MAX_MATRICES = 1  # distance-matrix figures per modality pair (the attribute with most classes); all are in eval.json
FIGURES = "report"


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "–" if v != v else f"{v:.4g}"
    return str(v).replace("|", "\\|")  # a bar inside a cell (log p(a|b)) would end it


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(_fmt(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _safe(text: str) -> str:
    """A name from eval.json made safe as part of a file name: no separators, no leading dot, not too long."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text))[:60] or "_"


def _class_names(run: LoadedRun, attribute: str) -> list[str] | None:
    """Names a label-like modality on the attribute's field renders its classes with, if any."""
    for name, modality in run.model.modalities.items():
        if run.recipe.field_of(name) == attribute:
            names = getattr(modality.config, "class_names", None)
            if names:
                return list(names)
    return None


def write_report(run: LoadedRun, settings: EvalSettings | None = None, refresh: bool = False,
                 echo: Callable[[str], None] = lambda s: None, n_samples: int = 32) -> Path:
    run_dir = run.run_dir
    eval_path = run_dir / EVAL_JSON
    if refresh or not eval_path.exists():
        echo(f"no {EVAL_JSON} yet: evaluating first" if not eval_path.exists() else "re-evaluating")
        result = evaluate_run(run, settings, echo)
        write_eval(run, result)
    else:
        result = rundir.read_json(eval_path)
        if not isinstance(result, dict) or not isinstance(result.get("modalities"), list):
            raise ModkitError(f"{eval_path} is not an evaluation modkit wrote (no 'modalities' list); run 'modkit report "
                              f"{run_dir} --refresh' to evaluate again")
        try:
            return _write(run, result, n_samples)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            raise ModkitError(f"{eval_path} does not have the layout modkit eval writes ({type(exc).__name__}: "
                              f"{str(exc)[:200]}); run 'modkit report {run_dir} --refresh' to evaluate again") from None
    return _write(run, result, n_samples)


def _write(run: LoadedRun, result: dict, n_samples: int) -> Path:
    run_dir = run.run_dir
    fig_dir = run_dir / FIGURES
    fig_dir.mkdir(exist_ok=True)
    md: list[str] = [f"# Report: {run.recipe.name}", "",
                     f"Run `{run_dir}`, checkpoint at epoch {result.get('epoch')}, evaluated on {result.get('test_items')} test items "
                     f"({result.get('device')}, {result.get('seconds')} s). Modalities: {', '.join(result['modalities'])}; "
                     f"attributes judged: {', '.join(result.get('attributes', [])) or 'none'}.", ""]

    def link(path: Path | None, alt: str) -> None:
        if path is not None:
            md.extend([f"![{alt}]({path.relative_to(run_dir).as_posix()})", ""])

    # -- training ------------------------------------------------------------------------------
    md += ["## Training", ""]
    link(figures.loss_curves(rundir.read_metrics(run_dir), fig_dir / "loss_curves.png"), "loss curves")
    summary_path = run_dir / rundir.SUMMARY
    if summary_path.exists():
        summary = rundir.read_json(summary_path)
        md += _table(["metric", "value"], [[k, v] for k, v in summary.items() if isinstance(v, float)])

    # -- headline -------------------------------------------------------------------------------
    md += ["## Headline numbers", ""]
    md += _table(["metric", "value"], [[k, v] for k, v in summarize(result, result["modalities"]).items()])

    # -- samples --------------------------------------------------------------------------------
    md += ["## Samples", ""]
    if prior_of(run.model) is None:
        md += [f"Unconditional samples: {no_prior_reason(run.model)}.", ""]
    else:
        md += ["Unconditional samples z ~ p(z), every modality decoded (one cell per sample):", ""]
        path, _ = sample_prior(run, n_samples, fig_dir / "prior_samples.png", seed=0)
        link(path, "prior samples")
    complete = [i for i in range(len(run.setup.test)) if bool(run.setup.test.presence[i].all())][: run.recipe.eval.samples]
    if complete:
        from modkit.reporting.samples import sample_grid

        columns, cells = sample_grid(run.model, run.setup.test.__getitems__(complete).to(run.model.device))
        names = run.model.names
        items = [[cells[r][c] for r in range(len(cells))] for c in range(len(columns))]  # one grid column per source
        path = figures.grid(items, fig_dir / "conditional_samples.png", columns=len(columns), column_titles=columns,
                            row_names=[f"#{r // len(names)} {names[r % len(names)]}" for r in range(len(cells))])
        md += ["Test items (first column), reconstructed from all modalities and generated from each modality alone "
               "(posterior means):", ""]
        link(path, "conditional samples")

    # -- coherence ------------------------------------------------------------------------------
    coherence = result.get("coherence")
    if coherence:
        md += ["## Coherence", "",
               "Class-balanced accuracy of the attribute read off the generated target by a judge "
               "(see the judges' own accuracy on real test data below: the ceiling). The last row is chance: 1/K for "
               "an attribute with K classes, what any constant or random generator scores.", ""]
        cross = {key: grouped(per_attr) for key, per_attr in coherence.get("cross", {}).items()}  # field[*]: mean over entries
        sources = list(dict.fromkeys(k.split("->")[0] for k in cross))
        columns = list(dict.fromkeys(f"{k.split('->')[1]}/{a}" for k, v in cross.items() for a in v))
        if sources and columns:
            values = np.full((len(sources), len(columns)), np.nan)
            for key, per_attr in cross.items():
                s, t = key.split("->")
                for a, v in per_attr.items():
                    if v is not None:
                        values[sources.index(s), columns.index(f"{t}/{a}")] = v
            link(figures.table_heatmap(sources, columns, values, fig_dir / "coherence.png",
                                       "cross-modal coherence (rows: given subset; columns: target/attribute)"), "coherence table")
            chance = grouped(result.get("chance", {}))
            md += _table(["given \\ target/attribute", *columns],
                         [[s, *values[i]] for i, s in enumerate(sources)] + [["*chance*", *[chance.get(c.split("/", 1)[1]) for c in columns]]])
        if coherence.get("joint"):
            md += ["Joint coherence (z ~ p(z); all judges of an attribute agree):", ""]
            md += _table(["attribute", "agreement"], [[a, v] for a, v in grouped(coherence["joint"]).items()])
        if result.get("judges"):
            md += _table(["judge (modality/attribute)", "kind", "balanced accuracy on real test data"],
                         [[k, v["kind"], v["balanced_accuracy"]] for k, v in result["judges"].items()])

    # -- representations ------------------------------------------------------------------------
    if result.get("probe"):
        md += ["## Linear probes", "", "Balanced accuracy of logistic regression on posterior means (fit on training rows):", ""]
        probes = {s: grouped(v) for s, v in result["probe"].items()}
        attrs = list(dict.fromkeys(a for v in probes.values() for a in v))
        md += _table(["posterior", *attrs], [[s, *[v.get(a) for a in attrs]] for s, v in probes.items()])
    if result.get("relatedness"):
        md += ["## Relatedness (2-Wasserstein between unimodal posteriors)", ""]
        rows = []
        for pair, cell in result["relatedness"].items():
            a, b = pair.split("~")
            rows.append([pair, cell["paired_mean"], cell["unpaired_mean"], cell["auc"]])
            link(figures.histogram(cell["histogram"], fig_dir / f"relatedness_{_safe(a)}_{_safe(b)}.png", f"W2(q(z|{a}), q(z|{b}))"), f"{pair} histogram")
            matrices = sorted(cell.get("class_distance", {}).items(), key=lambda kv: -len(kv[1]["classes"]))
            for attr, mat in matrices[:MAX_MATRICES]:  # the attributes with most classes; all are in eval.json
                names = _class_names(run, attr)
                shown = [names[c] for c in mat["classes"]] if names and max(mat["classes"]) < len(names) else None
                link(figures.distance_matrix(mat["classes"], mat["matrix"], fig_dir / f"distance_{_safe(a)}_{_safe(b)}_{_safe(attr)}.png",
                                             f"mean W2: q(z|{a}) of the row {attr} vs q(z|{b}) of the column {attr}", shown),
                     f"{pair} class distance matrix")
        md += _table(["pair", "mean W2 paired", "mean W2 unpaired", "AUC paired vs unpaired"], rows)

    # -- likelihoods and task metrics -----------------------------------------------------------
    for quantity, reason in result.get("not_applicable", {}).items():
        md += [f"**{quantity}**: {reason}.", ""]
    if result.get("likelihood"):
        s = result["settings"]
        md += ["## Log-likelihoods (importance sampled)", "",
               f"K = {s['iw_samples']} samples from the posterior of the conditioning set; conditionals divide by "
               f"p(x_given) from {s['prior_samples'] if s['denominator'] == 'prior' else s['iw_samples']} "
               f"{'prior' if s['denominator'] == 'prior' else 'posterior'} samples. Nats per item; higher is better.", ""]
        alt = any("mean_posterior_denominator" in v for v in result["likelihood"].values())
        md += _table(["quantity", "estimate", "standard error",
                      *(["with posterior-sampled log p(x_given)", "better of the two (smaller log-weight variance)"] if alt else []),
                      "variance of log weights", "items"],
                     [[k, v["mean"], v.get("stderr"), *([v.get("mean_posterior_denominator"), v.get("mean_best")] if alt else []),
                       v["log_w_var"], v["items"]] for k, v in result["likelihood"].items()])
        md += [f"**Warning:** {v['warning']}" for v in result["likelihood"].values() if v.get("warning")]
        if alt:
            md += ["The two conditional columns share the numerator and differ in log p(x_given): the paper's prior samples "
                   "(accurate for a low-dimensional x_given, poor when p(x_given|z) is sharp, as for images) or the "
                   "posterior-proposal estimate above (better for sharp likelihoods, biased low when q(z|x_given) is a poor "
                   "proposal, which a large variance of log weights shows). Their gap is a measure of estimator error.", ""]
    if result.get("reconstruction"):
        md += ["## Reconstruction", "", "From each subset's posterior mean: −log p(x_target | z̄) per item, and the mean squared error where the data are real-valued.", ""]
        md += _table(["given->target", "NLL", "MSE", "items"],
                     [[k, v.get("nll"), v.get("mse"), v.get("items")] for k, v in result["reconstruction"].items()])
    for metric, cells in (result.get("task") or {}).items():
        md += [f"## Task metric: {metric}", ""]
        if "error" in cells:
            md += [f"Not computed: {cells['error']}", ""]
            continue
        md += _table(["given->target", metric], [[k, v if not isinstance(v, dict) else json.dumps(v)] for k, v in cells.items()])

    path = run_dir / REPORT_MD
    rundir.atomic_write_text(path, "\n".join(md) + "\n")
    return path
