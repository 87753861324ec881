"""The hooks a modkit plugin implements.

A plugin is any module (or object) with functions decorated by :data:`hookimpl`; it may implement
any of these hooks. First-party
plugins under ``plugins/`` use exactly these hooks, through the ``modkit`` entry-point group.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from modkit.config.recipe import Recipe
    from modkit.plugins.registry import Registry

PROJECT = "modkit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def modkit_register(registry: "Registry") -> None:
    """Add modalities, fusion strategies, subset samplers, datasets and metrics to ``registry``.

    Call ``registry.add_modality(name, cls)``, ``add_fusion``, ``add_sampler``, ``add_dataset`` or
    ``add_metric``. A name another plugin already registered is an error naming both plugins.
    """


@hookspec
def modkit_train_callbacks(recipe: "Recipe") -> "list[Any] | None":
    """Callbacks to put on the training loop of a run of ``recipe``: a list (or None for none).

    Each is an object with any of the methods of :class:`modkit.training.events.Callback`
    (``on_fit_start``, ``on_interval``, ``on_epoch_end``, ``on_checkpoint``, ``on_fit_end``,
    ``on_fit_error``), called with the trainer on every process; write files on rank 0 only
    (``trainer.dist.main``). They run after the run's own callbacks (test metrics, summary,
    samples, trackers), so ``on_fit_end`` sees ``trainer.summary``.
    """
