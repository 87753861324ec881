"""Translation: a tokenizer per language, BLEU against a hand computation, and en→vi translations after training."""
from __future__ import annotations

import pytest
import torch
from helpers import ListRecords, make_modality, poe_model, train_steps

from modkit.data.dataset import ModalityView
from modkit_translation import Translation, bleu, translate, translation_bleu

PAIRS = [
    ("the red cat sleeps", "con mèo đỏ ngủ"),
    ("the blue dog runs", "con chó xanh chạy"),
    ("the red dog sleeps", "con chó đỏ ngủ"),
    ("the blue cat runs", "con mèo xanh chạy"),
    ("a small bird sings", "một con chim nhỏ hát"),
    ("a big fish swims", "một con cá lớn bơi"),
]


def test_bleu_matches_a_hand_computation():
    # hypothesis and reference share 4/5 unigrams, 3/4 bigrams, 2/3 trigrams, 1/2 4-grams; equal lengths: BP = 1
    expected = 100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert bleu(["a b c d e"], ["a b c d f"]) == pytest.approx(expected, abs=1e-6)
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    # brevity penalty: a 4-word hypothesis for a 6-word reference, all its n-grams right → 100·e^(1 − 6/4)
    assert bleu(["the cat sat on"], ["the cat sat on the mat"]) == pytest.approx(100 * torch.e ** (1 - 6 / 4), abs=1e-4)


def test_bleu_of_short_texts_uses_the_orders_they_have():
    """One-word and three-word texts have no 4-grams: plain corpus BLEU scores even a perfect output 0."""
    assert bleu(["siete", "dos"], ["siete", "dos"]) == pytest.approx(100.0)
    # unigrams 4/5 right, bigrams 2/2, trigrams 1/1, no 4-grams; equal lengths → (4/5 · 1 · 1)^(1/3)
    expected = 100 * (4 / 5) ** (1 / 3)
    assert bleu(["siete", "dos", "a handwritten seven"], ["siete", "tres", "a handwritten seven"]) == pytest.approx(expected, abs=1e-6)


def _model(tmp_path, decoding="beam"):
    records = ListRecords([{"en": en, "vi": vi} for en, vi in PAIRS])
    options = {"hidden": 64, "embedding_dim": 32, "max_length": 8, "decoding": decoding, "tokenizer": "word"}
    en = make_modality(Translation, "en", records=records, run_dir=tmp_path, language="en", **options)
    vi = make_modality(Translation, "vi", records=records, run_dir=tmp_path, language="vi", **options)
    model = poe_model({"en": en, "vi": vi}, latent_dim=8)
    return model, ModalityView(records, dict(model.modalities), {"en": "en", "vi": "vi"})


def test_one_tokenizer_per_language(tmp_path):
    model, _ = _model(tmp_path)
    assert (tmp_path / "tokenizers" / "en.model").is_file() and (tmp_path / "tokenizers" / "vi.model").is_file()
    vi = model.modalities["vi"].tokenizer
    assert vi.decode(vi.encode("con mèo đỏ ngủ")) == "con mèo đỏ ngủ"
    assert model.modalities["en"].tokenizer.proto != vi.proto


def test_translates_en_to_vi_after_training(tmp_path):
    torch.manual_seed(0)
    model, view = _model(tmp_path)
    train_steps(model, view, steps=100, batch_size=6, lr=1e-2, beta=0.05)  # low β: no posterior collapse
    batch = view.__getitems__(list(range(len(PAIRS))))
    beam = translate(model, batch, "en", "vi")
    greedy = translate(model, batch, "en", "vi", method="greedy")
    assert len(beam) == len(greedy) == len(PAIRS) and all(isinstance(t, str) for t in beam)
    score = translation_bleu(model, batch, "en", "vi")
    assert score == pytest.approx(bleu(beam, [vi for _, vi in PAIRS]))
    assert score > 50, (score, beam)  # the six training pairs are memorised
