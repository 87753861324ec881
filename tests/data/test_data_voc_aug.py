"""Pascal VOC with SBD's augmented masks: SegmentationClassAug/ (grey PNGs) and train_aug.txt in both list formats."""
import numpy as np
import pytest
from PIL import Image

from modkit import DataError

from benchmark_helpers import error_line, modkit


def write_aug(root, ids, deeplab_list=False, list_beside=False, val=("v1",)):
    folder = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for k, i in enumerate([*ids, *val]):
        Image.new("RGB", (4, 4), (k, 0, 0)).save(folder / "JPEGImages" / f"{i}.jpg")
        mask = np.full((4, 4), k % 21, dtype=np.uint8)
        mask[0, 0] = 255
        Image.fromarray(mask, mode="L").save(folder / "SegmentationClassAug" / f"{i}.png")  # SBD-aug masks are grey
    lines = [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png" if deeplab_list else i for i in ids]
    (folder / ("" if list_beside else "ImageSets/Segmentation") / "train_aug.txt").write_text("\n".join(lines) + "\n")
    (folder / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(val) + "\n")
    return folder


@pytest.mark.parametrize("deeplab_list, list_beside", [(False, False), (True, False), (True, True)])
def test_sbd_aug_lists_and_masks(load, tmp_path, deeplab_list, list_beside):
    folder = write_aug(tmp_path, ["2007_000032", "2008_000123"], deeplab_list, list_beside)
    _, splits = load("voc", tmp_path, train_list="train_aug")
    assert len(splits["train"]) == 2 and len(splits["test"]) == 1
    row = splits["train"].get(1)
    assert row["image"] == str(folder / "JPEGImages" / "2008_000123.jpg")
    assert row["mask"] == str(folder / "SegmentationClassAug" / "2008_000123.png")
    assert np.asarray(Image.open(row["mask"]))[1, 1] == 1


def test_aug_errors_are_named(load, tmp_path):
    folder = write_aug(tmp_path, ["a", "b"])
    Image.fromarray(np.full((4, 4), 30, dtype=np.uint8), mode="L").save(folder / "SegmentationClassAug" / "b.png")
    _, splits = load("voc", tmp_path, train_list="train_aug")
    with pytest.raises(DataError, match=r"b.png: mask class 30 is out of range"):
        splits["train"].get(1)
    (folder / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("a b c\n")
    with pytest.raises(DataError, match=r"train_aug.txt line 1: expected an image id or 'IMAGE MASK' paths"):
        load("voc", tmp_path, train_list="train_aug")
    with pytest.raises(DataError, match=r"split list not found: .*trainaug.txt or .*trainaug.txt; or list your files in a manifest"):
        load("voc", tmp_path, train_list="trainaug")


def test_command_line_names_the_manifest_route(tmp_path):
    recipe = tmp_path / "voc.yaml"
    recipe.write_text("name: voc\ndata: {dataset: voc, root: %s}\nmodalities:\n  image: {type: image, shape: [3, 8, 8]}\n" % (tmp_path / "none"))
    line = error_line(modkit("train", recipe, "--out", tmp_path / "run"))
    assert "SegmentationClassAug" in line and "manifest" in line
