"""The label modality: one class out of K, with a categorical likelihood and an embedding encoder."""
from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from modkit import DataError, GaussianHead, Modality, ModalityConfig, hookimpl, mlp
from modkit.distributions import Categorical


class LabelConfig(ModalityConfig):
    num_classes: int = Field(..., ge=2)
    class_names: list[str] | None = Field(None, description="names shown in renders and accepted as input")
    embedding_dim: int = Field(64, ge=1)
    hidden: list[int] = Field([512, 512], min_length=1)


class Label(Modality):
    """Class ids (int64); a missing label is a first-class state, as in semi-supervised data."""

    Config = LabelConfig

    @classmethod
    def example(cls):
        """Three named classes and small networks, for the contract tests (modkit.testing)."""
        return {"num_classes": 3, "class_names": ["red", "green", "blue"], "embedding_dim": 8, "hidden": [16]}, [0, 1, 2, "green"]

    @property
    def class_names(self) -> list[str] | None:
        """Classifiable (modkit.core.capabilities): reports name the classes with these."""
        return self.config.class_names

    def __init__(self, name: str, config: LabelConfig, latent_dim: int):
        super().__init__(name, config, latent_dim)
        if config.class_names is not None and len(config.class_names) != config.num_classes:
            from modkit import RecipeError

            raise RecipeError(f"modalities.{name}.class_names", f"has {len(config.class_names)} names for {config.num_classes} classes")
        self.embed = nn.Embedding(config.num_classes, config.embedding_dim)
        self.encoder = mlp([config.embedding_dim, *config.hidden], final_activation=True)
        self.head = GaussianHead(config.hidden[-1], latent_dim)
        self.feature_dim = config.hidden[-1]
        self.decoder = mlp([latent_dim, *reversed(config.hidden), config.num_classes])
        self.likelihood = Categorical(event_dims=0)

    def features(self, x: Tensor) -> Tensor:
        """Class ids (B,), or class probabilities (B, K) — a relaxed (Gumbel-softmax) or learned pseudo label."""
        if x.is_floating_point() and x.dim() == 2:
            return self.encoder(x @ self.embed.weight)
        return self.encoder(self.embed(x.long().clamp(0, self.config.num_classes - 1)))

    def decoder_net(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def preprocess(self, value) -> Tensor:
        names = self.config.class_names
        if isinstance(value, str) and names and value in names:
            return torch.tensor(names.index(value))
        try:
            index = int(value)
        except (TypeError, ValueError):
            allowed = f" or one of {names}" if names else ""
            raise DataError(f"label {value!r} is not a class id{allowed}") from None
        if not isinstance(value, str) and float(value) != index:  # int() would truncate 2.7 to class 2
            raise DataError(f"label {value!r} is not a whole number")
        if not 0 <= index < self.config.num_classes:
            raise DataError(f"label {index} is outside 0..{self.config.num_classes - 1}")
        return torch.tensor(index)

    def placeholder(self) -> Tensor:
        return torch.tensor(0)

    def pseudo_sample_init(self, n: int) -> Tensor:
        """Logits (n, K) of ``n`` learnable pseudo-labels, near uniform at the start."""
        return 0.01 * torch.randn(n, self.config.num_classes)

    def pseudo_sample_data(self, raw: Tensor) -> Tensor:
        """Logits → class probabilities (n, K), which :meth:`features` accepts as soft labels."""
        return torch.softmax(raw, dim=-1)

    def check(self, x: Tensor) -> None:
        if x.dim() != 1 or x.is_floating_point():
            raise ValueError(f"labels must be integer class ids, one per sample (got {x.dtype}, shape {tuple(x.shape)})")
        if x.min() < 0 or x.max() >= self.config.num_classes:
            bad = int(x.min()) if x.min() < 0 else int(x.max())
            raise ValueError(f"label {bad} is outside 0..{self.config.num_classes - 1} (num_classes {self.config.num_classes})")

    def accuracy(self, out: Tensor, x: Tensor) -> Tensor:
        return (out.argmax(-1) == x).float()

    def class_predictions(self, out: Tensor, x: Tensor) -> tuple[Tensor, Tensor, int]:
        return out.argmax(-1).unsqueeze(-1), x.long().unsqueeze(-1), self.config.num_classes

    def render(self, x: Tensor) -> str:
        index = int(x)
        names = self.config.class_names
        return names[index] if names else str(index)


@hookimpl
def modkit_register(registry):
    registry.add_modality("label", Label)
