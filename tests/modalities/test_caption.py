"""Caption (text) modality: tokenizer in the run directory, shapes, masked per-token likelihood, word dropout,
greedy/beam search against brute force, the frozen transformers encoder, bad values, training with PoE."""
from __future__ import annotations

import itertools

import pytest
import torch
from helpers import ListRecords, assert_learns, make_modality, poe_model, train_steps

from modkit import DataError
from modkit.data.dataset import ModalityView
from modkit_caption import Caption
from modkit_caption.nets import GRUDecoder, TransformerDecoder, beam_search, greedy, sequence_log_prob, shift_right, word_dropout
from modkit_caption.tokenizer import BOS, EOS, PAD, UNK, tokenizer_path
from modkit_label import Label

R, B, D = 3, 4, 8
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEXTS = [f"a handwritten {w}" for w in WORDS] + [f"the digit {w} in ink" for w in WORDS]


def caption(tmp_path=None, texts=TEXTS, **options):
    records = ListRecords([{"caption": t} for t in texts])
    defaults = {"hidden": 32, "embedding_dim": 16, "max_length": 12, "heads": 2}
    return make_modality(Caption, "caption", latent_dim=D, records=records, run_dir=tmp_path, **(defaults | options))


def batch_of(modality, texts):
    return modality.collate([modality.preprocess(t) for t in texts])


def test_tokenizer_is_trained_saved_and_reused(tmp_path):
    first = caption(tmp_path)
    path = tokenizer_path(tmp_path, "caption")
    assert path.is_file()
    assert first.tokenizer.decode(first.tokenizer.encode("a handwritten seven")) == "a handwritten seven"
    before = path.read_bytes()
    # a resumed run sees other text (or none that is new): the saved model is loaded, not retrained
    second = caption(tmp_path, texts=["completely different words here"] * 5)
    assert path.read_bytes() == before and second.tokenizer.proto == first.tokenizer.proto
    x = batch_of(first, ["a handwritten seven"])
    assert torch.equal(x["tokens"], batch_of(second, ["a handwritten seven"])["tokens"])
    # a fresh run directory trains anew on its own text
    other = caption(tmp_path / "other", texts=["completely different words here"] * 5)
    assert other.tokenizer.proto != first.tokenizer.proto


@pytest.mark.parametrize("architecture", ["gru", "transformer"])
def test_shapes_and_likelihood_by_hand(architecture):
    text = caption(architecture=architecture)
    text.eval()
    x = batch_of(text, TEXTS[:B])
    assert x["tokens"].shape == (B, 12) and x["lengths"].tolist() == [len(text.tokenizer.encode(t)) + 1 for t in TEXTS[:B]]
    mu, logvar = text.encode(x)
    assert mu.shape == logvar.shape == (B, D)
    out = text.decode(torch.randn(R, B, D))
    assert out.shape == (R, B, text.decoder.cond_dim)
    ll = text.log_likelihood(out, x)
    assert ll.shape == (R, B)
    # by hand: teacher-forced logits, one Categorical per real token (eos included), summed
    for r in range(R):
        for b in range(B):
            n = int(x["lengths"][b])
            target = x["tokens"][b, :n]
            logits = text.decoder(out[r, b][None], shift_right(x["tokens"][b][None]))[0, :n]
            expected = torch.distributions.Categorical(logits=logits).log_prob(target).sum()
            assert torch.allclose(ll[r, b], expected, atol=1e-4)


@pytest.mark.parametrize("architecture", ["gru", "transformer"])
def test_padding_is_masked(architecture):
    text = caption(architecture=architecture)
    text.eval()
    x = batch_of(text, TEXTS[:B])
    out = text.decode(torch.randn(R, B, D))
    noisy = {k: v.clone() for k, v in x.items()}
    pad = torch.arange(12) >= x["lengths"][:, None]
    noisy["tokens"][pad] = torch.randint(4, text.tokenizer.vocab_size, (int(pad.sum()),))
    assert not torch.equal(noisy["tokens"], x["tokens"])
    assert torch.allclose(text.log_likelihood(out, x), text.log_likelihood(out, noisy), atol=1e-5)
    assert torch.allclose(text.features(x), text.features(noisy), atol=1e-5)


