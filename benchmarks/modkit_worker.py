"""The modkit side of the benchmark: one configuration per process, run by modkit's own python.

The model is built the way a user's recipe builds it (plugins, recipe validation, ``Trainer``), and
the timed step is ``Trainer.step``, the one ``modkit train`` runs. Each modality is modkit's image
plugin with shape [1, 28, 28] and hidden [512, 512]: 784→512→512→(μ, log σ²) encoders and
64→512→512→784 Bernoulli decoders, SiLU between layers. The work floor (``bench_common.Floor``)
is timed in the same process, step by step between modkit's steps.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from bench_common import PRIVATE, Floor, base_args, device_tools, rates, emit, floor_rows, set_threads, summary, time_interleaved

#: benchmark objective → (modkit fusion, its options, modkit sampler)
OBJECTIVES = {
    "mvae": ("poe", {}, {"type": "mvae", "k": 0}),
    "mopoe": ("mopoe", {}, "all"),
    "moe": ("moe", {"objective": "dreg"}, "all"),
    # MultiVae's other models (docs/fusions/<name>.md); the private latents are PRIVATE wide beside the shared latent
    "jmvae": ("jmvae", {}, "all"),
    "mvtcae": ("mvtcae", {}, "all"),
    "dmvae": ("dmvae", {"modalities_specific_dim": PRIVATE}, "all"),
    "mmvae_plus": ("mmvae_plus", {"modalities_specific_dim": PRIVATE}, "all"),
    "cvae": ("cvae", {"main_modality": "m0"}, "all"),
    "crmvae": ("crmvae", {}, "all"),
    "cmvae": ("cmvae", {"modalities_specific_dim": PRIVATE, "number_of_clusters": 10}, "all"),
    # the modality-level latents as wide as the nexus latent (the peer's encoders are built at the latent size)
    "nexus": ("nexus", {}, "all"),
}
OBJECTIVES["telbo"] = ("telbo", {}, "all")  # the trainer starts in its joint stage, which the step times
OBJECTIVES["jnf"] = ("jnf", {"warmup": 1}, "all")  # the first of its stages (joint) is what a step trains: as the peer's epoch 1
OBJECTIVES["mhvae"] = ("mhvae", {}, "all")  # three levels, 256-wide blocks (the peer builds the same: MultiVae has no default)


def recipe_dict(args, objective: str, n_rows: int) -> dict:
    fusion, options, sampler = OBJECTIVES[objective]
    if objective == "moe":
        options = {**options, "k": args.moe_k}
    if objective in ("mmvae_plus", "cmvae"):
        options = {**options, "K": args.moe_k}
    if objective == "cvae":
        options = {**options, "conditioning_modalities": [f"m{i}" for i in range(1, args.n)]}
    if objective == "nexus":
        options = {**options, "modalities_specific_dim": args.latent}
    if objective == "mopoe" and getattr(args, "mopoe_kl", "exact") != "exact":
        options = {**options, "kl": args.mopoe_kl}
    train = {"device": getattr(args, "device", "cpu"), "progress": False, "lr": 1e-3}
    if args.amp != "off":
        train["amp"] = args.amp
    if args.compile:
        train["compile"] = True
    return {
        "name": f"bench-{objective}-{args.n}",
        "seed": args.seed,
        "plugins": ["bench_plugin", *extra_plugins(args)],
        "data": {"dataset": {"type": "bench-synthetic", "n_modalities": args.n, "n_rows": n_rows, "seed": args.seed},
                 "batch_size": args.batch},
        "modalities": {f"m{i}": {"type": "image", "shape": [1, 28, 28], "hidden": [512, 512], "likelihood": "bernoulli"}
                       for i in range(args.n)},
        "model": {"latent_dim": args.latent, "fusion": {"type": fusion, **options}, "sampler": sampler,
                  "beta": {"start": 1.0, "end": 1.0}},
        "train": train,
    }


def extra_plugins(args) -> list[str]:
    """Plugin modules to load besides the installed ones (``--plugins``): a fusion under development."""
    return [m for m in (getattr(args, "plugins", "") or "").split(",") if m]


def make_trainer(args, objective: str, n_rows: int, run_dir: Path):
    """A Trainer for the objective, or the reason it cannot be built (an unregistered fusion)."""
    from modkit.errors import ModkitError
    from modkit.plugins.loader import load_plugins
    from modkit.config.recipe import resolve_raw
    from modkit.runs.lifecycle import make_trainer

    plugins = load_plugins(["bench_plugin", *extra_plugins(args)])
    fusion = OBJECTIVES[objective][0]
    if not plugins.registry.has("fusion", fusion):
        return None, f"fusion '{fusion}' is not registered (available: {', '.join(plugins.registry.names('fusion'))})"
    try:
        recipe, resolved = resolve_raw(recipe_dict(args, objective, n_rows), [], None, source="benchmark")
        device = torch.device(getattr(args, "device", "cpu"))
        return make_trainer(recipe, resolved, plugins, run_dir, device, source="benchmark", echo=lambda *a, **k: None), None
    except ModkitError as exc:
        return None, f"{fusion}: {exc}"


def train(args) -> None:
    n_batches = 4
    with tempfile.TemporaryDirectory() as tmp:
        trainer, why = make_trainer(args, args.mode, n_batches * args.batch, Path(tmp))
        if trainer is None:
            emit({"engine": "modkit", "model": args.mode, "skipped": why})
            return
        view = trainer.setup.train
        device, sync, probe = device_tools(args.device)
        batches = [view.__getitems__(list(range(i * args.batch, (i + 1) * args.batch))).to(device) for i in range(n_batches)]
        counter = [0]

        def step() -> None:
            batch = batches[counter[0] % n_batches]
            counter[0] += 1
            trainer.step(batch, 1.0)

        memory = first_steps(trainer, step, probe, args.profile)
        plan = json.loads(args.floor_plan) if args.floor_plan else floor_plan(trainer.model, args.n, step, args.batch)
        floor = Floor(args.n, args.latent, floor_rows(args.mode, args.n, args.moe_k), device=args.device, plan=plan)
        xs = [[b.data[f"m{i}"] for i in range(args.n)] for b in batches]
        adam: list[float] = []

        def floor_step() -> None:
            floor.step(xs[counter[0] % n_batches])
            adam.append(floor.last["adam_ms"])

        times = time_interleaved({"modkit": step, "floor": floor_step}, args.warmup, args.steps, args.max_seconds, sync=sync)
        import modkit

        emit({"engine": "modkit", "model": args.mode, "device": args.device, "amp": args.amp, "compile": args.compile,
              "modkit_from": str(Path(modkit.__file__).parent.parent),
              **summary(times["modkit"]), **memory.result(),
              "floor": {**summary(times["floor"]), "adam_ms": round(statistics.median(adam[-len(times["floor"]["wall"]):]), 2),
                        "plan": plan}})


def floor_plan(model, n: int, step, points: int) -> dict:
    """What the work floor should train for this model (``bench_common.Floor``), read off one more training step of
    ``points`` data points: the modalities whose encoder and whose decoder get a gradient, and for each of the fusion's
    own linear layers that does, [in, out, whether its input needs a gradient too, rows per point]. A joint encoder over
    the encoders' features needs the input gradient; the first layer of a network that reads the data does not. The
    rows are the ones the step feeds the layer (MHVAE's posterior blocks run once per subset): the floor takes the
    fusion's own row counts as given, where the decoders' rows are declared per objective (``floor_rows``). Read from
    the model rather than declared per objective, so a fusion's networks are never missed."""
    layers = [m for m in model.fusion.modules() if isinstance(m, torch.nn.Linear)]
    seen: dict[int, list] = {id(layer): [False, 0] for layer in layers}

    def record(module, inputs, output) -> None:
        entry = seen[id(module)]
        entry[0] = entry[0] or inputs[0].requires_grad
        entry[1] += inputs[0].numel() // module.in_features

    hooks = [layer.register_forward_hook(record) for layer in layers]
    try:
        step()
    finally:
        for hook in hooks:
            hook.remove()

    def trained(params) -> bool:
        return any(p.grad is not None for p in params)

    names = [f"m{i}" for i in range(n)]
    encoders = [i for i, m in enumerate(names)
                if trained(p for key, p in model.modalities[m].named_parameters() if not key.startswith("decoder"))]
    decoders = [i for i, m in enumerate(names) if trained(model.modalities[m].decoder.parameters())]
    extra = [[layer.in_features, layer.out_features, int(seen[id(layer)][0]), max(1, round(seen[id(layer)][1] / points))]
             for layer in layers if layer.weight.grad is not None]
    return {"encoders": encoders, "decoders": decoders, "extra": extra}


def first_steps(trainer, step, probe, profile: str | None):
    """Three training steps under the peak-memory probe (returned), then a profile of five more if asked."""
    trainer.model.train()
    with probe() as memory:
        for _ in range(3):
            step()
    if profile:
        write_profile(step, Path(profile))
    return memory


def write_profile(step, path: Path, steps: int = 5) -> None:
    """torch.profiler's op table over a few steps: where a step's time goes."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def estimator():
    """modkit's own importance-sampled estimator when this modkit has it (``modkit eval``), else :func:`log_marginal`."""
    try:
        from modkit.evaluation.likelihood import importance_log_likelihood
    except ImportError:
        return "benchmarks/modkit_worker.py:log_marginal (engine primitives)", log_marginal
    return ("modkit.evaluation.likelihood.importance_log_likelihood",
            lambda model, batch, k: importance_log_likelihood(model, batch, model.names, model.names, k).log_p)


@torch.no_grad()
def log_marginal(model, batch, k: int, chunk_rows: int = 25_600) -> torch.Tensor:
    """IWAE estimate of log p(x_1, …, x_N) per point with the joint posterior as proposal, vectorized over K × B.

    Built from the engine's public primitives (encode, the fusion's posterior, weighted_reconstruction),
    chunked over K so memory stays bounded.
    """
    from modkit.core.gaussian import gaussian_log_prob

    full = torch.ones(1, len(model.names), dtype=torch.bool, device=model.device)
    post = model.fusion.posterior(model.encode(batch), full)  # (1, B, D)
    points = len(batch)
    per_chunk = max(1, chunk_rows // points)
    weights = []
    for start in range(0, k, per_chunk):
        z = post.rsample(min(per_chunk, k - start)).squeeze(1)  # (k', B, D)
        rec, _ = model.weighted_reconstruction(z, batch)
        zero = z.new_zeros(())
        weights.append(rec + gaussian_log_prob(z, zero, zero) - post.log_prob(z.unsqueeze(1)).squeeze(1))
    return torch.logsumexp(torch.cat(weights), 0) - math.log(k)


def nll(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trainer, why = make_trainer(args, "mvae", max(args.nll_points, args.batch), Path(tmp))
        if trainer is None:
            emit({"engine": "modkit", "skipped": why})
            return
        model = trainer.model.eval()
        device, sync, _ = device_tools(args.device)
        batch = trainer.setup.train.__getitems__(list(range(args.nll_points))).to(device)
        floor = Floor(args.n, args.latent, 1, device=args.device)
        xs = [batch.data[f"m{i}"] for i in range(args.n)]
        name, estimate = estimator()
        times = time_interleaved({"modkit": lambda: estimate(model, batch, args.nll_k),
                                  "floor": lambda: floor.nll_decode(xs, args.nll_k)}, 1, args.nll_repeats, 0.0, args.nll_repeats, sync=sync)
        emit({"engine": "modkit", "device": args.device, "estimator": name, **rates(times, args.nll_points)})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=[*OBJECTIVES, "nll"])
    base_args(parser)
    parser.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--mopoe-kl", choices=["exact", "sampled"], default="exact")
    parser.add_argument("--plugins", default="", help="comma-separated extra plugin modules to load")
    parser.add_argument("--profile", default=None, help="write a torch.profiler table of 5 steps to this file")
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    sys.path.insert(0, str(Path(__file__).parent))  # bench_plugin, for the recipe's plugins list
    if args.mode == "nll":
        nll(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
