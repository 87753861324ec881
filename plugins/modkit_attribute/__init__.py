"""The attribute modality: binary attributes as one multi-hot Bernoulli vector, or each as its own modality.

``split: true`` uses the :meth:`Modality.expand` hook to turn one recipe entry into one modality per
attribute (the MVAE paper's CelebA-19 setting: image + 18 attribute modalities), each reading its
entry of the same dataset field.
"""
from __future__ import annotations

import re

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor

from modkit import DataError, GaussianHead, Modality, ModalityConfig, hookimpl, mlp
from modkit.distributions import Bernoulli


class AttributeConfig(ModalityConfig):
    num_attributes: int | None = Field(None, ge=1, description="length of the 0/1 vector (default: len(names))")
    names: list[str] | None = Field(None, description="attribute names, shown in renders and used to name split modalities")
    split: bool = Field(False, description="each attribute its own modality, named <modality>_<attribute name>")
    select: list[str] | None = Field(None, description="only these attributes (by name): with split, the ones that become "
                                                         "modalities (MVAE's CelebA-19 keeps 18 of 40); without, the entries "
                                                         "of the one vector")
    index: int | None = Field(None, ge=0, description="read only this entry of the vector (set by split; rarely by hand)")
    hidden: list[int] = Field([256, 256], min_length=1)

    @model_validator(mode="after")
    def _sizes(self) -> "AttributeConfig":
        if self.num_attributes is None and self.names is None:
            raise ValueError("give num_attributes or names")
        if self.names is not None and self.num_attributes is not None and len(self.names) != self.num_attributes:
            raise ValueError(f"names has {len(self.names)} entries for num_attributes {self.num_attributes}")
        if self.index is not None and self.index >= self.total:
            raise ValueError(f"index {self.index} is outside 0..{self.total - 1}")
        if self.select is not None:
            if self.names is None:
                raise ValueError("select needs names")
            if self.index is not None:
                raise ValueError("select and index exclude each other")
            unknown = [s for s in self.select if s not in self.names]
            if unknown:
                raise ValueError(f"select names {unknown[0]!r}, which is not in names")
            if len(set(self.select)) != len(self.select):
                raise ValueError("select names an attribute twice")
        return self

    @property
    def total(self) -> int:
        """Length of the raw vector in the dataset."""
        return self.num_attributes if self.num_attributes is not None else len(self.names or [])


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "attr"


class Attribute(Modality):
    """0/1 attribute vectors with a Bernoulli likelihood per attribute; an MLP encoder and decoder."""

    Config = AttributeConfig

    @classmethod
    def example(cls):
        """Three attributes and small networks, for the contract tests (modkit.testing)."""
        return {"num_attributes": 3, "hidden": [16]}, [[0, 1, 1], [1, 0, 0], [1, 1, 1], [0, 0, 1]]

    @property
    def entry_index(self) -> int | None:
        """VectorEntry (modkit.core.capabilities): the one entry of the field's vector a split attribute reads."""
        return self.config.index

    @classmethod
    def expand(cls, name: str, config: AttributeConfig) -> dict[str, AttributeConfig]:
        if not config.split:
            return {name: config}
        labels = config.names or [str(k) for k in range(config.total)]
        parts = {}
        for k, label in enumerate(labels):
            if config.select is not None and label not in config.select:
                continue
            sub = f"{name}_{_safe(label)}"
            if sub in parts:
                sub = f"{sub}_{k}"
            parts[sub] = config.model_copy(update={"split": False, "index": k, "select": None})
        return parts

    def __init__(self, name: str, config: AttributeConfig, latent_dim: int):
        super().__init__(name, config, latent_dim)
        #: the entries of the dataset's vector this modality reads (None: all of them, in order)
        self.columns = sorted(config.names.index(s) for s in config.select) if config.select is not None else (
            [config.index] if config.index is not None else None)  # in the vector's order: all of them is the vector
        self.size = config.total if self.columns is None else len(self.columns)
        self.encoder = mlp([self.size, *config.hidden], final_activation=True)
        self.head = GaussianHead(config.hidden[-1], latent_dim)
        self.feature_dim = config.hidden[-1]
        self.decoder = mlp([latent_dim, *reversed(config.hidden), self.size])
        self.likelihood = Bernoulli(event_dims=1)

    @property
    def attribute_names(self) -> list[str]:
        names = self.config.names or [str(k) for k in range(self.config.total)]
        return names if self.columns is None else [names[k] for k in self.columns]

    def select(self, x: Tensor) -> Tensor:
        """This modality's columns (a split one's one, or ``select``'s), whether the batch holds them alone (Records)
        or the full vector (ArrayRecords)."""
        if self.columns is not None and x.shape[-1] == self.config.total != self.size:
            return x[..., self.columns]
        return x

    def features(self, x: Tensor) -> Tensor:
        return self.encoder(self.select(x).float())

    def decoder_net(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def preprocess(self, value) -> Tensor:
        array = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
        if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise DataError(f"attributes must be a sequence of 0/1 values, got {value!r}")
        array = array.reshape(-1).astype(np.float32)
        if array.shape[0] != self.config.total:
            raise DataError(f"attribute vector has {array.shape[0]} entries, the recipe says {self.config.total}")
        bad = ~np.isin(array, (0.0, 1.0))
        if bad.any():
            raise DataError(f"attribute values must be 0 or 1; entry {int(np.argmax(bad))} is {array[bad][0]:g}")
        if self.columns is not None:
            array = array[self.columns]
        return torch.from_numpy(array)

    def placeholder(self) -> Tensor:
        return torch.zeros(self.size)

    def check(self, x: Tensor) -> None:
        x = self.select(x)
        if x.dim() != 2 or x.shape[1] != self.size:
            raise ValueError(f"attribute vectors have shape {tuple(x.shape[1:])}, expected ({self.size},)")
        if ((x != 0) & (x != 1)).any():
            raise ValueError("attribute values must be 0 or 1")

    def predict(self, out: Tensor) -> Tensor:
        return (out > 0).float()

    def accuracy(self, out: Tensor, x: Tensor) -> Tensor:
        """Fraction of attributes predicted right (a logit above 0 means 1)."""
        return ((out > 0).float() == self.select(x).float()).float().mean(-1)

    def class_predictions(self, out: Tensor, x: Tensor) -> tuple[Tensor, Tensor, int]:
        """Each attribute a binary variable: per-bit accuracy would give a constant predictor 0.60 on digits."""
        return (out > 0).long(), self.select(x).round().long(), 2

    def log_likelihood(self, out: Tensor, x: Tensor) -> Tensor:
        return self.likelihood.log_prob(out, self.select(x))

    def render(self, x: Tensor) -> str:
        values = self.select(x.detach().cpu().reshape(-1)).tolist()
        names = self.attribute_names
        if self.size == 1:
            return f"{names[0]}: {'yes' if values[0] >= 0.5 else 'no'}"
        on = [n for n, v in zip(names, values) if v >= 0.5]
        return ", ".join(on) if on else "(none)"


@hookimpl
def modkit_register(registry):
    registry.add_modality("attribute", Attribute)
