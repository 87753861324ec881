"""docs/reproductions.md from the stored results (reproductions.json) and the claims' declarations.

The JSON holds what each run measured: per claim its table (mean, sd, n per arm and x, and where the run recorded
it the per-epoch history the plateau rule reads), the rule's measured verdict, its stamp and the digest of the
declaration it was measured under. Everything the page adds is decided here from the declarations as they are
now (:mod:`reproductions.claims`): the setup table beside the paper's, the verdict qualified by scale and
convergence (:mod:`reproductions.verdicts`), the diagnoses with their controls, and a line where a claim's
declaration has changed since its run. ``python -m reproductions --render`` rewrites the page (and the fusion
pages) from the JSON alone, training and reading no run folder; the page is stamped with that command, each claim
keeps its own run's stamp.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from modkit.errors import ModkitError
from reproductions import setups, verdicts
from reproductions.claim_spec import Arm, Claim, project_root
from reproductions.fusion_tables import cell, portable


def _esc(text: Any) -> str:
    return str(text).replace("|", "\\|")


def stamp_lines(meta: dict[str, Any] | None) -> list[str]:
    if not meta:
        return []
    parts = [f"commit `{meta['commit']}`", f"written {meta['date']}"] + ([f"runs trained {meta['trained']}"] if meta.get("trained") else [])
    return [f"Measured by `{portable(meta['command'])}` ({', '.join(parts)}).", ""]


def _names(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def carried_lines(r: dict[str, Any]) -> list[str]:
    """Which arms the claim's own run measured and which it carried over from an earlier run (their stored cells:
    a run that measured only some arms keeps the others'), each with that earlier run's stamp."""
    sources: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for arm in r.get("arms", []):
        if arm.get("carried_from"):
            key = repr(sorted(arm["carried_from"].items()))
            sources.setdefault(key, (arm["carried_from"], []))[1].append(arm["name"])
    if not sources:
        return []
    carried = {n for _, names in sources.values() for n in names}
    mine = [a["name"] for a in r.get("arms", []) if a["name"] not in carried
            and any(c.get("n") for c in r.get("table", {}).get(a["name"], {}).values())]
    out = [f"Arms {_names(mine)}: measured by the run above." if mine else "No arm was measured by the run above."]
    for src, names in sources.values():
        parts = [f"commit `{src['commit']}`" if src.get("commit") else "", f"written {src['date']}" if src.get("date") else "",
                 f"runs trained {src['trained']}" if src.get("trained") else ""]
        parts = [p for p in parts if p]
        out.append(f"Arms {_names(names)}: stored cells from `{portable(src.get('command', '?'))}`"
                   + (f" ({', '.join(parts)})" if parts else "")
                   + ", carried over: the run above had no finished trial of theirs, and their kind, recipe, `--set` "
                   "values, metric and x values are those the earlier run measured.")
    return [line for text in out for line in (text, "")]


def _projection(arms: list[dict[str, Any]], stages: list[dict[str, Any]]) -> list:
    return sorted([[a["name"], a.get("kind", "model"), a.get("recipe", ""), list(a.get("sets") or []), a.get("after", ""),
                    list(a.get("best_of") or [])] for a in arms]
                  + [[p["name"], "pretrain", p.get("recipe", ""), list(p.get("sets") or []), "", []] for p in stages])


def as_run(r: dict[str, Any], claim: Claim) -> Claim:
    """The claim as the stored run declared it: the stored arms' recipes and ``--set`` values (what the setup table
    must describe: the run that measured the numbers), the declared arms the run did not have added."""
    declared = {a.name: a for a in claim.arms}
    arms = []
    for d in [*r.get("arms", []), *({**p, "kind": "pretrain"} for p in r.get("stages", []))]:
        mine = declared.get(d["name"])
        arms.append(Arm(d["name"], d.get("recipe", ""), tuple(d.get("sets") or ()), kind=d.get("kind", "model"),
                        label=d.get("title", ""), after=d.get("after", ""), best_of=tuple(d.get("best_of") or ()),
                        at=mine.at if mine is not None else None))
    stored = {a.name for a in arms}
    arms += [a for a in claim.arms if a.name not in stored]
    return dataclasses.replace(claim, arms=tuple(arms), subject=r.get("subject", claim.subject),
                               baseline=r.get("baseline", claim.baseline), xs=tuple(x for x in r.get("xs", claim.xs) if x is not None))


def changed_since(r: dict[str, Any], claim: Claim) -> bool:
    """Whether the declaration differs from the one the stored run was measured under: by the stored digest, or for
    a run stored before digests were, by its stored arms (recipes, ``--set`` values, stages), x values and metric."""
    if r.get("declaration"):
        return r["declaration"] != setups.digest(claim)
    now = [{"name": a.name, "kind": a.kind, "recipe": a.recipe, "sets": list(a.sets), "after": a.after,
            "best_of": list(a.best_of)} for a in claim.arms if a.kind not in ("pretrain", "tune")]
    stages = [{"name": a.name, "recipe": a.recipe, "sets": list(a.sets)} for a in claim.arms if a.kind == "pretrain"]
    stored_xs = [x for x in r.get("xs", []) if x is not None]
    return (_projection(r.get("arms", []), r.get("stages", [])) != _projection(now, stages)
            or stored_xs != list(claim.xs) or r.get("metric") != claim.metric
            or r.get("subject") != claim.subject or r.get("baseline") != claim.baseline)


def assess(r: dict[str, Any], claim: Claim | None) -> dict[str, Any]:
    """What the page says of one stored claim: its setup rows (of the run that measured it), deviations, plateau,
    the page's verdict and whether its declaration changed since the run."""
    measured = r.get("measured") or r["verdict"]
    if claim is None:
        return {"verdict": measured, "measured": measured, "setup": [], "deviations": [], "plateau": None,
                "changed": None, "question": "paper"}
    changed = changed_since(r, claim)
    claim = as_run(r, claim)
    rows = setups.setup_rows(claim)
    devs = setups.deviations(rows)
    # a tuned arm chosen by its test means is no fair comparison, whatever the paper did, unless the choice decides
    # nothing: the rule gives the same verdict against each candidate alone
    devs += [f"`{a['name']}` chosen on the test scenes (tuned by its test means)" for a in r.get("arms", [])
             if a.get("best_of") and not a.get("chosen_on") and choice_decides(r, claim, a)]
    reads = [claim.subject] + ([claim.baseline] if claim.baseline != claim.subject else [])
    reads = [a.name for a in claim.arms if a.name in reads and a.kind in ("model", "best")]
    plateau = verdicts.plateau_state(r, claim.plateau, reads) if reads else verdicts.plateau_state(r, None, [])
    return {"verdict": verdicts.qualified(measured, question=claim.question, plateau=plateau, deviations=devs),
            "measured": measured, "setup": rows, "deviations": devs, "plateau": plateau, "changed": changed,
            "question": claim.question}


