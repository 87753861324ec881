"""The driver of ``bash benchmarks/gpu_check.sh OUT [--device cuda|cpu] [--tiny]`` (see that script).

Each step runs as its own process group under its own timeout, its output in ``OUT/logs/STEP.log``; what it
measured, or why it failed, timed out or was skipped, goes into ``OUT/summary.json`` with the commit, date,
machine and command. A failing step never stops the next one. ``markdown`` renders the summary for
docs/benchmarks.md (``benchmarks/make_docs.py``).

Steps (full / ``--tiny`` sizes):

* ``cuda_tests``: ``pytest tests/cuda -m cuda`` but the fusion matrix (junit XML in OUT); tiny: the kernel tests
  only. ``MODKIT_CUDA_TESTS_DEVICE`` is set to the device (on a CPU that dry-runs the tests' logic, nothing CUDA).
* ``cuda_fusions``: the fusion matrix, every registered fusion in float32, bf16 and bf16 compiled (inductor),
  in its own step so its compile time cannot starve the rest; tiny: PoE in float32.
* ``train_digits``: ``modkit train recipes/digits.yaml --device D`` (tiny: 1 epoch), its wall time.
* ``train_shapes``: ``modkit train recipes/shapes.yaml --device D`` (tiny: 200 scenes, 1 epoch).
* ``mopoe_vs_multivae``: benchmarks/gpu_mopoe_vs_multivae.py, 5 × 3 × 28 × 28, batch 256 (tiny: batch 16);
  builds MultiVae's venv from PyPI when it is missing (tiny: only uses one that exists).
* ``bench_fp32`` and ``bench_bf16_compile``: ``benchmarks/run.py --device D`` without and with
  ``--amp bf16 --compile`` (MVAE and MoPoE at N = 2, 5, 8 with MultiVae and the likelihood estimator; compiled:
  MoPoE at N = 5, 8, modkit only; tiny: MoPoE at N = 2, modkit only).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

STEPS = ("cuda_tests", "cuda_fusions", "train_digits", "train_shapes", "mopoe_vs_multivae", "bench_fp32", "bench_bf16_compile")


def plan(out: Path, device: str, tiny: bool) -> list[dict]:
    """Every step: its name, command, timeout (s), extra environment, and how to read what it measured."""
    py = sys.executable
    logs = out / "logs"
    env_tiny = {"MODKIT_COMPILE_BACKEND": "eager"} if tiny and device == "cpu" else {}  # inductor on a CPU: a C++ compiler, minutes
    matrix = "tests/cuda/test_cuda_training.py::test_training_runs_on_cuda"  # every fusion × fp32, bf16, bf16 compiled
    tests = ["tests/cuda/test_cuda_kernels.py"] if tiny else ["tests/cuda", "-k", "not test_training_runs_on_cuda"]
    fusions = [matrix + "[poe-fp32]"] if tiny else [matrix]
    pytest = [py, "-m", "pytest", "-n", "0", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider"]  # one process on one card
    test_env = {"MODKIT_CUDA_TESTS_DEVICE": device, **env_tiny}
    train = [py, "-m", "modkit", "train"]
    bench = [py, "benchmarks/run.py", "--device", device, "--no-scaling", "--recipes", ""]
    if tiny:
        bench += ["--batch", "16", "--latent", "8", "--steps", "2", "--warmup", "1", "--max-seconds", "1", "--no-peer"]
        plain = compiled = ["--objectives", "mopoe", "--n", "2", "--no-nll"]
    else:
        bench += ["--steps", "30", "--warmup", "5", "--max-seconds", "5"]
        plain = ["--objectives", "mvae,mopoe", "--n", "2,5,8", "--nll-points", "32", "--no-install"]
        compiled = ["--objectives", "mopoe", "--n", "5,8", "--no-nll", "--no-peer"]  # one inductor compile per row
    side = [py, "benchmarks/gpu_mopoe_vs_multivae.py", "--device", device, "--out", str(out / "mopoe-vs-multivae.json")]
    side += ["--batch", "16", "--latent", "8", "--warmup", "1", "--steps", "3", "--max-seconds", "1", "--no-install"] if tiny else []
    return [
        {"name": "cuda_tests", "timeout": 60 if tiny else 240, "command": pytest + tests + [f"--junitxml={out / 'cuda-tests.xml'}"],
         "env": test_env, "read": lambda: junit(out / "cuda-tests.xml")},
        {"name": "cuda_fusions", "timeout": 60 if tiny else 360, "command": pytest + fusions + [f"--junitxml={out / 'cuda-fusions.xml'}"],
         "env": test_env, "read": lambda: junit(out / "cuda-fusions.xml")},
        {"name": "train_digits", "timeout": 60 if tiny else 150,
         "command": train + ["recipes/digits.yaml", "--device", device, "--out", str(out / "runs" / "digits")]
                    + (["--set", "train.epochs=1", "--set", "eval.coherence=false"] if tiny else []),
         "read": lambda: run_summary(out / "runs" / "digits")},
        {"name": "train_shapes", "timeout": 60 if tiny else 180,
         "command": train + ["recipes/shapes.yaml", "--device", device, "--out", str(out / "runs" / "shapes")]
                    + (["--set", "train.epochs=1", "--set", "data.dataset.n=200", "--set", "eval.coherence=false"] if tiny else []),
         "read": lambda: run_summary(out / "runs" / "shapes")},
        {"name": "mopoe_vs_multivae", "timeout": 60 if tiny else 300, "command": side,
         "read": lambda: side_by_side(out / "mopoe-vs-multivae.json")},
        {"name": "bench_fp32", "timeout": 60 if tiny else 200, "command": bench + plain + ["--out", str(out / "bench-fp32")],
         "read": lambda: bench_rows(out / "bench-fp32" / "results.json")},
        {"name": "bench_bf16_compile", "timeout": 60 if tiny else 240, "env": env_tiny,
         "command": bench + compiled + ["--amp", "bf16", "--compile", "--out", str(out / "bench-bf16-compile")],
         "read": lambda: bench_rows(out / "bench-bf16-compile" / "results.json")},
    ]


# -- what each step measured -----------------------------------------------------------------------------

def junit(path: Path) -> dict:
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["time_s"] = round(float(suite.get("time", 0.0)), 1)
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    skipped = sorted({(case.find("skipped").get("message") or "") for case in suite.iter("testcase") if case.find("skipped") is not None})
    return {**counts, "failed": failed, "skip_reasons": skipped}


def run_summary(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    keep = ("device", "epochs", "steps", "train_seconds", "skipped_steps")
    return {**{k: summary.get(k) for k in keep}, "train_loss": summary.get("train", {}).get("train/loss"),
            "test": {k: v for k, v in summary.items() if k.startswith("test/") and isinstance(v, (int, float))}}


def side_by_side(path: Path) -> dict:
    report = json.loads(path.read_text())

    def cell(res: dict) -> dict:
        return {k: res[k] for k in ("samples_per_s", "wall_ms", "train_peak_mb") if k in res} or {"not_run": res.get("skipped") or res.get("error")}

    return {"modkit": cell(report["modkit"]), "multivae": cell(report["multivae"]), "speedup": report.get("speedup"),
            "report": path.name}


def bench_rows(path: Path) -> dict:
    report = json.loads(path.read_text())
    rows = []
    for row in report["train"]:
        mk, peer = row["modkit"], row.get("multivae") or {}
        rows.append({"objective": row["objective"], "n": row["n"], "modkit_ms": mk.get("wall_ms"),
                     "floor_ms": (mk.get("floor") or {}).get("wall_ms"), "overhead": row.get("overhead_wall"),
                     "multivae_ms": peer.get("wall_ms"), "speedup": row.get("speedup_wall"),
                     **({"error": mk.get("error") or mk.get("skipped")} if "wall_ms" not in mk else {})})
    nll = (report.get("nll") or {}).get("modkit") or {}
    return {"rows": rows, "nll_points_per_s": nll.get("points_per_s"), "amp": report["meta"]["amp"],
            "compile": report["meta"]["compile"], "report": str(path.relative_to(path.parents[1]))}


# -- running ---------------------------------------------------------------------------------------------

def run_step(step: dict, out: Path) -> dict:
    log = out / "logs" / f"{step['name']}.log"
    env = {**os.environ, **step.get("env", {})}
    record = {"name": step["name"], "command": shlex.join(str(c) for c in step["command"]),
              "log": str(log.relative_to(out)), **({"env": step["env"]} if step.get("env") else {})}
    record["timeout_s"] = round(step["timeout"], 1)
    started = time.perf_counter()
    with open(log, "w") as sink:
        proc = subprocess.Popen(step["command"], cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        code, usage = wait(proc, step["timeout"])
    record["wall_s"] = round(time.perf_counter() - started, 1)
    record["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1) if usage else None  # the step and the children it waited for
    record["returncode"] = code
    try:
        record["result"] = step["read"]()
    except (OSError, ValueError, KeyError, TypeError, ET.ParseError) as exc:
        record["result"] = None
        record["read_error"] = f"{type(exc).__name__}: {exc}"
    if code is None:
        record["status"] = "timed out"
        record["tail"] = log.read_text(errors="replace").strip().splitlines()[-5:]
    elif code != 0:
        record["status"] = "failed"
        record["tail"] = log.read_text(errors="replace").strip().splitlines()[-5:]
    else:
        record["status"] = "ok" if record["result"] is not None else "failed"
    if step["name"] == "mopoe_vs_multivae" and record["result"] and "not_run" in record["result"]["multivae"]:
        record["multivae_skipped"] = record["result"]["multivae"]["not_run"]
    return record


def wait(proc: subprocess.Popen, timeout: float):
    """(exit code or None on timeout, the step's resource usage): ``os.wait4`` gives each child's own CPU time,
    which a shared machine's load does not inflate. On timeout the step's whole process group is killed
    (pytest's and run.py's children too)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            _, _, usage = os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            return None, usage
        time.sleep(0.05)


def machine() -> dict:
    import torch

    from run import cpu_name

    info = {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bash benchmarks/gpu_check.sh", description="The GPU check: tests, trainings and benchmarks")
    parser.add_argument("out", type=Path, help="folder for summary.json, logs and every step's files")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="toy sizes (a dry run of the check itself)")
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of the steps")
    parser.add_argument("--jobs", type=int, default=None, help="steps run at once (default 1; --tiny: 2)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds the whole check may take (default 570 on a GPU, so it fits a 10-minute session; none "
                             "with --tiny): each step's timeout is cut to what is left, and a step with under 20 s left is "
                             "recorded as skipped")
    args = parser.parse_args(argv)
    from run import commit

    out = args.out.resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    chosen = [s for s in args.steps.split(",") if s]
    unknown = [s for s in chosen if s not in STEPS]
    if unknown:
        parser.error(f"unknown step {unknown[0]} (choose from {', '.join(STEPS)})")
    summary = {"meta": {"commit": commit(), "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                        "command": "bash benchmarks/gpu_check.sh " + shlex.join(argv if argv is not None else sys.argv[1:]),
                        "device": args.device, "tiny": args.tiny, "machine": machine()},
               "steps": []}
    started = time.perf_counter()
    steps = [step for step in plan(out, args.device, args.tiny) if step["name"] in chosen]
    jobs = args.jobs or (2 if args.tiny else 1)  # timings of a real check are taken one step at a time

    def done(record: dict) -> None:
        print(f"{record['name']:20s} {record['status']:9s} {record['wall_s']:7.1f} s wall {record['cpu_s'] or 0:7.1f} s CPU", flush=True)
        summary["steps"] = sorted([*summary["steps"], record], key=lambda r: STEPS.index(r["name"]))
        summary["total_s"] = round(time.perf_counter() - started, 1)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")  # after every step: a killed check keeps the rest

    budget = args.budget if args.budget is not None else (None if args.tiny else 570.0)

    def within_budget(step: dict) -> dict:
        if budget is None:
            return run_step(step, out)
        left = budget - (time.perf_counter() - started)
        if left < 20:
            return {"name": step["name"], "command": shlex.join(str(c) for c in step["command"]), "status": "skipped",
                    "reason": f"the check's budget of {budget:.0f} s was spent", "wall_s": 0.0, "cpu_s": None, "result": None}
        return run_step({**step, "timeout": min(step["timeout"], left)}, out)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in as_completed([pool.submit(within_budget, step) for step in steps]):
            done(future.result())
    print(f"wrote {out / 'summary.json'} ({summary['total_s']} s)")
    return 0


# -- the page --------------------------------------------------------------------------------------------

def _ms(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(summary: dict) -> str:
    meta, m = summary["meta"], summary["meta"]["machine"]
    card = ", ".join(m.get("gpus") or []) or "no GPU"
    lines = [f"# GPU check ({meta['device']})", "",
             f"- date: {meta['date']}; commit `{meta['commit']}`; command: `{meta['command']}`",
             f"- machine: {card}; {m['cpu']}, {m['cores']} cores; torch {m['torch']} (CUDA {m['cuda']}); python {m['python']}",
             f"- total: {summary.get('total_s', 0):.0f} s"]
    if meta["device"] != "cuda" or meta["tiny"]:
        lines.append("- **a dry run (CPU or toy sizes): these numbers say the check works, not how fast a GPU is**")
    lines += ["", "| step | status | wall s | CPU s | what it measured |", "|---|---|---|---|---|"]
    for step in summary["steps"]:
        cpu = "–" if step.get("cpu_s") is None else f"{step['cpu_s']:.1f}"
        lines.append(f"| {step['name']} | {step['status']} | {step['wall_s']:.1f} | {cpu} | {_measured(step)} |")
    for step in summary["steps"]:
        res = step.get("result") or {}
        if step["name"].startswith("bench_") and res.get("rows"):
            lines += ["", f"## `{step['name']}` (amp {res['amp']}, compile {res['compile']}): median wall ms per step", "",
                      "| objective | N | modkit | floor | overhead | MultiVae | speed-up |", "|---|---|---|---|---|---|---|"]
            for row in res["rows"]:
                lines.append(f"| {row['objective']} | {row['n']} | {_ms(row['modkit_ms'])} | {_ms(row['floor_ms'])} | "
                             f"{_ms(row['overhead'])} | {_ms(row['multivae_ms'])} | {_ms(row['speedup'])} |")
    return "\n".join(lines) + "\n"


def _measured(step: dict) -> str:
    res = step.get("result")
    if not res:
        return step.get("reason") or step.get("read_error") or "nothing (see the step's log)"
    name = step["name"]
    if name.startswith("cuda_"):
        text = f"{res['passed']} passed, {res['failures'] + res['errors']} failed, {res['skipped']} skipped of {res['tests']}"
        return text + (f" (failed: {', '.join(res['failed'][:5])})" if res["failed"] else "")
    if name.startswith("train_"):
        return f"{res['steps']} steps on {res['device']} in {res['train_seconds']:.1f} s of training; final train loss {res['train_loss']}"
    if name == "mopoe_vs_multivae":
        mk, mv = res["modkit"], res["multivae"]
        other = f"{mv['samples_per_s']:.0f}" if "samples_per_s" in mv else f"not run ({mv['not_run']})"
        mine = f"{mk['samples_per_s']:.0f}" if "samples_per_s" in mk else f"not run ({mk['not_run']})"
        return f"samples/s: modkit {mine}, MultiVae {other}" + (f" ({res['speedup']:.2f}×)" if res.get("speedup") else "")
    if name.startswith("bench_"):
        nll = res.get("nll_points_per_s")
        return f"{len(res['rows'])} training rows" + (f"; likelihood {nll:.0f} points/s" if nll else "")
    return json.dumps(res)[:200]


if __name__ == "__main__":
    sys.exit(main())
