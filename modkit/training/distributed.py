"""Multi-process training on PyTorch's own engine: torchrun starts the processes, this module joins them.

``torchrun`` (``python -m torch.distributed.run``) sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``
in each process; :func:`init` reads them and joins the process group (NCCL on CUDA, gloo on CPU).
Without them everything here is a no-op, so one code path serves one process and many.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as tdist

from modkit.errors import ModkitError


@dataclass(frozen=True)
class Dist:
    """Where this process stands among the others: global rank, number of processes, rank on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 alone writes the run directory and prints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


SINGLE = Dist()


def from_env() -> Dist:
    """The rank and world size torchrun put in the environment (one process when absent)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ModkitError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}") from None
    return Dist(rank, world, local)


def init(device_name: str) -> tuple[Dist, torch.device | None]:
    """Join the process group torchrun prepared; returns this process's place and its device.

    The device is ``cuda:LOCAL_RANK`` when the recipe asks for CUDA (or ``auto`` finds it), else the CPU;
    None when there is only one process (the caller resolves the device as usual).
    """
    dist = from_env()
    if not dist.active:
        return dist, None
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise ModkitError(f"device '{device_name}' requested but CUDA is not available on this machine")
        if dist.local_rank >= torch.cuda.device_count():
            raise ModkitError(f"LOCAL_RANK {dist.local_rank} but only {torch.cuda.device_count()} GPU(s) on this node; "
                              "use --nproc_per_node ≤ the number of GPUs")
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    if not tdist.is_initialized():
        tdist.init_process_group(backend=backend, rank=dist.rank, world_size=dist.world)
    return dist, device


def shutdown() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def barrier(dist: Dist) -> None:
    if dist.active:
        tdist.barrier()


def broadcast(obj: Any, dist: Dist) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; for paths, checkpoints, decisions — not per step)."""
    if not dist.active:
        return obj
    box = [obj if dist.main else None]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any, dist: Dist) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not dist.active:
        return [obj]
    out: list[Any] = [None] * dist.world
    tdist.all_gather_object(out, obj)
    return out


def all_reduce_(tensor: torch.Tensor, dist: Dist, op: str = "sum") -> torch.Tensor:
    """In place, asynchronous on the device (no host sync): sum or max over ranks."""
    if dist.active:
        tdist.all_reduce(tensor, op=tdist.ReduceOp.SUM if op == "sum" else tdist.ReduceOp.MAX)
    return tensor


def launch(nproc: int, train_args: Sequence[str], torchrun_args: Sequence[str] = ()) -> int:
    """``modkit train … --nproc N``: the same command under torchrun on this machine; returns an exit code.

    torchrun's agent runs in this process (one interpreter fewer to start). It forwards SIGINT/SIGTERM
    to the workers, which finish their step, checkpoint and exit; it kills them if one fails.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args([*(torchrun_args or ["--standalone"]), f"--nproc_per_node={nproc}",
                                         "-m", "modkit", "train", *train_args])
    # the workers inherit this: `python -m modkit` then leaves the working directory off sys.path, so a stray
    # ./click.py (or any module named like one modkit imports) in it is never run
    previous = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        run(args)
    except ChildFailedError as exc:
        codes = [f.exitcode for _, f in sorted(exc.failures.items())]
        code = next((c for c in codes if c > 0), codes[0] if codes else 1)
        return code if code > 0 else 128 - code
    except SignalException as exc:
        return 128 + int(exc.sigval)
    finally:
        if previous is None:
            os.environ.pop("PYTHONSAFEPATH", None)
        else:
            os.environ["PYTHONSAFEPATH"] = previous
    return 0
