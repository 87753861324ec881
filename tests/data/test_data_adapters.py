"""Real-format adapters, each on tiny fixture files written here in the genuine format."""
import gzip
import json
import struct

import numpy as np
import pytest
from PIL import Image

from modkit import DataError
from modkit_mask.metrics import voc_palette


def rows(records) -> list[dict]:
    return [records.get(i) for i in range(len(records))]


def jpeg(path, size=(6, 5), value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path, "JPEG")


# -- MNIST idx -------------------------------------------------------------------------------------

def idx_bytes(array: np.ndarray) -> bytes:
    """The idx layout: 0, 0, type 0x08 (ubyte), ndim, then big-endian uint32 sizes, then the bytes."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_mnist(folder, n_train=5, n_test=3, gz=False, dotted=False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
        data[prefix] = (images, labels)
        for kind, array in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            name = f"{prefix}-{kind}".replace("-idx", ".idx") if dotted else f"{prefix}-{kind}"
            raw = idx_bytes(array)
            (folder / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
    return data


@pytest.mark.parametrize("gz, dotted", [(False, False), (True, False), (False, True)])
def test_mnist_idx(load, tmp_path, gz, dotted):
    data = write_mnist(tmp_path / "mnist", gz=gz, dotted=dotted)
    _, splits = load("mnist", tmp_path)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = data[prefix]
        records = splits[split]
        assert len(records) == len(labels)
        assert np.allclose(records.arrays["image"].numpy(), images[:, None] / 255.0)
        assert records.arrays["image"].shape[1:] == (1, 28, 28)
        assert records.arrays["label"].tolist() == labels.tolist()


def test_mnist_bad_files(load, tmp_path):
    write_mnist(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(np.zeros(4)))  # 4 labels for 3 images
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte has \(4,\) labels for the 3 images"):
        load("mnist", tmp_path)
    labels.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"\x01")  # truncated
    with pytest.raises(DataError, match="header says shape"):
        load("mnist", tmp_path)
    labels.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataError, match="is not an idx file"):
        load("mnist", tmp_path)
    with pytest.raises(DataError, match="no MNIST idx files"):
        load("mnist", tmp_path / "elsewhere")


# -- CelebA ------------------------------------------------------------------------------------------
CELEBA_NAMES = ["5_o_Clock_Shadow", "Bald", "Eyeglasses", "Male", "Smiling"]


def write_celeba(folder, table, partition=None, count=None):
    for i in range(len(table)):
        jpeg(folder / "img_align_celeba" / f"{i + 1:06d}.jpg")
    lines = [str(count if count is not None else len(table)), " ".join(CELEBA_NAMES) + " "]
    for i, values in enumerate(table):
        lines.append(f"{i + 1:06d}.jpg " + " ".join(f"{v:2d}" for v in values))  # " 1" / "-1": the file's alignment
    (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    if partition is not None:
        (folder / "list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {p}\n" for i, p in enumerate(partition)))


def test_celeba(load, tmp_path):
    table = np.array([[1, -1, -1, 1, 1], [-1, -1, 1, -1, -1], [-1, 1, -1, 1, 1], [1, 1, 1, 1, -1]])
    write_celeba(tmp_path / "celeba", table, partition=[0, 0, 1, 2])
    source, splits = load("celeba", tmp_path, attributes=["Smiling", "Male"])
    assert source.attribute_names == ["Smiling", "Male"]
    train, test = rows(splits["train"]), rows(splits["test"])
    assert [r["image"] for r in train] == [str(tmp_path / "celeba" / "img_align_celeba" / f"00000{i}.jpg") for i in (1, 2)]
    assert [r["attributes"].tolist() for r in train] == [[1, 1], [0, 0]]
    assert test[0]["attributes"].tolist() == [0, 1] and test[0]["Smiling"] == 0 and test[0]["Male"] == 1
    _, splits = load("celeba", tmp_path, validation="train")
    assert len(splits["train"]) == 3 and splits["train"].get(2)["Bald"] == 1


def test_celeba_bad_rows_and_counts(load, tmp_path):
    write_celeba(tmp_path, np.array([[1, -1, -1, 1, 1], [1, -1, -1, 1, 1]]))
    path = tmp_path / "list_attr_celeba.txt"
    path.write_text(path.read_text().replace("000002.jpg  1", "000002.jpg  0"))
    _, splits = load("celeba", tmp_path)
    assert splits["all"].problems() == [f"{path} line 4: expected an image name and 5 values of 1 or -1, got 5 values"]
    write_celeba(tmp_path, np.ones((2, 5), dtype=int), count=3)
    with pytest.raises(DataError, match="line 1 says 3 images, the file lists 2"):
        load("celeba", tmp_path)
    with pytest.raises(DataError, match="no attribute 'Wings'"):
        write_celeba(tmp_path, np.ones((2, 5), dtype=int))
        load("celeba", tmp_path, attributes=["Wings"])


# -- CUB ---------------------------------------------------------------------------------------------
CUB_IMAGES = ["001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg",
              "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg",
              "002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg"]


def write_cub(root, captions):
    folder = root / "CUB_200_2011"
    for rel in CUB_IMAGES:
        jpeg(folder / "images" / rel)
    (folder / "images.txt").write_text("".join(f"{i + 1} {rel}\n" for i, rel in enumerate(CUB_IMAGES)))
    (folder / "train_test_split.txt").write_text("1 1\n2 0\n3 1\n")
    for rel, lines in zip(CUB_IMAGES, captions):
        if lines is None:
            continue
        path = (root / "text_c10" / rel).with_suffix(".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    return folder


def test_cub(load, tmp_path):
    caps = [[f"this bird {i} has a white belly", f"a seabird {i}"] for i in range(3)]
    folder = write_cub(tmp_path, caps)
    source, splits = load("cub", tmp_path)
    assert source.class_names == ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    train = rows(splits["train"])
    assert [r["caption"] for r in train] == caps[0] + caps[2]
    assert [r["label"] for r in train] == [0, 0, 1, 1]
    assert train[2]["image"] == str(folder / "images" / CUB_IMAGES[2])
    assert [r["caption"] for r in rows(splits["test"])] == caps[1]
    _, splits = load("cub", tmp_path, captions="first")
    assert [r["caption"] for r in rows(splits["train"])] == [caps[0][0], caps[2][0]]


def test_cub_empty_caption_and_missing_file(load, tmp_path):
    write_cub(tmp_path, [["a bird", "", "another"], None, ["ok"]])
    _, splits = load("cub", tmp_path)
    empty = (tmp_path / "text_c10" / CUB_IMAGES[0]).with_suffix(".txt")
    assert splits["train"].problems() == [f"{empty} line 2: empty caption"]
    assert "no caption file" in splits["test"].problems()[0]
    with pytest.raises(DataError, match="line 2: empty caption"):
        splits["train"].get(1)


# -- COCO --------------------------------------------------------------------------------------------

def write_coco(root, captions_val="a cat on a mat"):
    (root / "annotations").mkdir(parents=True)
    images = {"train2017": [(9, 8, 6), (25, 8, 6)], "val2017": [(42, 8, 6)]}  # id, width, height
    for split, entries in images.items():
        for image_id, w, h in entries:
            jpeg(root / split / f"{image_id:012d}.jpg", size=(w, h))
    train = {"info": {"year": 2017}, "licenses": [],
             "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h} for i, w, h in images["train2017"]],
             "annotations": [{"id": 1, "image_id": 9, "caption": "A plate of food. "},
                             {"id": 2, "image_id": 9, "caption": "Food on a plate"},
                             {"id": 3, "image_id": 25, "caption": "A giraffe"}]}
    val = {"images": [{"id": 42, "file_name": "000000000042.jpg", "width": 8, "height": 6}],
           "annotations": [{"id": 7, "image_id": 42, "caption": captions_val}]}
    (root / "annotations" / "captions_train2017.json").write_text(json.dumps(train))
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps(val))
    rle = np.zeros((6, 8), dtype=bool)
    rle[1:4, 5] = True  # column-major runs: 5 columns of 6 zeros + 1 zero, 3 ones, the rest zeros
    counts = [5 * 6 + 1, 3, 6 * 8 - 5 * 6 - 4]
    instances = {"images": train["images"],
                 "categories": [{"id": 18, "name": "dog", "supercategory": "animal"}, {"id": 1, "name": "person", "supercategory": "person"}],
                 "annotations": [
                     {"id": 10, "image_id": 9, "category_id": 18, "iscrowd": 0, "area": 12.0, "bbox": [1, 1, 3, 2],
                      "segmentation": [[1, 1, 4, 1, 4, 3, 1, 3]]},
                     {"id": 11, "image_id": 9, "category_id": 1, "iscrowd": 1, "area": 3.0, "bbox": [5, 1, 1, 3],
                      "segmentation": {"counts": counts, "size": [6, 8]}}]}
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(instances))
    val_instances = {"images": val["images"], "categories": instances["categories"], "annotations": []}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(val_instances))
    return rle


def test_coco_captions(load, tmp_path):
    write_coco(tmp_path / "coco")
    _, splits = load("coco", tmp_path)
    train = rows(splits["train"])
    assert [r["caption"] for r in train] == ["A plate of food.", "Food on a plate", "A giraffe"]
    assert train[0]["image"] == str(tmp_path / "coco" / "train2017" / "000000000009.jpg")
    assert rows(splits["test"])[0]["caption"] == "a cat on a mat"
    _, splits = load("coco", tmp_path, captions="first")
    assert len(splits["train"]) == 2


def test_coco_masks_from_polygons_and_rle(load, tmp_path):
    rle = write_coco(tmp_path)
    source, splits = load("coco", tmp_path, masks=True)
    assert source.mask_class_names == ["background", "person", "dog"]  # sorted by category id
    mask = splits["train"].get(0)["mask"]
    expected = np.zeros((6, 8), dtype=np.int64)
    expected[1:4, 1:5] = 2  # the polygon (1,1)-(4,3), boundary included: a dog
    expected[rle] = 1  # the crowd of people
    assert np.array_equal(mask, expected)
    assert splits["train"].get(2)["mask"].sum() == 0  # the giraffe image has no instances
    _, splits = load("coco", tmp_path, masks=True, mask_size=[12, 16])  # as the image modality resizes: nearest, ×2
    assert np.array_equal(splits["train"].get(0)["mask"], expected.repeat(2, 0).repeat(2, 1))


def test_coco_malformed_json_is_a_data_error(load, tmp_path):
    write_coco(tmp_path)
    path = tmp_path / "annotations" / "captions_train2017.json"
    data = json.loads(path.read_text())
    del data["images"][0]["id"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="captions_train2017.json: not COCO captions"):
        load("coco", tmp_path)


def test_coco_empty_caption(load, tmp_path):
    write_coco(tmp_path, captions_val="  ")
    _, splits = load("coco", tmp_path)
    assert splits["test"].problems() == [f"{tmp_path / 'annotations' / 'captions_val2017.json'} annotation 7 (image 42): empty caption"]


# -- Pascal VOC --------------------------------------------------------------------------------------

def write_voc(root, masks):
    folder = root / "VOCdevkit" / "VOC2012"
    (folder / "SegmentationClass").mkdir(parents=True)
    (folder / "ImageSets" / "Segmentation").mkdir(parents=True)
    for name, mask in masks.items():
        jpeg(folder / "JPEGImages" / f"{name}.jpg", size=mask.shape[::-1])
        img = Image.fromarray(mask.astype(np.uint8), mode="P")
        img.putpalette([c for rgb in voc_palette(256) for c in rgb])
        img.save(folder / "SegmentationClass" / f"{name}.png")
    names = list(masks)
    (folder / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(names[:-1]) + "\n")
    (folder / "ImageSets" / "Segmentation" / "val.txt").write_text(names[-1] + "\n")
    return folder


def test_voc(load, tmp_path):
    a = np.zeros((5, 7), dtype=np.uint8)
    a[1:4, 2:5] = 15  # a person
    a[0, :] = 255  # boundary
    b = np.full((5, 7), 12, dtype=np.uint8)
    folder = write_voc(tmp_path, {"2007_000032": a, "2007_000039": b})
    source, splits = load("voc", tmp_path)
    assert source.class_names[15] == "person" and len(source.class_names) == 21
    train = rows(splits["train"])
    assert train[0]["image"] == str(folder / "JPEGImages" / "2007_000032.jpg")
    with Image.open(train[0]["mask"]) as img:
        assert img.mode == "P" and np.array_equal(np.asarray(img), a)
    assert len(splits["test"]) == 1


def test_voc_mask_class_out_of_range_and_not_palette(load, tmp_path):
    bad = np.full((4, 4), 30, dtype=np.uint8)
    folder = write_voc(tmp_path, {"2008_000001": bad, "2008_000002": np.zeros((4, 4), dtype=np.uint8)})
    _, splits = load("voc", tmp_path)
    mask = folder / "SegmentationClass" / "2008_000001.png"
    with pytest.raises(DataError, match=f"{mask}: mask class 30 is out of range"):
        splits["train"].get(0)
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(mask)
    with pytest.raises(DataError, match="mask is a RGB image"):
        splits["train"].get(0)
    (folder / "ImageSets" / "Segmentation" / "train.txt").write_text("2008_000001\n2008_999999\n")
    _, splits = load("voc", tmp_path)
    assert "line 2 (2008_999999): file not found" in splits["train"].problems()[0]


# -- parallel text -----------------------------------------------------------------------------------

def test_parallel_text(load, tmp_path):
    (tmp_path / "train.en").write_text("Thank you .\nHello world\n")
    (tmp_path / "train.vi").write_text("Cảm ơn .\nXin chào thế giới\n")
    (tmp_path / "tst2013.en").write_text("Goodbye\n")
    (tmp_path / "tst2013.vi").write_text("Tạm biệt\n")
    _, splits = load("parallel_text", tmp_path, test="tst2013")
    assert rows(splits["train"]) == [{"en": "Thank you .", "vi": "Cảm ơn ."}, {"en": "Hello world", "vi": "Xin chào thế giới"}]
    assert rows(splits["test"]) == [{"en": "Goodbye", "vi": "Tạm biệt"}]


def test_parallel_text_misaligned_and_empty(load, tmp_path):
    (tmp_path / "train.en").write_text("a\nb\nc\n")
    (tmp_path / "train.vi").write_text("x\n\nz\n")
    (tmp_path / "test.en").write_text("a\nb\n")
    (tmp_path / "test.vi").write_text("x\n")
    with pytest.raises(DataError, match=r"test.en has 2, .*test.vi has 1 lines"):
        load("parallel_text", tmp_path)
    (tmp_path / "test.vi").write_text("x\ny\n")
    _, splits = load("parallel_text", tmp_path)
    assert splits["train"].problems() == [f"{tmp_path / 'train.vi'} line 2: empty sentence"]
    with pytest.raises(DataError, match="parallel text file not found"):
        load("parallel_text", tmp_path, languages=["en", "de"])


def test_lazy_records_pickle_for_dataloader_workers(load, tmp_path):
    """Workers started by spawn/forkserver receive the records pickled: lazy columns must survive it."""
    import pickle

    write_coco(tmp_path / "coco")
    _, coco = load("coco", tmp_path, masks=True)
    again = pickle.loads(pickle.dumps(coco["train"]))
    assert np.array_equal(again.get(0)["mask"], coco["train"].get(0)["mask"])
    write_voc(tmp_path / "voc", {"a": np.zeros((3, 3), dtype=np.uint8), "b": np.ones((3, 3), dtype=np.uint8)})
    _, voc = load("voc", tmp_path / "voc")
    assert pickle.loads(pickle.dumps(voc["train"])).get(0)["mask"] == voc["train"].get(0)["mask"]
