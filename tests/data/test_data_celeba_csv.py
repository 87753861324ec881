"""CelebA as downloaded today (the Kaggle copy: CSV files, images one folder deeper) and MVAE's 18 attributes."""
import numpy as np
import pytest

from modkit import DataError
from modkit_celeba import CELEBA_ATTRIBUTES, MVAE18, make_celeba

from benchmark_helpers import error_line, train_small


def test_mvae18_is_mvaes_column_selection():
    # MVAE's code keeps these 0-based columns of CelebA's 40 (ATTR_IX_TO_KEEP)
    assert MVAE18 == [CELEBA_ATTRIBUTES[i] for i in (4, 5, 8, 9, 11, 12, 15, 17, 18, 20, 21, 22, 26, 28, 31, 32, 33, 35)]
    assert len(CELEBA_ATTRIBUTES) == 40 and CELEBA_ATTRIBUTES[20] == "Male" and CELEBA_ATTRIBUTES[31] == "Smiling"


def test_kaggle_layout_reads_csv_and_nested_images(load, tmp_path):
    folder = make_celeba(tmp_path, n=16)
    source, splits = load("celeba", tmp_path, attributes="mvae18")
    assert source.attribute_names == MVAE18
    assert len(splits["train"]) == 12 and len(splits["test"]) == 2  # 2 validation rows dropped by default
    table = np.loadtxt(folder / "list_attr_celeba.csv", delimiter=",", skiprows=1, usecols=range(1, 41))
    row = splits["train"].get(3)
    assert row["image"].endswith("img_align_celeba/img_align_celeba/000004.jpg")
    expected = table[3, [CELEBA_ATTRIBUTES.index(a) for a in MVAE18]] > 0
    assert row["attributes"].tolist() == expected.astype(np.float32).tolist()
    assert row["Smiling"] == int(table[3, 31] > 0)
    assert len(load("celeba", tmp_path, validation="train")[1]["train"]) == 14


def test_bad_csv_files_are_named(load, tmp_path):
    folder = make_celeba(tmp_path, n=8)
    path = folder / "list_attr_celeba.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + [lines[3].rsplit(",", 1)[0]] + lines[4:]) + "\n")  # row 3 loses a value
    _, splits = load("celeba", tmp_path)
    assert splits["train"].problems() == [f"{path} line 4: expected an image name and 40 values of 1 or -1, got 39 values"]
    path.write_text("name," + lines[0].split(",", 1)[1] + "\n")
    with pytest.raises(DataError, match=r"line 1: expected the header 'image_id,<attribute names>'"):
        load("celeba", tmp_path)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"has no attribute 'Smile' \(attributes: 5_o_Clock_Shadow"):
        load("celeba", tmp_path, attributes=["Smile"])
    (folder / "list_eval_partition.csv").write_text("image_id,partition\n000001.jpg,7\n")
    with pytest.raises(DataError, match=r"list_eval_partition.csv line 2: expected 'IMAGE 0\|1\|2'"):
        load("celeba", tmp_path)
    with pytest.raises(DataError, match=r"no list_attr_celeba.txt or list_attr_celeba.csv in .*; or list your files in a manifest"):
        load("celeba", tmp_path / "elsewhere")


def test_command_line_refuses_a_missing_image_in_one_line(tmp_path):
    folder = make_celeba(tmp_path, n=16)
    (folder / "img_align_celeba" / "img_align_celeba" / "000001.jpg").unlink()
    line = error_line(train_small("celeba-mvae19.yaml", tmp_path, tmp_path / "run", "model.latent_dim=4"))
    assert "list_attr_celeba.csv line 2 (000001.jpg), field 'image'" in line