def test_word_dropout_rate_and_what_it_spares():
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(4, 50, (200, 40), generator=g)
    inputs[:, 0] = BOS
    inputs[:, 30:] = PAD
    dropped = word_dropout(inputs, 0.3, g)
    assert (dropped[:, 0] == BOS).all() and (dropped[:, 30:] == PAD).all()
    changed = dropped[:, 1:30] != inputs[:, 1:30]
    assert (dropped[:, 1:30][changed] == UNK).all()
    assert abs(changed.float().mean().item() - 0.3) < 0.02  # 5,800 Bernoulli(0.3) draws: σ ≈ 0.006
    assert torch.equal(word_dropout(inputs, 1.0)[:, 1:30], torch.full((200, 29), UNK))
    assert torch.equal(word_dropout(inputs, 0.0), inputs)


def test_word_dropout_applies_in_training_only():
    text = caption(word_dropout=1.0)
    x = batch_of(text, TEXTS[:B])
    out = text.decode(torch.randn(R, B, D))
    text.eval()
    a, b = text.log_likelihood(out, x), text.log_likelihood(out, x)
    assert torch.equal(a, b)
    text.train()
    assert not torch.allclose(text.log_likelihood(out, x), a)


def _all_sequences(vocab: int, length: int):
    """Every sequence the search may produce: real tokens or unk, ending in eos or at ``length``."""
    words = [UNK] + list(range(4, vocab))
    for n in range(1, length + 1):
        for body in itertools.product(words, repeat=n - 1):
            yield list(body) + [EOS]
        if n == length:
            yield from (list(seq) for seq in itertools.product(words, repeat=n))


@pytest.mark.parametrize("decoder_cls", [GRUDecoder, TransformerDecoder])
def test_beam_search_finds_the_brute_force_optimum(decoder_cls):
    torch.manual_seed(0)
    vocab, length = 7, 3
    decoder = (GRUDecoder(vocab, 8, 16, 1, 0.0) if decoder_cls is GRUDecoder else TransformerDecoder(vocab, length, 16, 1, 2, 0.0)).eval()
    cond = torch.randn(5, decoder.cond_dim) * 3
    seqs = list(_all_sequences(vocab, length))
    tokens = torch.tensor([s + [PAD] * (length - len(s)) for s in seqs])
    lengths = torch.tensor([len(s) for s in seqs])
    # exhaustive beam (wider than the number of hypotheses) with α = 0 returns the most likely sequence
    found, found_len = beam_search(decoder, cond, length, beam_size=len(seqs), alpha=0.0)
    for m in range(cond.shape[0]):
        scores = sequence_log_prob(decoder, cond[m].expand(len(seqs), -1), tokens, lengths)
        best = int(scores.argmax())
        assert found_len[m] == lengths[best] and torch.equal(found[m], tokens[best])
    # a beam of one is greedy search
    g_tokens, g_len = greedy(decoder, cond, length)
    b_tokens, b_len = beam_search(decoder, cond, length, beam_size=1, alpha=0.0)
    assert torch.equal(g_tokens, b_tokens) and torch.equal(g_len, b_len)


def test_predict_render_and_accuracy():
    text = caption(decoding="beam", beam_size=3)
    x = batch_of(text, TEXTS[:B])
    assert text.render({k: v[0] for k, v in x.items()}) == TEXTS[0]
    out = text.decode(torch.randn(R, B, D))
    pred = text.predict(out)
    assert pred["tokens"].shape == (R, B, 12) and pred["lengths"].shape == (R, B)
    assert isinstance(text.render({k: v[0, 0] for k, v in pred.items()}), str)
    acc = text.accuracy(out, x)
    assert acc.shape == (R, B) and set(acc.unique().tolist()) <= {0.0, 1.0}
    # texts equal to the greedy decoding of row 0 are exact matches there
    assert text.accuracy(out, text.generate(out[0], "greedy"))[0].eq(1).all()