def candidate_verdicts(r: dict[str, Any], claim: Claim, arm: dict[str, Any]) -> dict[str, str] | None:
    """The rule's verdict with each of a best-of baseline's candidates alone as the baseline, from the stored cells;
    None when ``arm`` is not the claim's baseline or a candidate has no cells."""
    from reproductions.reproduce import verdict

    if arm["name"] != claim.baseline or not arm.get("best_of"):
        return None
    xs = {str(x): x for x in claim.xs}
    table = {name: {xs.get(k, k): c for k, c in cells.items()} for name, cells in (r.get("table") or {}).items()}
    if claim.subject not in table or any(name not in table for name in arm["best_of"]):
        return None
    return {name: verdict(dataclasses.replace(claim, baseline=name), table, {})[0] for name in arm["best_of"]}


def choice_decides(r: dict[str, Any], claim: Claim, arm: dict[str, Any]) -> bool:
    """Whether choosing a best-of baseline by test means could have changed the measured verdict: not when the rule
    gives the stored verdict against every candidate alone (then no choice of candidate, fair or not, changes it)."""
    return _alone_differs(r, candidate_verdicts(r, claim, arm))


def _alone_differs(r: dict[str, Any], alone: dict[str, str] | None) -> bool:
    """Whether the candidates' verdicts alone (None: unknown) differ from the stored measured verdict."""
    return alone is None or set(alone.values()) != {r.get("measured") or r["verdict"]}


