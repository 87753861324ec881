"""Optional capabilities of a modality (or dataset), as runtime-checkable Protocols.

Evaluation and reporting ask ``isinstance(modality, Judgeable)`` instead of reading a plugin's
config or private attributes: a plugin gains a capability by defining the named members, with no
base class to inherit and no registration. ``isinstance`` checks that the members exist, not their
signatures; the docstrings say what each must do.

* :class:`Judgeable`: fixed features coherence judges are trained on (``Modality.judge_features``).
* :class:`Classifiable`: names for the classes its data hold (a label modality), shown in reports.
* :class:`VectorEntry`: the modality is one entry of a 0/1 vector field (a split attribute), so its own
  data are that entry's class.
* :class:`Renderable`: shows one sample to a person (``Modality.render``).
* :class:`TaskHeaded`: its decoder can be swapped for a downstream task head (``Modality.set_task_head``).
* :class:`DeclaresAttributes`: a dataset source that names its class attributes itself.
* :class:`ClusteredPrior`: a fusion whose prior is a mixture of clusters (CMVAE) reads a cluster out of a latent,
  which the clustering metric scores beside k-means.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
from torch import Tensor, nn

__all__ = ["Judgeable", "Classifiable", "VectorEntry", "Renderable", "TaskHeaded", "DeclaresAttributes", "ClusteredPrior"]


@runtime_checkable
class Judgeable(Protocol):
    def judge_features(self, x: Any) -> Tensor | None:
        """Batched data → fixed, model-independent (B, F) float features, or None where there are none."""
        ...


@runtime_checkable
class Classifiable(Protocol):
    @property
    def class_names(self) -> Sequence[str] | None:
        """The name of each class id (index = id), or None when the classes have no names."""
        ...


@runtime_checkable
class VectorEntry(Protocol):
    @property
    def entry_index(self) -> int | None:
        """Which entry of its field's 0/1 vector the modality reads; None when it reads the whole vector."""
        ...


@runtime_checkable
class Renderable(Protocol):
    def render(self, x: Any) -> np.ndarray | str:
        """One sample (no batch dim) → an RGB float image (H, W, 3) in [0, 1], or a string."""
        ...


@runtime_checkable
class TaskHeaded(Protocol):
    def set_task_head(self, head: nn.Module) -> None:
        """Decode through ``head`` ((M, latent_dim) → (M, *output shape)) instead of the decoder."""
        ...


@runtime_checkable
class DeclaresAttributes(Protocol):
    attributes: Sequence[str] | None
    """The dataset's class attributes (``field`` or ``field[k]``), which coherence and probes score."""


@runtime_checkable
class ClusteredPrior(Protocol):
    def cluster_log_posterior(self, z: Tensor) -> Tensor:
        """Latents as the model carries them (*lead, latent_dim) → log p(c | z) over the prior's clusters (*lead, C);
        −inf for a cluster a selection left out."""
        ...


def class_names_of(modality: Any) -> list[str] | None:
    """The names of ``modality``'s classes where it is :class:`Classifiable` and has some, else None."""
    if isinstance(modality, Classifiable):
        names = modality.class_names
        return list(names) if names else None
    return None


def entry_index_of(modality: Any) -> int | None:
    """Which vector entry ``modality`` reads where it is a :class:`VectorEntry`, else None."""
    return modality.entry_index if isinstance(modality, VectorEntry) else None
