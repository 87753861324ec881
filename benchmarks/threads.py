"""The thread policy under load: ``modkit train`` with the old default, the new default and one thread,
on an idle-ish machine and with a fixed competing job, in one run.

    python benchmarks/threads.py                          # recipes/digits.yaml, 3 epochs
    python benchmarks/threads.py --recipe recipes/shapes.yaml --set data.dataset.n=640 --epochs 1

Each configuration is the real command (``python -m modkit train RECIPE --set train.epochs=E``) in a
fresh process with ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` unset, timed by wall clock and by the
child's CPU time (``getrusage``); the epochs' own time (``time_s`` in metrics.csv) is reported too.

* **old default**: torch's own thread count (one per core; what modkit did before ``train.threads``);
* **new default**: ``train.threads: auto``;
* **1 thread**: ``train.threads: 1``;
* **passive wait**: the old count with ``OMP_WAIT_POLICY=PASSIVE`` (the other remedy the issue names).

The competing job is one busy-loop process per usable core, started by this script before the loaded
round and stopped after it. The machine's own background load (other users' processes) is recorded
before and after every configuration from /proc/loadavg. Output: ``benchmarks/results/threads.json``
and ``threads.md`` (or ``--out``).

    python benchmarks/threads.py --operators              # where more than one thread starts to pay

``--operators`` times one operator of growing size, a linear layer's forward and backward on 256 rows
(k × k weights: k² · 256 multiply-adds, the size ``train.threads: auto`` compares with ``SPLIT_WORTH``),
with one thread and with every usable core, alternating in one process, on the machine as it is (no
competing job; its load is recorded). Output: ``threads-operators.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from modkit.training.threads import SPLIT_WORTH, usable_cores  # noqa: E402
from run import commit, cpu_name, uptime as loadavg  # noqa: E402

CONFIGS = ("old default", "new default", "1 thread", "passive wait")
BUSY_LOOP = "while True:\n    pass\n"


def torch_default_threads(env: dict[str, str]) -> int:
    """torch's own intra-op count in a fresh process without the thread variables (the old default)."""
    done = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                          capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


def run_training(recipe: Path, sets: list[str], config: str, old_threads: int, env: dict[str, str], out: Path,
                 timeout: float) -> dict:
    """One ``modkit train`` in a fresh process: wall and CPU seconds of the whole command and of its epochs."""
    env = dict(env)
    extra = {"old default": [f"train.threads={old_threads}"], "new default": [], "1 thread": ["train.threads=1"],
             "passive wait": [f"train.threads={old_threads}"]}[config]
    if config == "passive wait":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    command = [sys.executable, "-m", "modkit", "train", str(recipe), "--out", str(out)]
    for item in [*sets, *extra]:
        command += ["--set", item]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = loadavg()
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "command": command}
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}", "command": command}
    epochs = [float(row["time_s"]) for row in csv.DictReader(open(out / "metrics.csv"))]
    return {"wall_s": round(wall, 2), "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
            "epochs_wall_s": round(sum(epochs), 2), "load_before": load_before, "load_after": loadavg(),
            "final_loss": _final_loss(out), "command": " ".join(command[1:])}


def _final_loss(run_dir: Path) -> float | None:
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    return float(rows[-1]["train/loss"]) if rows else None


class CompetingJob:
    """One busy-loop process per usable core, started and stopped by this script (by their ids)."""

    def __init__(self, processes: int):
        self.processes = processes
        self.children: list[subprocess.Popen] = []

    def __enter__(self) -> "CompetingJob":
        self.children = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(self.processes)]
        time.sleep(2.0)  # let the scheduler see them
        return self

    def __exit__(self, *exc) -> None:
        for child in self.children:
            child.kill()
        for child in self.children:
            child.wait()


def ratio(a: dict, b: dict, key: str) -> float | None:
    return round(a[key] / b[key], 3) if key in a and key in b and b[key] else None


