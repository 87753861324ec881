"""CUB in MMVAE's layout: ImageFolder trees and caption files, caption j with image j // 10, MMVAE's vocabulary."""
import pytest
from PIL import Image

from modkit import DataError
from modkit_cub import make_cub, mmvae_indices, mmvae_vocabulary, mmvae_words

from benchmark_helpers import error_line, train_small


def write_layout(root, classes, per=2):
    """cub/{train,test}/<class>/<file>.jpg written in reverse order; captions 'capt <image> <k>' ten per image."""
    for split, names in classes.items():
        files = [(c, f"{c}_{i}.jpg") for c in sorted(names) for i in range(per)]
        for c, name in reversed(files):
            (root / "cub" / split / c).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (10, 20, 30)).save(root / "cub" / split / c / name)
        text = {"train": "text_trainvalclasses.txt", "test": "text_testclasses.txt"}[split]
        lines = [f"a bird {name[:-4]} number {k} ." for _, name in files for k in range(10)]
        (root / "cub" / text).write_text("\n".join(lines) + "\n")


def test_caption_j_belongs_to_image_j_div_10_in_imagefolder_order(load, tmp_path):
    write_layout(tmp_path, {"train": ["002.Wren", "001.Albatross"], "test": ["003.Crow"]})
    source, splits = load("cub", tmp_path)
    train = splits["train"]
    assert len(train) == 40 and len(splits["test"]) == 20
    for j in (0, 9, 10, 25, 39):
        row = train.get(j)
        image = row["image"].rsplit("/", 1)[1][:-4]
        assert row["caption"] == f"a bird {image} number {j % 10} ."  # the caption names its own image
    assert [train.get(j)["image"].rsplit("/", 1)[1] for j in (0, 10, 20, 30)] == \
        ["001.Albatross_0.jpg", "001.Albatross_1.jpg", "002.Wren_0.jpg", "002.Wren_1.jpg"]
    assert source.class_names == ["001.Albatross", "002.Wren", "003.Crow"]
    assert train.get(25)["label"] == 1 and splits["test"].get(0)["label"] == 2


def test_vocabulary_and_indices_follow_mmvaes_rule():
    captions = ["the bird is red .", "the bird is blue .", "the bird is red .", "the bird has a red crown .", "the red bird ."]
    vocabulary = mmvae_vocabulary(captions, min_count=3)
    counts = {}
    for caption in captions:
        for word in caption.split():
            counts[word] = counts.get(word, 0) + 1
    kept = [w for w in dict.fromkeys(" ".join(captions).split()) if counts[w] > 3]  # first-appearance order
    assert list(vocabulary) == ["<exc>", "<pad>", "<eos>", *kept] and kept == ["the", "bird", "red", "."]
    indices = mmvae_indices("the blue bird .", vocabulary, max_length=8)
    assert indices == [3, 0, 4, 6, 2, 1, 1, 1]  # the, <exc>, bird, ., <eos>, <pad> …
    assert mmvae_indices("the " * 40, vocabulary, max_length=32) == [3] * 31 + [2]
    assert mmvae_words("a bird's crown, red.") == ["a", "bird", "'", "s", "crown", ",", "red", "."]


def test_caption_mmvae_field_is_the_caption_in_mmvaes_vocabulary(load, tmp_path):
    make_cub(tmp_path)
    source, splits = load("cub", tmp_path)
    row = splits["test"].get(0)
    words = row["caption_mmvae"].split()
    assert all(w in source.vocabulary for w in words)
    assert len(words) == len(mmvae_words(row["caption"])) and "<exc>" in words  # test species' colours are unseen in train


def test_mismatched_counts_and_missing_files_are_named(load, tmp_path):
    write_layout(tmp_path, {"train": ["001.Albatross"], "test": ["003.Crow"]})
    text = tmp_path / "cub" / "text_testclasses.txt"
    text.write_text("\n".join(text.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(DataError, match=r"text_testclasses.txt has 19 captions for the 2 images of .*test \(10 per image expected"):
        load("cub", tmp_path)
    text.unlink()
    with pytest.raises(DataError, match=r"MMVAE CUB captions .*text_testclasses.txt not found"):
        load("cub", tmp_path)
    with pytest.raises(DataError, match=r"no MMVAE CUB captions text_trainvalclasses.txt in .*; or list your files in a manifest"):
        load("cub", tmp_path / "elsewhere", layout="mmvae")


def test_command_line_mismatch_is_one_line(tmp_path):
    folder = make_cub(tmp_path)
    next((folder / "train").glob("*/*.jpg")).unlink()
    line = error_line(train_small("cub-mmvae.yaml", tmp_path, tmp_path / "run"))
    assert "text_trainvalclasses.txt has 240 captions for the 23 images" in line
