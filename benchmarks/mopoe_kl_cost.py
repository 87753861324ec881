"""What MoPoE's exact subset KL costs inside a training step: the step, the same step with the KL of
every subset replaced by nothing, the step with ``kl: sampled`` (the drawn component's KL alone), and
the work floor, alternated in one process.

    python benchmarks/mopoe_kl_cost.py --n 8 [--steps 30] [--out benchmarks/results/mopoe-kl-cost-n8.txt]

The difference between the first two is the price of Σ_S w_S KL(PoE_S ‖ p) over the 2^N − 1
subsets (the floor does no KL); the second against the floor is everything else modkit adds.
Used in docs/benchmarks.md to show what bounds the MoPoE overhead. ``--out`` also writes the lines to a
file headed by the command, date, commit, machine and load.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_common import Floor, base_args, floor_rows, set_threads, time_interleaved  # noqa: E402
from modkit_worker import make_trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    base_args(parser)
    parser.add_argument("--amp", default="off")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the result to this file, with its header")
    args = parser.parse_args()
    set_threads(args.threads)
    import modkit_mopoe

    exact = modkit_mopoe.weighted_subset_kl
    no_kl = lambda experts, subsets, weights, prior=True, **_: experts.mu.sum((0, 2)) * 0.0  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        trainer, why = make_trainer(args, "mopoe", 4 * args.batch, Path(tmp))
        sampled, why_sampled = make_trainer(argparse.Namespace(**{**vars(args), "mopoe_kl": "sampled"}), "mopoe",
                                            4 * args.batch, Path(tmp) / "sampled")
        if trainer is None or sampled is None:
            raise SystemExit(why or why_sampled)
        batches = [trainer.setup.train.__getitems__(list(range(i * args.batch, (i + 1) * args.batch))) for i in range(4)]
        counter = [0]

        def step(kl) -> None:
            modkit_mopoe.weighted_subset_kl = kl
            try:
                counter[0] += 1
                trainer.step(batches[counter[0] % 4], 1.0)
            finally:
                modkit_mopoe.weighted_subset_kl = exact

        floor = Floor(args.n, args.latent, floor_rows("mopoe", args.n, 1))
        xs = [[b.data[f"m{i}"] for i in range(args.n)] for b in batches]

        def step_sampled() -> None:
            counter[0] += 1
            sampled.step(batches[counter[0] % 4], 1.0)

        times = time_interleaved({"MoPoE step": lambda: step(exact), "same step without the subset KL": lambda: step(no_kl),
                                  "the step with kl: sampled": step_sampled,
                                  "floor": lambda: floor.step(xs[counter[0] % 4])}, args.warmup, args.steps, args.max_seconds * 4)
    median = {key: statistics.median(t["cpu"]) for key, t in times.items()}
    lines = [f"MoPoE N={args.n} B={args.batch} D={args.latent}: median CPU ms per step over {len(times['floor']['cpu'])} rounds"]
    for key, value in median.items():
        lines.append(f"  {key:34s} {value:8.1f} ms  {value / median['floor']:.3f} of the floor")
    kl = median["MoPoE step"] - median["same step without the subset KL"]
    lines.append(f"  the exact subset KL: {kl:.1f} ms = {kl / median['floor']:.1%} of the floor")
    print("\n".join(lines))
    if args.out:
        import torch
        from run import cpu_name, write_stamped

        write_stamped(args.out, "mopoe_kl_cost.py", lines, f"{cpu_name()}, {os.cpu_count()} cores",
                      f"torch {torch.__version__} with {args.threads} thread(s)")


if __name__ == "__main__":
    main()