def markdown(report: dict) -> str:
    meta = report["meta"]
    lines = [
        "# Thread policy under load",
        "",
        f"- date: {meta['date']}; commit `{meta['commit']}`; command: `{meta['command']}`",
        f"- machine: {meta['cpu']}, {meta['cores']} usable cores; torch {meta['torch']} (its own default: "
        f"{meta['old_threads']} threads); python {meta['python']}",
        f"- training: `modkit train {meta['recipe']}` with {', '.join('`--set ' + s + '`' for s in meta['sets'])}",
        f"- competing job while loaded: {meta['competing']} busy-loop process(es), one per usable core",
        f"- background load average (1, 5, 15 min) at start: {meta['load_start']}; at end: {meta['load_end']} "
        "(other users' work on the machine; each configuration's own before/after is in threads.json)",
        "- wall and CPU seconds of the whole command (import, data, training, test metrics); "
        "epochs: the training epochs' own wall time (metrics.csv `time_s`)",
        "",
        "| machine state | configuration | wall s | CPU s | epochs wall s | final train loss | load before → after |",
        "|---|---|---|---|---|---|---|",
    ]
    shown = {"idle": "idle-ish (no competing job)", "loaded": "loaded (competing job)"}
    for state in ("idle", "loaded"):
        for config in meta["configs"]:
            res = report["runs"].get(state, {}).get(config)
            if res is None:
                continue
            if "error" in res:
                lines.append(f"| {shown[state]} | {config} | {res['error']} | | | | |")
                continue
            lines.append(f"| {shown[state]} | {config} | {res['wall_s']:.1f} | {res['cpu_s']:.1f} | {res['epochs_wall_s']:.1f} | "
                         f"{res['final_loss']:.4f} | {res['load_before']} → {res['load_after']} |")
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for target in report["targets"]:
        lines.append(f"| {target['target']} | {target['result']} | {target['met']} |")
    return "\n".join(lines) + "\n"


def targets(runs: dict) -> list[dict]:
    out = []

    def add(target: str, value: float | None, bound: float) -> None:
        out.append({"target": target, "result": "not measured" if value is None else f"{value:.3f}",
                    "met": "–" if value is None else ("yes" if value <= bound else "no")})

    loaded, idle = runs.get("loaded", {}), runs.get("idle", {})
    new_l, one_l = loaded.get("new default", {}), loaded.get("1 thread", {})
    new_i, old_i = idle.get("new default", {}), idle.get("old default", {})
    add("loaded: new default wall / 1 thread wall ≤ 1.10", ratio(new_l, one_l, "wall_s"), 1.10)
    add("idle-ish: new default wall / old default wall ≤ 1.10", ratio(new_i, old_i, "wall_s"), 1.10)
    out.append({"target": "loaded: old default wall / new default wall (the speed-up under load)",
                "result": str(ratio(loaded.get("old default", {}), new_l, "wall_s")), "met": "–"})
    out.append({"target": "loaded: old default CPU / new default CPU",
                "result": str(ratio(loaded.get("old default", {}), new_l, "cpu_s")), "met": "–"})
    return out


#: the operator sweep: k of a k × k linear layer on OPERATOR_ROWS rows (k² · 256 multiply-adds: 2^22 … 2^30)
OPERATOR_SIZES = (128, 256, 512, 724, 1024, 1448, 2048)
OPERATOR_ROWS = 256


