"""What both benchmark workers share: the synthetic data, the timing loop, the memory probe.

This file is imported by the modkit worker (modkit's venv) and by the MultiVae worker (the peer's
own venv), so it uses only the standard library, numpy and torch.
"""
from __future__ import annotations

import json
import os
import re
import resource
import statistics
import sys
import time
from typing import Callable

import numpy as np

#: Printed before the one JSON line a worker returns, so log noise on stdout cannot confuse run.py.
RESULT_MARK = "@@BENCH@@ "
SIDE = (1, 28, 28)  # each modality: a binary 784-d vector, stored as a 28×28 grey image
PIXELS = 784


REPOSITORY = __import__("pathlib").Path(__file__).resolve().parents[1]


def portable(text: str) -> str:
    """``text`` with this machine's absolute paths made portable (:func:`modkit.reporting.stamps.portable`, relative
    to this repository): result files and docs/benchmarks.md stamp commands and folders. Imported when called, as
    MultiVae's worker imports this file in an environment without modkit."""
    from modkit.reporting.stamps import portable as relative

    return relative(text, REPOSITORY)


def synthetic_data(n_modalities: int, n_rows: int, seed: int = 0, side: tuple[int, ...] = SIDE) -> list[np.ndarray]:
    """N binary modalities of shape ``side`` (default 1 × 28 × 28) that share a class: each is its class
    prototype with 5 % of bits flipped.

    Deterministic in (n_modalities, n_rows, seed, side), so the modkit and MultiVae workers see identical data.
    """
    pixels = int(np.prod(side))
    rng = np.random.default_rng(seed)
    prototypes = rng.random((10, n_modalities, pixels)) < 0.3
    labels = rng.integers(10, size=n_rows)
    out = []
    for m in range(n_modalities):
        flips = rng.random((n_rows, pixels)) < 0.05
        out.append((prototypes[labels, m] ^ flips).astype(np.float32).reshape(n_rows, *side))
    return out


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


# -- time ----------------------------------------------------------------------------------------

def time_interleaved(steps: dict[str, Callable[[], None]], warmup: int, measure: int, max_seconds: float,
                     min_steps: int = 5, sync: Callable[[], None] = lambda: None) -> dict[str, dict[str, list[float]]]:
    """Run each step function in turn (A B A B …); per function, the wall and CPU time of each step in ms.

    Interleaving puts the load of a shared machine on every contender alike. CPU time
    (``time.process_time``: this process's user + system time) is what a step costs when the process
    runs alone; with one thread it does not grow while other processes hold the cores, so it is the
    steadier measure on a shared machine. After ``warmup`` rounds, at most ``measure`` rounds are timed,
    fewer if ``max_seconds`` of wall time pass (never fewer than ``min_steps``). On a GPU, ``sync``
    (``torch.cuda.synchronize``) closes each step, so wall time is the GPU's time; CPU time then only
    says how busy the host was.
    """
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    times: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in steps}
    started = time.perf_counter()
    for i in range(measure):
        for key, fn in steps.items():
            sync()
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            sync()
            times[key]["wall"].append((time.perf_counter() - t0) * 1e3)
            times[key]["cpu"].append((time.process_time() - c0) * 1e3)
        if i + 1 >= min_steps and time.perf_counter() - started > max_seconds:
            break
    return times


def summary(t: dict[str, list[float]]) -> dict:
    """Medians of wall and CPU time (the reported numbers) and the wall quartiles, so noise shows."""
    wall, cpu = t["wall"], t["cpu"]
    q = statistics.quantiles(wall, n=4) if len(wall) >= 2 else [wall[0]] * 3
    return {"wall_ms": round(statistics.median(wall), 2), "cpu_ms": round(statistics.median(cpu), 2),
            "wall_q1_ms": round(q[0], 2), "wall_q3_ms": round(q[2], 2), "n": len(wall)}


def rates(times: dict[str, dict[str, list[float]]], points: int) -> dict:
    """Likelihood-estimation throughput (points/s) from the median wall and CPU time per call."""
    out = {}
    for key, t in times.items():
        prefix = "" if key != "floor" else "floor_"
        out[prefix + "points_per_s"] = round(points / (statistics.median(t["wall"]) / 1e3), 2)
        out[prefix + "points_per_cpu_s"] = round(points / (statistics.median(t["cpu"]) / 1e3), 2)
    return out


# -- memory --------------------------------------------------------------------------------------

def _status_kb(key: str) -> int | None:
    try:
        text = open("/proc/self/status").read()
    except OSError:
        return None
    found = re.search(rf"{key}:\s+(\d+)", text)
    return int(found.group(1)) if found else None


