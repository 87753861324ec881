"""``python -m reproductions``: the papers' claims over seeds, beside baselines, with verdicts (docs/reproducing.md).

Research code beside the library, run from the repository's root: it needs the checkout's recipes/ and
docs/, so it is no command of the installed ``modkit``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from modkit.errors import user_errors

COMMAND = ["python", "-m", "reproductions"]  # how the report's stamp names the command


@click.command("reproductions")
@click.argument("claims", nargs=-1)
@click.option("--quick", is_flag=True, help="One seed, one epoch (stability: three), one x value: checks the machinery in minutes (verdicts inconclusive).")
@click.option("--seeds", type=click.IntRange(1), default=3, show_default=True, help="Seeds per arm and x (the full tier).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, help="Training processes (each gets cores/N threads).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where the runs go (default: runs/reproduce, or runs/reproduce-quick); rerunning continues them.")
@click.option("--report", type=click.Path(path_type=Path), default=None,
              help="The Markdown written (default: docs/reproductions.md; with --quick: OUT/reproductions.md).")
@click.option("--no-train", is_flag=True, help="Train nothing: report the trials that have finished (a run still in "
              "progress elsewhere, or one cut short); a cell says over how many seeds it is. An arm with no finished trial "
              "keeps its stored cells where its definition and x values are unchanged (docs/reproducing.md).")
@click.option("--arms", default=None, metavar="A,B", help="Train only these arms (by name); the claim's other arms "
              "report the runs of theirs that have finished, as with --no-train.")
@click.option("--list", "list_claims", is_flag=True, help="List the claims and exit.")
@click.option("--render", "render_only", is_flag=True, help="Train and read nothing: rewrite the report (and the fusion "
              "pages) from its reproductions.json and the claims' declarations as they are now.")
@click.option("--tier", type=click.Choice(["full", "paper"]), default="full", show_default=True,
              help="full: the recipes' sizes (2 CPU cores); paper: each claim's paper data and settings (needs the "
              "data locally; a GPU).")
@user_errors
def main(claims: tuple[str, ...], quick: bool, seeds: int, workers: int, out: Path | None, report: Path | None,
         no_train: bool, arms: str | None, list_claims: bool, render_only: bool, tier: str) -> None:
    """Run CLAIMS (default: all) and write their verdicts: reproduced, in direction only, or contradicted."""
    from reproductions import claims as catalogue
    from reproductions.reproduce import RESULTS_MD, project_root, reproduce

    if list_claims:
        for claim in catalogue.CLAIMS:
            click.echo(f"{claim.id:<28} {claim.title} ({claim.source})")
        return
    command = [*COMMAND, *sys.argv[1:]]
    if render_only:
        from reproductions.render import rerender

        report = report or project_root() / "docs" / RESULTS_MD
        rerender(report.with_suffix(".json"), report, command, echo=click.echo)
        return
    if tier == "paper":
        from reproductions.tiers import paper_claims

        if quick:
            raise click.UsageError("--quick and --tier paper exclude each other")
        chosen = paper_claims(catalogue.find(list(claims)))  # refuses, in one line, where the data is missing
        out = out or Path("runs") / "reproduce-paper"
        report = report or out / RESULTS_MD
        reproduce([c.id for c in chosen], False, seeds, 0 if no_train else workers, out, report,
                  out / "figures", command, echo=click.echo, catalogue=chosen)
        return
    out = out or Path("runs") / ("reproduce-quick" if quick else "reproduce")
    report = report or (out / RESULTS_MD if quick else project_root() / "docs" / RESULTS_MD)
    figures = report.parent / "figures" / "reproductions" if not quick else out / "figures"
    reproduce(list(claims), quick, seeds, 0 if no_train else workers, out, report, figures, command, echo=click.echo,
              only=[a.strip() for a in arms.split(",") if a.strip()] if arms else None)


if __name__ == "__main__":
    main(prog_name="python -m reproductions")
