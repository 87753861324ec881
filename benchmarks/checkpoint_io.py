"""What the safe checkpoint format costs against the pickle it replaced: one checkpoint of
recipes/digits.yaml's model (after one Adam step), serialised by ``torch.save`` (format 2) and by
modkit's safetensors + JSON (format 3), and read back by ``modkit.storage.checkpoint.load_checkpoint``.

    python benchmarks/checkpoint_io.py [--repeats 20] > benchmarks/results/checkpoint-io.txt

CPU and wall time per checkpoint, mean of the repeats, with the machine's load beside them.
"""
from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.process_time() - cpu) / repeats * 1e3, (time.perf_counter() - wall) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from modkit.config.recipe import load_recipe
    from modkit.plugins.loader import plugins_for
    from modkit.storage import checkpoint, state_file
    from modkit.runs.lifecycle import make_trainer

    recipe, resolved = load_recipe(ROOT / "recipes" / "digits.yaml", ["train.device=cpu"])
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        trainer = make_trainer(recipe, resolved, plugins_for(recipe.plugins, []), run, torch.device("cpu"), echo=lambda s: None)
        trainer.step(trainer.setup.train.__getitems__(list(range(64))), 1.0)
        state = trainer.checkpoint_state()
        params = sum(v.numel() for v in trainer.model.state_dict().values())
        old = timed(lambda: torch.save(state, io.BytesIO()), args.repeats)
        new = timed(lambda: state_file.to_bytes(state, checkpoint.KIND, checkpoint.CHECKPOINT_FORMAT), args.repeats)
        checkpoint.save_checkpoint(run, state)
        read = timed(lambda: checkpoint.load_checkpoint(run), args.repeats)
        size = (run / checkpoint.CHECKPOINT).stat().st_size
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    print(f"# checkpoint I/O, recipes/digits.yaml model ({params} parameters) + Adam state, {args.repeats} repeats, 1 thread")
    print(f"# commit {commit}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, load {' '.join(open('/proc/loadavg').read().split()[:3])}")
    print("# command: python benchmarks/checkpoint_io.py" + (f" --repeats {args.repeats}" if args.repeats != 20 else ""))
    print(f"torch.save (format 2, pickle)        cpu {old[0]:.1f} ms  wall {old[1]:.1f} ms")
    print(f"safetensors + JSON (format 3)        cpu {new[0]:.1f} ms  wall {new[1]:.1f} ms  file {size} bytes")
    print(f"load_checkpoint (format 3, checked)  cpu {read[0]:.1f} ms  wall {read[1]:.1f} ms")


if __name__ == "__main__":
    main()
