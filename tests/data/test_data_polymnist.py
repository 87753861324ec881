"""PolyMNIST in its real layouts (PNG trees, MultiVae's m<k>.pt tensors), written here as PNG files and tensors."""
import argparse

import numpy as np
import pytest
import torch
from PIL import Image

from modkit import DataError
from modkit_polymnist import make_polymnist

from benchmark_helpers import error_line, train_small


def write_tree(folder, tuples, views=5, channels=3, order=None):
    """PNG files ``m<k>/<i>.<digit>.png`` whose pixels encode (i, k): row 0 is i, row 1 is k; written in ``order``."""
    for k in range(views):
        (folder / f"m{k}").mkdir(parents=True, exist_ok=True)
    for i, digit in (order or tuples):
        for k in range(views):
            pixels = np.zeros((28, 28, channels), dtype=np.uint8)
            pixels[0], pixels[1] = i, 10 * k
            Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(folder / f"m{k}" / f"{i}.{digit}.png")


@pytest.fixture
def tree(tmp_path):
    tuples = [(i, (3 * i) % 10) for i in (0, 1, 2, 10, 11, 20)]
    order = list(reversed(tuples))
    for split in ("train", "test"):
        write_tree(tmp_path / "MMNIST" / split, tuples, order=order)
    return tmp_path, tuples


def test_png_tuples_are_paired_by_name_not_listing_order(load, tree):
    root, tuples = tree
    source, splits = load("polymnist", root)
    records = splits["train"]
    assert records.fields == ["m0", "m1", "m2", "m3", "m4", "label"]
    batch = records.take(torch.arange(len(records)))
    index = [i for i, _ in sorted(tuples)]  # rows follow the numeric index, 2 before 10
    for k in range(5):
        images = batch[f"m{k}"][0]
        assert images.shape == (len(tuples), 3, 28, 28) and images.dtype == torch.float32
        assert np.allclose(images[:, :, 0, 0].numpy() * 255, np.array(index)[:, None])  # every view's row j is tuple index[j]
        assert np.allclose(images[:, 0, 1, 0].numpy() * 255, 10 * k)
    assert batch["label"][0].tolist() == [d for _, d in sorted(tuples)]
    assert source.attributes == ["label"]


def test_views_are_selectable(load, tree):
    _, splits = load("polymnist", tree[0], views=[3, 1])
    assert splits["test"].fields == ["m3", "m1", "label"]
    assert np.allclose(splits["test"].get(0)["m1"][0, 1, 0].item() * 255, 10)


def test_tensor_form_matches_the_png_trees(load, tmp_path):
    folder = make_polymnist(tmp_path, n_train=20, n_test=10, form="both")
    assert (folder / "train" / "m4" ).is_dir() and (folder / "test" / "labels.pt").is_file()
    _, png = load("polymnist", tmp_path, layout="png")
    _, tensor = load("polymnist", tmp_path, layout="tensor")
    for split in ("train", "test"):
        a, b = png[split].take(torch.arange(len(png[split]))), tensor[split].take(torch.arange(len(tensor[split])))
        for field in a:
            assert torch.equal(a[field][0], b[field][0]), field


def test_save_tensors_writes_the_tensor_form_that_later_loads_read(load, tmp_path):
    folder = make_polymnist(tmp_path, n_train=12, n_test=6)
    _, first = load("polymnist", tmp_path, views=[0, 2], save_tensors=True)
    assert sorted(p.name for p in (folder / "train").glob("*.pt")) == ["labels.pt", "m0.pt", "m2.pt"]
    for png in (folder / "train" / "m0").iterdir():
        png.unlink()  # proof that the next load reads the tensors, not the PNGs
    _, again = load("polymnist", tmp_path, views=[0, 2])
    a, b = first["train"].take(torch.arange(12)), again["train"].take(torch.arange(12))
    assert all(torch.equal(a[f][0], b[f][0]) for f in a)
    with pytest.raises(DataError, match=r"m0 has .* but m1 has no tuple|m1 has .* but m0 has no tuple"):
        load("polymnist", tmp_path, views=[0, 1])  # m1 has no tensor: auto reads the PNG trees, where m0 is now empty


def test_stand_in_views_differ_in_background_and_share_the_digit(load, tmp_path):
    make_polymnist(tmp_path, n_train=30, n_test=10)
    _, splits = load("polymnist", tmp_path)
    batch = splits["train"].take(torch.arange(30))
    means = np.array([batch[f"m{k}"][0].mean(dim=(0, 2, 3)).numpy() for k in range(5)])  # per view, mean colour
    assert min(np.abs(means[a] - means[b]).sum() for a in range(5) for b in range(a + 1, 5)) > 0.05
    names = {p.name for p in (tmp_path / "MMNIST" / "train" / "m0").iterdir()}
    assert names == {p.name for p in (tmp_path / "MMNIST" / "train" / "m4").iterdir()}
    assert sorted(int(n.split(".")[1]) for n in names) == sorted(batch["label"][0].tolist())


