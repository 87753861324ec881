"""The text modality shared by captions and translations: token sequences under a per-token categorical.

Batched data is ``{"tokens": (B, L) int64, "lengths": (B,) int64}`` (plus ``hf_ids``/``hf_mask`` with a
pretrained encoder). Tokens are the sentencepiece pieces of the text followed by eos, truncated to
``max_length`` and padded with id 0. The decoder output ``decode(z)`` is a per-sample conditioning
vector; :meth:`Text.log_likelihood` runs the autoregressive decoder on it with teacher forcing, so
log p(x | z) = Σ_{t < length} log Cat(x_t | x_<t, z) — padded positions never count.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from modkit import DataError, GaussianHead, Modality, ModalityConfig
from modkit.distributions import Categorical
from modkit_caption.nets import (GRUDecoder, GRUEncoder, TransformerDecoder, TransformerEncoder, beam_search, greedy,
                                 length_mask, shift_right, word_dropout)
from modkit_caption.pretrained import PretrainedConfig, PretrainedEncoder
from modkit_caption.tokenizer import EOS, PAD, Tokenizer, fit_or_load


class TextConfig(ModalityConfig):
    vocab_size: int = Field(1000, ge=8, description="upper bound on the sentencepiece vocabulary (small corpora get fewer)")
    tokenizer: Literal["bpe", "unigram", "word", "char"] = Field("bpe", description="sentencepiece model type")
    lowercase: bool = False
    max_length: int = Field(32, ge=2, description="tokens kept per text, the end-of-sentence token included")
    architecture: Literal["gru", "transformer"] = "gru"
    embedding_dim: int = Field(128, ge=1, description="GRU token embedding size (the transformer embeds at `hidden`)")
    hidden: int = Field(256, ge=8)
    layers: int = Field(1, ge=1)
    heads: int = Field(4, ge=1, description="transformer attention heads (must divide hidden)")
    dropout: float = Field(0.0, ge=0, lt=1)
    word_dropout: float = Field(0.0, ge=0, le=1, description="training-time rate of decoder inputs replaced by <unk>")
    decoding: Literal["greedy", "beam"] = "greedy"
    beam_size: int = Field(4, ge=1)
    length_penalty: float = Field(0.6, ge=0, description="GNMT α for ranking beam hypotheses")
    pretrained: PretrainedConfig | None = Field(None, description="a frozen transformers encoder instead of the trained one")

    @model_validator(mode="after")
    def _heads(self) -> "TextConfig":
        if self.architecture == "transformer" and self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        return self


class Text(Modality):
    """Token sequences with a sentencepiece tokenizer trained on the dataset's text (built in ``prepare``)."""

    Config = TextConfig
    tokenizer: Tokenizer
    run_files = ("tokenizers",)  # the fitted tokenizer travels with an export

    @classmethod
    def example(cls):
        """A character tokenizer over a few short texts and small networks, for the contract tests (modkit.testing)."""
        texts = ["a red square", "a blue circle", "two green dots", "one small star"]
        return {"vocab_size": 24, "tokenizer": "char", "max_length": 12, "embedding_dim": 8, "hidden": 16}, texts

    def __init__(self, name: str, config: TextConfig, latent_dim: int):
        super().__init__(name, config, latent_dim)
        self.pretrained = PretrainedEncoder(config.pretrained, f"modalities.{name}.pretrained") if config.pretrained else None
        self.likelihood = Categorical(event_dims=1)

    # -- data-dependent construction -----------------------------------------------------------
    def prepare(self, column, run_dir: Path | None) -> None:
        c = self.config
        texts = (v for v in column if isinstance(v, str) and v.strip())
        self.tokenizer = fit_or_load(run_dir, self.name, texts, c.vocab_size, c.tokenizer, c.lowercase)
        self.build(self.tokenizer.vocab_size)

    def build(self, vocab: int) -> None:
        """Networks sized by the tokenizer's vocabulary."""
        c = self.config
        if self.pretrained is not None:
            self.encoder = None
            self.feature_dim = self.pretrained.out_features
        elif c.architecture == "gru":
            self.encoder = GRUEncoder(vocab, c.embedding_dim, c.hidden, c.layers, c.dropout)
            self.feature_dim = c.hidden
        else:
            self.encoder = TransformerEncoder(vocab, c.max_length, c.hidden, c.layers, c.heads, c.dropout)
            self.feature_dim = c.hidden
        if c.architecture == "gru":
            self.decoder = GRUDecoder(vocab, c.embedding_dim, c.hidden, c.layers, c.dropout)
        else:
            self.decoder = TransformerDecoder(vocab, c.max_length, c.hidden, c.layers, c.heads, c.dropout)
        self.head = GaussianHead(self.feature_dim, self.latent_dim)
        self.to_cond = torch.nn.Linear(self.latent_dim, self.decoder.cond_dim)

    # -- model -----------------------------------------------------------------------------------
    def features(self, x: dict[str, Tensor]) -> Tensor:
        if self.pretrained is not None:
            return self.pretrained(x["hf_ids"], x["hf_mask"])
        return self.encoder(x["tokens"], x["lengths"])

    def decoder_net(self, z: Tensor) -> Tensor:
        return self.to_cond(z)

    def log_likelihood(self, out: Tensor, x: dict[str, Tensor]) -> Tensor:
        """Teacher-forced Σ_t log p(x_t | x_<t, z) over real tokens; ``out`` (*lead, B, C), tokens (B, L)."""
        tokens, lengths = x["tokens"], x["lengths"]
        b, length = tokens.shape
        lead = out.shape[:-1]
        cond = out.reshape(-1, b, out.shape[-1])
        r = cond.shape[0]
        targets = tokens.unsqueeze(0).expand(r, b, length).reshape(r * b, length)
        inputs = shift_right(targets)
        if self.training:
            inputs = word_dropout(inputs, self.config.word_dropout)
        logits = self.decoder(cond.reshape(r * b, -1), inputs)  # (R·B, L, V)
        per_token = self.likelihood.elementwise(logits, targets).view(r, b, length)
        mask = length_mask(lengths, length).unsqueeze(0)
        return torch.where(mask, per_token, torch.zeros_like(per_token)).sum(-1).reshape(lead)

    def generate(self, out: Tensor, method: str | None = None) -> dict[str, Tensor]:
        """Decoder outputs (*lead, C) → {"tokens": (*lead, L), "lengths": (*lead,)} by greedy or beam search."""
        method = method or self.config.decoding
        flat = out.reshape(-1, out.shape[-1])
        if method == "beam":
            tokens, lengths = beam_search(self.decoder, flat, self.config.max_length, self.config.beam_size, self.config.length_penalty)
        else:
            tokens, lengths = greedy(self.decoder, flat, self.config.max_length)
        lead = out.shape[:-1]
        return {"tokens": tokens.reshape(*lead, -1), "lengths": lengths.reshape(lead)}

    def predict(self, out: Tensor) -> dict[str, Tensor]:
        return self.generate(out)

    def accuracy(self, out: Tensor, x: dict[str, Tensor]) -> Tensor:
        """1 where the greedy decoding reproduces the text exactly (all real tokens and the length), else 0."""
        pred = self.generate(out, "greedy")
        tokens, lengths = x["tokens"], x["lengths"]
        mask = length_mask(lengths, tokens.shape[-1])
        same = (pred["tokens"] == tokens) | ~mask
        return (same.all(-1) & (pred["lengths"] == lengths)).float()

    # -- data ------------------------------------------------------------------------------------
    def ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)[: self.config.max_length - 1] + [EOS]

    def preprocess(self, value) -> dict[str, Tensor]:
        if not isinstance(value, str):
            raise DataError(f"text must be a string, got {type(value).__name__}")
        if not value.strip():
            raise DataError("empty text")
        ids = self.ids(value)
        tokens = torch.full((self.config.max_length,), PAD, dtype=torch.long)
        tokens[: len(ids)] = torch.tensor(ids)
        sample = {"tokens": tokens, "lengths": torch.tensor(len(ids))}
        if self.pretrained is not None:
            sample.update(self.pretrained.tokenize(value))
        return sample

    def placeholder(self) -> dict[str, Tensor]:
        tokens = torch.full((self.config.max_length,), PAD, dtype=torch.long)
        tokens[0] = EOS
        sample = {"tokens": tokens, "lengths": torch.tensor(1)}
        if self.pretrained is not None:
            sample.update(self.pretrained.placeholder())
        return sample

    def check(self, x) -> None:
        if not isinstance(x, dict) or "tokens" not in x or "lengths" not in x:
            raise ValueError("text data must be a dict with 'tokens' and 'lengths' (give strings; the modality tokenizes them)")
        tokens, lengths = x["tokens"], x["lengths"]
        if tokens.dim() != 2 or tokens.shape[1] != self.config.max_length:
            raise ValueError(f"tokens have shape {tuple(tokens.shape)}, expected (B, {self.config.max_length})")
        if lengths.min() < 1 or lengths.max() > self.config.max_length:
            raise ValueError(f"lengths must lie in 1..{self.config.max_length}")
        if tokens.min() < 0 or tokens.max() >= self.tokenizer.vocab_size:
            raise ValueError(f"token ids must lie in 0..{self.tokenizer.vocab_size - 1}")

    def text(self, x: dict[str, Tensor]) -> str:
        """One sample's tokens (no batch dim) → its string."""
        n = int(x["lengths"])
        return self.tokenizer.decode(x["tokens"][:n].tolist())

    def render(self, x: dict[str, Tensor]) -> str:
        return self.text(x)
