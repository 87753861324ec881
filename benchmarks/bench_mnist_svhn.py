"""MNIST-SVHN at full size: how long the ``mnist_svhn`` dataset takes to load and how much memory it holds.

Writes a set of the real size in the real formats, filled with random bytes and with each digit as often as in the
published sets (the matching's size depends on it) — MNIST's idx files
(60,000 train + 10,000 test 28×28 images) and SVHN's ``train_32x32.mat`` / ``test_32x32.mat``
(73,257 + 26,032 32×32×3 images, labels 1–10) — then, in a fresh process per case, loads it the
way ``modkit train`` does (the dataset plugin's ``load()`` and the train + test join) and gathers
batches of 128 pairs. Cases: the matching built with MMVAE's 30 copies, and MMVAE's index files read
back. Peak memory is the process's maximum resident set (``ru_maxrss``), beside the same process's
resident set after importing modkit, so the difference is the data's.

    python benchmarks/bench_mnist_svhn.py [--data DIR] [--copies 30]

Output: ``benchmarks/results/mnist-svhn-load.json`` and ``.md`` (or ``--out``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import commit, cpu_name, uptime as loadavg  # noqa: E402

SIZES = {"mnist": (60000, 10000), "svhn": (73257, 26032)}
#: images per digit 0–9 in the published sets (train, test); the matching's size depends on them
CLASS_COUNTS = {
    "mnist": ([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949], [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
    "svhn": ([4948, 13861, 10585, 8497, 7458, 6882, 5727, 5595, 5045, 4659], [1744, 5099, 4149, 2882, 2523, 2384, 1977, 2019, 1660, 1595]),
}
MARK = "@@BENCH@@ "


def memory_mb() -> tuple[float, float]:
    """This process's resident set now and at its peak (VmRSS, VmHWM), in MB."""
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return float(status["VmRSS"].split()[0]) / 1024, float(status["VmHWM"].split()[0]) / 1024


def write_random_set(root: Path, seed: int = 0) -> None:
    """Random bytes in the real formats and sizes (the pairing reads only labels; the images' content is irrelevant)."""
    import numpy as np
    from scipy.io import savemat

    from modkit_mnist import write_idx

    rng = np.random.default_rng(seed)

    def labels(counts: list[int]) -> np.ndarray:
        return rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), counts))

    for prefix, n, counts in zip(("train", "t10k"), SIZES["mnist"], CLASS_COUNTS["mnist"]):
        write_idx(root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", labels(counts))
    for split, n, counts in zip(("train", "test"), SIZES["svhn"], CLASS_COUNTS["svhn"]):
        x = np.asfortranarray(rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8))
        y = labels(counts)
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": np.where(y == 0, 10, y).astype(np.uint8)[:, None]})


def child(root: Path, options: dict, batches: int) -> dict:
    """One case, in this (fresh) process: import, load, join, gather batches; times and resident memory."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import scipy.io  # noqa: F401 - in the baseline: the .mat reader is imported by the first load
    from modkit_mnist_svhn import MnistSvhn, MnistSvhnConfig

    rss_imported = memory_mb()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    splits = MnistSvhn(MnistSvhnConfig(type="mnist_svhn", **options), root).load()
    records = splits["train"].concat(splits["test"])  # what the build does with the two splits
    load = (time.process_time() - cpu, time.perf_counter() - wall)
    rss_loaded = memory_mb()[0]
    rng = np.random.default_rng(0)
    index = [torch.as_tensor(rng.integers(0, len(splits["train"]), 128)) for _ in range(batches)]
    wall, cpu = time.perf_counter(), time.process_time()
    for rows in index:
        batch = records.take(rows)
    gather = (time.process_time() - cpu, time.perf_counter() - wall)
    assert batch["svhn"][0].shape == (128, 3, 32, 32) and batch["mnist"][0].shape == (128, 1, 28, 28)
    return {"train_pairs": len(splits["train"]), "test_pairs": len(splits["test"]), "load_seconds": load,
            "batch_ms": (1000 * gather[0] / batches, 1000 * gather[1] / batches),
            "rss_imported_mb": rss_imported, "rss_loaded_mb": rss_loaded, "rss_peak_mb": memory_mb()[1]}


def child_build(root: Path, options: dict, batches: int) -> dict:
    """``modkit train``'s start on recipes/mnist-svhn-mmvae.yaml, in this (fresh) process: the whole build (dataset,
    modalities, fusion, the data check, the model) and its training view's first batches."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import scipy.io  # noqa: F401 - in the baseline, as in child()
    from modkit.config.recipe import load_recipe
    from modkit.plugins.loader import load_plugins
    from modkit.training.builder import build

    plugins = load_plugins()
    recipe, _ = load_recipe(HERE.parent / "recipes" / "mnist-svhn-mmvae.yaml", [f"data.root={root}", "train.device=cpu"])
    rss_imported = memory_mb()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    setup = build(recipe, plugins)
    load = (time.process_time() - cpu, time.perf_counter() - wall)
    rss_loaded = memory_mb()[0]
    rng = np.random.default_rng(0)
    index = [rng.integers(0, len(setup.train), 128).tolist() for _ in range(batches)]
    wall, cpu = time.perf_counter(), time.process_time()
    for rows in index:
        batch = setup.train.__getitems__(rows)
    gather = (time.process_time() - cpu, time.perf_counter() - wall)
    assert setup.train.fast_path and batch.data["svhn"].shape == (128, 3, 32, 32)
    return {"train_pairs": len(setup.train), "test_pairs": len(setup.test), "load_seconds": load,
            "batch_ms": (1000 * gather[0] / batches, 1000 * gather[1] / batches),
            "rss_imported_mb": rss_imported, "rss_loaded_mb": rss_loaded, "rss_peak_mb": memory_mb()[1]}


