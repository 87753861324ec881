"""Translation text: one language per modality (MVAE's en–vi case), each with its own tokenizer; BLEU via sacrebleu.

A parallel corpus gives two string fields; the recipe makes each a ``translation`` modality. Translating
is cross-modal generation: encode the source sentence alone, decode the target language from the
PoE posterior mean with greedy or beam search (:func:`translate`), then score with :func:`bleu`.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from pydantic import Field

from modkit import Batch, MultimodalVAE, hookimpl
from modkit_caption.text import Text, TextConfig


class TranslationConfig(TextConfig):
    language: str = Field("en", description="language code; picks sacrebleu's tokenizer for BLEU (zh: zh, ja: char, else 13a)")
    decoding: Literal["greedy", "beam"] = "beam"


class Translation(Text):
    """One side of a parallel corpus: sentences in one language, decoded by greedy or beam search."""

    Config = TranslationConfig


def bleu(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> float:
    """Corpus BLEU (sacrebleu, one reference per sentence), 0-100.

    With sacrebleu's effective order: n-gram orders no sentence is long enough to have are left out
    of the geometric mean, so a corpus of short texts (a number word, a three-word caption) is not
    scored 0 for want of 4-grams. Where every order occurs this is standard BLEU.
    """
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    return float(BLEU(tokenize=tokenize, effective_order=True).corpus_score(list(hypotheses), [list(references)]).score)


def bleu_tokenizer(language: str) -> str:
    """sacrebleu tokenizer for a language: Chinese its own, Japanese by character, others 13a."""
    return {"zh": "zh", "ja": "char"}.get(language, "13a")


@torch.no_grad()
def translate(model: MultimodalVAE, batch: Batch, source: str, target: str, method: str | None = None) -> list[str]:
    """Sentences of ``target`` generated from ``source`` alone (PoE posterior mean, then greedy or beam search)."""
    model.eval()
    batch = batch.to(model.device)
    z = model.posterior(batch, [source]).mean[0]  # (B, D)
    modality = model.modalities[target]
    out = modality.generate(modality.decode(z), method)
    return [modality.text({k: v[i] for k, v in out.items()}) for i in range(len(batch))]


def translation_bleu(model: MultimodalVAE, batch: Batch, source: str, target: str, method: str | None = None) -> float:
    """BLEU of :func:`translate` against the batch's own ``target`` sentences."""
    hyps = translate(model, batch, source, target, method)
    modality = model.modalities[target]
    data = batch.data[target]
    refs = [modality.text({k: v[i] for k, v in data.items()}) for i in range(len(batch))]
    return bleu(hyps, refs, bleu_tokenizer(getattr(modality.config, "language", "en")))


class BleuState:
    """What ``modkit eval`` accumulates for the ``bleu`` metric: every hypothesis and reference, as text."""

    def __init__(self, modality: Text):
        self.modality = modality
        self.hypotheses: list[str] = []
        self.references: list[str] = []

    def update(self, predicted: dict, target: dict) -> None:
        for data, out in ((predicted, self.hypotheses), (target, self.references)):
            out += [self.modality.text({k: v[i] for k, v in data.items()}) for i in range(len(data["lengths"]))]

    def compute(self) -> float | None:
        if not self.references:
            return None
        return bleu(self.hypotheses, self.references, bleu_tokenizer(getattr(self.modality.config, "language", "en")))


def bleu_metric(modality) -> BleuState | None:
    """Corpus BLEU (sacrebleu, one reference per sentence), 0-100, for any text modality's generations."""
    return BleuState(modality) if isinstance(modality, Text) else None


@hookimpl
def modkit_register(registry):
    registry.add_modality("translation", Translation)
    registry.add_metric("bleu", bleu_metric)  # modkit eval's metric interface: fn(modality) -> state or None
