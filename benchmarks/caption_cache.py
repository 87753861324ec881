"""The frozen text encoder's feature cache (``modalities.<caption>.pretrained.cache``): one epoch of caption
features for the LCMVAE fine-tuning's shapes captions, encoded every batch (``cache: 0``) against read from the
cache that a first epoch filled, in one process on one thread. The ratio is the claim; times are CPU seconds
(wall in brackets), with the load average.

    python benchmarks/caption_cache.py        # needs the lcmvae extra (pip install ".[lcmvae]")

Output: ``benchmarks/results/caption-cache.json`` and ``.md`` (or ``--out``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import commit, cpu_name, uptime as loadavg  # noqa: E402


def epoch(encoder, batches) -> tuple[float, float]:
    """CPU and wall seconds of one pass over the batches."""
    cpu, wall = time.process_time(), time.perf_counter()
    for ids, mask in batches:
        encoder(ids, mask)
    return time.process_time() - cpu, time.perf_counter() - wall


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=2400, help="captions per epoch (the fine-tuning's training split)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from modkit_caption.pretrained import PretrainedConfig, PretrainedEncoder
    from modkit_shapes import ShapesConfig, generate

    texts = list(generate(ShapesConfig(type="shapes", n=args.scenes, image_size=32))[0].objects["caption"])
    load_start = loadavg()
    encoders = {c: PretrainedEncoder(PretrainedConfig(name="all-MiniLM-L6-v2", max_length=32, cache=c), "pretrained")
                for c in (0, 200_000)}
    tokens = [encoders[0].tokenize(t) for t in texts]
    batches = [(torch.stack([t["hf_ids"] for t in tokens[i:i + args.batch]]),
                torch.stack([t["hf_mask"] for t in tokens[i:i + args.batch]])) for i in range(0, len(tokens), args.batch)]
    uncached = epoch(encoders[0], batches)
    first = epoch(encoders[200_000], batches)  # fills the cache
    cached = epoch(encoders[200_000], batches)
    same = all(torch.allclose(encoders[0](i, m), encoders[200_000](i, m), atol=1e-5) for i, m in batches[:3])
    report = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit(),
        "command": "python benchmarks/caption_cache.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{cpu_name()}; torch {torch.__version__}, 1 thread", "load_start": load_start, "load_end": loadavg(),
        "captions": len(texts), "distinct": len(set(texts)), "batch": args.batch,
        "epoch_seconds": {"encoded every batch": uncached, "first epoch, filling the cache": first, "from the cache": cached},
        "ratio_cpu": uncached[0] / max(cached[0], 1e-9), "same_features": same,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "caption-cache.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "caption-cache.md").write_text(markdown(report))
    print(markdown(report))
    return report


def markdown(r: dict) -> str:
    rows = "\n".join(f"| {k} | {cpu:.3f} ({wall:.3f}) |" for k, (cpu, wall) in r["epoch_seconds"].items())
    return (f"# The frozen text encoder's feature cache\n\n- date: {r['date']}; commit `{r['commit']}`; command: `{r['command']}`\n"
            f"- machine: {r['machine']}; load average at start {r['load_start']}, at end {r['load_end']}\n"
            f"- one epoch: {r['captions']} shapes captions ({r['distinct']} distinct), batches of {r['batch']}, all-MiniLM-L6-v2\n\n"
            f"| epoch | CPU s (wall s) |\n|---|---|\n{rows}\n\n"
            f"Encoded every batch / from the cache, CPU time: **{r['ratio_cpu']:.0f}×**; cached features equal the "
            f"encoder's (atol 1e-5): {r['same_features']}.\n")


if __name__ == "__main__":
    main()
