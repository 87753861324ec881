"""The image modality: grey or RGB pictures, MLP / convolutional / timm encoders, Bernoulli, Gaussian or Laplace likelihoods."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from modkit import DataError, GaussianHead, Modality, ModalityConfig, hookimpl, mlp
from modkit.distributions import make_likelihood
from modkit_image.backbone import BackboneConfig, TimmBackbone
from modkit_image.nets import ConvDecoder, ConvEncoder, auto_channels, patch_mask


class ImageConfig(ModalityConfig):
    shape: tuple[int, int, int] = Field((1, 28, 28), description="channels, height, width")
    likelihood: Literal["bernoulli", "gaussian", "laplace"] = "bernoulli"
    scale: float | Literal["learned"] = Field(0.75, description="Gaussian/Laplace scale, or 'learned'")
    architecture: Literal["mlp", "conv"] = Field("mlp", description="encoder/decoder family (the decoder's, when a backbone encodes)")
    hidden: list[int] = Field([512, 512], min_length=1, description="mlp: layer sizes; conv: the last entry is the feature size")
    channels: list[int] | None = Field(None, min_length=1, description="conv: channels per stride-2 stage (default: halve to ≤4 pixels, 32·2^i up to 256)")
    backbone: BackboneConfig | None = Field(None, description="a timm model as the encoder")
    mask_ratio: float = Field(0.0, ge=0, lt=1, description="MAE-style fraction of patches zeroed at the encoder input, training only")
    patch_size: int = Field(16, ge=1, description="patch side for mask_ratio, in pixels")

    @model_validator(mode="after")
    def _positive_shape(self) -> "ImageConfig":
        if min(self.shape) < 1:
            raise ValueError(f"shape must be positive (got {list(self.shape)})")
        if self.mask_ratio > 0 and not (self.backbone is not None and self.backbone.tokens):  # tokens: the ViT's own patches
            self._check_patches()
        return self

    def _check_patches(self) -> None:
        """mask_ratio drops whole patches: on a small image a large patch masks all or nothing."""
        _, h, w = self.shape
        n = math.ceil(h / self.patch_size) * math.ceil(w / self.patch_size)
        dropped = int(round(self.mask_ratio * n))
        if 1 <= dropped <= n - 1:
            return
        fits = [p for p in range(min(h, w), 0, -1)
                if 1 <= round(self.mask_ratio * math.ceil(h / p) * math.ceil(w / p)) <= math.ceil(h / p) * math.ceil(w / p) - 1]
        hint = f" (patch_size {fits[0]} or smaller masks a part)" if fits else ""
        raise ValueError(f"patch_size {self.patch_size} tiles the {h}x{w} image into {n} patch(es), so mask_ratio {self.mask_ratio} "
                         f"would mask {dropped} of them ({100 * dropped / n:.0f} % of the image) instead of a part{hint}")


class MeanToken(nn.Module):
    """(B, F·gh·gw) flattened token grid → (B, F): the mean token."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, grid: Tensor) -> Tensor:
        return grid.view(grid.shape[0], self.channels, -1).mean(-1)