def test_bad_trees_are_named(load, tree):
    root, _ = tree
    (root / "MMNIST" / "train" / "m3" / "10.0.png").unlink()
    with pytest.raises(DataError, match=r"m0 has 10.0.png but m3 has no tuple 10 \(m0: 6 files, m3: 5\)"):
        load("polymnist", root)
    write_tree(root / "MMNIST" / "train", [(10, 7)], order=None)  # a second file for tuple 10 in m0 …
    with pytest.raises(DataError, match=r"m0: two files for tuple 10: 10.(0|7).png and 10.(0|7).png"):
        load("polymnist", root)
    for k in (0, 1, 2, 4):
        (root / "MMNIST" / "train" / f"m{k}" / "10.0.png").unlink()  # … now digit 7 in every view …
    (root / "MMNIST" / "train" / "m2" / "10.7.png").rename(root / "MMNIST" / "train" / "m2" / "10.5.png")  # … but 5 in m2
    with pytest.raises(DataError, match=r"tuple 10 is digit 7 in m0 but 10.5.png in m2"):
        load("polymnist", root)
    (root / "MMNIST" / "train" / "m2" / "10.5.png").rename(root / "MMNIST" / "train" / "m2" / "notes.txt")
    with pytest.raises(DataError, match=r"notes.txt: PolyMNIST files are named <index>.<digit>.png"):
        load("polymnist", root)


def test_tensor_form_refuses_pickled_objects_and_mismatched_counts(load, tmp_path):
    folder = make_polymnist(tmp_path, n_train=8, n_test=4, form="tensor")
    torch.save(torch.zeros(7, 3, 28, 28, dtype=torch.uint8), folder / "train" / "m2.pt")
    with pytest.raises(DataError, match=r"m2.pt has 7 images for the 8 labels of labels.pt"):
        load("polymnist", tmp_path)
    torch.save({"images": argparse.Namespace(n=8)}, folder / "train" / "m2.pt")  # needs unpickling an arbitrary object
    with pytest.raises(DataError, match=r"cannot load .*m2.pt as a tensor \(weights_only\)"):
        load("polymnist", tmp_path)
    (folder / "train" / "m2.pt").unlink()
    with pytest.raises(DataError, match=r"has no m2.pt \(views asked: m0, m1, m2, m3, m4\)"):
        load("polymnist", tmp_path)
    assert load("polymnist", tmp_path, views=[0, 1])[1]["train"].fields == ["m0", "m1", "label"]


@pytest.mark.slow
def test_command_line_errors_are_one_line(tmp_path):
    make_polymnist(tmp_path, n_train=8, n_test=4)
    grey = error_line(train_small("polymnist-mopoe.yaml", tmp_path, tmp_path / "run", "modalities.m0.shape=[1,28,28]"))
    assert "modalities.m0: does not fit the data in field 'm0': samples have shape (3, 28, 28), the recipe's shape is [1, 28, 28]" in grey
    (tmp_path / "MMNIST" / "test" / "m4" / next(iter(sorted(p.name for p in (tmp_path / "MMNIST" / "test" / "m4").iterdir())))).unlink()
    missing = error_line(train_small("polymnist-mopoe.yaml", tmp_path, tmp_path / "run"))
    assert "but m4 has no tuple" in missing and "test" in missing
    nowhere = error_line(train_small("polymnist-mopoe.yaml", tmp_path / "nowhere", tmp_path / "run"))
    assert nowhere.startswith("error: no PolyMNIST train/m0") and "manifest" in nowhere
    assert not (tmp_path / "run" / "summary.json").exists()


def test_the_in_memory_stand_in_is_what_make_polymnist_writes(load, tmp_path):
    make_polymnist(tmp_path, n_train=14, n_test=6, seed=3)
    _, written = load("polymnist", tmp_path)
    _, drawn = load("polymnist", tmp_path / "nothing-here", standin={"train": 14, "test": 6, "seed": 3})
    for split in ("train", "test"):
        a, b = written[split].take(torch.arange(len(written[split]))), drawn[split].take(torch.arange(len(drawn[split])))
        assert list(a) == list(b) == ["m0", "m1", "m2", "m3", "m4", "label"]
        for field in a:
            assert torch.equal(a[field][0], b[field][0]), (split, field)
    _, two = load("polymnist", tmp_path / "nothing-here", views=[4, 1], standin={"train": 14, "test": 6, "seed": 3})
    c = two["test"].take(torch.arange(6))
    assert list(c) == ["m4", "m1", "label"] and torch.equal(c["m4"][0], drawn["test"].take(torch.arange(6))["m4"][0])
