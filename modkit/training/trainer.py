"""The training loop, on one process or many (torchrun + DDP): steps, faults and checkpoint timing, nothing else.

What a run does around the loop (trackers, test metrics, ``summary.json``, samples) are callbacks
(:mod:`modkit.training.events`) that the run lifecycle (:mod:`modkit.runs.lifecycle`) composes; it also
builds the :class:`~modkit.training.builder.Setup` a trainer needs, takes the run directory's lock and
finishes the run. One step: move a batch, draw subsets (host-side, seeded), call the model (the fusion's
objective), back-propagate, check, clip, step. Loss terms accumulate on the device and are read
back on the logging interval and once per epoch, never per step.

Faults it survives (see docs/fault-tolerance.md):

* a non-finite loss or gradient: the optimizer step is skipped *on the device* (the fused Adam
  kernels take a ``found_inf`` flag, as GradScaler uses them), counted, and the streak of such
  steps is read once per logging interval; a long streak rolls back to the last good checkpoint
  with a lower learning rate, or stops with :class:`DivergenceError`;
* SIGINT/SIGTERM: the current step finishes, a checkpoint is written, :class:`Interrupted` is raised;
* kill -9: checkpoints (every ``train.checkpoint_every`` steps and every epoch) hold the model,
  optimizer, scheduler, subset sampler, RNG of every rank and the epoch's partial sums, so a
  resumed run continues bit for bit where the checkpoint was taken.
"""
from __future__ import annotations

import contextlib
import random
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from modkit.config.recipe import BetaSpec, Recipe
from modkit.core.fusion import SubsetPlan
from modkit.core.subsets import full
from modkit.data.dataset import BalancedBatchSampler, EpochBatchSampler, make_loader
from modkit.errors import ModkitError, RecipeError
from modkit.plugins.loader import PluginSet
from modkit.storage import checkpoint as checkpoints
from modkit.storage import files as rundir
from modkit.storage import train_state
from modkit.storage.train_state import TrainState, rng_state, set_rng_state  # noqa: F401 - re-exported for old imports
from modkit.training import distributed
from modkit.training import stages as staging
from modkit.training.accel import accelerate, resolve_device  # noqa: F401 - resolve_device: re-exported for old imports
from modkit.training.builder import Setup
from modkit.training.distributed import SINGLE, Dist
from modkit.training.divergence import DivergenceError, DivergenceGuard  # noqa: F401 - DivergenceError: re-exported
from modkit.training.events import Events
from modkit.training.optim import make_optimizer, make_scheduler, scale_learning_rate
from modkit.training.threads import apply_threads

CHECKPOINT_FORMAT = checkpoints.CHECKPOINT_FORMAT  # kept for old imports


