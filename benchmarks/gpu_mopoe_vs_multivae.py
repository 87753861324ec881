"""MultiVae 1.0.3's MoPoE and modkit's MoPoE side by side on identical PolyMNIST-shaped tensors.

    python benchmarks/gpu_mopoe_vs_multivae.py --device cuda --out OUT/mopoe-vs-multivae.json

Five modalities of 3 × 28 × 28 binary pixels (``bench_common.synthetic_data``: the same rows, from the same
seed, for both engines), batch 256, float32, latent 64, every one of the 31 subsets in the objective (MoPoE's),
β = 1. Both engines get the same networks: per modality an MLP encoder 2352 → 512 → 512 → (μ, log σ²) and an
MLP decoder 64 → 512 → 512 → 2352 Bernoulli logits, SiLU between layers (modkit's image plugin with
``hidden: [512, 512]``; MultiVae's through its ``BaseEncoder``/``BaseDecoder``). A step is what each engine's
trainer does per batch: forward, backward, Adam step (MultiVae's trainer also reads the loss back, which this
timing keeps, as ``benchmarks/peer_multivae.py`` does). Warm-up steps are run and not timed; each timed step is
closed by ``torch.cuda.synchronize`` on a GPU; the result is samples per second from the median step.

Each engine runs in a fresh process: modkit's in this python, MultiVae's in ``benchmarks/.venv-multivae``, the
virtual environment ``benchmarks/run.py`` creates from PyPI (``pip install multivae==1.0.3``) on first use,
which sees this python's torch (so both run the same kernels). Without it (``--no-install`` and no venv, or an
install that fails) the MultiVae side is recorded as skipped, with the reason.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_common import base_args, device_tools, emit, set_threads, summary, synthetic_data, time_interleaved  # noqa: E402

SIDE = (3, 28, 28)  # PolyMNIST: 28 × 28 RGB digits
PIXELS = 3 * 28 * 28


def result(engine: str, args, times: dict, memory: dict) -> dict:
    stats = summary(times)
    return {"engine": engine, "device": args.device, **stats, "samples_per_s": round(args.batch / (stats["wall_ms"] / 1e3), 1),
            **memory}


# -- MultiVae's side (run by the python of its venv: no modkit here) -----------------------------------------

def multivae(args) -> None:
    import torch
    from torch import nn
    from multivae.data.datasets.base import MultimodalBaseDataset
    from multivae.models import MoPoE, MoPoEConfig
    from multivae.models.base import BaseDecoder, BaseEncoder, ModelOutput

    latent = args.latent

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(PIXELS, 512), nn.SiLU(), nn.Linear(512, 512), nn.SiLU())
            self.head = nn.Linear(512, 2 * latent)

        def forward(self, x):
            mu, log_var = self.head(self.net(x.reshape(-1, PIXELS))).chunk(2, dim=-1)
            return ModelOutput(embedding=mu, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(latent, 512), nn.SiLU(), nn.Linear(512, 512), nn.SiLU(), nn.Linear(512, PIXELS))

        def forward(self, z):
            out = self.net(z.reshape(-1, z.shape[-1]))
            return ModelOutput(reconstruction=out.reshape(*z.shape[:-1], *SIDE))

    names = [f"m{i}" for i in range(args.n)]
    config = MoPoEConfig(n_modalities=args.n, latent_dim=latent, input_dims={m: SIDE for m in names},
                         decoders_dist={m: "bernoulli" for m in names}, beta=1.0)
    model = MoPoE(config, {m: Encoder() for m in names}, {m: Decoder() for m in names})
    device, sync, probe = device_tools(args.device)
    model.to(device).train()
    data = synthetic_data(args.n, 4 * args.batch, args.seed, SIDE)
    batches = [MultimodalBaseDataset({m: torch.from_numpy(x[i * args.batch:(i + 1) * args.batch]).to(device) for m, x in zip(names, data)})
               for i in range(4)]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    counter = [0]

    def step() -> None:
        out = model(batches[counter[0] % 4], epoch=1, batch_ratio=0.0)
        counter[0] += 1
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        out.loss.item()  # MultiVae's trainer reads the loss back every step

    with probe() as memory:
        times = time_interleaved({"step": step}, args.warmup, args.steps, args.max_seconds, sync=sync)
    emit(result("multivae", args, times["step"], memory.result()))


# -- modkit's side -------------------------------------------------------------------------------------------

def modkit(args) -> None:
    import torch

    from modkit.config.recipe import resolve_raw
    from modkit.plugins.loader import load_plugins
    from modkit.runs.lifecycle import make_trainer

    raw = {
        "name": f"polymnist-shaped-mopoe-{args.n}", "seed": args.seed, "plugins": ["bench_plugin"],
        "data": {"dataset": {"type": "bench-synthetic", "n_modalities": args.n, "n_rows": 4 * args.batch, "seed": args.seed,
                             "side": list(SIDE)}, "batch_size": args.batch},
        "modalities": {f"m{i}": {"type": "image", "shape": list(SIDE), "hidden": [512, 512], "likelihood": "bernoulli"}
                       for i in range(args.n)},
        "model": {"latent_dim": args.latent, "fusion": {"type": "mopoe"}, "sampler": "all", "beta": {"start": 1.0, "end": 1.0}},
        "train": {"device": args.device, "progress": False, "lr": 1e-3},
    }
    plugins = load_plugins(["bench_plugin"])
    recipe, resolved = resolve_raw(raw, [], None, source="benchmark")
    device, sync, probe = device_tools(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(recipe, resolved, plugins, Path(tmp), device, source="benchmark", echo=lambda *a, **k: None)
        view = trainer.setup.train
        batches = [view.__getitems__(list(range(i * args.batch, (i + 1) * args.batch))).to(device) for i in range(4)]
        trainer.model.train()
        counter = [0]

        def step() -> None:
            trainer.step(batches[counter[0] % 4], 1.0)
            counter[0] += 1

        with probe() as memory:
            times = time_interleaved({"step": step}, args.warmup, args.steps, args.max_seconds, sync=sync)
    emit(result("modkit", args, times["step"], memory.result()))


# -- both, each in its own process ---------------------------------------------------------------------------

def compare(args) -> int:
    import run

    options = {"n": args.n, "batch": args.batch, "latent": args.latent, "warmup": args.warmup, "steps": args.steps,
               "max_seconds": args.max_seconds, "seed": args.seed, "device": args.device}
    report = {"meta": {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": run.commit(),
                       "command": "python benchmarks/gpu_mopoe_vs_multivae.py " + " ".join(sys.argv[1:]),
                       "shape": f"{args.n} modalities × {' × '.join(map(str, SIDE))}", "dtype": "float32",
                       "multivae": run.PEER_VERSION, **options}}
    report["modkit"] = run.run_worker(Path(sys.executable), Path(__file__).name, "modkit", options, args.threads, args.timeout)
    show("modkit", report["modkit"])
    peer, why = run.peer_python(create=not args.no_install)
    if peer is None:
        report["multivae"] = {"skipped": why}
    else:
        report["multivae"] = run.run_worker(peer, Path(__file__).name, "multivae", options, args.threads, args.timeout)
    show("MultiVae", report["multivae"])
    mk, mv = report["modkit"].get("samples_per_s"), report["multivae"].get("samples_per_s")
    report["speedup"] = round(mk / mv, 3) if mk and mv else None
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("modkit", "multivae", "speedup")}))
    return 0 if "samples_per_s" in report["modkit"] else 1


def show(engine: str, res: dict) -> None:
    text = f"{res['samples_per_s']:.0f} samples/s (median step {res['wall_ms']:.2f} ms)" if "samples_per_s" in res else \
        res.get("skipped") or res.get("error")
    print(f"  {engine} MoPoE: {text}", flush=True)


def markdown(report: dict) -> str:
    meta = report["meta"]
    lines = [f"# MoPoE: modkit against MultiVae {meta['multivae']} ({meta['shape']}, batch {meta['batch']}, {meta['dtype']}, {meta['device']})", "",
             "| engine | samples/s | median step ms | step quartiles ms | peak memory MB |", "|---|---|---|---|---|"]
    for name in ("modkit", "multivae"):
        res = report.get(name) or {}
        if "samples_per_s" in res:
            lines.append(f"| {name} | {res['samples_per_s']:.0f} | {res['wall_ms']:.2f} | {res['wall_q1_ms']:.2f}–{res['wall_q3_ms']:.2f} | "
                         f"{res['train_peak_mb']:.0f} |")
        else:
            lines.append(f"| {name} | {res.get('skipped') or res.get('error') or 'not run'} | | | |")
    if report.get("speedup"):
        lines.append(f"\nmodkit / MultiVae throughput: {report['speedup']:.2f}×.")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=["compare", "modkit", "multivae"], default="compare")
    base_args(parser)
    parser.set_defaults(n=5, batch=256, latent=64, warmup=5, steps=30, max_seconds=20.0)
    parser.add_argument("--out", type=Path, default=None, help="the JSON report (compare)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds each engine's process may take")
    parser.add_argument("--no-install", action="store_true", help="use the MultiVae venv only if it already exists")
    args = parser.parse_args()
    if args.mode == "compare":
        return compare(args)
    set_threads(args.threads)
    import torch

    torch.manual_seed(args.seed)
    (modkit if args.mode == "modkit" else multivae)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
