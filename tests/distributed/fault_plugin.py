"""A test-only modkit plugin, loaded through ``modkit.toml`` in a test's project folder, so that
subprocesses (``python -m modkit``, torchrun workers) get the same controls as the test process.

* ``MODKIT_TEST_NOISE_FREE=1``: the reparameterisation returns the mean (z = μ), so runs that shard
  the batch differently draw the same latents and must agree up to float rounding.
* ``MODKIT_TEST_KILL_AT=STEP:SIGNAL``: after global step STEP the process sends itself SIGNAL
  (9 = a real ``kill -9``: no handler, no cleanup).
* ``MODKIT_TEST_ENOSPC_AT=STEP``: from step STEP on, ``os.fsync`` fails with ENOSPC (a full disk).
* ``MODKIT_TEST_NAN=FIRST:COUNT``: from step FIRST (1-based) on, COUNT batches (0: all) of rank 0
  get NaN in their first modality, so under DDP only one rank sees the bad data.
"""
from __future__ import annotations

import os

from modkit import hookimpl


def _noise_free(mu, logvar, generator=None):
    return mu


if os.environ.get("MODKIT_TEST_NOISE_FREE") == "1":
    import modkit.core.gaussian

    modkit.core.gaussian.reparameterize = _noise_free  # the PoE fusions draw through modkit.core.fusion.subset_gaussian_elbo

if os.environ.get("MODKIT_TEST_KILL_AT"):
    from modkit.training.trainer import Trainer

    _step, _sig = (int(x) for x in os.environ["MODKIT_TEST_KILL_AT"].split(":"))
    _accumulate = Trainer.accumulate

    def accumulate(self, *args, **kwargs):
        _accumulate(self, *args, **kwargs)
        if self.state.global_step == _step:
            os.kill(os.getpid(), _sig)

    Trainer.accumulate = accumulate


if os.environ.get("MODKIT_TEST_NAN"):
    import math

    import torch

    from modkit.core.batch import Batch
    from modkit.training.trainer import Trainer

    _first, _count = (int(x) for x in os.environ["MODKIT_TEST_NAN"].split(":"))
    _forward_backward = Trainer.forward_backward
    _done = {"n": 0}

    def forward_backward(self, batch, beta):
        if self.dist.rank == 0 and self.state.global_step + 1 >= _first and (_count == 0 or _done["n"] < _count):
            _done["n"] += 1
            name = next(iter(batch.data))
            batch = Batch({**batch.data, name: torch.full_like(batch.data[name], math.nan)}, batch.present)
        return _forward_backward(self, batch, beta)

    Trainer.forward_backward = forward_backward


if os.environ.get("MODKIT_TEST_ENOSPC_AT"):
    import errno

    from modkit.training.trainer import Trainer

    _full_at = int(os.environ["MODKIT_TEST_ENOSPC_AT"])
    _accumulate_before_full = Trainer.accumulate

    def _disk_full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def accumulate_then_fill(self, *args, **kwargs):
        _accumulate_before_full(self, *args, **kwargs)
        if self.state.global_step == _full_at:
            os.fsync = _disk_full

    Trainer.accumulate = accumulate_then_fill


@hookimpl
def modkit_register(registry):
    """Registers nothing: the module's effect is the patching above."""
