"""Does the README's own example show what it says? ``modkit generate RUN --given label=seven --target image`` on a
run of the default recipe should draw images that read as sevens, and ``modkit eval``'s sampled label → image
coherence should say how often they do.

    python benchmarks/readme_example.py --out benchmarks/results/readme-example [--arm NAME:KEY=V,KEY=V ...]

For each arm (the default recipe with ``--set`` overrides) it trains a run, generates ``-n`` images from each
label as ``modkit generate`` does, and has an independent classifier (scikit-learn's logistic regression
trained on scikit-learn's own copy of the 1797 real digits, never on model output) read them; then it runs
``modkit eval --metrics coherence``. Written: ``OUT.json`` (every number, the command, commit, date, machine)
and ``OUT.md`` (a table).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def independent_classifier():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    return LogisticRegression(max_iter=3000).fit(digits.data / 16.0, digits.target)


def measure(recipe: str, sets: list[str], n: int, seed: int) -> dict:
    import torch

    import modkit
    from modkit.evaluation.suite import EvalSettings, evaluate_run
    from modkit.reporting.generation import generate_renders
    from modkit.runs.loading import load_run

    clf = independent_classifier()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        started, cpu0 = time.perf_counter(), time.process_time()
        modkit.train(recipe, ["train.progress=false", "train.device=cpu", *sets], out=out, echo=lambda s: None)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
        summary = json.loads((out / "summary.json").read_text())
        run = load_run(out, torch.device("cpu"))
        torch.manual_seed(seed)
        per_class = {}
        for k, name in enumerate(CLASSES):
            renders = generate_renders(run, {"label": name}, "image", n)
            pred = clf.predict(np.stack([r[..., 0].reshape(-1) for r in renders]))
            per_class[name] = float((pred == k).mean())
        result = evaluate_run(run, EvalSettings(metrics=["coherence"], joint_samples=1000, coherence_draws=4))
    independent = float(np.mean(list(per_class.values())))
    sampled = result["coherence"]["cross"]["label->image"]["label"]
    return {"sets": sets, "train_seconds": round(wall, 1), "train_cpu_seconds": round(cpu, 1),
            "test/elbo": summary.get("test/elbo"), "independent_accuracy": independent, "independent_seven": per_class["seven"],
            "independent_per_class": per_class, "eval_sampled_label->image": sampled,
            "eval_mean_label->image": result["coherence_mean"]["cross"]["label->image"]["label"],
            "eval_joint_label": result["coherence"]["joint"].get("label"),
            "judge_ceiling": result["judges"]["image/label"]["balanced_accuracy"],
            "agreement": abs(independent - sampled), "generated_per_label": n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "digits.yaml"))
    parser.add_argument("--arm", action="append", default=[], metavar="NAME:KEY=V;KEY=V",
                        help="an arm: the recipe with these overrides (';'-separated); default: the recipe as it is")
    parser.add_argument("-n", type=int, default=100, help="images generated per label")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    arms = [(a.split(":", 1)[0], [s for s in a.split(":", 1)[1].split(";") if s] if ":" in a else []) for a in args.arm] or [("recipe", [])]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=REPO).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    import torch

    header = {"command": shlex.join(["python", *sys.argv]), "commit": commit,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores visible, load {os.getloadavg()}",
              "torch": torch.__version__, "threads": os.environ.get("OMP_NUM_THREADS", "auto"), "recipe": args.recipe}
    results = []
    for name, sets in arms:
        row = {"arm": name, **measure(args.recipe, sets, args.n, args.seed)}
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "independent_per_class"}), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({**header, "arms": results}, indent=1))
    lines = [f"# The README's example: label → image samples read by an independent classifier", "",
             *[f"- {k}: {v}" for k, v in header.items()], f"- peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB", "",
             "| arm | overrides | train s (wall / CPU) | test/elbo | independent acc. (all labels) | independent acc. (seven) "
             "| eval sampled label→image | eval posterior-mean label→image | joint (label) | judge ceiling |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['arm']} | `{'; '.join(r['sets']) or '-'}` | {r['train_seconds']} / {r['train_cpu_seconds']} | "
                     f"{r['test/elbo']:.2f} | {r['independent_accuracy']:.3f} | {r['independent_seven']:.2f} | "
                     f"{r['eval_sampled_label->image']:.3f} | {r['eval_mean_label->image']:.3f} | {r['eval_joint_label']} | {r['judge_ceiling']:.3f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
