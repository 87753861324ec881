"""The segmentation-mask modality: a class id per pixel, a per-pixel categorical likelihood, mIoU, coloured renders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor

from modkit import DataError, GaussianHead, Modality, ModalityConfig, hookimpl
from modkit.distributions import Categorical
from modkit_image.nets import ConvDecoder, ConvEncoder, auto_channels
from modkit_mask.metrics import MeanIoUState, confusion_matrix, iou_from_confusion, mean_iou, voc_palette


class MaskConfig(ModalityConfig):
    num_classes: int = Field(..., ge=2, description="C, background included")
    shape: tuple[int, int] = Field(..., description="height, width (PNGs of another size are resized, nearest neighbour)")
    palette: list[tuple[int, int, int]] | None = Field(None, description="RGB 0-255 per class for renders (default: the Pascal VOC colour map)")
    ignore_index: int = Field(255, description="pixels with this value are neither scored nor encoded")
    channels: list[int] | None = Field(None, min_length=1, description="conv channels per stride-2 stage (default: halve to ≤4 pixels)")
    hidden: int = Field(256, ge=1, description="feature size between the conv stack and the Gaussian head")

    @model_validator(mode="after")
    def _consistent(self) -> "MaskConfig":
        if min(self.shape) < 1:
            raise ValueError(f"shape must be positive (got {list(self.shape)})")
        if self.palette is not None and len(self.palette) != self.num_classes:
            raise ValueError(f"palette has {len(self.palette)} entries for {self.num_classes} classes")
        if 0 <= self.ignore_index < self.num_classes:
            raise ValueError(f"ignore_index {self.ignore_index} is a class id (0..{self.num_classes - 1})")
        return self


class Mask(Modality):
    """(H, W) int64 class ids; convolutional encoder on the one-hot mask, transposed-conv decoder to C logits per pixel."""

    Config = MaskConfig

    @classmethod
    def example(cls):
        """8×8 masks of three classes and a small conv stack, for the contract tests (modkit.testing)."""
        rng = np.random.default_rng(0)
        return {"num_classes": 3, "shape": [8, 8], "channels": [8], "hidden": 16}, [rng.integers(0, 3, (8, 8)) for _ in range(4)]

    def __init__(self, name: str, config: MaskConfig, latent_dim: int):
        super().__init__(name, config, latent_dim)
        self.shape = tuple(config.shape)
        h, w = self.shape
        c = config.num_classes
        channels = config.channels or auto_channels(h, w)
        self.encoder = ConvEncoder(c, h, w, channels, config.hidden)
        self.head = GaussianHead(config.hidden, latent_dim)
        self.feature_dim = config.hidden
        self.decoder = ConvDecoder(latent_dim, c, h, w, channels)
        self.likelihood = Categorical(event_dims=2, class_dim=-3)
        palette = np.asarray(config.palette if config.palette else voc_palette(c), dtype=np.float32) / 255.0
        self.palette = np.concatenate([palette, np.ones((1, 3), dtype=np.float32)])  # last row: ignored pixels, white

    def valid(self, x: Tensor) -> Tensor:
        return x != self.config.ignore_index

    def one_hot(self, x: Tensor) -> Tensor:
        """(B, H, W) ids → (B, C, H, W) one-hot; ignored pixels are all zeros."""
        valid = self.valid(x)
        hot = F.one_hot(x.long().masked_fill(~valid, 0), self.config.num_classes).movedim(-1, -3).float()
        return hot * valid.unsqueeze(-3)

    def features(self, x: Tensor) -> Tensor:
        return self.encoder(self.one_hot(x))

    def decoder_net(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def log_likelihood(self, out: Tensor, x: Tensor) -> Tensor:
        """Σ over non-ignored pixels of log softmax(out)[x]; ``out`` (*lead, B, C, H, W), ``x`` (B, H, W)."""
        valid = self.valid(x)
        per_pixel = self.likelihood.elementwise(out, x.long().masked_fill(~valid, 0))
        return torch.where(valid, per_pixel, torch.zeros_like(per_pixel)).flatten(-2).sum(-1)

    def predict(self, out: Tensor) -> Tensor:
        return out.argmax(-3)

    def accuracy(self, out: Tensor, x: Tensor) -> Tensor:
        """Per-sample pixel accuracy over non-ignored pixels."""
        valid = self.valid(x)
        right = (out.argmax(-3) == x) & valid
        return right.flatten(-2).sum(-1).float() / valid.flatten(-2).sum(-1).clamp(min=1).float()

    # -- data ------------------------------------------------------------------------------------
    def preprocess(self, value) -> Tensor:
        if isinstance(value, (str, Path)):
            value = self._read_png(Path(value))
        array = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
        if array.dtype.kind == "f":
            if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
                raise DataError("a mask must hold integer class ids")
            array = array.astype(np.int64)
        if array.dtype.kind not in "iub":
            raise DataError(f"a mask must be an integer array or a PNG path, got {type(value).__name__} of {array.dtype}")
        if array.ndim != 2:
            raise DataError(f"a mask must be (H, W), got shape {array.shape}")
        if array.shape != self.shape:
            from PIL import Image as PILImage

            if array.min() < 0 or array.max() > 255:
                raise DataError(f"mask has shape {array.shape}, the recipe's shape is {list(self.shape)}")
            resized = PILImage.fromarray(array.astype(np.uint8)).resize((self.shape[1], self.shape[0]), PILImage.NEAREST)
            array = np.asarray(resized)
        x = torch.as_tensor(array.astype(np.int64))
        bad = ((x < 0) | (x >= self.config.num_classes)) & self.valid(x)
        if bad.any():
            value = int(x[bad][0])
            raise DataError(f"mask class {value} is out of range 0..{self.config.num_classes - 1} (ignore = {self.config.ignore_index})")
        return x

    @staticmethod
    def _read_png(path: Path) -> np.ndarray:
        from PIL import Image as PILImage

        try:
            with PILImage.open(path) as img:
                if img.mode not in ("P", "L", "I", "I;16", "1"):
                    raise DataError(f"mask {path} is mode {img.mode}; a mask PNG holds class ids (palette 'P' or grey 'L')")
                return np.asarray(img).astype(np.int64)
        except FileNotFoundError:
            raise DataError(f"mask file not found: {path}") from None
        except OSError as exc:
            raise DataError(f"cannot read mask {path}: {exc}") from None
        except PILImage.DecompressionBombError as exc:  # more pixels than Pillow allows: refused from the header
            raise DataError(f"cannot read mask {path}: {exc}") from None

    def placeholder(self) -> Tensor:
        return torch.zeros(self.shape, dtype=torch.long)

    def check(self, x: Tensor) -> None:
        if x.dim() != 3 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"masks have shape {tuple(x.shape[1:])}, the recipe's shape is {list(self.shape)}")
        if x.is_floating_point():
            raise ValueError("masks must hold integer class ids")
        bad = ((x < 0) | (x >= self.config.num_classes)) & self.valid(x)
        if bad.any():
            raise ValueError(f"mask class {int(x[bad][0])} is outside 0..{self.config.num_classes - 1}")

    def render(self, x: Tensor) -> np.ndarray:
        ids = x.detach().cpu().long().numpy()
        ids = np.where((ids >= 0) & (ids < self.config.num_classes), ids, self.config.num_classes)
        return self.palette[ids]


def miou_metric(modality: Modality) -> MeanIoUState | None:
    """mIoU over the whole set (not per image): the mean IoU of the classes that occur in prediction or target."""
    if not isinstance(modality, Mask):
        return None
    return MeanIoUState(modality.config.num_classes, modality.config.ignore_index)


@hookimpl
def modkit_register(registry):
    registry.add_modality("mask", Mask)
    registry.add_metric("miou", miou_metric)  # modkit eval's metric interface: fn(modality) -> state or None


__all__ = ["Mask", "MaskConfig", "confusion_matrix", "iou_from_confusion", "mean_iou"]
