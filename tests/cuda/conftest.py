"""The CUDA tests: registered as the ``cuda`` marker here (``pytest -m cuda``), skipped with the reason where
``torch.cuda.is_available()`` is false (see cuda_helpers.DEVICE for a dry run of their logic on the CPU)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # cuda_helpers: a uniquely named module, ``conftest`` is taken


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs an NVIDIA GPU (torch.cuda.is_available()); skipped otherwise, with the reason")
