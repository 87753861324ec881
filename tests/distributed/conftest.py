"""Shared set-up for the distributed and fault-tolerance tests: a tiny digits recipe in a throw-away
project whose ``modkit.toml`` loads ``fault_plugin`` (noise and kill controls for subprocesses)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # fault_plugin, for runs inside this process

TINY = """\
name: tiny
data: {dataset: digits, test_fraction: 0.2, batch_size: 64}
modalities:
  image: {type: image, shape: [1, 8, 8], likelihood: bernoulli, hidden: [32]}
  label: {type: label, num_classes: 10, weight: 50, hidden: [32]}
model: {latent_dim: 8, fusion: poe, sampler: {type: mvae, k: 1}, beta: {start: 0.0, end: 1.0, anneal_epochs: 2}}
train: {epochs: 2, lr: 1.0e-3, device: cpu, progress: false}
eval: {samples: 2, coherence: false}
"""


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project folder (the working directory) with modkit.toml and tiny.yaml; one torch thread, as in subprocesses."""
    (tmp_path / "modkit.toml").write_text('[modkit]\nruns_dir = "runs"\nplugins = ["fault_plugin"]\n')
    (tmp_path / "tiny.yaml").write_text(TINY)
    monkeypatch.chdir(tmp_path)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # the subprocesses too, whatever leaked
        monkeypatch.setenv(name, "1")
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bitwise comparisons with subprocesses need the same reduction order
    with threadpool_limits(limits=1):  # and the BLAS pools too, whatever an earlier test left them at
        yield tmp_path
    torch.set_num_threads(threads)
