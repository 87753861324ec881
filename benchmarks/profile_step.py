"""Where a modkit training step's time goes: torch.profiler over a few steps, ops split into the
networks' own work (what the floor also does) and everything else (engine + fusion).

    python benchmarks/profile_step.py mopoe --n 8 [--plugins …] [--compile]   # any objective of run.py
    python benchmarks/profile_step.py mopoe --n 2 --count-ops   # operator calls per step, modkit vs the floor
    python benchmarks/profile_step.py mopoe --n 2 --count-ops --out benchmarks/results/op-count-mopoe-n2.txt

Prints the split and the top operators; used in docs/benchmarks.md to show what bounds an overhead.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_common import base_args, portable, set_threads  # noqa: E402
from modkit_worker import OBJECTIVES, make_trainer  # noqa: E402

#: operators the bare networks run (forward, backward, likelihood, optimizer): the floor's work too
NETWORK_OPS = ("aten::mm", "aten::addmm", "aten::silu", "aten::silu_backward", "aten::log_sigmoid_forward",
               "aten::log_sigmoid_backward", "aten::sigmoid", "aten::binary_cross_entropy_with_logits",
               "aten::_fused_adam_", "aten::t", "aten::transpose")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=sorted(OBJECTIVES))
    base_args(parser)
    parser.add_argument("--amp", default="off")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--plugins", default="")
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--count-ops", action="store_true",
                        help="count the aten operator calls of one step of modkit and of the floor instead of profiling")
    parser.add_argument("--out", type=Path, default=None,
                        help="with --count-ops: also write the counts to this file, headed by the command, date, commit and "
                             "the modkit it imported")
    args = parser.parse_args()
    set_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainer, why = make_trainer(args, args.mode, 2 * args.batch, Path(tmp))
        if trainer is None:
            raise SystemExit(why)
        batch = trainer.setup.train.__getitems__(list(range(args.batch)))
        for _ in range(args.warmup):
            trainer.step(batch, 1.0)
        if args.count_ops:
            lines = count_ops(args, trainer, batch)
            print("\n".join(lines))
            if args.out:
                write_counts(args.out, lines)
            return
        steps = 5
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                trainer.step(batch, 1.0)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    network = sum(e.self_cpu_time_total for e in events if e.key in NETWORK_OPS)
    print(f"{args.mode} N={args.n} B={args.batch} D={args.latent}: {total / steps / 1e3:.1f} ms self CPU per step (profiled)")
    print(f"  networks (mm, addmm, SiLU, Bernoulli, fused Adam): {network / steps / 1e3:7.1f} ms  {network / total:6.1%}")
    print(f"  everything else (engine + fusion):                  {(total - network) / steps / 1e3:7.1f} ms  {(total - network) / total:6.1%}")
    print("  top operators outside the networks (ms per step, calls per step):")
    others = sorted((e for e in events if e.key not in NETWORK_OPS), key=lambda e: -e.self_cpu_time_total)
    for e in others[: args.rows]:
        print(f"    {e.key:45s} {e.self_cpu_time_total / steps / 1e3:7.2f} {e.count // steps:5d}")


def write_counts(path: Path, lines: list[str]) -> None:
    import modkit
    from run import write_stamped

    write_stamped(path, "profile_step.py", lines, f"modkit imported from {portable(str(Path(modkit.__file__).parent))}")


def count_ops(args, trainer, batch) -> list[str]:
    """aten operator calls (forward, backward, optimizer) in one step of modkit and of the floor, by operator."""
    from collections import Counter

    from torch.utils._python_dispatch import TorchDispatchMode

    from bench_common import Floor, floor_rows

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls: Counter = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    floor = Floor(args.n, args.latent, floor_rows(args.mode, args.n, 1))
    xs = [batch.data[f"m{i}"] for i in range(args.n)]
    floor.step(xs)
    counts = {}
    for name, step in (("modkit", lambda: trainer.step(batch, 1.0)), ("floor", lambda: floor.step(xs))):
        with Count() as mode:
            step()
        counts[name] = mode.calls
    extra = counts["modkit"] - counts["floor"]
    return [f"{args.mode} N={args.n} B={args.batch} D={args.latent}: aten operator calls in one step "
            f"(views included): modkit {sum(counts['modkit'].values())}, floor {sum(counts['floor'].values())}",
            "  most frequent beyond the floor's: " + ", ".join(f"{k} {v}" for k, v in extra.most_common(args.rows))]


if __name__ == "__main__":
    main()
