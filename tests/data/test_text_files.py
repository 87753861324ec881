"""Dataset text files: a byte-order mark is not part of the data, and a file in another encoding is one
DataError naming it (the readers of VOC, CelebA, CUB and the manifest all go through read_text)."""
from __future__ import annotations

import pytest

from modkit import read_text_file as read_text
from modkit.errors import DataError


def test_a_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("image,label\na.png,1\n".encode("utf-8-sig"))
    assert read_text(path).splitlines()[0] == "image,label"


def test_latin1_is_one_error_naming_file_and_line(tmp_path):
    path = tmp_path / "captions.txt"
    path.write_bytes("a bird\nun oiseau très petit\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"captions.txt is not UTF-8 text \(line 2.*save it as UTF-8"):
        read_text(path, "caption file")


def test_an_excel_manifest_with_a_bom_reads(tmp_path):
    from modkit_manifest import read_rows

    path = tmp_path / "m.csv"
    path.write_bytes("image,label\na.png,1\n".encode("utf-8-sig"))
    rows = read_rows(path, "auto")
    assert rows[0][1]["image"] == "a.png"


@pytest.mark.parametrize("reader", ["voc", "cub", "celeba"])
def test_dataset_lists_in_latin1_are_one_line(tmp_path, reader):
    latin = "2008_000002\ncafé\n".encode("latin-1")
    if reader == "voc":
        from modkit_voc import Voc, VocConfig

        folder = tmp_path / "VOC2012"
        (folder / "ImageSets" / "Segmentation").mkdir(parents=True)
        (folder / "ImageSets" / "Segmentation" / "train.txt").write_bytes(latin)
        call = lambda: Voc(VocConfig(type="voc"), tmp_path).split(folder, "train")  # noqa: E731
    elif reader == "cub":
        from modkit_cub import read_pairs

        (tmp_path / "images.txt").write_bytes(b"1 a/caf\xe9.jpg\n")
        call = lambda: read_pairs(tmp_path / "images.txt")  # noqa: E731
    else:
        from modkit_celeba import read_partition

        (tmp_path / "list_eval_partition.txt").write_bytes(b"caf\xe9.jpg 0\n")
        call = lambda: read_partition(tmp_path / "list_eval_partition.txt")  # noqa: E731
    with pytest.raises(DataError, match="is not UTF-8 text"):
        call()