def operator_times(threads: int, rounds: int, max_seconds: float) -> dict[int, dict[str, list[float]]]:
    """Wall and CPU ms of each step of each layer size at a fixed thread count (run in a fresh process: a
    count changed inside a process leaves the other count's OpenMP threads spinning into the next steps)."""
    import torch

    torch.set_num_threads(threads)
    out = {}
    for k in OPERATOR_SIZES:
        layer = torch.nn.Linear(k, k)
        x = torch.randn(OPERATOR_ROWS, k, requires_grad=True)
        layer(x).sum().backward()  # warm-up
        wall, cpu = [], []
        started = time.perf_counter()
        while len(wall) < rounds and (len(wall) < 3 or time.perf_counter() - started < max_seconds):
            w0, c0 = time.perf_counter(), time.process_time()
            layer(x).sum().backward()
            wall.append((time.perf_counter() - w0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
        out[k] = {"wall": wall, "cpu": cpu}
    return out


def time_operators(threads: int, rounds: int, max_seconds: float, env: dict[str, str]) -> list[dict]:
    """Median wall and CPU ms per step of each layer size with 1 and with ``threads`` threads: fresh worker
    processes at each count in turn (1, N, 1, N), so drifting load hits both."""
    import statistics

    times: dict[int, dict[int, dict[str, list[float]]]] = {n: {k: {"wall": [], "cpu": []} for k in OPERATOR_SIZES} for n in (1, threads)}
    for _ in range(2):
        for n in (1, threads):
            done = subprocess.run([sys.executable, __file__, "--operator-worker", str(n), "--reps", str(rounds),
                                   "--max-seconds", str(max_seconds)], env=env, capture_output=True, text=True, check=True)
            for k, res in json.loads(done.stdout.strip().splitlines()[-1]).items():
                for key in ("wall", "cpu"):
                    times[n][int(k)][key] += res[key]
            print(f"  {n} thread(s): done (load {loadavg()})", flush=True)
    rows = []
    for k in OPERATOR_SIZES:
        one, many = ({key: statistics.median(v) for key, v in times[n][k].items()} for n in (1, threads))
        size = k * k * OPERATOR_ROWS
        rows.append({"k": k, "multiply_adds": size, "log2": round(math.log2(size), 2), "one": one, "many": many,
                     "steps": len(times[1][k]["wall"]),
                     "wall_ratio": round(many["wall"] / one["wall"], 3), "cpu_ratio": round(many["cpu"] / one["cpu"], 3),
                     "auto_threads": threads if size >= SPLIT_WORTH else 1})
        print(f"k={k:5d} 2^{math.log2(size):5.2f}: 1 thread {one['wall']:8.2f} ms wall, {threads} threads {many['wall']:8.2f} ms wall "
              f"(ratio {rows[-1]['wall_ratio']:.2f}, CPU ratio {rows[-1]['cpu_ratio']:.2f})", flush=True)
    return rows


def operators_markdown(report: dict) -> str:
    meta = report["meta"]
    threads = meta["threads"]
    lines = [
        "# Where more than one thread starts to pay",
        "",
        f"- date: {meta['date']}; commit `{meta['commit']}`; command: `{meta['command']}`",
        f"- machine: {meta['cpu']}, {meta['cores']} usable cores; torch {meta['torch']}; python {meta['python']}",
        f"- load average (1, 5, 15 min) at start: {meta['load_start']}; at end: {meta['load_end']} (no competing job of "
        "this script's: the machine as others were using it)",
        f"- one operator: a {OPERATOR_ROWS}-row linear layer with k × k weights, forward and backward (three matrix "
        f"products), median ms per step over fresh processes at 1 and at {threads} threads in turn (1, {threads}, 1, {threads})",
        f"- `auto` column: the thread count `train.threads: auto` picks for a model whose largest operator is this one "
        f"(`SPLIT_WORTH` = 2^{math.log2(meta['split_worth']):.0f} multiply-adds, `modkit/training/threads.py`)",
        "",
        f"| k | multiply-adds | 1 thread wall ms | {threads} threads wall ms | wall ratio | CPU ratio | auto |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(f"| {row['k']} | 2^{row['log2']:.1f} | {row['one']['wall']:.2f} | {row['many']['wall']:.2f} | "
                     f"{row['wall_ratio']:.2f} | {row['cpu_ratio']:.2f} | {row['auto_threads']} |")
    paying = [r for r in report["rows"] if r["wall_ratio"] <= 0.9]
    first = f"2^{paying[0]['log2']:.1f} multiply-adds (k = {paying[0]['k']})" if paying else "no size in this sweep"
    lines += ["", f"Smallest operator whose wall time drops by 10 % or more with {threads} threads in this run: {first}."]
    return "\n".join(lines) + "\n"


def operators(args, argv) -> int:
    import torch

    threads = usable_cores()
    meta = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit(),
            "command": "python benchmarks/threads.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "cpu": cpu_name(), "cores": threads, "torch": torch.__version__, "python": platform.python_version(),
            "threads": threads, "split_worth": SPLIT_WORTH, "load_start": loadavg()}
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    rows = time_operators(threads, args.reps, args.max_seconds, env)
    meta["load_end"] = loadavg()
    report = {"meta": meta, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "threads-operators.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "threads-operators.md").write_text(operators_markdown(report))
    print(f"wrote {args.out / 'threads-operators.json'} and {args.out / 'threads-operators.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "digits.yaml")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="more recipe overrides")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from: {', '.join(CONFIGS)}")
    parser.add_argument("--no-idle", action="store_true")
    parser.add_argument("--no-loaded", action="store_true")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one training may take")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--render", action="store_true", help="only rewrite threads.md from the threads.json in --out")
    parser.add_argument("--operators", action="store_true",
                        help="instead: one operator of growing size with 1 thread and with every usable core (threads-operators.json)")
    parser.add_argument("--reps", type=int, default=15, help="--operators: timed steps per size and process")
    parser.add_argument("--max-seconds", type=float, default=3.0, help="--operators: stop a size's steps after this long")
    parser.add_argument("--operator-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.operator_worker:
        print(json.dumps(operator_times(args.operator_worker, args.reps, args.max_seconds)))
        return 0
    if args.operators:
        return operators(args, argv)
    if args.render:
        report = json.loads((args.out / "threads.json").read_text())
        report["targets"] = targets(report["runs"])
        (args.out / "threads.md").write_text(markdown(report))
        return 0
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if any(c not in CONFIGS for c in configs):
        parser.error(f"unknown configuration (choose from {', '.join(CONFIGS)})")

    import torch

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONWARNINGS"] = "ignore"
    old_threads = torch_default_threads(env)
    sets = [f"train.epochs={args.epochs}", "train.progress=false", *args.sets]
    cores = usable_cores()
    meta = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit(),
            "command": "python benchmarks/threads.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "cpu": cpu_name(), "cores": cores, "torch": torch.__version__, "python": platform.python_version(),
            "old_threads": old_threads, "recipe": os.path.relpath(args.recipe.resolve(), ROOT), "sets": sets,
            "competing": cores, "configs": configs, "load_start": loadavg()}
    runs: dict[str, dict] = {}
    states = [s for s, skip in (("idle", args.no_idle), ("loaded", args.no_loaded)) if not skip]
    with tempfile.TemporaryDirectory(prefix="modkit-threads-") as tmp:
        for state in states:
            runs[state] = {}
            job = CompetingJob(cores) if state == "loaded" else None
            if job:
                job.__enter__()
            try:
                for config in configs:
                    out = Path(tmp) / f"{state}-{config.replace(' ', '-')}"
                    res = run_training(args.recipe, sets, config, old_threads, env, out, args.timeout)
                    runs[state][config] = res
                    shown = res.get("error") or f"wall {res['wall_s']:.1f} s  cpu {res['cpu_s']:.1f} s  epochs {res['epochs_wall_s']:.1f} s"
                    print(f"{state:6s} {config:13s} {shown}  (load {loadavg()})", flush=True)
            finally:
                if job:
                    job.__exit__(None, None, None)
    meta["load_end"] = loadavg()
    report = {"meta": meta, "runs": runs, "targets": targets(runs)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "threads.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "threads.md").write_text(markdown(report))
    print(f"wrote {args.out / 'threads.json'} and {args.out / 'threads.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
