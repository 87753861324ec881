"""Real recipes timed per step beside their own work floor: one configuration per process.

    python benchmarks/recipe_worker.py shapes      # recipes/shapes.yaml: conv image, mask, label, attributes, two GRU texts
    python benchmarks/recipe_worker.py shapes19    # image + 18 attributes as separate modalities (MVAE's CelebA-19 shape)

The timed step is ``Trainer.step`` on the recipe's own model, data and batch size. The floor is a second
copy of the same networks doing only the work the objective needs: every encoder once on the batch, every
decoder on as many latent rows as the objective needs under the subset plan the step just used
(:func:`decoder_rows`: a product of experts decodes every subset that holds the modality, ``plan.counts``;
MoPoE one drawn component per point), its likelihood scored, the backward, and one fused Adam step.
Decoder inputs are leaves that require grad (the input gradient a real model back-propagates).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_common import base_args, device_tools, emit, floor_rows, set_threads, summary, time_interleaved  # noqa: E402
from modkit_worker import first_steps  # noqa: E402

#: the shapes recipe, shortened so building it takes seconds (the step's shapes are the recipe's own)
SHAPES_SETS = ["data.dataset.n=1200", "train.progress=false"]


def shapes19_recipe(args) -> dict:
    """The image of recipes/shapes.yaml and 18 attributes, each its own modality; PoE with MVAE's sampler (k = 1)."""
    names = [f"a{k:02d}" for k in range(18)]
    return {
        "name": "bench-shapes19", "seed": args.seed, "plugins": ["bench_plugin"],
        "data": {"dataset": {"type": "bench-shapes19", "n": 1200, "image_size": 32}, "batch_size": args.recipe_batch or 64},
        "modalities": {
            "image": {"type": "image", "shape": [3, 32, 32], "architecture": "conv", "likelihood": "bernoulli", "hidden": [256]},
            "attributes": {"type": "attribute", "names": names, "split": True, "hidden": [64], "weight": 5},
        },
        "model": {"latent_dim": 32, "fusion": "poe", "sampler": {"type": "mvae", "k": 1}},
        "train": {"progress": False, "device": args.device},
    }


def _before() -> None:
    """Undo the kept-pool fix for the step: the MVAE sampler enumerated all 2^N subsets on every draw."""
    from modkit.core.subsets import SubsetSampler, all_subsets

    def enumerate_every_time(self, exclude_trivial: bool):
        pool = all_subsets(self.n)
        sizes = pool.sum(1)
        return pool[(sizes > 1) & (sizes < self.n)] if exclude_trivial else pool

    SubsetSampler._pool = enumerate_every_time


#: --variant: the code as it is, or with the fixes this benchmark reports undone
VARIANTS = {"current": lambda: None, "before": _before}


def load(args):
    from modkit.config.recipe import load_recipe, resolve_raw

    if args.mode == "shapes":
        sets = SHAPES_SETS + [f"train.device={args.device}"] + ([f"data.batch_size={args.recipe_batch}"] if args.recipe_batch else [])
        return load_recipe(ROOT / "recipes" / "shapes.yaml", sets)
    return resolve_raw(shapes19_recipe(args), [], None, source="benchmark")


def decoder_rows(fusion: str, plan) -> list[int]:
    """Latent rows per point each decoder must see in one step of ``fusion`` under ``plan``. MoPoE reconstructs
    every modality from one drawn mixture component (``floor_rows``, the MLP table's declaration). A product of
    experts (with any sampler) scores each subset's ELBO on the subset's own modalities: the plan's subsets that hold
    the modality. Declared per objective, so the floor never copies what modkit happens to decode."""
    n = len(plan.counts)
    if fusion == "mopoe":
        return [floor_rows("mopoe", n, 1)] * n
    if fusion == "poe":
        return [int(c) for c in plan.counts]
    raise SystemExit(f"recipe_worker: no floor declared for fusion '{fusion}' (add it to decoder_rows)")


class RecipeFloor:
    """The recipe's networks doing only the work the objective needs (see the module docstring)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model.train()
        self.params = list(model.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=1e-3, fused=True)
        self.last: dict[str, float] = {}

    def step(self, batch, counts) -> None:
        t0 = time.perf_counter()
        loss = 0.0
        latent = self.model.latent_dim
        for name, count in zip(self.model.names, counts):
            modality = self.model.modalities[name]
            x = batch.data[name]
            mu, logvar = modality.encode(x)
            loss = loss + mu.square().sum() + logvar.sum()
            if count:
                z = torch.randn(int(count), len(batch), latent, device=mu.device, requires_grad=True)
                loss = loss - modality.log_likelihood(modality.decode(z), x).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t1 = time.perf_counter()
        self.optimizer.step()
        self.last = {"adam_ms": (time.perf_counter() - t1) * 1e3, "forward_backward_ms": (t1 - t0) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["shapes", "shapes19"])
    base_args(parser)
    parser.add_argument("--recipe-batch", type=int, default=None, help="the recipe's batch size (default: its own)")
    parser.add_argument("--profile", default=None, help="write a torch.profiler table of 5 modkit steps to this file")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="current",
                        help="current code, or 'before': with this session's fixes undone (before/after in one run)")
    args = parser.parse_args()
    VARIANTS[args.variant]()
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    from modkit.plugins.loader import load_plugins
    from modkit.training.builder import build
    from modkit.runs.lifecycle import make_trainer

    recipe, resolved = load(args)
    plugins = load_plugins(["bench_plugin"])
    device, sync, probe = device_tools(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(recipe, resolved, plugins, Path(tmp), device, source="benchmark", echo=lambda *a, **k: None)
        torch.set_num_threads(args.threads)  # the benchmark's own thread count, whatever train.threads chose
        view = trainer.setup.train
        size = recipe.data.batch_size
        n_batches = max(1, min(4, len(view) // size))
        batches = [view.__getitems__(list(range(i * size, (i + 1) * size))).to(device) for i in range(n_batches)]
        counter = [0]
        plans: list = []
        draw = trainer.plan

        def recorded_plan():
            plan = draw()
            plans.append(plan)
            return plan

        trainer.plan = recorded_plan

        def step() -> None:
            trainer.step(batches[counter[0] % n_batches], 1.0)
            counter[0] += 1

        memory = first_steps(trainer, step, probe, args.profile)
        floor = RecipeFloor(build(recipe, plugins, None).model.to(device))
        adam: list[float] = []

        fusion = recipe.model.fusion.type

        def floor_step() -> None:
            plan = plans[-1]  # the plan modkit's step just drew
            floor.step(batches[(counter[0] - 1) % n_batches], decoder_rows(fusion, plan))
            adam.append(floor.last["adam_ms"])

        times = time_interleaved({"modkit": step, "floor": floor_step}, args.warmup, args.steps, args.max_seconds, sync=sync)
        step_s = statistics.median(times["modkit"]["wall"]) / 1e3
        emit({"engine": "modkit", "model": args.mode, "variant": args.variant, "device": args.device, "modalities": len(trainer.model.names),
              "batch": size, "samples_per_s": round(size / step_s, 1),
              "samples_per_cpu_s": round(size / (statistics.median(times["modkit"]["cpu"]) / 1e3), 1),
              **summary(times["modkit"]), **memory.result(),
              "floor": {**summary(times["floor"]), "adam_ms": round(statistics.median(adam[-len(times["floor"]["wall"]):]), 2)}})


if __name__ == "__main__":
    main()