def _setup_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = ["Setup (modkit's column read from the arms' resolved recipes and the dataset; the paper's as the claim "
           "declares it):", "", "| setting | modkit | paper | key setting |", "|---|---|---|---|"]
    for r in rows:
        mark = ("matches" if r.get("matches") else "**differs**") if r["key"] else "—"
        out.append(f"| {_esc(r['name'])} | {_esc(r['modkit'])} | {_esc(r['paper'])} | {mark} |")
    return out + [""]


def _plateau_line(claim: Claim | None, a: dict[str, Any], titles: dict[str, str]) -> list[str]:
    p = a.get("plateau")
    if claim is None or p is None:
        return []
    if p["state"] == "no rule":
        return ["Plateau: not checked for this claim (it declares no plateau rule).", ""]
    rule = claim.plateau.text() if claim.plateau else ""
    if p["state"] == "improving":
        where = "; ".join(f"{titles.get(arm, arm)} at {x}" for arm, x in p["improving"])
        return [f"Plateau rule: {rule}. Still improving: {where}.", ""]
    if p["state"] == "not checked":
        return [f"Plateau rule: {rule}. Not checked: the stored result has no per-epoch history of the rule's key "
                "for the arms the verdict reads (runs measured before histories were stored).", ""]
    return [f"Plateau rule: {rule}. Every arm the verdict reads has plateaued.", ""]


