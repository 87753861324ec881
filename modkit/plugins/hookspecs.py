"""The hooks a modkit plugin implements.

A plugin is any module (or object) with functions decorated by :data:`hookimpl`. First-party
plugins under ``plugins/`` use exactly these hooks, through the ``modkit`` entry-point group.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
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
