"""The latent-sampler contract: a density fitted, after training, to where the encoder actually puts data.

A VAE's prior N(0, I) is what the KL term pulls the aggregate posterior towards, never exactly onto it:
regions the prior covers and the posterior does not decode to blurry or incoherent samples. A post-hoc
sampler (MultiVae's GaussianMixtureSampler, MAFSampler, IAFSampler) fits a richer density to the
training set's embeddings and draws z from it instead, leaving the model untouched.

A sampler is plain state: ``state_dict`` gives only tensors and ``Config`` only JSON values, so a fitted
sampler is stored as safetensors + JSON and rebuilt from them without running anything from the file.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor


class LatentSamplerConfig(BaseModel):
    """A latent sampler's options (``--set key=value`` on ``modkit fit-sampler``); ``type`` is its registered name."""

    model_config = ConfigDict(extra="forbid")
    type: str


class LatentSampler:
    """Fits a density to (n, D) embeddings and draws from it. Subclasses implement the four methods below.

    ``fit`` may use any library (scikit-learn, a flow library) but must leave everything ``sample`` needs
    in ``state_dict()``: a fresh instance built from the same ``Config`` and given that state by
    ``load_state_dict`` draws exactly the samples the fitted one draws for the same generator.
    """

    Config: ClassVar[type[LatentSamplerConfig]] = LatentSamplerConfig

    def __init__(self, latent_dim: int, config: LatentSamplerConfig):
        self.latent_dim = latent_dim
        self.config = config

    def fit(self, embeddings: Tensor, seed: int) -> None:  # pragma: no cover - abstract
        """Fit to ``embeddings`` (n, latent_dim), float32 on the CPU; ``seed`` makes the fit repeatable."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:  # pragma: no cover - abstract
        """``n`` draws (n, latent_dim) on the CPU, every random number taken from ``generator``."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Tensor]:  # pragma: no cover - abstract
        """Everything ``sample`` needs, as named tensors."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Tensor]) -> None:  # pragma: no cover - abstract
        """Take back what ``state_dict`` gave."""
        raise NotImplementedError

    @classmethod
    def restore(cls, latent_dim: int, config: LatentSamplerConfig, state: dict[str, Tensor]) -> "LatentSampler":
        """A fitted sampler from its config and state (what is stored in a run directory)."""
        sampler = cls(latent_dim, config)
        sampler.load_state_dict(state)
        return sampler