class PeakMemory:
    """Peak resident memory of this process over a region, in MiB.

    torch's CPU tensors live in malloc'd memory that ``tracemalloc`` cannot see, so the probe is the
    kernel's own high-water mark: ``VmHWM`` is reset by writing 5 to ``/proc/self/clear_refs`` at the
    start of the region, giving the peak of the region alone; ``peak - start`` is what training added
    (activations, gradients, optimizer state) on top of the imported libraries and the data. Where the
    reset is not allowed, the process-lifetime ``ru_maxrss`` is the fallback (each configuration runs
    in a fresh process, so that is still per configuration).
    """

    def __enter__(self) -> "PeakMemory":
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "VmHWM after clear_refs"
        except OSError:
            self.method = "ru_maxrss"
        self.start_kb = _status_kb("VmRSS") or 0
        return self

    def __exit__(self, *exc) -> None:
        hwm = _status_kb("VmHWM") if self.method.startswith("VmHWM") else None
        self.peak_kb = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def result(self) -> dict:
        return {"peak_rss_mb": round(self.peak_kb / 1024, 1), "start_rss_mb": round(self.start_kb / 1024, 1),
                "train_peak_mb": round((self.peak_kb - self.start_kb) / 1024, 1), "memory_probe": self.method}


def emit(result: dict) -> None:
    """Hand the result to run.py: one marked JSON line on stdout."""
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


def base_args(parser) -> None:
    parser.add_argument("--n", type=int, default=2, help="number of modalities")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--latent", type=int, default=64)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "1")))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    parser.add_argument("--moe-k", type=int, default=1, help="MoE: latent samples per unimodal posterior")
    parser.add_argument("--nll-k", type=int, default=1000)
    parser.add_argument("--nll-points", type=int, default=32)
    parser.add_argument("--nll-repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--floor-plan", default="", help="JSON: what the work floor trains (see Floor); run.py takes it from "
                        "modkit's model so both engines' floors are the same networks")


def device_tools(device: str):
    """(torch device, a sync function for timing, a peak-memory probe factory) for ``device``."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return dev, lambda: torch.cuda.synchronize(dev), lambda: CudaPeakMemory(dev)
    return dev, lambda: None, PeakMemory


class CudaPeakMemory:
    """Peak GPU memory held by torch's allocator over a region (``max_memory_allocated``), in MiB."""

    def __init__(self, device):
        import torch

        self.torch, self.device = torch, device

    def __enter__(self) -> "CudaPeakMemory":
        self.torch.cuda.synchronize(self.device)
        self.torch.cuda.reset_peak_memory_stats(self.device)
        self.start = self.torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc) -> None:
        self.torch.cuda.synchronize(self.device)
        self.peak = self.torch.cuda.max_memory_allocated(self.device)

    def result(self) -> dict:
        mib = 1024 * 1024
        return {"peak_rss_mb": round(self.peak / mib, 1), "start_rss_mb": round(self.start / mib, 1),
                "train_peak_mb": round((self.peak - self.start) / mib, 1), "memory_probe": "torch.cuda.max_memory_allocated"}


# -- the work floor ------------------------------------------------------------------------------

#: rows each decoder must see per data point, per objective (MoE: times N·K, filled in by floor_rows)
#: the private latent's size of the DMVAE and MMVAE+ rows (both engines)
PRIVATE = 8


def floor_rows(objective: str, n: int, moe_k: int) -> int:
    """How many latent rows per data point each decoder needs (each encoder always needs one).

    MVAE full + singles: the joint latent and the modality's own single latent (2). MoPoE with one
    mixture sample per point: 1. MoE with K samples: every modality's K latents, N·K. JMVAE, MVTCAE: the joint
    latent (1). DMVAE: the joint and every cross ELBO's (1 + N). MMVAE+: N·K, as MoE. CVAE decodes only its main
    modality (1 row, and the floor's plan decodes only that one). JNF's joint stage: the joint latent (1). Nexus: each modality's own
    latent (1). MHVAE: every subset's z_1 (2^N − 1). The networks a fusion owns (joint encoders, Nexus's top networks,
    MHVAE's ladder blocks) are in the floor's plan, once per point.
    """
    return {"mvae": 2, "mopoe": 1, "moe": n * moe_k, "jmvae": 1, "mvtcae": 1, "dmvae": 1 + n, "mmvae_plus": n * moe_k,
            "cvae": 1, "crmvae": 2, "cmvae": n * moe_k, "telbo": 1, "jnf": 1, "nexus": 1,
            "mhvae": 2 ** n - 1}[objective]  # telbo, jnf: their joint stage, one joint latent per point


