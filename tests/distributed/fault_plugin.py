"""A test-only modkit plugin, loaded through ``modkit.toml`` in a test's project folder, so that
subprocesses (``python -m modkit``, torchrun workers) get the same controls as the test process.

* ``MODKIT_TEST_NOISE_FREE=1``: the reparameterisation returns the mean (z = μ), so runs that shard
  the batch differently draw the same latents and must agree up to float rounding.
* ``MODKIT_TEST_KILL_AT=STEP:SIGNAL``: after global step STEP the process sends itself SIGNAL
  (9 = a real ``kill -9``: no handler, no cleanup).
"""
from __future__ import annotations

import os
import signal

from modkit import hookimpl


def _noise_free(mu, logvar, generator=None):
    return mu


if os.environ.get("MODKIT_TEST_NOISE_FREE") == "1":
    import modkit.gaussian
    import modkit_poe

    modkit.gaussian.reparameterize = _noise_free
    modkit_poe.reparameterize = _noise_free

if os.environ.get("MODKIT_TEST_KILL_AT"):
    from modkit.trainer import Trainer

    _step, _sig = (int(x) for x in os.environ["MODKIT_TEST_KILL_AT"].split(":"))
    _accumulate = Trainer.accumulate

    def accumulate(self, *args, **kwargs):
        _accumulate(self, *args, **kwargs)
        if self.state.global_step == _step:
            os.kill(os.getpid(), _sig)

    Trainer.accumulate = accumulate


@hookimpl
def modkit_register(registry):
    """Registers nothing: the module's effect is the patching above."""
