"""The image modality: grey or RGB pictures with Bernoulli, Gaussian or Laplace likelihoods."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from modkit import DataError, Modality, ModalityConfig, hookimpl
from modkit.likelihoods import make_likelihood
from modkit.nn import GaussianHead, mlp


class ImageConfig(ModalityConfig):
    shape: tuple[int, int, int] = Field((1, 28, 28), description="channels, height, width")
    likelihood: Literal["bernoulli", "gaussian", "laplace"] = "bernoulli"
    scale: float | Literal["learned"] = Field(0.75, description="Gaussian/Laplace scale, or 'learned'")
    architecture: Literal["mlp"] = "mlp"
    hidden: list[int] = Field([512, 512], min_length=1)


class Image(Modality):
    """Images as (C, H, W) floats in [0, 1]; files are read with Pillow."""

    Config = ImageConfig

    def __init__(self, name: str, config: ImageConfig, latent_dim: int):
        super().__init__(name, config, latent_dim)
        self.shape = tuple(config.shape)
        size = math.prod(self.shape)
        self.encoder = mlp([size, *config.hidden], final_activation=True)
        self.head = GaussianHead(config.hidden[-1], latent_dim)
        self.feature_dim = config.hidden[-1]
        self.decoder = mlp([latent_dim, *reversed(config.hidden), size])
        self.likelihood = make_likelihood(config.likelihood, event_dims=3, scale=config.scale, key=f"modalities.{name}.likelihood")

    def features(self, x: Tensor) -> Tensor:
        return self.encoder(x.flatten(1).float())

    def decoder_net(self, z: Tensor) -> Tensor:
        return self.decoder(z).view(-1, *self.shape)

    def preprocess(self, value) -> Tensor:
        if isinstance(value, (str, Path)):
            from PIL import Image as PILImage

            path = Path(value)
            try:
                with PILImage.open(path) as img:
                    img = img.convert("L" if self.shape[0] == 1 else "RGB")
                    if img.size != (self.shape[2], self.shape[1]):
                        img = img.resize((self.shape[2], self.shape[1]))
                    array = np.asarray(img, dtype=np.float32) / 255.0
            except FileNotFoundError:
                raise DataError(f"image file not found: {path}") from None
            except OSError as exc:
                raise DataError(f"cannot read image {path}: {exc}") from None
            value = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        x = torch.as_tensor(np.asarray(value), dtype=torch.float32)
        return x.reshape(self.shape) if x.numel() == math.prod(self.shape) else x

    def placeholder(self) -> Tensor:
        return torch.zeros(self.shape)

    def pseudo_sample_init(self, n: int) -> Tensor:
        """Logits of ``n`` pseudo-images around mid-grey (VampPrior pseudo-inputs, learned)."""
        return 0.1 * torch.randn(n, *self.shape)

    def pseudo_sample_data(self, raw: Tensor) -> Tensor:
        """Logits → pixel values in (0, 1), the range the encoder sees in real data."""
        return torch.sigmoid(raw)

    def check(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"samples have shape {tuple(x.shape[1:])}, the recipe's shape is {list(self.shape)}")
        if self.config.likelihood == "bernoulli" and (x.min() < 0 or x.max() > 1):
            raise ValueError("a Bernoulli likelihood needs values in [0, 1]")

    def render(self, x: Tensor) -> np.ndarray:
        array = x.detach().float().cpu().clamp(0, 1).numpy()
        return np.repeat(array[0][..., None], 3, axis=-1) if array.shape[0] == 1 else array[:3].transpose(1, 2, 0)


@hookimpl
def modkit_register(registry):
    registry.add_modality("image", Image)
