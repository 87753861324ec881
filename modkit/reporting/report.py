"""``modkit report``: ``report.md`` and the figures a person would rather look at than read.

Everything comes from the run directory: ``metrics.jsonl`` (loss curves), ``eval.json`` (computed
first when missing), the checkpoint (sample grids).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable


from modkit.reporting import figures

from modkit.storage import files as rundir
from modkit.errors import ModkitError
from modkit.core.capabilities import class_names_of
from modkit.evaluation.metric import Block, Figure, Table, Text
from modkit.evaluation.metrics import REPORT_ORDER, ordered
from modkit.evaluation.suite import EVAL_JSON, EvalSettings, evaluate_run, metric_classes, summarize, write_eval
from modkit.evaluation.likelihood import no_prior_reason, prior_of
from modkit.reporting.generation import sample_prior

if TYPE_CHECKING:
    from modkit.runs.loading import LoadedRun

REPORT_MD = "report.md"
FIGURES = "report"
#: the metrics whose sections come before the lines naming what does not apply (no prior), as they always have
BEFORE_NOT_APPLICABLE = ("coherence", "probe", "relatedness")


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


def _class_names(run: "LoadedRun", attribute: str) -> list[str] | None:
    """Names a Classifiable modality on the attribute's field gives its classes, if any."""
    for name, modality in run.model.modalities.items():
        if run.recipe.field_of(name) == attribute:
            names = class_names_of(modality)
            if names:
                return names
    return None


def _figure(run: "LoadedRun", figure: Figure, path: Path) -> Path | None:
    """Draw a figure a metric declared (its ``kind`` among the report's figure kinds)."""
    a = figure.args
    if figure.kind == "heatmap":
        return figures.table_heatmap(a["rows"], a["columns"], a["values"], path, a["title"])
    if figure.kind == "histogram":
        return figures.histogram(a["histogram"], path, a["title"])
    if figure.kind == "distance_matrix":
        names = _class_names(run, a["class_attribute"]) if a.get("class_attribute") else None
        shown = [names[c] for c in a["classes"]] if names and max(a["classes"]) < len(names) else None
        return figures.distance_matrix(a["classes"], a["matrix"], path, a["title"], shown)
    raise ModkitError(f"a metric asks for a figure of kind '{figure.kind}' (kinds: heatmap, histogram, distance_matrix)")


def write_report(run: "LoadedRun", settings: EvalSettings | None = None, refresh: bool = False,
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


def _write(run: "LoadedRun", result: dict, n_samples: int) -> Path:
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
    md += _table(["metric", "value"], [[k, v] for k, v in summarize(result, result["modalities"], metric_classes(run)).items()])

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

    # -- what each metric declares: its sections, in the built-ins' order, then the others' -------
    def render(blocks: list[Block]) -> None:
        for block in blocks:
            if isinstance(block, Text):
                md.extend(block.lines)
            elif isinstance(block, Table):
                md.extend(_table(block.header, block.rows))
            else:
                link(_figure(run, block, fig_dir / block.file), block.alt)

    metrics = ordered(metric_classes(run), REPORT_ORDER)
    for cls in [m for m in metrics if m.name in BEFORE_NOT_APPLICABLE]:
        render(cls().report(result))
    for quantity, reason in result.get("not_applicable", {}).items():
        md += [f"**{quantity}**: {reason}.", ""]
    for cls in [m for m in metrics if m.name not in BEFORE_NOT_APPLICABLE]:
        render(cls().report(result))

    path = run_dir / REPORT_MD
    rundir.atomic_write_text(path, "\n".join(md) + "\n")
    return path