class Floor:
    """The bare networks of the benchmark (same shapes as modkit's image modality) and their Adam.

    One step runs each encoder forward/backward on the batch and each decoder forward/backward on
    exactly the rows the objective needs, scores them with the Bernoulli log-likelihood, and takes
    the Adam step (fused kernels where torch has them): work that any engine must do. Decoder inputs are leaves that require grad, so the
    decoder's input gradient (which a real model back-propagates into the encoders) is computed too.

    ``plan`` (``modkit_worker.floor_plan``) narrows this to what the model's step trains and adds the networks a fusion
    owns: ``encoders`` and ``decoders``, the modalities whose networks get a gradient (a CVAE decodes only its main
    modality; a model in its joint stage trains no unimodal encoder), and ``extra``, [in, out, input needs a gradient,
    rows per point] for every linear layer of the fusion's own networks that gets a gradient (a joint encoder, a code
    network, top encoders, ladder blocks), each run forward and backward on that many rows per point of a leaf input
    (requiring a gradient where the model's input to that layer does), with SiLU after it.
    """

    def __init__(self, n: int, latent: int, rows_per_point: int, lr: float = 1e-3, device: str = "cpu", plan: dict | None = None):
        import torch
        from torch import nn

        self.torch = torch
        plan = plan or {}
        self.encoded = list(plan.get("encoders", range(n)))
        self.decoded = list(plan.get("decoders", range(n)))
        self.encoders = nn.ModuleList(
            nn.Sequential(nn.Linear(784, 512), nn.SiLU(), nn.Linear(512, 512), nn.SiLU(), nn.Linear(512, 2 * latent)) for _ in range(n))
        self.decoders = nn.ModuleList(
            nn.Sequential(nn.Linear(latent, 512), nn.SiLU(), nn.Linear(512, 512), nn.SiLU(), nn.Linear(512, 784)) for _ in range(n))
        self.extra = nn.ModuleList(nn.Linear(int(spec[0]), int(spec[1])) for spec in plan.get("extra", []))
        self.extra_input_grad = [bool(spec[2]) if len(spec) > 2 else True for spec in plan.get("extra", [])]
        self.extra_rows = [int(spec[3]) if len(spec) > 3 else 1 for spec in plan.get("extra", [])]
        for part in (self.encoders, self.decoders, self.extra):
            part.to(device)
        self.device = torch.device(device)
        self.params = [*(p for i in self.encoded for p in self.encoders[i].parameters()),
                       *(p for i in self.decoded for p in self.decoders[i].parameters()), *self.extra.parameters()]
        major, minor = (int(v) for v in torch.__version__.split(".")[:2])
        fused = {"fused": True} if (major, minor) >= (2, 4) else {}  # the fastest Adam this torch has
        self.optimizer = torch.optim.Adam(self.params, lr=lr, **fused)
        self.latent, self.rows = latent, rows_per_point
        self.last: dict[str, float] = {}

    def step(self, xs: list) -> None:
        torch = self.torch
        F = torch.nn.functional
        t0 = time.perf_counter()
        loss = 0.0
        for i in self.encoded:
            stats = self.encoders[i](xs[i].reshape(len(xs[i]), -1))
            loss = loss + stats.square().sum()
        for i in self.decoded:
            x = xs[i]
            flat = x.reshape(len(x), -1)
            z = torch.randn(self.rows, len(x), self.latent, device=self.device, requires_grad=True)
            out = self.decoders[i](z.reshape(-1, self.latent)).reshape(self.rows, len(x), -1)
            loss = loss + F.binary_cross_entropy_with_logits(out, flat.expand_as(out), reduction="sum")
        points = len(xs[0])
        for layer, input_grad, rows in zip(self.extra, self.extra_input_grad, self.extra_rows):
            h = torch.randn(rows * points, layer.in_features, device=self.device, requires_grad=input_grad)
            loss = loss + F.silu(layer(h)).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t1 = time.perf_counter()
        self.optimizer.step()
        self.last = {"forward_backward_ms": (t1 - t0) * 1e3, "adam_ms": (time.perf_counter() - t1) * 1e3}

    def nll_decode(self, xs: list, k: int, chunk_rows: int = 25_600) -> None:
        """The likelihood estimator's floor: every decoder forward on K rows per point, scored (no grad)."""
        torch = self.torch
        F = torch.nn.functional
        with torch.no_grad():
            points = len(xs[0])
            per_chunk = max(1, chunk_rows // points)
            for start in range(0, k, per_chunk):
                rows = min(per_chunk, k - start)
                z = torch.randn(rows, points, self.latent, device=self.device)
                for dec, x in zip(self.decoders, xs):
                    out = dec(z.reshape(-1, self.latent)).reshape(rows, points, -1)
                    F.binary_cross_entropy_with_logits(out, x.reshape(points, -1).expand_as(out), reduction="none").sum(-1)
