"""The training loop and the run directory it fills.

One step: move a batch, draw subsets (host-side, seeded), call the model (the fusion's
objective), back-propagate, clip, step. Loss terms accumulate on the device and are read back
on the logging interval and once per epoch, never per step.
"""
from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from modkit import rundir
from modkit.build import Setup, build
from modkit.data import EpochBatchSampler, make_loader
from modkit.errors import ModkitError
from modkit.evaluate import test_metrics
from modkit.fusion import SubsetPlan
from modkit.plugins import PluginSet
from modkit.recipe import BetaSpec, Recipe, TrainSpec
from modkit.render import save_samples_png


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModkitError(f"device '{name}' requested but CUDA is not available on this machine (use --device cpu or auto)")
    return torch.device(name)


def beta_at(spec: BetaSpec, epoch_progress: float) -> float:
    """β after ``epoch_progress`` epochs: linear from ``start`` to ``end`` over ``anneal_epochs``."""
    if spec.anneal_epochs <= 0:
        return spec.end
    return spec.start + (spec.end - spec.start) * min(1.0, epoch_progress / spec.anneal_epochs)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(model: torch.nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if spec.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay, amsgrad=spec.amsgrad)


def make_scheduler(optimizer: torch.optim.Optimizer, spec: TrainSpec):
    s = spec.scheduler
    if s is None:
        return None
    if s.type == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=spec.epochs, eta_min=s.min_lr)
    if s.type == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=s.step_epochs, gamma=s.gamma)
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=s.gamma)


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    step_in_epoch: int = 0  # steps done in the current (unfinished) epoch
    global_step: int = 0
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    seen: int = 0
    skipped: int = 0  # bad samples skipped in the current epoch (data.on_bad_sample: skip)


