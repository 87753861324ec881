"""The caption modality: text about another modality, tokenized by a sentencepiece model trained on the dataset."""
from __future__ import annotations

from modkit import hookimpl
from modkit_caption.text import Text, TextConfig


class CaptionConfig(TextConfig):
    pass


class Caption(Text):
    """Captions as token sequences: GRU or transformer encoder/decoder, or a frozen transformers encoder."""

    Config = CaptionConfig


@hookimpl
def modkit_register(registry):
    registry.add_modality("caption", Caption)