class Image(Modality):
    """Images as (C, H, W) floats in [0, 1]; uint8 arrays and image files (read with Pillow) are converted."""

    Config = ImageConfig

    @classmethod
    def example(cls):
        """8×8 grey pictures and a small MLP, for the contract tests (modkit.testing)."""
        rng = np.random.default_rng(0)
        return {"shape": [1, 8, 8], "hidden": [16]}, [rng.random((8, 8), dtype=np.float32) for _ in range(4)]

    def __init__(self, name: str, config: ImageConfig, latent_dim: int):
        super().__init__(name, config, latent_dim)
        self.shape = tuple(config.shape)
        c, h, w = self.shape
        size = math.prod(self.shape)
        channels = config.channels or auto_channels(h, w)
        self.feature_shape: tuple[int, int, int] | None = None  # set when the features are a token grid
        if config.backbone is not None:
            backbone = config.backbone
            if backbone.tokens and backbone.image_size is None:
                backbone = backbone.model_copy(update={"image_size": h})
            self.encoder = TimmBackbone(backbone, c, key=f"modalities.{name}.backbone")
            self.feature_dim = self.encoder.num_features
            if backbone.tokens:
                self.feature_shape = (self.encoder.num_features, *self.encoder.grid)
                self.feature_dim = math.prod(self.feature_shape)
        elif config.architecture == "conv":
            self.encoder = ConvEncoder(c, h, w, channels, config.hidden[-1])
            self.feature_dim = config.hidden[-1]
        else:
            self.encoder = mlp([size, *config.hidden], final_activation=True)
            self.feature_dim = config.hidden[-1]
        # a token grid's own expert reads its mean token (a fusion that mixes features sees the whole grid)
        self.head = (nn.Sequential(MeanToken(self.feature_shape[0]), GaussianHead(self.feature_shape[0], latent_dim))
                     if self.feature_shape else GaussianHead(self.feature_dim, latent_dim))
        if config.architecture == "conv":
            self.decoder = ConvDecoder(latent_dim, c, h, w, channels)
        else:
            self.decoder = mlp([latent_dim, *reversed(config.hidden), size])
        self.likelihood = make_likelihood(config.likelihood, event_dims=3, scale=config.scale, key=f"modalities.{name}.likelihood")

    def mask_patches(self, x: Tensor) -> Tensor:
        """Zero a random ``mask_ratio`` of ``patch_size`` patches per image (LCMVAE's masked pre-training)."""
        keep = patch_mask(x.shape[0], x.shape[-2], x.shape[-1], self.config.patch_size, self.config.mask_ratio, x.device)
        return x * keep.to(x.dtype)

    def features(self, x: Tensor) -> Tensor:
        x = x.float()
        if self.feature_shape is not None:  # (B, F·gh·gw): the grid, masked tokens dropped (MAE) and zero in place
            return self.encoder.token_grid(x, self.config.mask_ratio if self.training else 0.0).flatten(1)
        if self.training and self.config.mask_ratio > 0:
            x = self.mask_patches(x)
        if self.config.backbone is None and self.config.architecture == "mlp":
            return self.encoder(x.flatten(1))
        return self.encoder(x)

    def decoder_net(self, z: Tensor) -> Tensor:
        return self.decoder(z).view(-1, *self.shape)

    # -- data --------------------------------------------------------------------------------
    def _to_pil(self, img):
        if self.shape[0] not in (1, 3):
            raise DataError(f"image files and uint8 arrays are grey or RGB; the recipe's shape has {self.shape[0]} channels")
        img = img.convert("L" if self.shape[0] == 1 else "RGB")
        if img.size != (self.shape[2], self.shape[1]):
            img = img.resize((self.shape[2], self.shape[1]))
        array = np.asarray(img, dtype=np.float32) / 255.0
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)

    def preprocess(self, value) -> Tensor:
        from PIL import Image as PILImage

        if isinstance(value, (str, Path)):
            path = Path(value)
            try:
                with PILImage.open(path) as img:
                    array = self._to_pil(img)
            except FileNotFoundError:
                raise DataError(f"image file not found: {path}") from None
            except OSError as exc:
                raise DataError(f"cannot read image {path}: {exc}") from None
            except PILImage.DecompressionBombError as exc:  # more pixels than Pillow allows: refused from the header
                raise DataError(f"cannot read image {path}: {exc}") from None
            return torch.from_numpy(np.ascontiguousarray(array))
        array = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
        if array.dtype == np.uint8:
            if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
                array = array.transpose(1, 2, 0)  # (C, H, W) uint8 → (H, W, C)
            if array.ndim == 3 and array.shape[-1] == 1:
                array = array[..., 0]
            if array.ndim not in (2, 3):
                raise DataError(f"a uint8 image must be (H, W) or (H, W, 3), got shape {array.shape}")
            return torch.from_numpy(np.ascontiguousarray(self._to_pil(PILImage.fromarray(array))))
        if not np.issubdtype(array.dtype, np.number):
            raise DataError(f"an image must be a file path or a numeric array, got {type(value).__name__}")
        x = torch.as_tensor(array, dtype=torch.float32)
        x = self._arrange(x)
        if not torch.isfinite(x).all():
            raise DataError("image holds NaN or infinite values")
        return x.reshape(self.shape)

    def _arrange(self, x: Tensor) -> Tensor:
        """A float array in the recipe's shape (C, H, W): as is, flat, without its single channel, or
        channels-last (permuted). Any other shape is refused, even with the right number of values:
        reshaping (H, W, C) as (C, H, W) would scramble the pixels silently."""
        shape = tuple(self.shape)
        if tuple(x.shape) == shape:
            return x
        if len(shape) == 3 and shape[0] > 1 and tuple(x.shape) == (*shape[1:], shape[0]):
            return x.permute(2, 0, 1)
        if len(shape) == 3 and shape[0] == 1 and tuple(x.shape) == (*shape[1:], 3):
            # an RGB array for a grey model, such as this modality's own render (which repeats the grey channel
            # three times): the luma PIL's "L" conversion uses for files, exact for a grey render
            return (x @ torch.tensor([0.299, 0.587, 0.114])).unsqueeze(0)
        if (x.dim() == 1 and x.numel() == math.prod(shape)) or (shape[0] == 1 and tuple(x.shape) == shape[1:]):
            return x.reshape(shape)
        raise DataError(f"image has shape {tuple(x.shape)}, the recipe's shape is {list(shape)} "
                        f"(also accepted: flat, channels-last, (H, W) for one channel, or (H, W, 3) for one channel, as rendered)")

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
        if self.config.backbone is not None:  # e.g. a ViT built for 224×224 given 32×32 images
            was_training = self.encoder.training
            self.encoder.eval()
            try:
                with torch.no_grad():
                    self.encoder(x[:1].float())
            except (RuntimeError, AssertionError, ValueError) as exc:
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ValueError(f"backbone '{self.config.backbone.name}' cannot take images of shape {list(self.shape)}: {message}") from None
            finally:
                self.encoder.train(was_training)

    def render(self, x: Tensor) -> np.ndarray:
        array = x.detach().float().cpu().clamp(0, 1).numpy()
        return np.repeat(array[0][..., None], 3, axis=-1) if array.shape[0] == 1 else array[:3].transpose(1, 2, 0)


@hookimpl
def modkit_register(registry):
    registry.add_modality("image", Image)
