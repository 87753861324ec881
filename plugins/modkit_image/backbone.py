"""A timm model as an image encoder: built without downloading, weights only from a local file or folder."""
from __future__ import annotations

from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from modkit import RecipeError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.pt")


class BackboneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., description="a timm model name, e.g. resnet18, vit_small_patch16_224")
    weights: str | None = Field(None, description="local checkpoint file or folder; none: random init (nothing downloads)")
    frozen: bool = Field(True, description="keep the backbone's weights and normalisation statistics fixed")
    normalize: bool = Field(True, description="standardise [0, 1] pixels with the model's mean/std")


def _read_state_dict(path: Path, key: str) -> dict[str, Tensor]:
    if path.is_dir():
        found = [path / f for f in WEIGHT_FILES if (path / f).is_file()]
        if not found:
            raise RecipeError(key, f"folder {path} holds none of {', '.join(WEIGHT_FILES)}")
        path = found[0]
    if not path.is_file():
        raise RecipeError(key, f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    return state


class TimmBackbone(nn.Module):
    """``timm.create_model(name, pretrained=False, num_classes=0)``: pooled features of size ``num_features``."""

    def __init__(self, config: BackboneConfig, in_channels: int, key: str):
        super().__init__()
        import timm

        try:
            self.model = timm.create_model(config.name, pretrained=False, num_classes=0, in_chans=in_channels)
        except (RuntimeError, ValueError) as exc:
            raise RecipeError(f"{key}.name", f"timm cannot build '{config.name}': {exc}") from None
        if config.weights:
            state = _read_state_dict(Path(config.weights).expanduser(), f"{key}.weights")
            own = self.model.state_dict()
            state = {k: v for k, v in state.items() if k in own}  # drop the classifier the checkpoint may carry
            missing = [k for k in own if k not in state]
            if missing:
                raise RecipeError(f"{key}.weights", f"checkpoint lacks {len(missing)} of the model's tensors (first: {missing[0]})")
            try:
                self.model.load_state_dict(state)
            except RuntimeError as exc:
                raise RecipeError(f"{key}.weights", f"does not fit '{config.name}': {str(exc).splitlines()[0]}") from None
        self.frozen = config.frozen
        if self.frozen:
            self.model.requires_grad_(False)
        self.num_features: int = self.model.num_features
        cfg = getattr(self.model, "pretrained_cfg", None) or {}
        mean, std = cfg.get("mean", (0.5,) * 3), cfg.get("std", (0.5,) * 3)
        if len(mean) != in_channels:  # grey input: one channel at the average statistics
            mean, std = (sum(mean) / len(mean),) * in_channels, (sum(std) / len(std),) * in_channels
        self.normalize = config.normalize
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "TimmBackbone":
        super().train(mode)
        if self.frozen:  # batch-norm statistics stay those of the weights
            self.model.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.normalize:
            x = (x - self.mean) / self.std
        if self.frozen:
            with torch.no_grad():
                return self.model(x)
        return self.model(x)
