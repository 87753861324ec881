"""The mIoU and BLEU plugins through eval's metric interface: fn(modality) -> state | None."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from modkit.plugins.loader import load_plugins


def test_miou_state_accumulates_one_confusion_matrix_over_batches():
    from modkit_mask import Mask, MaskConfig
    from modkit_mask.metrics import mean_iou

    registry = load_plugins().registry
    miou = registry.get("metric", "miou")
    mask = Mask("mask", MaskConfig(type="mask", num_classes=3, shape=(4, 4)), latent_dim=4)
    assert miou(SimpleNamespace(name="label")) is None
    state = miou(mask)
    g = torch.Generator().manual_seed(0)
    preds = [torch.randint(0, 3, (5, 4, 4), generator=g) for _ in range(2)]
    targets = [torch.randint(0, 3, (5, 4, 4), generator=g) for _ in range(2)]
    targets[1][0, 0, 0] = 255  # ignored pixel
    for p, t in zip(preds, targets):
        state.update(p, t)
    assert state.compute() == pytest.approx(mean_iou(torch.cat(preds), torch.cat(targets), 3))
    perfect = miou(mask)
    perfect.update(targets[0], targets[0])
    assert perfect.compute() == pytest.approx(1.0)


def test_bleu_state_scores_corpus_text():
    import sacrebleu
    from modkit_translation import BleuState

    registry = load_plugins().registry
    assert registry.get("metric", "bleu")(SimpleNamespace(name="image")) is None
    sentences = ["a red circle on the left", "two blue squares", "a small green triangle"]
    other = ["a red circle at the left", "two blue squares", "one big green triangle"]
    vocab = sorted({w for s in sentences + other for w in s.split()})

    def batch(texts):  # the text modality's batched form: padded token ids and lengths
        ids = [[vocab.index(w) for w in s.split()] for s in texts]
        tokens = torch.zeros(len(ids), 8, dtype=torch.long)
        for i, row in enumerate(ids):
            tokens[i, : len(row)] = torch.tensor(row)
        return {"tokens": tokens, "lengths": torch.tensor([len(r) for r in ids])}

    fake = SimpleNamespace(config=SimpleNamespace(language="en"),
                           text=lambda x: " ".join(vocab[i] for i in x["tokens"][: int(x["lengths"])].tolist()))
    state = BleuState(fake)
    state.update(batch(other[:2]), batch(sentences[:2]))
    state.update(batch(other[2:]), batch(sentences[2:]))
    assert state.compute() == pytest.approx(sacrebleu.corpus_bleu(other, [sentences]).score)
    same = BleuState(fake)
    same.update(batch(sentences), batch(sentences))
    assert same.compute() == pytest.approx(100.0)