class Interrupted(ModkitError):
    """SIGINT/SIGTERM arrived; a checkpoint was written. Exit code 128 + the signal, as shells expect."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.exit_code = 128 + signum


DUPLICATE_SIGNAL_S = 5.0


class LaggedFlags:
    """Device flags read ``LAG`` steps after they were produced, so reading never waits for the step in flight.

    Each flag is copied to pinned host memory without blocking and an event is recorded; ``pop`` waits
    only for the event of ``LAG`` steps ago (long done). Every rank pops the same step's all-reduced
    value, so all ranks act on the same step.
    """

    LAG = 2

    def __init__(self, device: torch.device):
        cuda = device.type == "cuda"
        self.buffers = [torch.zeros((), pin_memory=cuda) for _ in range(self.LAG + 1)]
        self.events = [torch.cuda.Event() if cuda else None for _ in range(self.LAG + 1)]
        self.pushed = self.popped = 0

    def push(self, flag: Tensor) -> None:
        i = self.pushed % len(self.buffers)
        self.buffers[i].copy_(flag, non_blocking=True)
        if self.events[i] is not None:
            self.events[i].record()
        self.pushed += 1

    def pop(self) -> int:
        """The flag of ``LAG`` pushes ago (0 until there is one)."""
        if self.pushed - self.popped <= self.LAG:
            return 0
        i = self.popped % len(self.buffers)
        if self.events[i] is not None:
            self.events[i].synchronize()
        self.popped += 1
        return int(self.buffers[i])

    def clear(self) -> None:
        self.pushed = self.popped = 0


class _Objective(torch.nn.Module):
    """The model's training objective as ``(loss, terms)``: DDP follows tensors through tuples and dicts
    (torch's pytree), not through the ``LossOutput`` dataclass, and must see the loss to reduce gradients."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch, plan: SubsetPlan, beta: float) -> tuple[Tensor, dict[str, Tensor]]:
        out = self.model(batch, plan, beta)
        return out.loss, out.terms


def _objective(net: torch.nn.Module, batch, plan: SubsetPlan, beta: float) -> tuple[Tensor, dict[str, Tensor]]:
    out = net(batch, plan, beta)
    return out if isinstance(out, tuple) else (out.loss, out.terms)


class _RolledBack(Exception):
    """Internal: the state was restored from a checkpoint; restart the epoch loop from it."""


def beta_at(spec: BetaSpec, epoch_progress: float) -> float:
    """β after ``epoch_progress`` epochs: linear from ``start`` to ``end`` over ``anneal_epochs``."""
    if spec.anneal_epochs <= 0:
        return spec.end
    return spec.start + (spec.end - spec.start) * min(1.0, epoch_progress / spec.anneal_epochs)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rank_seed(seed: int, rank: int) -> int:
    """Each rank's own noise stream (reparameterisation): ranks must not draw the same ε for different samples."""
    return seed + 1_000_003 * rank


def batch_sampler(recipe: Recipe, train: Any, dist: Dist = SINGLE, source: str | None = None) -> EpochBatchSampler:
    """The training batches: random (the default) or balanced, ``data.paired_per_batch`` paired rows in each."""
    batch_size = recipe.data.batch_size // dist.world
    if not recipe.data.paired_per_batch:
        return EpochBatchSampler(len(train), batch_size, seed=recipe.seed, rank=dist.rank, world=dist.world)
    paired = train.presence.all(dim=1).numpy()
    try:
        return BalancedBatchSampler(paired, batch_size, recipe.data.paired_per_batch, seed=recipe.seed,
                                    rank=dist.rank, world=dist.world)
    except ValueError as exc:
        raise RecipeError("data.paired_per_batch", str(exc), source) from None


class Trainer:
    """Trains a built :class:`Setup` into ``run_dir``, telling ``callbacks`` what happens (:mod:`modkit.training.events`).

    Build one through the run lifecycle (:func:`modkit.runs.lifecycle.make_trainer`, or ``train``): it
    seeds and builds the setup, takes the run directory's lock and adds the callbacks that finish the run.
    """

    def __init__(self, recipe: Recipe, resolved: dict[str, Any], plugins: PluginSet, run_dir: Path,
                 device: torch.device, setup: Setup, *, source: str | None = None, echo=print, dist: Dist = SINGLE,
                 callbacks=()):
        self.recipe, self.resolved, self.plugins = recipe, resolved, plugins
        self.run_dir, self.device, self.source, self.dist = run_dir, device, source, dist
        self.echo = echo if dist.main else (lambda *_a, **_k: None)
        if recipe.data.batch_size % dist.world:
            error = RecipeError("data.batch_size", f"{recipe.data.batch_size} is not divisible by the {dist.world} "
                                "processes (the global batch is split evenly across them)", source)
            error.shown_by_rank0 = True  # every rank reaches the same verdict
            raise error
        if not isinstance(setup, Setup):
            raise TypeError("Trainer needs a built Setup; build trainers through modkit.runs.lifecycle.make_trainer")
        self.setup: Setup = setup
        self.model = self.setup.model.to(device)
        threads = apply_threads(recipe.train.threads, device, self.model, recipe.data.batch_size // dist.world)
        if device.type == "cpu":  # once: the count every epoch's time depends on
            self.echo(f"threads: {threads} intra-op CPU thread(s) (train.threads: {recipe.train.threads})")
        self.accel = accelerate(self.model, device, recipe.train.amp, recipe.train.compile)
        if dist.rank:
            torch.manual_seed(rank_seed(recipe.seed, dist.rank))
        self.sampler = self.setup.sampler
        # multistage training (modkit/training/stages.py): [] for a run of one stage, which keeps the plain path
        self.stages = staging.resolve(recipe, self.model, source)
        self._trainable = {n for n, p in self.model.named_parameters() if p.requires_grad}
        self.stage: staging.Stage | None = None
        self.optimizer = make_optimizer(self.model, recipe.train)
        self._fused = bool(self.optimizer.defaults.get("fused"))
        self._params = list(self.model.parameters())  # walked every step by the gradient check: list it once
        self.scheduler = make_scheduler(self.optimizer, recipe.train)
        self.state = TrainState()
        self.rows: list[dict[str, Any]] = []
        self.batches = batch_sampler(recipe, self.setup.train, dist, source)
        pin = device.type == "cuda"
        self.loader = make_loader(self.setup.train, self.batches, recipe.data.num_workers, pin,
                                  generator=torch.Generator().manual_seed(rank_seed(recipe.seed, dist.rank)))
        if not self.model.fusion.uses_sampler:  # the fusion ignores the plan: do not draw one every step
            self._fixed_plan = SubsetPlan.from_mask(full(len(self.model.names)), device)
        else:
            self._fixed_plan = SubsetPlan.from_mask(self.sampler.sample(), device) if self.sampler.fixed else None
        self.net = self._wrap(self.model)
        # the divergence guard's device-side state, and what it did
        self.bad_streak = torch.zeros((), device=device)
        self.guard = DivergenceGuard(recipe.train.divergence)
        if self.stages:
            self.enter_stage(self.stages[0], announce=False)  # fit announces it, or the stage a resume lands in
        self._signal = 0
        self._signal_at = 0.0
        self._stop_flags = LaggedFlags(device)
        self.events = Events(callbacks)
        self.summary: dict[str, Any] = {}  # what the callbacks finishing the run report (summary.json's numbers, rank 0)

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel across processes; the bare model on one."""
        if not self.dist.active:
            return model
        fixed = self.sampler.fixed  # as before the sampler-free fusions got a fixed plan: their graphs may vary
        return torch.nn.parallel.DistributedDataParallel(
            _Objective(model), device_ids=[self.device.index] if self.device.type == "cuda" else None,
            static_graph=fixed, find_unused_parameters=not fixed)

    # -- stages ------------------------------------------------------------------------------
    def enter_stage(self, stage: staging.Stage, announce: bool = True) -> None:
        """Freeze what ``stage`` freezes, tell the model its objective, and make a fresh optimizer and schedule over
        the parameters that train in it (so a frozen one has no gradient, no weight decay and no momentum). Under
        DDP the model is wrapped anew: the parameters that take part changed."""
        self.stage = stage
        trainable = staging.apply(self.model, stage, self._trainable)
        self.optimizer = make_optimizer(self.model, self.recipe.train, trainable)
        self._fused = bool(self.optimizer.defaults.get("fused"))
        self.scheduler = make_scheduler(self.optimizer, self.recipe.train, stage.epochs)
        if self.guard.lr_scale != 1.0:  # a rollback lowered the learning rate: it stays lowered in later stages
            scale_learning_rate(self.optimizer, self.scheduler, self.guard.lr_scale)
        self.net = self._wrap(self.model)
        if announce:
            self.announce(stage)

    def announce(self, stage: staging.Stage) -> None:
        frozen = f"freezing {', '.join(stage.freeze)} ({len(stage.frozen)} parameter tensors)" if stage.freeze else "nothing frozen"
        span = (f"epoch {stage.end_epoch}" if stage.epochs == 1 else f"epochs {stage.first_epoch + 1}-{stage.end_epoch}")
        self.echo(f"stage {stage.index + 1}/{len(self.stages)} '{stage.name}': {span}, objective '{stage.objective}', {frozen}")

    # -- checkpoints -------------------------------------------------------------------------
    def _reduced_counts(self) -> tuple[dict[str, Tensor], Tensor]:
        """This epoch's partial sums over all ranks (a collective)."""
        keys = sorted(self.state.sums)
        seen = torch.as_tensor(self.state.seen, device=self.device, dtype=torch.float64)
        flat = torch.stack([self.state.sums[k].double() for k in keys] + [seen])
        distributed.all_reduce_(flat, self.dist)
        return {k: flat[i].float() for i, k in enumerate(keys)}, flat[-1]

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything an exact resume needs. A collective under DDP: every rank must call it."""
        sums, seen = self._reduced_counts() if self.dist.active else (self.state.sums, self.state.seen)
        rng = rng_state()
        reduced = TrainState(self.state.epoch, self.state.step_in_epoch, self.state.global_step, sums, seen,
                             self.state.skipped, self.state.bad_samples)
        loop = train_state.write(reduced, bad_streak=self.bad_streak, guard=self.guard.state(), rng=rng,
                                 rng_ranks=distributed.gather(rng, self.dist), world=self.dist.world,
                                 stage=self.stage.name if self.stage is not None else None)
        return checkpoints.layout(loop, self.model, self.optimizer, self.scheduler, self.sampler)

    def parameters_finite(self) -> bool:
        """One host sync: called before a checkpoint is written, never per step."""
        return bool(torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all())

    def save(self, force: bool = False) -> bool:
        """Write a checkpoint and the metrics (rank 0). Only a *good* state is checkpointed: finite
        parameters and no non-finite step pending, so a rollback lands before the trouble began;
        ``force`` (an interrupt) writes it anyway. Returns whether it wrote."""
        if not self.parameters_finite():
            self.diverged("the parameters are no longer finite")
        if not force and float(self.bad_streak) > 0:
            self._write_on_rank0(lambda: rundir.write_metrics(self.run_dir, self.rows))
            return False
        state = self.checkpoint_state()

        def write() -> None:
            checkpoints.save_checkpoint(self.run_dir, state)
            rundir.write_metrics(self.run_dir, self.rows)

        self._write_on_rank0(write)
        self.events.emit("on_checkpoint", self)
        return True

    def _write_on_rank0(self, write) -> None:
        """Rank 0 writes; a disk error reaches every rank (one small broadcast per checkpoint), so all stop
        with the same one-line message instead of the others failing later in a collective."""
        error: ModkitError | None = None
        if self.dist.main:
            try:
                write()
            except ModkitError as exc:
                error = ModkitError(f"{exc}. {self.run_dir} keeps its last complete checkpoint; free some space or make "
                                    f"the directory writable, then continue with: modkit train --resume {self.run_dir}")
        if self.dist.active:
            error = distributed.broadcast(error, self.dist)
        if error is not None:
            error.shown_by_rank0 = True
            raise error

    def load(self) -> dict[str, Any]:
        """Rank 0 reads the checkpoint and hands it to the others (no shared filesystem needed)."""
        ckpt: Any = None
        if self.dist.main:
            try:
                ckpt = checkpoints.load_checkpoint(self.run_dir)
            except ModkitError as exc:
                ckpt = exc
        ckpt = distributed.broadcast(ckpt, self.dist)
        if isinstance(ckpt, ModkitError):
            ckpt.shown_by_rank0 = True
            raise ckpt
        return ckpt

    def restore(self, ckpt: dict[str, Any] | None = None) -> None:
        """Continue from the run directory's newest complete checkpoint (``--resume``)."""
        ckpt = self.load() if ckpt is None else ckpt
        try:
            saved = train_state.read(ckpt, self.run_dir / checkpoints.CHECKPOINT)
        except ModkitError as exc:
            exc.shown_by_rank0 = True  # every rank reads the same broadcast checkpoint
            raise
        if self.stages:  # the optimizer the checkpoint holds is its stage's: enter that stage before loading it
            stage = staging.stage_at(self.stages, saved.state.epoch)
            if saved.stage is not None and saved.stage != stage.name:
                error = ModkitError(f"the checkpoint in {self.run_dir} was written in stage '{saved.stage}', but the recipe "
                                    f"puts epoch {saved.state.epoch + 1} in stage '{stage.name}'; were train.stages or train.epochs (which a "
                                    "fusion's own stages split) changed? Use the recipe it was trained with, or start a new run")
                error.shown_by_rank0 = True
                raise error
            self.enter_stage(stage, announce=False)
        checkpoints.restore_components(ckpt, self.run_dir, self.model, self.optimizer, self.scheduler, self.sampler)
        try:
            self._restore_rng(saved)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            error = ModkitError(f"the checkpoint in {self.run_dir} has no usable RNG state ({checkpoints.first_line(exc)})")
            error.shown_by_rank0 = True
            raise error from None
        main = self.dist.main  # rank 0 carries the (already reduced) partial sums; the others start from zero
        counted = saved.state
        sums = {k: (v if main else torch.zeros_like(v)).to(self.device) for k, v in counted.sums.items()}
        seen = torch.as_tensor(counted.seen if main else 0, dtype=torch.float64, device=self.device)
        skipped = torch.as_tensor(counted.skipped, device=self.device).float()
        self.state = TrainState(counted.epoch, counted.step_in_epoch, counted.global_step, sums, seen, skipped,
                                counted.bad_samples)
        self.bad_streak = torch.as_tensor(saved.bad_streak, device=self.device).float()
        self.guard.load_state(saved.guard)
        if main:
            self.rows = [r for r in rundir.read_metrics(self.run_dir) if r["epoch"] <= self.state.epoch]

    def _restore_rng(self, saved: train_state.Saved) -> None:
        ranks, saved_world = saved.rng_ranks, saved.world
        if saved_world != self.dist.world and self.dist.main:
            warnings.warn(f"the checkpoint was written by {saved_world} process(es), this run has {self.dist.world}: "
                          "the data order is the same but the noise differs from an uninterrupted run", stacklevel=2)
        if self.dist.rank < len(ranks):
            set_rng_state(ranks[self.dist.rank])
        else:
            set_rng_state(ranks[0])
            torch.manual_seed(rank_seed(self.recipe.seed + saved.state.global_step, self.dist.rank))

    # -- one step ----------------------------------------------------------------------------
    def plan(self) -> SubsetPlan:
        return self._fixed_plan or SubsetPlan.from_mask(self.sampler.sample(), self.device)

    def step(self, batch, beta: float) -> tuple[dict[str, Tensor], Tensor]:
        """Forward, backward, guarded update. Returns the detached loss terms and a 0-dim float flag on
        the device: 1 if the step was skipped because the loss or a gradient was not finite."""
        loss, terms = self.forward_backward(batch, beta)
        return terms, self.update(loss)

    def forward_backward(self, batch, beta: float) -> tuple[Tensor, dict[str, Tensor]]:
        loss, terms = _objective(self.net, batch, self.plan(), beta)
        self.optimizer.zero_grad(set_to_none=True)
        self.accel.backward(loss)
        return loss.detach(), terms

    def grad_check(self) -> Tensor:
        """A 0-dim value that is non-finite if any gradient is: the total norm when ``train.grad_clip``
        clips to it, else the plain sum of every gradient (a NaN or inf anywhere makes the sum non-finite;
        half the cost of a norm, which squares each entry)."""
        params = [p for p in self._params if p.grad is not None]
        clip = self.recipe.train.grad_clip
        if clip:
            return torch.nn.utils.clip_grad_norm_(params, clip)
        if not params:
            return torch.zeros((), device=self.device)
        return torch.stack([p.grad.sum(dtype=torch.float32) for p in params]).sum()  # .grad needs no detach: no graph

    def update(self, loss: Tensor) -> Tensor:
        """Skip-or-step without a host sync. Under DDP the ranks agree on the skip and on a pending
        interrupt through one two-number all_reduce per step."""
        self.accel.unscale(self.optimizer)
        bad = (~(torch.isfinite(loss) & torch.isfinite(self.grad_check()))).float()
        if self.dist.active:
            flags = torch.stack([bad, torch.full((), float(self._signal), device=self.device)])
            distributed.all_reduce_(flags, self.dist, op="max")
            bad = flags[0]
            self._stop_flags.push(flags[1])
        self.optimizer_step(bad)
        self.accel.update()
        return bad

    def optimizer_step(self, bad: Tensor) -> None:
        """The fused optimizers skip the update (and its step count) on the device when ``found_inf`` is 1;
        an optimizer without fused kernels costs one host sync here instead.

        With a ``GradScaler`` (AMP): call ``scaler.unscale_`` before :meth:`grad_check`, so the check sees true
        gradients; an fp16 overflow then counts as a skipped step (the scaler's own start-up overflows make a
        short streak, well under the default ``max_bad_steps``)."""
        if self._fused:
            self.optimizer.found_inf = bad
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf
        elif not bool(bad):
            self.optimizer.step()

    def accumulate(self, terms: dict[str, Tensor], bad: Tensor, n: int) -> None:
        """Add a step's terms to the epoch sums on the device; a skipped step adds nothing."""
        ok = bad == 0
        for key, value in terms.items():
            step = torch.where(ok, value.detach().float() * n, 0.0)
            self.state.sums[key] = self.state.sums[key] + step if key in self.state.sums else step
        self.state.seen = self.state.seen + torch.where(ok, float(n), 0.0).double()
        self.state.skipped = self.state.skipped + bad
        self.bad_streak = torch.where(ok, 0.0, self.bad_streak + 1)
        self.state.step_in_epoch += 1
        self.state.global_step += 1

    # -- the loop ----------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to ``train.epochs``; then the callbacks finish the run. Returns :attr:`summary` (what they reported)."""
        try:
            self.events.emit("on_fit_start", self)
            with self._signals():
                if self.state.global_step == 0:
                    self.save()  # a point to roll back to before the first epoch ends
                if self.stage is not None and self.state.epoch < self.recipe.train.epochs:
                    self.announce(self.stage)
                while self.state.epoch < self.recipe.train.epochs:
                    try:
                        self.run_epoch()
                    except _RolledBack:
                        continue
            self.events.emit("on_fit_end", self)
        except BaseException as exc:
            self.events.emit_error(self, exc)
            raise
        return self.summary

    def run_epoch(self) -> None:
        spec = self.recipe.train
        epoch = self.state.epoch
        steps_per_epoch = self.batches.steps()
        self.model.train()
        self.batches.set_epoch(epoch, start=self.state.step_in_epoch)
        started, cpu_started = time.perf_counter(), time.process_time()
        beta = beta_at(self.recipe.model.beta, epoch + self.state.step_in_epoch / steps_per_epoch)
        bar = None
        if spec.progress and sys.stderr.isatty() and self.dist.main:
            from tqdm import tqdm

            bar = tqdm(total=steps_per_epoch, initial=self.state.step_in_epoch, desc=f"epoch {epoch + 1}/{spec.epochs}", leave=False)
        try:
            for batch in self.loader:
                self.state.bad_samples += batch.skipped
                if len(batch) == 0:  # every sample of this batch was bad and skipped
                    self.state.step_in_epoch += 1
                    continue
                batch = batch.to(self.device, non_blocking=True)
                beta = beta_at(self.recipe.model.beta, epoch + self.state.step_in_epoch / steps_per_epoch)
                terms, bad = self.step(batch, beta)
                self.accumulate(terms, bad, len(batch))
                if bar is not None:
                    bar.update(1)
                if self.state.global_step % spec.log_every == 0:
                    self.on_interval(bar)
                if spec.checkpoint_every and self.state.global_step % spec.checkpoint_every == 0:
                    self.save()
                signum = self._stop_flags.pop() if self.dist.active else self._signal
                if signum:
                    self.interrupt(signum)
        finally:
            if bar is not None:
                bar.close()
        self.end_epoch(beta, time.perf_counter() - started, time.process_time() - cpu_started)

    def on_interval(self, bar) -> None:
        """Once per ``train.log_every`` steps: the one host sync of the interval (the non-finite streak)
        and the progress bar."""
        streak = int(self.bad_streak)
        self.events.emit("on_interval", self, {"epoch": self.state.epoch + 1, "step": self.state.global_step,
                                               "lr": self.optimizer.param_groups[0]["lr"]})
        if bar is not None:
            seen = max(float(self.state.seen), 1.0)
            bar.set_postfix({k: f"{v.item() / seen:.3g}" for k, v in self.state.sums.items() if "/" not in k or k.startswith("rec")})
        if self.guard.too_long(streak):
            self.diverged(f"{streak} steps in a row had a non-finite loss or gradient")

    def end_epoch(self, beta: float, seconds: float, cpu_seconds: float) -> None:
        sums, seen = self._reduced_counts() if self.dist.active else (self.state.sums, self.state.seen)
        skipped = int(float(self.state.skipped))  # the same on every rank: the skip decision is all-reduced
        streak = int(self.bad_streak)
        row: dict[str, Any] = {"epoch": self.state.epoch + 1, "step": self.state.global_step,
                               "lr": self.optimizer.param_groups[0]["lr"], "beta": beta}
        if self.stage is not None:
            row["stage"] = self.stage.name
        n = max(float(seen), 1.0)
        row.update({f"train/{k}": round(v.item() / n, 6) for k, v in sorted(sums.items())})
        row["time_s"] = round(seconds, 3)
        row["cpu_s"] = round(cpu_seconds, 3)  # this process's CPU time, every thread: wall time alone misleads on a busy machine
        if skipped:
            row["skipped_steps"] = skipped
        if self.guard.rollbacks:
            row["rollbacks"] = self.guard.rollbacks
        if self.state.bad_samples:
            row["skipped_samples"] = self.state.bad_samples
        if self.guard.too_long(streak):
            self.diverged(f"{streak} steps in a row had a non-finite loss or gradient")
        self.guard.skipped_total += skipped
        self.rows.append(row)
        self.events.emit("on_epoch_end", self, row)
        self.state = TrainState(epoch=self.state.epoch + 1, global_step=self.state.global_step)
        if self.scheduler:
            self.scheduler.step()
        stage = self.stage
        if self.stages and self.state.epoch < self.recipe.train.epochs:
            following = staging.stage_at(self.stages, self.state.epoch)
            if following is not stage:  # before the checkpoint, so it holds the optimizer of the stage it resumes in
                self.enter_stage(following, announce=False)
        self.save()
        shown = "  ".join(f"{k.removeprefix('train/')} {v:.4g}" for k, v in row.items() if k.startswith("train/"))
        extra = f"  skipped {skipped} non-finite step(s)" if skipped else ""
        extra += f"  skipped {row['skipped_samples']} bad samples" if "skipped_samples" in row else ""
        if not getattr(self, "_legend_shown", False):
            self._legend_shown = True
            self.echo(self.legend())
        where = f"  [{stage.name}]" if stage is not None else ""
        self.echo(f"epoch {row['epoch']}/{self.recipe.train.epochs}{where}  {shown}  β {beta:.3g}  {seconds:.1f}s{extra}")
        if self.stage is not stage:
            self.announce(self.stage)

    def legend(self) -> str:
        """What the epoch line's numbers are: its loss is the training objective, not the test ELBO."""
        sampler = self.recipe.model.sampler.type if self.model.fusion.uses_sampler else None
        what = (f"summed over the subsets the '{sampler}' sampler draws each step" if sampler
                else f"the '{self.recipe.model.fusion.type}' fusion's objective")
        return (f"(epoch lines: per training item, loss = the training objective, {what}, with the KL weighted by β; "
                "rec/<modality> and kl are its terms, summed the same way. It is not test/elbo (the ELBO of all "
                "modalities together, in summary.json) and is not comparable with it.)")

    # -- faults ------------------------------------------------------------------------------
    def diverged(self, why: str) -> None:
        """Roll back to the last good checkpoint with a lower learning rate, or stop with the run directory intact."""
        spec, step = self.recipe.train.divergence, self.state.global_step
        if self.guard.can_roll_back():
            ckpt = self.load()
            rollbacks, scale = self.guard.rollbacks + 1, self.guard.lr_scale * spec.lr_factor
            self.restore(ckpt)
            scale_learning_rate(self.optimizer, self.scheduler, self.guard.rolled_back(rollbacks, scale))
            self.echo(f"warning: {why} at step {step}; rolled back to step {self.state.global_step} with the "
                      f"learning rate ×{spec.lr_factor:g} (now {self.optimizer.param_groups[0]['lr']:.3g}; "
                      f"rollback {rollbacks}/{spec.max_rollbacks})")
            self._stop_flags.clear()
            raise _RolledBack
        if self.dist.main:
            rundir.write_metrics(self.run_dir, self.rows)
        raise self.guard.stop(why, step, self.state.epoch + 1, self.run_dir)

    def interrupt(self, signum: int) -> None:
        self.save(force=True)
        name = signal.Signals(signum).name
        raise Interrupted(signum, f"interrupted by {name} at step {self.state.global_step} (epoch {self.state.epoch + 1}); "
                                  f"checkpoint saved. Continue with: modkit train --resume {self.run_dir}")

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM set a flag the loop reads after each step; another one later stops at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, _frame):
            if self._signal:
                if time.monotonic() - self._signal_at > DUPLICATE_SIGNAL_S:
                    raise KeyboardInterrupt
                return  # the terminal and torchrun both deliver one Ctrl-C: count it once
            self._signal, self._signal_at = signum, time.monotonic()
            if self.dist.main:
                print(f"received {signal.Signals(signum).name}: saving a checkpoint after this step "
                      "(send it again to stop at once)", file=sys.stderr, flush=True)

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, old in previous.items():
                signal.signal(s, old)
