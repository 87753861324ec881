"""The modality contract: what a plugin supplies so the engine can use a kind of data.

A modality turns one column of a dataset into a Gaussian expert (``encode``), turns latents
back into likelihood parameters (``decode``), scores data under them (``log_likelihood``),
batches samples with missing ones as first-class (``preprocess`` + ``collate``), and shows a
sample to a person (``render``). The engine never names a modality; it only calls these.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from modkit.core.likelihoods import Likelihood
from modkit.core.nn import over_leading

from modkit.core.batch import Data
from modkit.core.records import Column


class ModalityConfig(BaseModel):
    """Options every modality has; plugins subclass this and add their own."""

    model_config = ConfigDict(extra="forbid")
    type: str
    weight: float = Field(1.0, ge=0, description="λ, the weight of this modality's log-likelihood")
    field: str | None = Field(None, description="dataset column (default: the modality's name)")


class Modality(nn.Module):
    """Base class for modality plugins. Subclasses set ``Config`` and build ``likelihood``."""

    Config: ClassVar[type[ModalityConfig]] = ModalityConfig
    likelihood: Likelihood
    #: size of :meth:`features` (set in ``__init__`` or ``prepare``)
    feature_dim: int
    #: the files or folders (names in the run directory) that ``prepare`` writes there and a load reads back;
    #: an export copies exactly these, the recipe and the weights (``tokenizers`` always travels)
    run_files: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, config: ModalityConfig, latent_dim: int):
        super().__init__()
        self.name = name
        self.config = config
        self.latent_dim = latent_dim

    @property
    def weight(self) -> float:
        return self.config.weight

    @classmethod
    def example(cls) -> tuple[dict[str, Any], list[Any]]:
        """Small recipe options (besides ``type``) and a few raw values :meth:`preprocess` accepts, from which the
        contract tests (:mod:`modkit.testing`) build and feed this modality.

        Default: the Config's defaults and no values (the tests then feed placeholders). Override when an option
        is required (``num_classes``), to keep the networks small, or when the data matter (a tokenizer).
        """
        return {}, []

    @classmethod
    def expand(cls, name: str, config: ModalityConfig) -> dict[str, ModalityConfig]:
        """One recipe entry → the named modalities it stands for; default: just itself.

        Override when one recipe entry means several modalities of this class, e.g. each attribute
        its own modality (MVAE's CelebA-19). ``config.field`` arrives resolved (the dataset column);
        each returned config says which column it reads. Names must be new and recipe-safe.
        """
        return {name: config}

    # -- data --------------------------------------------------------------------------------
    def prepare(self, column: "Column", run_dir: Path | None) -> None:
        """Fit data-dependent state (a tokenizer, a vocabulary) on the training column.

        Always called after ``__init__`` and before training or loading a checkpoint, so a plugin
        whose network size depends on the data builds it here. ``column`` iterates the training
        split's raw values lazily (``None`` for missing); state to keep goes in ``run_dir`` (reuse it
        when it is already there, as on resume). Default: nothing to fit.
        """

    def preprocess(self, value: Any) -> Tensor | dict[str, Tensor]:
        """One raw value (file path, string, number, array) → a tensor for one sample."""
        return torch.as_tensor(np.asarray(value))

    def load_given(self, text: str) -> Any:
        """A value typed for this modality on the command line (``modkit generate --given NAME=TEXT``) → the raw
        value :meth:`preprocess` takes, as a dataset row would hold it.

        Default: the path of an existing file when ``text`` names one, else ``text`` itself (a class name, a
        caption). Override to read your own files or parse literals (numbers, a list); raise ``DataError``
        naming what was expected.
        """
        path = existing_file(text)
        return str(path) if path is not None else text

    def placeholder(self) -> Tensor | dict[str, Tensor]:
        """Stand-in for a missing sample (never scored: presence masks it out)."""
        raise NotImplementedError(f"{type(self).__name__} must define placeholder()")

    def collate(self, samples: Sequence[Tensor | dict[str, Tensor] | None]) -> Data:
        """Stack preprocessed samples; ``None`` (missing) becomes the placeholder."""
        filled = [self.placeholder() if s is None else s for s in samples]
        if isinstance(filled[0], dict):
            return {k: torch.stack([f[k] for f in filled]) for k in filled[0]}
        return torch.stack(filled)

    def check(self, x: Data) -> None:
        """Raise ``ValueError`` with a readable message if batched data do not fit this modality's config."""

    # -- model -------------------------------------------------------------------------------
    def features(self, x: Data) -> Tensor:
        """Batched data → deterministic (B, feature_dim) features: the encoder below its Gaussian head.

        Fusions that mix features instead of experts (latent mixing, LCMVAE) and classifiers built on
        an encoder (M2) use this; a frozen pretrained encoder is exposed here.
        """
        raise NotImplementedError

    def encode(self, x: Data) -> tuple[Tensor, Tensor]:
        """Batched data → (mu, logvar), each (B, latent_dim). Default: the Gaussian head on :meth:`features`."""
        return self.head(self.features(x))

    def encode_with_features(self, x: Data) -> tuple[Tensor, Tensor, Tensor]:
        """(features (B, feature_dim), mu, logvar) from ONE pass of the encoder, for a fusion that needs both.

        Default: :meth:`features`, then ``self.head`` on them — unless the subclass overrides :meth:`encode`,
        whose expert may then not come from the features, so both run.
        """
        features = self.features(x)
        if type(self).encode is Modality.encode:
            mu, logvar = self.head(features)
        else:
            mu, logvar = self.encode(x)
        return features, mu, logvar

    def decoder_net(self, z: Tensor) -> Tensor:
        """(M, latent_dim) → (M, *output shape): the decoder proper on a flat batch of latents."""
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        """Latents of any leading shape (*lead, D) → likelihood parameters (*lead, *output shape).

        With a latent view (:meth:`set_latent_view`), ``z`` is the model's whole latent and the decoder reads
        only this modality's dimensions of it."""
        view = self._buffers.get("latent_view")
        if view is not None:
            z = z.index_select(-1, view)
        head = self._modules.get("task_head")
        return over_leading(head if head is not None else self.decoder_net, z)

    def set_latent_view(self, index: Tensor) -> None:
        """Decode from the dimensions ``index`` of a wider latent: the model's latent is the shared part and every
        modality's private part side by side, and this modality's decoder reads [shared, its own private part]
        (``latent_dim`` of them, the width it was built at). Set by a fusion with private latents; not saved
        with the weights (the fusion sets it again when the model is built)."""
        index = torch.as_tensor(index, dtype=torch.long)
        if index.dim() != 1 or len(index) != self.latent_dim:
            raise ValueError(f"a latent view of '{self.name}' must pick its {self.latent_dim} latent dimensions, got {tuple(index.shape)}")
        self.register_buffer("latent_view", index, persistent=False)

    def set_task_head(self, head: nn.Module) -> None:
        """Swap the decoder for a task head ((M, latent_dim) → (M, *output shape)), e.g. LCMVAE's downstream
        classifier or segmenter; :meth:`decode` then uses it. Registered as the submodule ``task_head``."""
        self.task_head = head

    # -- pseudo-samples (VampPrior, MEME) ------------------------------------------------------
    def pseudo_sample_init(self, n: int) -> Tensor:
        """Initial unconstrained values of ``n`` learnable pseudo-samples, mapped to data by :meth:`pseudo_sample_data`.

        Default, for modalities whose batched data is one float tensor: small noise around the placeholder.
        Modalities with integer or dict data override both methods (or raise ``NotImplementedError``).
        """
        template = self.placeholder()
        if not isinstance(template, Tensor) or not template.is_floating_point():
            raise NotImplementedError(f"{type(self).__name__} does not define pseudo-samples")
        return template.unsqueeze(0).repeat(n, *([1] * template.dim())) + 0.01 * torch.randn(n, *template.shape)

    def pseudo_sample_data(self, raw: Tensor) -> Data:
        """Learnable pseudo-sample parameters (n, ...) → batched data :meth:`encode` accepts (default: as they are)."""
        return raw

    def log_likelihood(self, out: Tensor, x: Data) -> Tensor:
        """log p(x | out) per sample; ``out`` is (*lead, B, ...), ``x`` is (B, ...); returns (*lead, B)."""
        return self.likelihood.log_prob(out, x)

    def predict(self, out: Tensor) -> Data:
        """A point estimate of the data from decoder output (mean, or most likely class)."""
        return self.likelihood.mean(out)

    def accuracy(self, out: Tensor, x: Data) -> Tensor | None:
        """Per-sample correctness in [0, 1] (``accuracy/<src>-><this>`` in summary.json); None if it has no meaning.

        Modalities with classes implement :meth:`class_predictions` instead, which summary.json
        scores by balanced accuracy (chance 1/K whatever the class frequencies).
        """
        return None

    def class_predictions(self, out: Tensor, x: Data) -> tuple[Tensor, Tensor, int] | None:
        """For V class variables with K classes each: the predicted (…, B, V) and true (B, V) int64 class ids, and K.

        summary.json reports ``balanced_accuracy/<src>-><this>``: the recall of each class, averaged
        over the classes (so a constant prediction scores 1/K), then over the V variables (one
        label: V = 1; 18 binary attributes: V = 18, K = 2), beside ``chance/<this>`` = 1/K.
        None (the default) for modalities without classes.
        """
        return None

    def judge_features(self, x: Data) -> Tensor | None:
        """Fixed, model-independent (B, F) features on which evaluation trains its coherence judges.

        Default: the data flattened to floats (pixels of an image, entries of a mask); None for
        dict-shaped data (text), which a plugin can override (e.g. a bag of tokens).
        """
        if isinstance(x, dict):
            return None
        return x.flatten(1).float() if x.dim() > 1 else x.float().unsqueeze(1)

    # -- people ------------------------------------------------------------------------------
    def render(self, x: Data) -> np.ndarray | str:
        """One sample (no batch dim) → an RGB float image (H, W, 3) in [0, 1], or a string."""
        raise NotImplementedError


def existing_file(text: str) -> Path | None:
    """``text`` as the path of an existing file, or None — also for strings no file system accepts as a name
    (too long, a NUL byte), which ``Path.exists`` would raise on."""
    try:
        path = Path(text).expanduser()
        return path if path.is_file() else None
    except (OSError, ValueError):
        return None