def test_bad_values():
    text = caption()
    with pytest.raises(DataError, match="empty"):
        text.preprocess("   ")
    with pytest.raises(DataError, match="string"):
        text.preprocess(3)
    with pytest.raises(DataError, match="no text"):
        caption(texts=["", ""])
    long = text.preprocess(" ".join(["seven"] * 50))
    assert int(long["lengths"]) == 12 and long["tokens"][11] == EOS


def _tiny_bert(folder):
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "handwritten", "digit", "in", "ink", *WORDS]
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pretrained_encoder_from_a_tiny_saved_config(tmp_path, pooling):
    from transformers import BertModel, BertTokenizer

    folder = _tiny_bert(tmp_path / "bert")
    text = caption(pretrained={"name": str(folder), "pooling": pooling, "max_length": 10})
    assert text.feature_dim == 16
    x = batch_of(text, TEXTS[:2])
    assert x["hf_ids"].shape == (2, 10)
    # independent: the saved model and tokenizer, loaded and pooled by hand
    bert, tok = BertModel.from_pretrained(folder).eval(), BertTokenizer.from_pretrained(folder)
    enc = tok(TEXTS[:2], padding="max_length", max_length=10, truncation=True, return_tensors="pt")
    hidden = bert(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    expected = hidden[:, 0] if pooling == "cls" else (hidden * m).sum(1) / m.sum(1)
    text.train()
    assert torch.allclose(text.features(x), expected, atol=1e-5)  # eval mode even while training: no dropout
    assert not text.pretrained.model.training
    mu, _ = text.encode(x)
    (mu.sum() + text.log_likelihood(text.decode(mu), x).sum()).backward()
    held = list(text.pretrained.model.parameters())
    assert held and all(p.grad is None and not p.requires_grad for p in held)
    assert text.head.linear.weight.grad is not None
    # frozen weights come from the folder at every build: not in checkpoints or the optimiser, but moved with the model
    assert not any(k.startswith("pretrained.") for k in text.state_dict())
    assert not any(p is q for p in text.parameters() for q in held)
    text.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in held)


def test_pretrained_encoder_never_downloads():
    from modkit import RecipeError

    with pytest.raises(RecipeError, match="pretrained.name"):
        caption(pretrained={"name": "no-such-org/no-such-model-anywhere"})


@pytest.mark.parametrize("architecture", ["gru", "transformer"])
def test_caption_and_label_train_with_poe(architecture):
    rows = [{"caption": f"a handwritten {WORDS[i % 10]}", "label": i % 10} for i in range(40)]
    records = ListRecords(rows)
    text = make_modality(Caption, "caption", latent_dim=D, records=records, hidden=32, embedding_dim=16,
                         max_length=8, heads=2, architecture=architecture, word_dropout=0.1)
    label = make_modality(Label, "label", num_classes=10, hidden=[32], embedding_dim=8)
    model = poe_model({"caption": text, "label": label})
    view = ModalityView(records, dict(model.modalities), {"caption": "caption", "label": "label"})
    assert_learns(train_steps(model, view, steps=40, lr=3e-3), factor=0.8)


@pytest.mark.parametrize("decoder_cls", [GRUDecoder, TransformerDecoder])
def test_incremental_steps_equal_teacher_forcing(decoder_cls):
    torch.manual_seed(1)
    decoder = (GRUDecoder(9, 8, 16, 2, 0.0) if decoder_cls is GRUDecoder else TransformerDecoder(9, 6, 16, 2, 2, 0.0)).eval()
    cond = torch.randn(3, decoder.cond_dim)
    inputs = shift_right(torch.randint(4, 9, (3, 6)))
    expected = decoder(cond, inputs)
    state = decoder.start(cond)
    for t in range(6):
        logits, state = decoder.step(state, inputs[:, t])
        assert torch.allclose(logits, expected[:, t], atol=1e-5)


def test_a_corrupt_tokenizer_file_is_a_data_error(tmp_path):
    from modkit_caption.tokenizer import Tokenizer

    path = tmp_path / "caption.model"
    path.write_bytes(b"not a sentencepiece model")
    with pytest.raises(DataError, match="caption.model is not a sentencepiece model"):
        Tokenizer.load(path)