def run_case(root: Path, options: dict, batches: int, function: str = "child") -> dict:
    code = (f"import sys, json; sys.path.insert(0, {str(HERE)!r}); import bench_mnist_svhn as b; from pathlib import Path; "
            f"print({MARK!r} + json.dumps(b.{function}(Path({str(root)!r}), {options!r}, {batches})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"OMP_NUM_THREADS": "1", **__import__("os").environ})
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith(MARK))[len(MARK):])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="folder for the generated set (default: a temporary one)")
    parser.add_argument("--copies", type=int, default=30, help="MMVAE's 30")
    parser.add_argument("--batches", type=int, default=200, help="batches of 128 pairs gathered after loading")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.data or Path(scratch)
        if not (root / "train_32x32.mat").is_file():
            write_random_set(root)
        files_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.name.endswith(".pt")) / 2**20
        load_start = loadavg()
        cases = {
            f"matching built ({args.copies} copies)": run_case(root, {"pairing": "build", "copies": args.copies, "save_index": True}, args.batches),
            "MMVAE's index files read": run_case(root, {"pairing": "files"}, args.batches),
            "`modkit train`'s build of recipes/mnist-svhn-mmvae.yaml (index files read)": run_case(root, {}, args.batches, "child_build"),
        }
    report = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit(),
        "command": "python benchmarks/bench_mnist_svhn.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{cpu_name()}; python {sys.version.split()[0]}, 1 thread", "load_start": load_start, "load_end": loadavg(),
        "images": SIZES, "files_mb": files_mb, "copies": args.copies, "batches": args.batches, "cases": cases,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mnist-svhn-load.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "mnist-svhn-load.md").write_text(markdown(report))
    print(markdown(report))
    return report


def markdown(r: dict) -> str:
    rows = "\n".join(
        f"| {name} | {c['train_pairs']:,} / {c['test_pairs']:,} | {c['load_seconds'][0]:.1f} ({c['load_seconds'][1]:.1f}) | "
        f"{c['rss_loaded_mb'] - c['rss_imported_mb']:.0f} | {c['rss_peak_mb'] - c['rss_imported_mb']:.0f} | {c['rss_peak_mb']:.0f} | "
        f"{c['batch_ms'][0]:.2f} ({c['batch_ms'][1]:.2f}) |"
        for name, c in r["cases"].items())
    (mt, mv), (st, sv) = r["images"]["mnist"], r["images"]["svhn"]
    return (f"# MNIST-SVHN at full size: load time and memory\n\n- date: {r['date']}; commit `{r['commit']}`; command: `{r['command']}`\n"
            f"- machine: {r['machine']}; load average at start {r['load_start']}, at end {r['load_end']}\n"
            f"- data: random bytes in the real formats, MNIST idx {mt:,} + {mv:,} images, SVHN .mat {st:,} + {sv:,} images "
            f"({r['files_mb']:.0f} MB on disk); pairs gathered lazily through index arrays\n\n"
            f"| case | pairs (train / test) | load + join (or build), CPU s (wall s) | data held, MB | data's peak, MB | process peak, MB | "
            f"batch of 128 pairs, CPU ms (wall ms) |\n|---|---|---|---|---|---|---|\n{rows}\n\n"
            f"The build is everything before the first training step: the dataset, the modalities, the fusion, the check of the "
            f"first rows against the recipe and the model; its batches go through the training view (presence, fast path).\n\n"
            f"Data held: the resident set after loading less the one after importing modkit, torch and scipy; data's peak: the "
            f"process's peak resident set less that same baseline (reading the .mat files briefly holds a second copy). "
            f"The process peak is mostly torch's own import.\n")


if __name__ == "__main__":
    main()
