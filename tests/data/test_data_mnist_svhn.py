"""MNIST-SVHN from the real formats: idx files, SVHN's .mat (scipy.io.savemat) and MMVAE's pairing index tensors."""
import argparse

import numpy as np
import pytest
import torch
from scipy.io import savemat

from modkit import DataError
from modkit_mnist import write_idx
from modkit_mnist_svhn import make_mnist_svhn, match_pairs, read_svhn

from benchmark_helpers import error_line, train_small


def write_set(root, mnist_labels, svhn_labels, test=None):
    """MNIST idx files whose pixel [0, 0] is the row number (mod 256) and an SVHN .mat whose pixel [0, 0, 0] is too."""
    for split, prefix, (m, s) in (("train", "train", (mnist_labels, svhn_labels)), ("test", "t10k", test or (mnist_labels, svhn_labels))):
        m, s = np.asarray(m), np.asarray(s)
        images = np.zeros((len(m), 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(len(m)) % 256
        write_idx(root / "mnist" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / "mnist" / f"{prefix}-labels-idx1-ubyte", m)
        x = np.zeros((32, 32, 3, len(s)), dtype=np.uint8)
        x[0, 0, 0] = np.arange(len(s)) % 256
        x[5, 9, 2] = 200  # row 5, column 9, blue: checks the axis order
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": np.where(s == 0, 10, s).astype(np.uint8)[:, None]})


def test_svhn_mat_layout_and_label_ten_is_zero(tmp_path):
    write_set(tmp_path, [1, 2], [10, 3, 10])
    images, labels = read_svhn(tmp_path / "train_32x32.mat")
    assert images.shape == (3, 3, 32, 32) and images.dtype == np.uint8
    assert labels.tolist() == [0, 3, 0]
    assert images[:, 2, 5, 9].tolist() == [200, 200, 200] and images[:, :, 9, 5].max() == 0
    assert images[:, 0, 0, 0].tolist() == [0, 1, 2]


def test_matching_is_mmvaes_per_class_random_matching():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 10, 400), rng.integers(0, 10, 300)
    first, second = match_pairs(a, b, copies=7, max_per_class=25, seed=1)
    assert np.array_equal(a[first], b[second])  # every pair shows one class
    offset = 0
    for c in range(10):  # per class in class order: copies blocks, each a permutation of the first n rows of each set
        n = min((a == c).sum(), (b == c).sum(), 25)
        for _ in range(7):
            block_a, block_b = first[offset:offset + n], second[offset:offset + n]
            assert sorted(block_a) == sorted(np.flatnonzero(a == c)[:n]) and sorted(block_b) == sorted(np.flatnonzero(b == c)[:n])
            offset += n
    assert offset == len(first)
    again = match_pairs(a, b, copies=7, max_per_class=25, seed=1)
    assert np.array_equal(again[0], first) and not np.array_equal(match_pairs(a, b, 7, 25, seed=2)[0], first)


def test_records_gather_the_paired_images(load, tmp_path):
    mnist_labels, svhn_labels = [3, 1, 3, 0, 1, 3], [1, 3, 0, 0, 3, 1, 1]
    write_set(tmp_path, mnist_labels, svhn_labels)
    _, splits = load("mnist_svhn", tmp_path, copies=4)
    records = splits["train"]
    assert len(records) == 4 * (1 + 2 + 2)  # class 0: min(1, 2); class 1: min(2, 3); class 3: min(3, 2)
    batch = records.take(torch.arange(len(records)))
    mnist_rows = np.rint(batch["mnist"][0][:, 0, 0, 0].numpy() * 255).astype(int)
    svhn_rows = np.rint(batch["svhn"][0][:, 0, 0, 0].numpy() * 255).astype(int)
    assert batch["mnist"][0].shape[1:] == (1, 28, 28) and batch["svhn"][0].shape[1:] == (3, 32, 32)
    assert np.array_equal(np.array(mnist_labels)[mnist_rows], batch["label"][0].numpy())
    assert np.array_equal(np.array(svhn_labels)[svhn_rows], batch["label"][0].numpy())
    column = records.arrays["label"]  # what evaluation indexes: a column gathering the rows it is given
    assert len(column) == len(records) and torch.equal(column[torch.tensor([2, 0])], batch["label"][0][[2, 0]])
    assert torch.equal(records.arrays["svhn"][np.array([4])], batch["svhn"][0][4:5])
    joined = splits["train"].concat(splits["test"])  # train and test as one index space, pixels shared
    both = joined.take(torch.tensor([0, len(records), len(records) + 3]))
    assert torch.equal(both["svhn"][0][0], batch["svhn"][0][0])
    assert torch.equal(both["mnist"][0][1:], splits["test"].take(torch.tensor([0, 3]))["mnist"][0])


def test_index_files_are_written_read_and_checked(load, tmp_path):
    write_set(tmp_path, [3, 1, 3, 0, 1], [1, 3, 0, 0, 3])
    _, built = load("mnist_svhn", tmp_path, copies=3, seed=5, save_index=True)
    assert (tmp_path / "train-ms-mnist-idx.pt").is_file() and (tmp_path / "test-ms-svhn-idx.pt").is_file()
    _, read = load("mnist_svhn", tmp_path, pairing="files", copies=99)  # the files win over copies
    for split in ("train", "test"):
        a, b = built[split].take(torch.arange(len(built[split]))), read[split].take(torch.arange(len(read[split])))
        assert all(torch.equal(a[f][0], b[f][0]) for f in a)
    index = tmp_path / "train-ms-svhn-idx.pt"
    rows = torch.load(index, weights_only=True)
    torch.save(rows[:-1], index)
    with pytest.raises(DataError, match=r"train-ms-mnist-idx.pt has \d+ rows, train-ms-svhn-idx.pt \d+: they must pair one to one"):
        load("mnist_svhn", tmp_path)
    torch.save(torch.cat([rows[:-1], torch.tensor([99])]), index)
    with pytest.raises(DataError, match=r"train-ms-svhn-idx.pt: row 99 is outside the 5 images it indexes"):
        load("mnist_svhn", tmp_path)
    torch.save(rows.flip(0), index)
    with pytest.raises(DataError, match=r"pair different digits in \d+ of \d+ pairs \(pair \d+: MNIST \d, SVHN \d\)"):
        load("mnist_svhn", tmp_path)
    torch.save({"rows": argparse.Namespace(rows=1)}, index)
    with pytest.raises(DataError, match=r"cannot load .*train-ms-svhn-idx.pt as a tensor \(weights_only\)"):
        load("mnist_svhn", tmp_path)
    _, rebuilt = load("mnist_svhn", tmp_path, pairing="build", copies=3, seed=5)  # build ignores the files
    assert torch.equal(rebuilt["train"].take(torch.arange(3))["svhn"][0], built["train"].take(torch.arange(3))["svhn"][0])


def test_bad_mat_files_are_named(load, tmp_path):
    write_set(tmp_path, [1, 2], [1, 2])
    savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.ones((3, 1), np.uint8)})
    with pytest.raises(DataError, match=r"test_32x32.mat: y has 3 labels for the 4 images of X"):
        load("mnist_svhn", tmp_path)
    savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((32, 32, 4), np.uint8), "y": np.ones((4, 1), np.uint8)})
    with pytest.raises(DataError, match=r"X has shape \(32, 32, 4\), SVHN's is \(32, 32, 3, N\)"):
        load("mnist_svhn", tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match=r"cannot read .*test_32x32.mat as a MATLAB file"):
        load("mnist_svhn", tmp_path)
    with pytest.raises(DataError, match=r"no pairing file train-ms-mnist-idx.pt .* pairing: build matches the digits anew"):
        load("mnist_svhn", tmp_path, pairing="files")


@pytest.mark.slow
def test_command_line_errors_are_one_line(tmp_path):
    make_mnist_svhn(tmp_path, n_mnist=(40, 20), n_svhn=(50, 20))
    (tmp_path / "test_32x32.mat").unlink()
    missing = error_line(train_small("mnist-svhn-mmvae.yaml", tmp_path, tmp_path / "run"))
    assert "test_32x32.mat not found" in missing and "manifest" in missing
    (tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3]))
    counts = error_line(train_small("mnist-svhn-mmvae.yaml", tmp_path, tmp_path / "run"))
    assert "train-labels-idx1-ubyte has (3,) labels for the 40 images" in counts
    wrong = error_line(train_small("mnist-svhn-mmvae.yaml", tmp_path, tmp_path / "run", "data.dataset.copies=0"))
    assert "data.dataset.copies" in wrong
