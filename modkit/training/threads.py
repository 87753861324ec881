"""How many intra-op threads torch uses on the CPU: the recipe's ``train.threads``.

torch's own default is one thread per core. Every operator then ends in a barrier where all its
threads wait for each other; on a machine that other jobs share, one of them is often descheduled
and the whole step waits for it. For the networks these recipes build (MLPs and small convolutions
on batches of 64–256 rows) an operator is too small to gain from being split anyway: on this
project's 2-core machine ``recipes/digits.yaml`` took 10× the wall time and up to 19× the CPU time
with the default under load (``benchmarks/threads.py`` measures it).

``auto`` (the default) therefore uses one thread on the CPU unless the model's largest operator is
big enough to pay for the barrier (:data:`SPLIT_WORTH`), and then only the cores the load average leaves
idle; it leaves the count alone where the user
or a job scheduler already chose it (``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set) and on
accelerators (the CPU only launches kernels there). A number sets the count outright.
"""
from __future__ import annotations

import os

import torch

#: multiply-adds of one operator (weight entries × rows) from which splitting it over threads may pay
#: for the barrier. How it was chosen: not from a crossover measurement, but as a bound above the shipped
#: recipes' largest operators, which all ran faster on one thread (digits' largest is 2^22, 256 × 256 × 64
#: rows; shapes' 2^25, a 4096 × 128 layer × 64 rows; benchmarks/results/threads.md), so that only models
#: clearly bigger than anything measured get every core. ``python benchmarks/threads.py --operators``
#: measures the crossover on a machine as it is (benchmarks/results/threads-operators.md): on the shared
#: 2-core machine under its usual load, two threads were slower at every size up to 2^30; an idle machine's
#: crossover was not measured.
SPLIT_WORTH = 2**27
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask: a container or taskset may allow fewer than exist)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def largest_operator(model: torch.nn.Module, rows: int) -> int:
    """Multiply-adds of the model's largest weight applied to ``rows`` rows (a lower bound for convolutions,
    whose weights are applied at every position too: they count once per position of a 1×1 output)."""
    sizes = [p.numel() for p in model.parameters() if p.dim() >= 2]
    return max(sizes, default=0) * max(1, rows)


def idle_cores(load: float | None = None) -> int:
    """Usable cores that the 1-minute load average leaves free (at least one): under load two threads were
    slower than one at every operator size measured (benchmarks/results/threads-operators.md)."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this platform: assume the cores are free
            load = 0.0
    return max(1, min(usable_cores(), int(usable_cores() - load + 0.5)))


def choose_threads(setting: str | int, device: torch.device, model: torch.nn.Module | None = None, rows: int = 1,
                   environ: dict[str, str] | None = None, load: float | None = None) -> int | None:
    """The thread count ``setting`` asks for here, or None to leave torch's current count."""
    if setting != "auto":
        return int(setting)
    environ = os.environ if environ is None else environ
    if device.type != "cpu" or any(environ.get(name) for name in THREAD_ENV):
        return None
    if model is not None and largest_operator(model, rows) >= SPLIT_WORTH:
        return idle_cores(load)  # a big operator may pay for the barrier, but only on cores nobody else uses
    return 1


#: what BLAS and OpenMP libraries loaded later (scipy's, for scikit-learn's probes and judges) read at load time
LATER_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def apply_threads(setting: str | int, device: torch.device, model: torch.nn.Module | None = None, rows: int = 1) -> int:
    """Set the intra-op thread count as ``setting`` asks (see :func:`choose_threads`) for torch and for the BLAS
    and OpenMP pools numpy and scikit-learn use (``threadpoolctl`` for those already loaded, the environment for
    those loaded later: a 2-thread OpenBLAS under load made ``modkit eval``'s linear probes 8× slower); returns
    torch's count in use."""
    chosen = choose_threads(setting, device, model, rows)
    if chosen is None:
        return torch.get_num_threads()
    if chosen != torch.get_num_threads():
        torch.set_num_threads(chosen)
    for name in LATER_ENV:
        os.environ[name] = str(chosen)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; without it only torch's pool is set
        return torch.get_num_threads()
    threadpool_limits(limits=chosen)
    return torch.get_num_threads()
