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
    tokens: bool = Field(False, description="ViT backbones: the features are the patch-token grid (C, gh, gw), not the pooled "
                                            "vector; with mask_ratio the masked patches are dropped before the transformer "
                                            "(MAE) and re-inserted as zeros in place (LCMVAE)")
    image_size: int | None = Field(None, ge=8, description="ViT backbones: the input size the position embeddings are built for "
                                                           "(default: the modality's image size)")
    patch_size: int | None = Field(None, ge=1, description="ViT backbones: patch side (default: the model's own)")


def _read_state_dict(path: Path, key: str) -> dict[str, Tensor]:
    if path.is_dir():
        found = [path / f for f in WEIGHT_FILES if (path / f).is_file()]
        if not found:
            raise RecipeError(key, f"folder {path} holds none of {', '.join(WEIGHT_FILES)}")
        path = found[0]
    if not path.is_file():
        raise RecipeError(key, f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file: safetensors and the safe unpickler raise many kinds
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise RecipeError(key, f"{path} is not a readable weights file ({first})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise RecipeError(key, f"{path} holds no weights (a name → tensor map)")
    return state


class TimmBackbone(nn.Module):
    """``timm.create_model(name, pretrained=False, num_classes=0)``: pooled features of size ``num_features``."""

    def __init__(self, config: BackboneConfig, in_channels: int, key: str):
        super().__init__()
        import timm

        extra = {k: v for k, v in (("img_size", config.image_size), ("patch_size", config.patch_size)) if v is not None}
        try:
            self.model = timm.create_model(config.name, pretrained=False, num_classes=0, in_chans=in_channels, **extra)
        except TypeError as exc:  # img_size/patch_size given to a model without them
            if config.tokens:
                raise RecipeError(f"{key}.tokens", f"'{config.name}' is not a vision transformer: it has no patch-token grid") from None
            raise RecipeError(f"{key}.name", f"timm cannot build '{config.name}': {exc}") from None
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
        self.grid: tuple[int, int] | None = None
        if config.tokens:
            if not all(hasattr(self.model, a) for a in ("patch_embed", "_pos_embed", "blocks", "num_prefix_tokens")):
                raise RecipeError(f"{key}.tokens", f"'{config.name}' is not a vision transformer: it has no patch-token grid")
            self.grid = tuple(self.model.patch_embed.grid_size)
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

    def token_grid(self, x: Tensor, drop_ratio: float = 0.0) -> Tensor:
        """(B, C, H, W) → the last layer's patch tokens as a (B, F, gh, gw) grid.

        With ``drop_ratio`` the same number of patches is dropped from every image at random before the
        transformer, which then sees only the visible ones (MAE's encoder); the dropped positions come
        back as zeros in place. One forward pass: the tokens and the mask always agree (the LCMVAE
        authors' code ran the MAE twice, so its mask and its embeddings disagreed).
        """
        if self.normalize:
            x = (x - self.mean) / self.std
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            m = self.model
            tokens = m._pos_embed(m.patch_embed(x))  # (B, P + N, F): prefix (class) tokens first
            prefix, patches = tokens[:, :m.num_prefix_tokens], tokens[:, m.num_prefix_tokens:]
            b, n, f = patches.shape
            n_drop = int(round(drop_ratio * n))
            if n_drop:
                # a random subset of n − n_drop patches per image, kept in grid order; argsort, so no host sync
                keep = torch.rand(b, n, device=x.device).argsort(1)[:, : n - n_drop].sort(1).values
                patches = torch.gather(patches, 1, keep.unsqueeze(-1).expand(-1, -1, f))
            out = m.norm(m.blocks(m.norm_pre(torch.cat([prefix, patches], 1))))[:, m.num_prefix_tokens:]
            if n_drop:
                out = out.new_zeros(b, n, f).scatter(1, keep.unsqueeze(-1).expand(-1, -1, f), out)
        return out.transpose(1, 2).reshape(b, f, *self.grid)
