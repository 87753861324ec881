"""modkit against MultiVae and against the work floor, in one command.

    python benchmarks/run.py            # the full table (about 15–25 minutes on 2 shared cores)
    python benchmarks/run.py --quick    # N = 2, 3 and fewer steps, for a first look

Every configuration runs in a fresh process (so its peak memory is its own): modkit's in this python,
MultiVae 1.0.3's in ``benchmarks/.venv-multivae``, a virtual environment this script creates on first
use and that sees the same torch build as this python (through a ``.pth`` file), so both engines
run the same kernels. MultiVae is never a dependency of modkit. Results go to
``benchmarks/results/results.json`` and ``results.md`` (or ``--out``). ``--repeat K`` times every training
configuration K times and reports each ratio's median and range (``benchmarks/spread.py``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_common import RESULT_MARK  # noqa: E402
import spread  # noqa: E402

PEER_VENV = HERE / ".venv-multivae"
PEER_VERSION = "1.0.3"
OBJECTIVES = ("mvae", "mopoe", "moe")
#: MultiVae's other models modkit has (``--objectives jmvae,…``; not in the default run). TELBO and JNF are timed in
#: their first (joint) stage: the step MultiVae's takes while epoch ≤ warmup. JNF-DCCA has no MultiVae 1.0.3 peer.
MODELS = ("jmvae", "mvtcae", "dmvae", "mmvae_plus", "cvae", "telbo", "jnf", "nexus", "mhvae", "cmvae", "crmvae")
#: real recipes (benchmarks/recipe_worker.py): the six-kind shapes recipe and a 19-modality model
RECIPES = {"shapes": "recipes/shapes.yaml (image, mask, label, attributes, caption, translation)",
           "shapes19": "shapes image + 18 attributes as separate modalities (split: true), PoE, MVAE sampler k = 1"}
LABELS = {"mvae": "MVAE (full + singles)", "mopoe": "MoPoE (all subsets)", "moe": "MoE",
          "jmvae": "JMVAE", "mvtcae": "MVTCAE", "dmvae": "DMVAE (private 8)", "mmvae_plus": "MMVAE+ (private 8)",
          "cvae": "CVAE (m0 given the rest)", "telbo": "TELBO (joint stage)", "jnf": "JNF (joint stage)",
          "nexus": "Nexus (modality latents = latent)", "mhvae": "MHVAE (3 levels, every subset)",
          "cmvae": "CMVAE (private 8, 10 clusters)", "crmvae": "CRMVAE"}


def labels(meta: dict) -> dict[str, str]:
    """The row names of a report: MoPoE's says which KL it paid when that was not the exact one (``--mopoe-kl``), so a
    table rendered later from the JSON names it as the run did."""
    kl = meta.get("mopoe_kl", "exact")
    return {**LABELS, **({"mopoe": f"MoPoE (all subsets, {kl} KL)"} if kl != "exact" else {})}


# -- the peer's environment ------------------------------------------------------------------------

def peer_python(create: bool) -> tuple[Path | None, str | None]:
    """The python of the MultiVae venv, creating the venv when asked; or why there is none."""
    python = PEER_VENV / "bin" / "python"
    if python.exists() and _peer_ok(python):
        return python, None
    if not create:
        return None, f"no MultiVae venv at {PEER_VENV} (run without --no-install to create it)"
    import torch

    print(f"creating {PEER_VENV} with multivae=={PEER_VERSION} (one time) …", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(PEER_VENV)], check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    torch_site = Path(torch.__file__).resolve().parents[1]
    (Path(site) / "zz_same_torch.pth").write_text(str(torch_site) + "\n")  # the same torch build as modkit's
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", f"multivae=={PEER_VERSION}"], capture_output=True, text=True)
    if done.returncode != 0 or not _peer_ok(python):
        return None, f"installing multivae=={PEER_VERSION} failed: {done.stderr.strip().splitlines()[-1:]}"
    return python, None


def _peer_ok(python: Path) -> bool:
    probe = subprocess.run([str(python), "-c", "import multivae, torch"], capture_output=True, text=True)
    return probe.returncode == 0


# -- running one configuration ---------------------------------------------------------------------

def run_worker(python: Path, script: str, mode: str, options: dict, threads: int, timeout: float,
               source: Path | None = None) -> dict:
    """Run one worker in a fresh process and return its JSON result (or the error it ended with). With ``source``
    the worker imports modkit and its plugins from that folder (``--before``: an earlier commit's code)."""
    command = [str(python), str(HERE / script), mode, "--threads", str(threads)]
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        command += ([flag] if value else []) if isinstance(value, bool) else [flag, str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    if source is not None:  # PYTHONPATH comes before the editable install's finder
        env["PYTHONPATH"] = os.pathsep.join([str(source), str(source / "plugins"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=HERE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK):])
            result["process_s"] = round(time.perf_counter() - started, 1)
            return result
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {done.returncode}: " + " | ".join(tail)}


def say(text: str) -> None:
    print(text, flush=True)


def show(label: str, res: dict) -> None:
    if "skipped" in res or "error" in res:
        say(f"  {label:28s} {res.get('skipped') or res.get('error')}")
    elif "cpu_ms" in res:
        say(f"  {label:28s} cpu {res['cpu_ms']:8.1f} ms  wall {res['wall_ms']:8.1f} ms  (floor cpu {res['floor']['cpu_ms']:.1f} ms)"
            f"  train peak {res['train_peak_mb']:.0f} MB")
    else:
        say(f"  {label:28s} {res}")


# -- the table ---------------------------------------------------------------------------------------

def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


#: the time ratios are taken on: CPU time on a CPU (steady on a shared machine), wall time on a GPU
METRIC = {"key": "cpu_ms"}


def train_row(objective: str, n: int, batch: int, latent: int, mk: dict, peer: dict | None, variant: str = "current") -> dict:
    """One configuration: both engines, their floors, and the derived ratios (on ``METRIC``)."""
    key = METRIC["key"]
    row = {"objective": objective, "n": n, "batch": batch, "latent": latent, "modkit": mk, "multivae": peer, "variant": variant}
    ok_mk = key in mk
    ok_peer = bool(peer) and key in peer
    if ok_mk:
        row["overhead"] = ratio(mk[key], mk["floor"][key])
        row["overhead_wall"] = ratio(mk["wall_ms"], mk["floor"]["wall_ms"])
    if ok_peer:
        row["peer_overhead"] = ratio(peer[key], peer["floor"][key])
    if ok_mk and ok_peer:
        row["speedup"] = ratio(peer[key], mk[key])
        row["speedup_wall"] = ratio(peer["wall_ms"], mk["wall_ms"])
        row["speedup_floor_normalised"] = ratio(row["peer_overhead"], row["overhead"])
        row["memory_ratio"] = ratio(mk["train_peak_mb"], peer["train_peak_mb"])
    return row


def fmt(value, spec: str = ".1f", missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


def step_cell(res: dict | None) -> str:
    if not res:
        return "–"
    if "skipped" in res:
        return "skipped¹"
    if "error" in res:
        return "error²"
    if METRIC["key"] == "wall_ms":
        return f"{res['wall_ms']:.2f}"
    return f"{res['cpu_ms']:.1f} ({res['wall_ms']:.0f})"


def markdown(report: dict) -> str:
    meta = report["meta"]
    names = labels(meta)
    lines = [
        f"# modkit vs MultiVae {PEER_VERSION} and the work floor",
        "",
        f"- date: {meta['date']}; commit `{meta.get('commit', 'not recorded')}`; command: `{meta['command']}`",
        f"- machine: {meta['cpu']}, {meta['cores']} cores; device {meta['device']}; torch {meta['torch']} "
        f"({meta['threads']} thread(s) per process); python {meta['python']}; modkit amp {meta['amp']}, compile {meta['compile']}, MoPoE kl {meta.get('mopoe_kl', 'exact')}"
        + ("; MultiVae's JMVAE, TELBO and JNF with modkit's joint encoder (`--peer-joint modkit`: the same function on both sides)"
           if meta.get("peer_joint") == "modkit" else ""),
        f"- load average (1, 5, 15 min) at start: {meta['load_start']}; at end: {meta['load_end']}",
        ("- times: median over the timed steps of CPU time per step in ms (wall-clock median in brackets). "
         "modkit's steps and the floor's alternate in one process, as do MultiVae's and its floor's; "
         "ratios use CPU time, which other processes on a shared machine do not inflate."
         if meta["metric"] == "cpu_ms" else
         "- times: median wall-clock time per step in ms, each step closed by a device synchronize. "
         "modkit's steps and the floor's alternate in one process, as do MultiVae's and its floor's."),
        "- memory: peak resident memory added by training over the resident memory before the first step "
        "(`VmHWM` reset through `/proc/self/clear_refs`), in MB, one fresh process per configuration.",
    ]
    before = meta.get("before")
    code = (lambda row: f" {row.get('variant', 'current')} |") if before else (lambda row: "")
    if report["train"]:
        lines += [
            "",
            "## Training step (batch {batch}, latent {latent})".format(**meta["defaults"]),
            "",
            "| objective | N |" + (" code |" if before else "") + " modkit ms | floor ms | overhead | MultiVae ms | MultiVae / floor | "
            "speed-up | speed-up (floor-normalised) | modkit MB | MultiVae MB |",
            "|---|---|" + ("---|" if before else "") + "---|---|---|---|---|---|---|---|---|",
        ]
    notes = set()
    for row in report["train"]:
        mk, peer = row["modkit"], row["multivae"]
        for res in (mk, peer):
            if res and ("skipped" in res or "error" in res):
                notes.add(f"{row['objective']} N={row['n']} {'modkit' if res is mk else 'MultiVae'}: {res.get('skipped') or res.get('error')}")
        floor = mk.get("floor") or (peer or {}).get("floor")
        lines.append(
            f"| {names[row['objective']]} | {row['n']} |{code(row)} {step_cell(mk)} | "
            f"{fmt(floor[METRIC['key']]) if floor else '–'} | {fmt(row.get('overhead'), '.3f')} | {step_cell(peer)} | "
            f"{fmt(row.get('peer_overhead'), '.2f')} | {fmt(row.get('speedup'), '.2f')}× | "
            f"{fmt(row.get('speedup_floor_normalised'), '.2f')}× | {fmt(mk.get('train_peak_mb'), '.0f')} | "
            f"{fmt((peer or {}).get('train_peak_mb'), '.0f')} |")
    if before and report["train"]:
        lines.append(f"\n- code: `current` is this commit; `before` is modkit and its plugins as of commit `{before}` "
                     "(`git archive` into a temporary folder, imported by the same harness), alternating with `current` "
                     "configuration by configuration")
    lines += spread.markdown(report["train"], names)
    nll = report.get("nll")
    if nll:
        mk, peer = nll.get("modkit", {}), nll.get("multivae") or {}
        lines += ["", f"## Likelihood estimation (joint, K = {meta['nll_k']}, N = 2, {meta['nll_points']} points)", "",
                  "| engine | points/s (CPU time) | points/s (wall) | bare-decoder floor points/s | fraction of floor |",
                  "|---|---|---|---|---|"]
        rate = nll_rate_key()
        for name, res in (("modkit", mk), ("MultiVae", peer)):
            if rate in res:
                lines.append(f"| {name} | {res['points_per_cpu_s']:.1f} | {res['points_per_s']:.1f} | "
                             f"{res['floor_' + rate]:.1f} | {res[rate] / res['floor_' + rate]:.2f} |")
            elif res:
                lines.append(f"| {name} | {res.get('skipped') or res.get('error')} | | | |")
        if mk.get("estimator"):
            lines.append(f"\nmodkit estimator: `{mk['estimator']}`.")
    if report.get("scaling"):
        lines += ["", "## Scaling (MVAE, N = 3)", "",
                  "| batch | latent | modkit ms | floor ms | overhead | MultiVae ms | speed-up | modkit MB | MultiVae MB |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in report["scaling"]:
            mk, peer = row["modkit"], row["multivae"]
            floor = mk.get("floor")
            lines.append(f"| {row['batch']} | {row['latent']} | {step_cell(mk)} | {fmt(floor[METRIC['key']]) if floor else '–'} | "
                         f"{fmt(row.get('overhead'), '.3f')} | {step_cell(peer)} | {fmt(row.get('speedup'), '.2f')}× | "
                         f"{fmt(mk.get('train_peak_mb'), '.0f')} | {fmt((peer or {}).get('train_peak_mb'), '.0f')} |")
    if report.get("recipes"):
        lines += ["", "## Real recipes (their own batch size; floor: their own networks on the rows the step's subset plan needs)", "",
                  "| recipe | code | modalities | batch | modkit ms | floor ms | overhead | samples/s (wall) | samples/CPU s | modkit MB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row in report["recipes"]:
            res = row["modkit"]
            if "floor" not in res:
                lines.append(f"| {row['recipe']} | {row['variant']} | {res.get('skipped') or res.get('error')} | | | | | | | |")
                continue
            lines.append(f"| {row['recipe']} | {row['variant']} | {res['modalities']} | {res['batch']} | {step_cell(res)} | "
                         f"{fmt(res['floor'][METRIC['key']])} | {fmt(row['overhead'], '.3f')} | {res['samples_per_s']:.0f} | "
                         f"{res['samples_per_cpu_s']:.0f} | {res['train_peak_mb']:.0f} |")
        lines += [""] + [f"- {name}: {text}" for name, text in RECIPES.items() if any(r["recipe"] == name for r in report["recipes"])]
        lines.append("- code: `current` is this commit; `before` undoes this session's fix to the step "
                     "(`benchmarks/recipe_worker.py --variant before`: the MVAE sampler enumerating all 2^N subsets on every draw)")
    lines += ["", f"## Targets ({'CPU' if meta['metric'] == 'cpu_ms' else meta['device']})", "", "| target | result | met |", "|---|---|---|"]
    for target in report["targets"]:
        lines.append(f"| {target['target']} | {target['result']} | {target['met']} |")
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in sorted(notes)]
    return "\n".join(lines) + "\n"


def targets(report: dict) -> list[dict]:
    """The issue's CPU targets, judged from the rows (GPU targets are judged in a GPU session)."""
    out = []
    current = [r for r in report["train"] if r.get("variant", "current") == "current"]  # --before rows are not judged
    rows = {(r["objective"], r["n"]): r for r in current}
    k = report["meta"].get("repeat", 1)
    over = f" (worse end of {k} repeats)" if k > 1 else ""
    names = labels(report["meta"])

    def add(target: str, values: list, check) -> None:
        known = [v for v in values if v is not None]
        if not known:
            out.append({"target": target, "result": "not measured", "met": "–"})
            return
        out.append({"target": target, "result": ", ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in values),
                    "met": "yes" if len(known) == len(values) and all(check(v) for v in known) else "no"})

    for objective in ("mvae", "mopoe"):
        ns = sorted(n for (o, n) in rows if o == objective)
        if not ns:
            continue
        add(f"{names[objective]}: overhead ≤ 1.10 at N = {', '.join(map(str, ns))}{over}",
            [spread.worst(rows[(objective, n)], "overhead") for n in ns], lambda v: v <= 1.10)
    for objective, n, bound in (("mvae", 5, 1.35), ("mopoe", 5, 1.4), ("mopoe", 8, 20.0)):
        if (objective, n) in rows:
            add(f"{names[objective]}: speed-up over MultiVae ≥ {bound}× at N = {n}{over}", [spread.worst(rows[(objective, n)], "speedup")],
                lambda v, b=bound: v >= b)
    for objective in MODELS:  # the field's models: at most 1.10 of their floor and at least MultiVae's speed
        ns = sorted(n for (o, n) in rows if o == objective)
        if not ns:
            continue
        add(f"{names[objective]}: overhead ≤ 1.10 at N = {', '.join(map(str, ns))}{over}",
            [spread.worst(rows[(objective, n)], "overhead") for n in ns], lambda v: v <= 1.10)
        add(f"{names[objective]}: speed-up over MultiVae ≥ 1.0× at N = {', '.join(map(str, ns))}{over}",
            [spread.worst(rows[(objective, n)], "speedup") for n in ns], lambda v: v >= 1.0)
    memory = [r.get("memory_ratio") for r in current if r.get("memory_ratio") is not None]
    if memory:
        add("peak training memory no higher than MultiVae's (modkit / MultiVae, every configuration)", memory, lambda v: v <= 1.0)
    for row in report.get("recipes") or []:
        if row["variant"] == "current":
            add(f"real recipe {row['recipe']}: overhead ≤ 1.10", [row.get("overhead")], lambda v: v <= 1.10)
    nll = (report.get("nll") or {}).get("modkit") or {}
    rate = nll_rate_key()
    if rate in nll:
        add("likelihood estimation ≥ 0.9 of the bare-decoder floor", [round(nll[rate] / nll["floor_" + rate], 3)], lambda v: v >= 0.9)
    peer_nll = (report.get("nll") or {}).get("multivae") or {}
    if rate in nll and rate in peer_nll:
        out.append({"target": "likelihood estimation vs MultiVae (≥ 10× is the GPU target)",
                    "result": f"{nll[rate] / peer_nll[rate]:.2f}×", "met": "–" if rate == "points_per_cpu_s" else
                    ("yes" if nll[rate] / peer_nll[rate] >= 10 else "no")})
    return out


def nll_rate_key() -> str:
    return "points_per_cpu_s" if METRIC["key"] == "cpu_ms" else "points_per_s"


def uptime() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "unknown"


def commit() -> str:
    """This checkout's short commit, marked when tracked files (other than earlier results) differ from it."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"],
                           cwd=HERE.parent, capture_output=True, text=True)
    return done.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_stamped(path: Path, script: str, lines: list[str], *details: str) -> None:
    """A text result under one header line a reader can check it by: the command that wrote it (``script`` and this
    process's arguments), the date, the commit, ``details`` (the machine, where modkit came from, …) and the load."""
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    about = ", ".join([date, f"commit {commit()}", *details, f"load {uptime()}"])
    header = f"# python benchmarks/{script} {' '.join(sys.argv[1:])}  ({about})"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *lines]) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 2, 3, fewer steps, a smaller scaling sweep")
    parser.add_argument("--n", default=None, help="comma-separated numbers of modalities (default 2,3,5,8)")
    parser.add_argument("--objectives", default=",".join(OBJECTIVES))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--latent", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (1: steadiest on a shared machine)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default 30, quick 8)")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=None, help="stop timing a configuration after this many seconds")
    parser.add_argument("--moe-k", type=int, default=1)
    parser.add_argument("--nll-k", type=int, default=1000)
    parser.add_argument("--nll-points", type=int, default=None)
    parser.add_argument("--plugins", default="", help="extra modkit plugin modules to load (comma-separated), e.g. a fusion in development")
    parser.add_argument("--no-nll", action="store_true")
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--no-peer", action="store_true", help="modkit and the floor only")
    parser.add_argument("--no-install", action="store_true", help="use the MultiVae venv only if it already exists")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one configuration may take")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (both engines and the floor)")
    parser.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off", help="modkit's train.amp")
    parser.add_argument("--compile", action="store_true", help="modkit's train.compile")
    parser.add_argument("--mopoe-kl", choices=["exact", "sampled"], default="exact",
                        help="modkit MoPoE's kl option (sampled: the drawn component's KL, modkit only)")
    parser.add_argument("--recipes", default=",".join(RECIPES),
                        help="real recipes timed beside their own floor, current code and with the fixes undone (empty: none)")
    parser.add_argument("--before", default=None, metavar="REV",
                        help="also time the training rows with modkit and its plugins as of git revision REV (before/after "
                             "in one run, modkit and the floor only)")
    parser.add_argument("--repeat", type=int, default=1, metavar="K",
                        help="time every training configuration K times (interleaved) and report each ratio's median and "
                             "range; targets are judged on the range's worse end")
    parser.add_argument("--peer-joint", choices=["multivae", "modkit"], default="multivae",
                        help="MultiVae's JMVAE, TELBO and JNF with its default joint encoder, or with modkit's (the same function)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    quick = args.quick
    ns = [int(v) for v in (args.n or ("2,3" if quick else "2,3,5,8")).split(",")]
    objectives = [o for o in args.objectives.split(",") if o]
    unknown = [o for o in objectives if o not in OBJECTIVES + MODELS]
    if unknown:
        parser.error(f"unknown objective {unknown[0]} (choose from {', '.join(OBJECTIVES + MODELS)})")
    timing = {"steps": args.steps or (8 if quick else 30), "warmup": args.warmup if args.warmup is not None else (2 if quick else 3),
              "max_seconds": args.max_seconds or (10.0 if quick else 40.0), "moe_k": args.moe_k}
    nll_points = args.nll_points or (8 if quick else 32)
    METRIC["key"] = "wall_ms" if args.device.startswith("cuda") else "cpu_ms"

    peer, why = (None, "--no-peer") if args.no_peer else peer_python(create=not args.no_install)
    if why and not args.no_peer:
        say(f"MultiVae: {why}; its columns stay empty")
    import torch

    meta = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit(),
            "command": "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "threads": args.threads, "load_start": uptime(), "defaults": {"batch": args.batch, "latent": args.latent},
            "device": args.device, "amp": args.amp, "compile": args.compile, "mopoe_kl": args.mopoe_kl, "metric": METRIC["key"],
            "peer_joint": args.peer_joint,
            "timing": timing, "repeat": args.repeat, "nll_k": args.nll_k, "nll_points": nll_points, "multivae": PEER_VERSION if peer else None}
    report: dict = {"meta": meta, "train": [], "scaling": []}
    me = Path(sys.executable)
    mk_extra = {"plugins": args.plugins} if args.plugins else {}
    mk_extra.update({"amp": args.amp} if args.amp != "off" else {})
    mk_extra.update({"compile": True} if args.compile else {})
    mk_extra.update({"mopoe_kl": args.mopoe_kl} if args.mopoe_kl != "exact" else {})
    timing["device"] = args.device

    def pair(objective: str, n: int, batch: int, latent: int) -> dict:
        options = {"n": n, "batch": batch, "latent": latent, **timing}
        mk = run_worker(me, "modkit_worker.py", objective, {**options, **mk_extra}, args.threads, args.timeout)
        show(f"modkit {objective} N={n} B={batch} D={latent}", mk)
        res = None
        if peer:
            plan = (mk.get("floor") or {}).get("plan")  # the peer's floor trains the same networks as modkit's
            extra = {**({"floor_plan": json.dumps(plan)} if plan else {}),
                     **({"peer_joint": args.peer_joint} if args.peer_joint != "multivae" else {})}
            res = run_worker(peer, "peer_multivae.py", objective, {**options, **extra}, args.threads, args.timeout)
            show(f"MultiVae {objective} N={n} B={batch} D={latent}", res)
        return train_row(objective, n, batch, latent, mk, res)

    old = None
    if args.before:
        meta["before"] = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=HERE, check=True,
                                        capture_output=True, text=True).stdout.strip()
        old = Path(tempfile.mkdtemp(prefix="modkit-before-"))
        archive = subprocess.run(["git", "archive", args.before, "modkit", "plugins"], cwd=HERE.parent, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)

    say(f"training steps: {', '.join(objectives)} at N = {ns} (load {uptime()})")
    runs: dict = {}  # (objective, n) → {"before": rows, "current": rows}, one row per repeat
    for repeat in range(args.repeat):  # repeats interleaved: a burst of load lands on one repeat of many configurations
        for objective in objectives:
            for n in ns:
                rows = runs.setdefault((objective, n), {"before": [], "current": []})
                if old is not None:
                    options = {"n": n, "batch": args.batch, "latent": args.latent, **timing, **mk_extra}
                    mk = run_worker(me, "modkit_worker.py", objective, options, args.threads, args.timeout, source=old)
                    show(f"modkit {objective} N={n} (before: {meta['before']})", mk)
                    rows["before"].append(train_row(objective, n, args.batch, args.latent, mk, None, "before"))
                load = uptime()
                rows["current"].append({**pair(objective, n, args.batch, args.latent), "load": load})
    for rows in runs.values():
        report["train"] += [spread.combine(r) for r in (rows["before"], rows["current"]) if r]
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

    if not args.no_nll:
        say(f"likelihood estimation: K = {args.nll_k}, {nll_points} points")
        options = {"n": 2, "latent": args.latent, "nll_k": args.nll_k, "nll_points": nll_points}
        report["nll"] = {"modkit": run_worker(me, "modkit_worker.py", "nll", {**options, **mk_extra}, args.threads, args.timeout)}
        show("modkit nll", report["nll"]["modkit"])
        if peer:
            report["nll"]["multivae"] = run_worker(peer, "peer_multivae.py", "nll", options, args.threads, args.timeout)
            show("MultiVae nll", report["nll"]["multivae"])

    if not args.no_scaling and "mvae" in objectives:
        say("scaling: MVAE, N = 3, batch and latent size")
        sweep = [(64, args.latent), (1024, args.latent), (args.batch, 16), (args.batch, 256)]
        if quick:
            sweep = [(64, args.latent), (args.batch, 16)]
        report["scaling"] = [pair("mvae", 3, b, d) for b, d in sweep]
        base = next((r for r in report["train"] if r["objective"] == "mvae" and r["n"] == 3), None)
        if base:
            report["scaling"].insert(0, base)

    recipes = [r for r in args.recipes.split(",") if r]
    if recipes:
        say(f"real recipes: {', '.join(recipes)}, before and after this session's fixes (load {uptime()})")
        report["recipes"] = []
        for name in recipes:
            for variant in ("before", "current"):
                options = {**timing, "variant": variant}
                options.pop("moe_k")
                res = run_worker(me, "recipe_worker.py", name, options, args.threads, args.timeout)
                show(f"{name} ({variant})", res)
                report["recipes"].append({"recipe": name, "variant": variant, "modkit": res,
                                          "overhead": ratio(res.get(METRIC["key"]), (res.get("floor") or {}).get(METRIC["key"]))})

    meta["load_end"] = uptime()
    report["targets"] = targets(report)
    args.out.mkdir(parents=True, exist_ok=True)
    _atomic_write(args.out / "results.json", json.dumps(report, indent=2) + "\n")
    _atomic_write(args.out / "results.md", markdown(report))
    say(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    return 0


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
