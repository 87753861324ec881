"""A worked modality plugin: a 1-D signal (a waveform of ``length`` samples), and a toy dataset of waves.

The file is complete: put it on the Python path and list it under ``plugins:`` in a recipe (or point a
``modkit`` entry point at it), and ``type: signal`` and ``type: sine_waves`` work. docs/plugin-api.md walks
through it; tests/docs/test_plugin_api_examples.py trains it.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from modkit import (ArrayRecords, DataError, DatasetConfig, DatasetSource, GaussianHead, Modality, ModalityConfig, existing_file,
                    hookimpl, mlp)
from modkit.distributions import make_likelihood


class SignalConfig(ModalityConfig):
    """What a recipe may set under ``modalities.<name>`` (``type``, ``weight`` and ``field`` come from ModalityConfig)."""

    length: int = Field(64, ge=8, description="samples per signal")
    channels: int = Field(16, ge=1, description="filters of each of the two convolutions")
    hidden: int = Field(64, ge=1, description="feature size below the Gaussian head, and the decoder's hidden size")
    likelihood: Literal["gaussian", "laplace"] = "gaussian"
    scale: float | Literal["learned"] = Field("learned", description="likelihood scale, or 'learned' (starts at 1)")


class Signal(Modality):
    """A 1-D signal: two strided convolutions → features → Gaussian expert; an MLP decoder → the signal's mean."""

    Config = SignalConfig

    def __init__(self, name: str, config: SignalConfig, latent_dim: int):
        super().__init__(name, config, latent_dim)
        c = config.channels
        self.conv = nn.Sequential(nn.Conv1d(1, c, 5, stride=2, padding=2), nn.SiLU(),
                                  nn.Conv1d(c, c, 5, stride=2, padding=2), nn.SiLU(), nn.Flatten())
        conv_out = c * ((config.length + 3) // 4)
        self.to_features = mlp([conv_out, config.hidden], final_activation=True)
        self.feature_dim = config.hidden  # what features() returns per sample: fusions that mix features read it
        self.head = GaussianHead(config.hidden, latent_dim)  # features → (mu, logvar), log-variance bounded
        self.decoder = mlp([latent_dim, config.hidden, config.length])
        self.likelihood = make_likelihood(config.likelihood, event_dims=1, scale=config.scale, key=f"modalities.{name}.likelihood")

    @classmethod
    def example(cls):
        """Small options and a few signals: what modkit.testing's contract checks build and feed."""
        t = np.linspace(0, 1, 16, dtype=np.float32)
        return {"length": 16, "channels": 4, "hidden": 8}, [np.sin(2 * np.pi * f * t) for f in (1, 2, 3)]

    # -- data: one raw value → one tensor; missing samples are placeholders the engine masks out ------
    def preprocess(self, value) -> Tensor:
        """A sequence of ``length`` numbers (a list, an array, a row of a file) → float tensor (length,)."""
        try:
            x = torch.as_tensor(np.asarray(value, dtype=np.float32)).flatten()
        except (TypeError, ValueError) as exc:
            raise DataError(f"a signal must be {self.config.length} numbers: {exc}") from None
        if x.numel() != self.config.length:
            raise DataError(f"a signal must be {self.config.length} numbers, got {x.numel()}")
        return x

    def placeholder(self) -> Tensor:
        return torch.zeros(self.config.length)

    def check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.config.length:
            raise ValueError(f"signals have shape {tuple(x.shape[1:])}; the recipe's length is {self.config.length}")

    def load_given(self, text: str):
        """``modkit generate --given wave=TEXT``: a .npy file, a text/CSV file of numbers, or numbers typed inline."""
        path = existing_file(text)
        try:
            if path is not None and path.suffix == ".npy":
                return np.load(path, allow_pickle=False)
            source = path.read_text(encoding="utf-8") if path is not None else text
            return np.array(source.replace(",", " ").split(), dtype=np.float32)
        except (OSError, ValueError) as exc:
            raise DataError(f"expected a .npy file, a file of numbers, or numbers: {exc}") from None

    # -- model: batched, no Python loop over samples ------------------------------------------------
    def features(self, x: Tensor) -> Tensor:
        """(B, length) → (B, feature_dim). ``encode`` (inherited) is ``self.head(self.features(x))``."""
        return self.to_features(self.conv(x.float().unsqueeze(1)))

    def decoder_net(self, z: Tensor) -> Tensor:
        """(M, latent_dim) → (M, length), the likelihood's location; ``decode`` applies it over any leading shape."""
        return self.decoder(z)

    # -- people -----------------------------------------------------------------------------------
    def render(self, x: Tensor) -> np.ndarray:
        """The signal as a white curve on black, (32, length, 3) in [0, 1]."""
        values = x.detach().float().cpu().numpy()
        low, high = float(values.min()), float(values.max())
        rows = np.round((1 - (values - low) / max(high - low, 1e-6)) * 31).astype(int)
        picture = np.zeros((32, len(values), 3), dtype=np.float32)
        picture[rows, np.arange(len(values))] = 1.0
        return picture


class SineWavesConfig(DatasetConfig):
    n: int = Field(600, ge=2)
    length: int = Field(64, ge=8)
    classes: int = Field(4, ge=2, description="frequencies 1..classes cycles per signal; the label is which")
    noise: float = Field(0.1, ge=0)
    seed: int = 0


class SineWaves(DatasetSource):
    """Noisy sine waves (field ``wave``) of a random phase and one of ``classes`` frequencies (field ``label``)."""

    Config = SineWavesConfig

    def load(self):
        c = self.config
        rng = np.random.default_rng(c.seed)
        label = rng.integers(0, c.classes, c.n)
        phase = rng.uniform(0, 2 * np.pi, c.n)
        t = np.linspace(0, 1, c.length, endpoint=False)
        wave = np.sin(2 * np.pi * (label[:, None] + 1) * t + phase[:, None]) + c.noise * rng.normal(size=(c.n, c.length))
        return {"all": ArrayRecords({"wave": wave.astype(np.float32), "label": label})}


@hookimpl
def modkit_register(registry):
    registry.add_modality("signal", Signal)
    registry.add_dataset("sine_waves", SineWaves)
