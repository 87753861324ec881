"""Prior generation with a fitted latent sampler against the plain prior: joint coherence, several seeds.

    python benchmarks/latent_samplers.py [--seeds 0 1 2] [--epochs 20] [--joint-samples 2000] [--docs]
    python benchmarks/latent_samplers.py --render-only --docs     # the saved results into docs/samplers.md again

For each seed: train the default digits recipe (recipes/digits.yaml, five modalities) briefly, train the
coherence judges (``modkit eval``'s), fit each latent sampler to the training set's joint-posterior means,
then draw z from p(z) and from each sampler, decode every modality and score joint coherence (the fraction
of draws on which every modality's judge reads the same attribute value: modkit.evaluation's own
``joint_coherence``). Writes benchmarks/results/latent-samplers.json and .md (commit, date, machine,
command beside the numbers); ``--docs`` also puts the table into docs/samplers.md between its markers.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BEGIN, END = "<!-- latent-samplers:begin (benchmarks/latent_samplers.py --docs writes this) -->", "<!-- latent-samplers:end -->"
#: per-sampler options: the flows' epochs bounded so that three seeds fit a CPU in minutes (IAF's density takes D passes)
OPTIONS = {"gmm": {"n_components": 10}, "maf": {"epochs": 100}, "iaf": {"epochs": 30}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20, help="training epochs of the digits recipe (its β reaches 1 at 20)")
    parser.add_argument("--joint-samples", type=int, default=2000)
    parser.add_argument("--samplers", nargs="+", default=list(OPTIONS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS / "latent-samplers.json")
    parser.add_argument("--docs", action="store_true", help="also write the table into docs/samplers.md")
    parser.add_argument("--render-only", action="store_true", help="run nothing: render the results already in --out")
    args = parser.parse_args()
    if args.render_only:
        table = render(json.loads(args.out.read_text()))
        args.out.with_suffix(".md").write_text(table)
        if args.docs:
            write_docs(table)
        print(table)
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import torch

    import modkit
    from modkit.evaluation.judges import JudgeSet
    from modkit.evaluation.metric import EvalSettings
    from modkit.evaluation.metrics.coherence import joint_coherence
    from modkit.reporting.generation import latent_draw
    from modkit.storage.layout import RunDir
    from modkit.training.latent_samplers import fit_latent_sampler

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip())
    meta = {"commit": commit + ("+dirty" if dirty else ""),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {args.device}",
            "command": "python benchmarks/latent_samplers.py " + " ".join(sys.argv[1:]),
            "recipe": "recipes/digits.yaml", "epochs": args.epochs, "joint_samples": args.joint_samples,
            "sampler_options": {k: OPTIONS.get(k, {}) for k in args.samplers}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            started = time.time()
            out = Path(tmp) / f"seed{seed}"
            modkit.train(ROOT / "recipes" / "digits.yaml", out=out, device=args.device, echo=lambda _: None,
                         overrides={"train.epochs": args.epochs, "seed": seed, "train.progress": False})
            run = modkit.load(out, device=args.device)
            settings = EvalSettings(joint_samples=args.joint_samples, seed=seed)
            run.evaluate(metrics=["coherence"], max_items=200, seed=seed)  # trains the judges and saves them
            judges = JudgeSet.load(RunDir(out).judges, run.dataset_source())
            torch.manual_seed(seed)
            row = {"seed": seed, "prior": joint_coherence(run.model, judges, settings)}
            torch.manual_seed(seed)
            diversity = {"prior": digits_shown(run, judges, latent_draw(run, None)(args.joint_samples))}
            fit_seconds = {}
            for name in args.samplers:
                t0 = time.time()
                fit_latent_sampler(run.model, run.setup.train, run.plugins.registry, out, name, OPTIONS.get(name, {}), seed=seed)
                fit_seconds[name] = round(time.time() - t0, 1)
                draw, generator = latent_draw(run, name), torch.Generator().manual_seed(seed)
                row[name] = joint_coherence(run.model, judges, settings, draw=lambda n: draw(n, generator))
                diversity[name] = digits_shown(run, judges, draw(args.joint_samples, generator))
            row["digits_shown"] = diversity
            row["fit_seconds"] = fit_seconds
            row["seconds"] = round(time.time() - started, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)

    result = {"meta": meta, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = render(result)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    if args.docs:
        write_docs(table)


def digits_shown(run, judges, z) -> float:
    """How many digits the decoded images show: exp of the entropy of the image judge's digit readings (1 to 10).

    Coherence alone rewards a sampler that collapses onto a few easy digits; this says whether it did."""
    import numpy as np
    import torch

    with torch.no_grad():
        image = run.model.modalities["image"]
        read = judges.judge(run.model, "image", image.predict(image.decode(z)))["label"]
    p = np.bincount(np.asarray(read).reshape(-1).astype(int), minlength=10) / np.asarray(read).size
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def mean_over_attributes(scores: dict) -> float:
    values = [v for v in scores.values() if v is not None]
    return statistics.fmean(values) if values else float("nan")


def render(result: dict) -> str:
    """The results as a markdown table: each source's joint coherence per attribute and averaged, mean ± sd over seeds."""
    meta, rows = result["meta"], result["rows"]
    sources = [k for k in rows[0] if k not in ("seed", "fit_seconds", "seconds", "digits_shown")]
    attributes = sorted({a for row in rows for s in sources for a in row[s]}, key=lambda a: (a != "label", a))

    def cell(values: list[float]) -> str:
        if len(values) > 1:
            return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"
        return f"{values[0]:.3f}"

    lines = [f"Joint coherence of {meta['joint_samples']} draws per seed ({len(rows)} seeds: "
             f"{', '.join(str(r['seed']) for r in rows)}), mean ± standard deviation over seeds; "
             f"{meta['recipe']} trained {meta['epochs']} epochs.", "",
             "| z drawn from | " + " | ".join(attributes) + " | mean over attributes | digits shown |",
             "|---|" + "---|" * (len(attributes) + 2)]
    for s in sources:
        per = [cell([r[s][a] for r in rows if r[s].get(a) is not None]) for a in attributes]
        lines.append(f"| {'N(0, I) prior' if s == 'prior' else s} | " + " | ".join(per) + " | "
                     + cell([mean_over_attributes(r[s]) for r in rows]) + " | "
                     + (cell([r["digits_shown"][s] for r in rows]) if all("digits_shown" in r for r in rows) else "") + " |")
    fits = ", ".join(f"{s} {statistics.fmean(r['fit_seconds'][s] for r in rows):.0f} s" for s in sources if s != "prior")
    lines += ["", "Digits shown: how many digits the decoded images show, exp of the entropy of the image judge's readings "
              "(1: one digit only, 10: all equally often), over as many draws; a sampler that raised coherence by "
              "collapsing onto a few digits would show it here.",
              "", f"Mean fitting time (embedding included): {fits}. Options: "
              + "; ".join(f"{k} {json.dumps(v)}" for k, v in meta["sampler_options"].items()) + ".",
              "", f"Commit {meta['commit']}, {meta['date']}, {meta['machine']}; `{meta['command']}`.", ""]
    return "\n".join(lines)


def write_docs(table: str) -> None:
    path = ROOT / "docs" / "samplers.md"
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} lacks the markers {BEGIN!r} … {END!r}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{table}{END}{tail}")


if __name__ == "__main__":
    main()
