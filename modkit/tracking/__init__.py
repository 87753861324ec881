"""Experiment tracking: TensorBoard event files in every run directory, MLflow when a recipe or
modkit.toml asks for it (``tracking: {mlflow: URI}``). See docs/tracking.md.

The trainer calls :func:`open_tracker` when a run starts and the :class:`Tracker` where metrics
are produced; every backend failure is one warning and the run goes on without that backend.
"""
from modkit.tracking.base import NULL_TRACKER, Backend, Tracker, flatten, open_tracker

__all__ = ["Backend", "NULL_TRACKER", "Tracker", "flatten", "open_tracker"]