class Trainer:
    def __init__(self, recipe: Recipe, resolved: dict[str, Any], plugins: PluginSet, run_dir: Path,
                 device: torch.device, source: str | None = None, echo=print):
        self.recipe, self.resolved, self.plugins = recipe, resolved, plugins
        self.run_dir, self.device, self.source, self.echo = run_dir, device, source, echo
        seed_everything(recipe.seed)
        self.setup: Setup = build(recipe, plugins, run_dir, source)
        self.model = self.setup.model.to(device)
        self.sampler = self.setup.sampler
        self.optimizer = make_optimizer(self.model, recipe.train)
        self.scheduler = make_scheduler(self.optimizer, recipe.train)
        self.state = TrainState()
        self.rows: list[dict[str, Any]] = []
        self.batches = EpochBatchSampler(len(self.setup.train), recipe.data.batch_size, seed=recipe.seed)
        pin = device.type == "cuda"
        self.loader = make_loader(self.setup.train, self.batches, recipe.data.num_workers, pin)
        self._fixed_plan = SubsetPlan.from_mask(self.sampler.sample(), device) if self.sampler.fixed else None

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "epoch": self.state.epoch,
            "step_in_epoch": self.state.step_in_epoch,
            "global_step": self.state.global_step,
            "sums": {k: v.detach().cpu() for k, v in self.state.sums.items()},
            "seen": self.state.seen,
            "skipped": self.state.skipped,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "sampler": self.sampler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }

    def save(self) -> None:
        rundir.save_checkpoint(self.run_dir, self.checkpoint_state())
        rundir.write_metrics(self.run_dir, self.rows)

    def restore(self) -> None:
        ckpt = rundir.load_checkpoint(self.run_dir)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler and ckpt.get("scheduler"):
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.sampler.load_state_dict(ckpt["sampler"])
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        self.state = TrainState(ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"],
                                {k: v.to(self.device) for k, v in ckpt["sums"].items()}, ckpt["seen"],
                                ckpt.get("skipped", 0))
        self.rows = [r for r in rundir.read_metrics(self.run_dir) if r["epoch"] <= self.state.epoch]

    # -- the loop ----------------------------------------------------------------------------
    def plan(self) -> SubsetPlan:
        return self._fixed_plan or SubsetPlan.from_mask(self.sampler.sample(), self.device)

    def step(self, batch, beta: float) -> dict[str, torch.Tensor]:
        out = self.model(batch, self.plan(), beta)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if self.recipe.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.train.grad_clip)
        self.optimizer.step()
        return out.terms

    def fit(self) -> None:
        spec = self.recipe.train
        steps_per_epoch = self.batches.steps()
        interactive = spec.progress and sys.stderr.isatty()
        while self.state.epoch < spec.epochs:
            epoch = self.state.epoch
            self.model.train()
            self.batches.set_epoch(epoch, start=self.state.step_in_epoch)
            started = time.perf_counter()
            beta = beta_at(self.recipe.model.beta, epoch + self.state.step_in_epoch / steps_per_epoch)
            bar = None
            if interactive:
                from tqdm import tqdm

                bar = tqdm(total=steps_per_epoch, initial=self.state.step_in_epoch, desc=f"epoch {epoch + 1}/{spec.epochs}", leave=False)
            for batch in self.loader:
                self.state.skipped += batch.skipped
                if len(batch) == 0:  # every sample of this batch was bad and skipped
                    self.state.step_in_epoch += 1
                    continue
                batch = batch.to(self.device, non_blocking=True)
                beta = beta_at(self.recipe.model.beta, epoch + self.state.step_in_epoch / steps_per_epoch)
                terms = self.step(batch, beta)
                n = len(batch)
                for key, value in terms.items():
                    self.state.sums[key] = self.state.sums.get(key, 0) + value.detach().float() * n
                self.state.seen += n
                self.state.step_in_epoch += 1
                self.state.global_step += 1
                if bar is not None:
                    bar.update(1)
                    if self.state.global_step % spec.log_every == 0:
                        bar.set_postfix({k: f"{v.item() / self.state.seen:.3g}" for k, v in self.state.sums.items() if "/" not in k or k.startswith("rec")})
                if spec.checkpoint_every and self.state.global_step % spec.checkpoint_every == 0:
                    self.save()
            if bar is not None:
                bar.close()
            self.end_epoch(beta, time.perf_counter() - started)

    def end_epoch(self, beta: float, seconds: float) -> None:
        row: dict[str, Any] = {"epoch": self.state.epoch + 1, "step": self.state.global_step,
                               "lr": self.optimizer.param_groups[0]["lr"], "beta": beta}
        seen = max(self.state.seen, 1)
        row.update({f"train/{k}": round(v.item() / seen, 6) for k, v in sorted(self.state.sums.items())})
        row["time_s"] = round(seconds, 3)
        if self.state.skipped:
            row["skipped_samples"] = self.state.skipped
        self.rows.append(row)
        self.state = TrainState(epoch=self.state.epoch + 1, global_step=self.state.global_step)
        if self.scheduler:
            self.scheduler.step()
        self.save()
        shown = "  ".join(f"{k.removeprefix('train/')} {v:.4g}" for k, v in row.items() if k.startswith("train/"))
        skipped = f"  skipped {row['skipped_samples']} bad samples" if "skipped_samples" in row else ""
        self.echo(f"epoch {row['epoch']}/{self.recipe.train.epochs}  {shown}  β {beta:.3g}  {seconds:.1f}s{skipped}")

    # -- the end -----------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        eval_batches = EpochBatchSampler(len(self.setup.test), self.recipe.data.eval_batch_size, shuffle=False)
        loader = make_loader(self.setup.test, eval_batches)
        generator_state = torch.get_rng_state()
        torch.manual_seed(self.recipe.seed + 1)  # evaluation noise does not disturb training RNG
        skipped = [0]

        def counted(batches):
            for batch in batches:
                skipped[0] += batch.skipped
                yield batch

        metrics = test_metrics(self.model, counted(loader), self.device, coherence=self.recipe.eval.coherence)
        if skipped[0]:
            metrics["test/skipped_samples"] = skipped[0]
            self.echo(f"evaluation skipped {skipped[0]} bad test samples")
        summary = {"name": self.recipe.name, "epochs": self.state.epoch, "steps": self.state.global_step,
                   "device": str(self.device), "train": {k: v for k, v in (self.rows[-1] if self.rows else {}).items() if k.startswith("train/")},
                   **metrics}
        rundir.write_json(self.run_dir / rundir.SUMMARY, summary)
        complete = torch.nonzero(self.setup.test.presence.all(1)).flatten()[: self.recipe.eval.samples].tolist()
        if complete:
            save_samples_png(self.model, self.setup.test.__getitems__(complete), self.run_dir / rundir.SAMPLES_PNG)
        torch.set_rng_state(generator_state)
        return summary


def write_recipe(run_dir: Path, resolved: dict[str, Any]) -> None:
    rundir.atomic_write_text(run_dir / rundir.RECIPE, yaml.safe_dump(resolved, sort_keys=False))