def _diagnoses(claim: Claim | None, r: dict[str, Any], results: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    if claim is None:
        return [f"Diagnosis: {r['diagnosis']}", ""] if r.get("diagnosis") else []
    for d in claim.diagnoses:
        if verdicts.control_result(d.control, claim.id, results):
            out += [f"Diagnosis (control: `{d.control}`): {d.text}", ""]
        else:
            out += [f"Unsupported diagnosis (its control `{d.control}` has no result yet, so this is a hypothesis, "
                    f"not a finding): {d.text}", ""]
    if claim.diagnosis:
        out += [f"Notes: {claim.diagnosis}", ""]
    return out


def _x_label(x: Any, counts: dict[str, int], what: str) -> str:
    if x is None:
        return "—"
    return f"{x} ({counts[str(x)]:,} {what})" if str(x) in counts else str(x)


def render(results: list[dict[str, Any]], meta: dict[str, Any], out: Path, quick: bool,
           rendered: dict[str, Any] | None = None) -> str:
    """The page. ``meta`` is the stamp of the command that last wrote the JSON; ``rendered`` the stamp of a
    render from the JSON alone (None when the same command wrote both)."""
    from reproductions.claims import CLAIMS

    declared = {c.id: c for c in CLAIMS}
    by_id = {r["id"]: r for r in results}
    assessed = {r["id"]: assess(r, declared.get(r["id"])) for r in results}
    md = ["# Reproductions", "",
          "Generated by `python -m reproductions` — do not edit: rerun the command below. Each claim is the paper's "
          "statement and number, its setup beside the paper's, modkit's measurement (mean ± sd over seeds, n in "
          "brackets) beside a baseline, and a verdict decided by the rule written in `reproductions/claims.py` "
          "before the run.", ""]
    if rendered:
        md += [f"This page was rendered from [reproductions.json](reproductions.json) alone, training nothing, by "
               f"`{portable(rendered['command'])}` (commit `{rendered['commit']}`, date {rendered['date']}, machine: "
               f"{rendered['machine']}): setup tables, verdicts and diagnoses follow the declarations at that commit, "
               "the numbers are the stored ones. The JSON was last written by the command below.", ""]
    md += ["Each claim's own stamp says which run of the command measured it (a command given some claims rewrites "
           "theirs and keeps the others).", "",
           f"- commit: `{meta['commit']}`", f"- date: {meta['date']} (finished {meta.get('finished', '?')})",
           *([f"- runs trained: {meta['trained']}"] if meta.get("trained") else []), f"- machine: {meta['machine']}",
           f"- load average when written: {meta.get('load', '')}", f"- command: `{portable(meta['command'])}`", "",
           "Seeds change the initialisation, the sampling and the minibatch order; the data, the train/test split "
           "and which rows are paired are fixed (`data.split_seed`, the dataset's own seed), so each sd is over "
           "training alone.", "", f"How to read a verdict: {verdicts.VOCABULARY}", ""]
    if quick:
        md += ["**Quick tier** (one seed, few epochs, one x value): it checks the machinery, not the papers; every "
               "verdict is inconclusive by construction.", ""]
    md += ["| claim | paper | verdict |", "|---|---|---|"]
    md += [f"| [{r['title']}](#{r['id']}) | {r['source']} | **{assessed[r['id']]['verdict']}** |" for r in results]
    md.append("")
    for r in results:
        claim, a = declared.get(r["id"]), assessed[r["id"]]
        titles = {arm["name"]: arm["title"] for arm in r["arms"]}
        md += [f"<a id=\"{r['id']}\"></a>", f"## {r['title']}", "", f"*{r['source']}.* {r['statement']}", "",
               f"Paper: {r['paper_number']}.", "", *stamp_lines(r.get("meta")), *carried_lines(r)]
        if a["question"] == "modkit":
            md += ["**modkit's own question**: the paper did not pose this comparison; the verdict says whether it "
                   "holds, not whether the paper reproduces.", ""]
        if a["changed"]:
            md += ["**The claim's declaration has changed since this run** (its arms, recipes, x values, evaluation "
                   "or rule differ from those the stored numbers were measured under): the numbers, the setup table "
                   "and the verdict below are the earlier declaration's; rerun the claim to measure the current one.", ""]
        elif claim is not None and not r.get("declaration"):
            md += ["(Stored before declarations were digested: its arms, recipes, `--set` values, x values and "
                   "metric match the declaration's; a change of its evaluation settings could not be detected.)", ""]
        if claim is None:
            md += ["(This claim is no longer declared in `reproductions/`: shown as stored.)", ""]
        md += _setup_table(a["setup"])
        md += [f"Metric: {r['metric_label']} (`{r['metric']}`); subject `{r['subject']}`, baseline `{r['baseline']}`.", ""]
        for arm in r["arms"]:
            if arm.get("best_of"):
                picked = [f"{x}: `{c['arm']}`" for x, c in sorted(r["table"].get(arm["name"], {}).items()) if c.get("arm")]
                chosen_on = arm.get("chosen_on") or "the test scenes"
                md += [f"`{arm['name']}` is, at each x, the best of " + ", ".join(f"`{n}`" for n in arm["best_of"])
                       + f" by its mean there (chosen on {chosen_on})" + (f": {'; '.join(picked)}" if picked else "") + ".", ""]
                alone = candidate_verdicts(r, claim, arm) if claim is not None and not arm.get("chosen_on") else None
                if alone:
                    same = not _alone_differs(r, alone)
                    md[-2] += (" The rule against each candidate alone: " + "; ".join(f"`{n}` {v}" for n, v in alone.items())
                               + (": the same verdict whichever is chosen, so choosing on the test scenes decides nothing "
                                  "here." if same else ": the choice matters, so the page counts it as a deviation."))
        stages = [f"`{arm['name']}` starts from `{arm['after']}`'s run of the same seed" for arm in r["arms"] if arm.get("after")]
        if r.get("stages") or stages:
            md += ["Two stages: " + "; ".join([*(f"`{p['name']}` is a pre-training ({p['recipe']}"
                                                  + (f", {' '.join(p['sets'])}" if p["sets"] else "") + "), trained once per seed"
                                                  for p in r.get("stages", [])), *stages]) + ".", ""]
        if r.get("not_run"):
            md += ["Not run: " + "; ".join(f"`{name}` ({why})" for name, why in r["not_run"].items()) + ".", ""]
        other = [f"{arm['title']}: `{arm['metric']}`" for arm in r["arms"] if arm.get("metric") not in (None, r["metric"])]
        if other:
            md += ["Read from another key: " + "; ".join(other) + ".", ""]
        xs = r["xs"]
        counts = setups.x_counts(claim, xs) if claim is not None else {}
        x_head = (r["x_key"] or "") + (f" ({claim.x_count})" if counts else "")
        header = [x_head, *[arm["title"] for arm in r["arms"]]]
        md += ["| " + " | ".join(_esc(h) for h in header) + " |", "|" + "---|" * len(header)]
        for x in xs:
            md.append("| " + " | ".join([_x_label(x, counts, claim.x_count if claim else ""),
                                         *[cell(r["table"][arm["name"]].get(str(x))) for arm in r["arms"]]]) + " |")
        md += [""]
        verdict_line = f"**Verdict: {a['verdict']}.**"
        if a["verdict"] != a["measured"]:
            verdict_line += f" The rule's measured verdict: {a['measured']}."
        if a["deviations"] and (a["verdict"] == verdicts.AT_THIS_SCALE or a["question"] != "modkit"):
            verdict_line += " Key settings that differ from the paper's or a fair comparison's: " + "; ".join(a["deviations"]) + "."
        md += [verdict_line + f" Rule: {r['rule']}", ""]
        md += _plateau_line(claim, a, titles)
        for metric, extra in r.get("also", {}).items():
            md += [f"Also measured (no verdict): {extra['label']} (`{metric}`).", "",
                   "| " + " | ".join(_esc(h) for h in header) + " |", "|" + "---|" * len(header)]
            for x in xs:
                md.append("| " + " | ".join([_x_label(x, counts, claim.x_count if claim else ""),
                                             *[cell(extra["table"].get(arm["name"], {}).get(str(x))) for arm in r["arms"]]]) + " |")
            md.append("")
        if r["evidence"]:
            md += ["Evidence: " + "; ".join(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in e.items())
                                            for e in r["evidence"]) + ".", ""]
        if r.get("above_baseline") is not None:
            found = [f"{titles[b['arm']]} at {b['x']} (by {b['gap']:.3f}, se {b['se']:.3f})" for b in r["above_baseline"]]
            md += ["Every arm against the baseline by the same rule (gap > 2·se): "
                   + ("; ".join(found) if found else "no arm beats it at any x") + ".", ""]
        md += _diagnoses(claim, r, by_id)
        if r.get("figure"):
            md += [f"![{r['id']}]({os.path.relpath(project_root() / r['figure'], out.parent)})", ""]
    return "\n".join(md)


def rerender(json_path: Path, report: Path, command: list[str], echo=print) -> list[Path]:
    """Rewrite ``report`` (and, beside a docs/fusions/ folder, the fusion pages) from ``json_path`` alone."""
    from modkit.storage import files
    from reproductions import fusion_tables
    from reproductions.reproduce import provenance

    data = fusion_tables.load(json_path)
    if not isinstance(data.get("claims"), list) or not isinstance(data.get("meta"), dict):
        raise ModkitError(f"{json_path}: not a report python -m reproductions wrote (no claims or meta); nothing to render")
    stamp = provenance(command)
    text = render(data["claims"], data["meta"], report, bool(data.get("quick")), rendered=stamp)
    files.atomic_write_text(report, text)
    written = [report]
    if not data.get("quick") and (report.parent / "fusions").is_dir():
        written += fusion_tables.write(json_path, report.parent)
    for path in written:
        echo(f"wrote {path}")
    return written
