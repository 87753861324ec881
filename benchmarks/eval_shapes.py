"""``modkit eval`` with default settings on a briefly trained six-modality shapes run (target: ≤ 2 minutes
on 2 CPU cores), timed as a user runs it.

    python benchmarks/eval_shapes.py                 # trains recipes/shapes.yaml for 1 epoch, then evaluates
    python benchmarks/eval_shapes.py --run RUN_DIR   # evaluate an existing run instead

The evaluation runs in a fresh process without ``OMP_NUM_THREADS`` (the run's ``train.threads`` decides),
with no ``judges.pkl`` (a first evaluation trains its coherence judges); wall and CPU seconds come from the
process, its stages from ``eval.json``'s ``stage_seconds``, its peak resident memory from ``getrusage``.
Output: ``benchmarks/results/eval-shapes.json`` and ``.md`` (or ``--out``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from run import commit, cpu_name, uptime as loadavg  # noqa: E402

TARGET_S = 120.0
#: ``python -m modkit`` that also reports its own peak resident memory (not its parent's, not training's)
MODKIT = ("import atexit, resource, sys; atexit.register(lambda: print('@@MAXRSS_KB', "
          "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)); "
          "from modkit.cli.main import main; main(prog_name='modkit')")


def timed(command: list[str], env: dict[str, str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = loadavg()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip().splitlines()[-1:]}")
    peak = [int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("@@MAXRSS_KB")]
    return {"wall_s": round(wall, 1), "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1),
            "peak_rss_mb": round(peak[-1] / 1024) if peak else None, "load_before": load, "load_after": loadavg(),
            "command": " ".join(["modkit", *command[3:]]), "stdout": done.stdout}


def markdown(report: dict) -> str:
    meta, ev = report["meta"], report["eval"]
    lines = [
        "# `modkit eval` on the six-modality shapes recipe, default settings",
        "",
        f"- date: {meta['date']}; commit `{meta['commit']}`; command: `{meta['command']}`",
        f"- machine: {meta['cpu']}, {meta['cores']} cores; background load average at start {meta['load_start']}, at end {meta['load_end']}",
        f"- run: {meta['run']}; evaluation: `{ev['command']}` (fresh process, no `judges.pkl`, no thread variables)",
        f"- its plan, as printed before it started: {ev['plan']}",
        "",
        "| wall s | CPU s | peak resident MB | target wall s | met |",
        "|---|---|---|---|---|",
        f"| {ev['wall_s']:.1f} | {ev['cpu_s']:.1f} | {ev['peak_rss_mb']} | {TARGET_S:.0f} | {'yes' if ev['wall_s'] <= TARGET_S else 'no'} |",
        "",
        "| stage | wall s |",
        "|---|---|",
    ]
    lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in ev["stage_seconds"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=None, help="an existing shapes run (default: train one for 1 epoch)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONWARNINGS"] = "ignore"
    meta = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit(),
            "command": "python benchmarks/eval_shapes.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "cpu": cpu_name(), "cores": os.cpu_count(), "load_start": loadavg()}
    with tempfile.TemporaryDirectory(prefix="modkit-eval-") as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "shapes"
            train = timed([sys.executable, "-c", MODKIT, "train", "recipes/shapes.yaml", "--set", "train.epochs=1",
                           "--set", "train.progress=false", "--out", str(run)], env)
            meta["run"] = f"`modkit train recipes/shapes.yaml --set train.epochs=1` ({train['wall_s']:.0f} s wall)"
        else:
            meta["run"] = str(run)
        (run / "judges.pkl").unlink(missing_ok=True)
        ev = timed([sys.executable, "-c", MODKIT, "eval", str(run), "--device", "cpu"], env)
        ev["command"] = ev["command"].replace(str(run), "RUN")
        result = json.loads((run / "eval.json").read_text())
    ev["stage_seconds"] = result["stage_seconds"]
    ev["plan"] = next((line for line in ev.pop("stdout").splitlines() if line.startswith("evaluating")), "")
    ev["summary_items"] = len(result["summary"])
    meta["load_end"] = loadavg()
    report = {"meta": meta, "eval": ev}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eval-shapes.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "eval-shapes.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
