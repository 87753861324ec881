"""A sentencepiece tokenizer trained on a dataset's own text and kept in the run directory.

Ids 0-3 are fixed (pad, unk, bos, eos) so networks can rely on them. Training needs no download;
the model file is written atomically as ``<run_dir>/tokenizers/<modality>.model`` and, when it is
already there (a resumed run), loaded instead of retrained, so token ids never change under a checkpoint.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

from modkit import DataError, atomic_write_bytes

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIAL = 4


class Tokenizer:
    """Wraps a ``SentencePieceProcessor``: text ↔ ids (without bos/eos)."""

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self.proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([int(i) for i in ids if int(i) >= SPECIAL or int(i) == UNK])

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, model_type: str = "bpe", lowercase: bool = False) -> "Tokenizer":
        """Fit on ``texts``; ``vocab_size`` is an upper bound (small corpora get fewer pieces)."""
        import sentencepiece as spm

        sentences = [t for t in texts if t]
        if not sentences:
            raise DataError("no text to train the tokenizer on (every value of the field is missing or empty)")
        buffer = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences), model_writer=buffer, vocab_size=vocab_size, model_type=model_type,
                pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, hard_vocab_limit=False, character_coverage=1.0,
                normalization_rule_name="nmt_nfkc_cf" if lowercase else "nmt_nfkc", minloglevel=2, num_threads=1,
                input_sentence_size=2_000_000, shuffle_input_sentence=True,
            )
        except RuntimeError as exc:
            raise DataError(f"sentencepiece could not train on this text: {exc}") from None
        return cls(buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> "Tokenizer":
        try:
            tokenizer = cls(Path(path).read_bytes())
        except OSError as exc:
            raise DataError(f"cannot read the tokenizer {path}: {exc.strerror or exc}") from None
        except RuntimeError as exc:  # sentencepiece's own parse error names no file
            raise DataError(f"{path} is not a sentencepiece model ({exc})") from None
        if tokenizer.vocab_size <= SPECIAL:  # an empty (or emptied) file parses as a model with no pieces
            raise DataError(f"{path} is an empty tokenizer ({tokenizer.vocab_size} pieces); the file was truncated or "
                            f"replaced. Restore it from the run it came from")
        return tokenizer

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, self.proto)


def tokenizer_path(run_dir: Path, modality: str) -> Path:
    return Path(run_dir) / "tokenizers" / f"{modality}.model"


def fit_or_load(run_dir: Path | None, modality: str, texts: Iterable[str], vocab_size: int, model_type: str,
                lowercase: bool) -> Tokenizer:
    """The run's tokenizer for ``modality``: loaded if the run directory has it, else trained and saved there."""
    if run_dir is not None and tokenizer_path(run_dir, modality).is_file():
        return Tokenizer.load(tokenizer_path(run_dir, modality))
    tokenizer = Tokenizer.train(texts, vocab_size, model_type, lowercase)
    if run_dir is not None:
        tokenizer.save(tokenizer_path(run_dir, modality))
    return tokenizer
