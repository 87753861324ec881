"""manifest: JSONL and CSV rows of paths, strings, numbers and lists; empty = missing; bad rows named by line."""
import json

import numpy as np
import pytest
from PIL import Image

from modkit import DataError



def rows(records) -> list[dict]:
    return [records.get(i) for i in range(len(records))]


def write_image(path, value=128, size=(4, 4)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(path)


def write_jsonl(path, items):
    path.write_text("".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items))


def test_jsonl_fields_paths_and_missing_values(load, tmp_path):
    write_image(tmp_path / "img" / "a.png")
    np.save(tmp_path / "img" / "b.npy", np.arange(4.0))
    write_jsonl(tmp_path / "m.jsonl", [
        {"image": "img/a.png", "caption": "a cat", "label": 3, "attrs": [0, 1, 1], "arr": "img/b.npy"},
        {"image": "", "caption": "a dog", "label": None, "attrs": []},
        {"caption": "", "label": 1, "attrs": [1, 0, 0]},
    ])
    _, splits = load("manifest", tmp_path, path="m.jsonl")
    records = splits["all"]
    assert records.fields == ["image", "caption", "label", "attrs", "arr"]
    got = rows(records)
    assert got[0]["image"] == str(tmp_path / "img" / "a.png")
    assert got[0]["caption"] == "a cat" and got[0]["label"] == 3 and got[0]["attrs"] == [0, 1, 1]
    assert np.array_equal(got[0]["arr"], np.arange(4.0))
    assert got[1] == {"image": None, "caption": "a dog", "label": None, "attrs": None, "arr": None}
    assert got[2]["caption"] is None and got[2]["image"] is None
    assert records.problems() == []
    assert records.describe(1) == f"{tmp_path / 'm.jsonl'} line 2"


def test_csv_cells_become_numbers_lists_and_strings(load, tmp_path):
    write_image(tmp_path / "x.jpg")
    (tmp_path / "m.csv").write_text('image,caption,label,attrs\nx.jpg,"a cat, sitting",3,"[0, 1]"\n,7,,\n')
    _, splits = load("manifest", tmp_path, path="m.csv")
    got = rows(splits["all"])
    assert got[0] == {"image": str(tmp_path / "x.jpg"), "caption": "a cat, sitting", "label": 3, "attrs": [0, 1]}
    assert got[1]["image"] is None and got[1]["label"] is None and got[1]["attrs"] is None


@pytest.mark.parametrize("line, message", [
    ({"image": "a.png", "label": "three", "attrs": [1, 0]}, "field 'label' is a string ('three'), but a number on line 1"),
    ({"image": "a.png", "label": 2, "attrs": [1, 0, 1]}, "field 'attrs' has 3 values, but 2 on line 1"),
    ({"image": "missing.png", "label": 2}, "file not found"),
    ({"image": "a.png", "label": 2, "attrs": {"x": 1}}, "is a dict"),
    ({"image": "a.png", "label": 2, "caption": "   "}, "field 'caption' is blank"),
    ("[1, 2]", "is a JSON list, not an object"),
    ('{"label": 2,', "not valid JSON"),
])
def test_inconsistent_jsonl_rows_are_named_by_file_and_line(load, tmp_path, line, message):
    write_image(tmp_path / "a.png")
    write_jsonl(tmp_path / "m.jsonl", [{"image": "a.png", "label": 1, "attrs": [0, 1]}, line, {"image": "a.png", "label": 0}])
    _, splits = load("manifest", tmp_path, path="m.jsonl")
    records = splits["all"]
    problems = records.problems()
    assert len(problems) == 1 and problems[0].startswith(f"{tmp_path / 'm.jsonl'} line 2: ") and message in problems[0]
    with pytest.raises(DataError, match="line 2"):
        records.get(1)
    assert records.get(2)["label"] == 0  # the rows around it are fine


def test_csv_row_with_too_few_cells(load, tmp_path):
    (tmp_path / "m.csv").write_text("caption,label\nhello,1\nonly-one-cell\nbye,2\n")
    _, splits = load("manifest", tmp_path, path="m.csv")
    assert splits["all"].problems() == [f"{tmp_path / 'm.csv'} line 3: has 1 cells, the header has 2 (caption, label)"]


def test_split_column_and_test_manifest(load, tmp_path):
    write_jsonl(tmp_path / "m.jsonl", [{"t": "a", "split": "train"}, {"t": "b", "split": "test"}, {"t": "c", "split": "train"}])
    _, splits = load("manifest", tmp_path, path="m.jsonl")
    assert [r["t"] for r in rows(splits["train"])] == ["a", "c"] and [r["t"] for r in rows(splits["test"])] == ["b"]
    assert "split" not in splits["train"].fields
    write_jsonl(tmp_path / "t.jsonl", [{"t": "z"}])
    _, splits = load("manifest", tmp_path, path="m.jsonl", test_path="t.jsonl", split_field="none")
    assert len(splits["train"]) == 3 and rows(splits["test"]) == [{"t": "z"}]


def test_missing_manifest_and_declared_file_columns(load, tmp_path):
    with pytest.raises(DataError, match="manifest not found"):
        load("manifest", tmp_path, path="nope.jsonl")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "scan").write_bytes(b"x")
    write_jsonl(tmp_path / "data" / "m.jsonl", [{"img": "scan"}])
    _, splits = load("manifest", tmp_path, path="data/m.jsonl", files=["img"])
    assert splits["all"].get(0)["img"] == str(tmp_path / "data" / "scan")


def test_files_lists_every_file_column_or_the_error_names_the_one_to_add(load, tmp_path):
    """Once ``files:`` is set, an unlisted column of image paths would be read as text; the error says what to add."""
    write_image(tmp_path / "img" / "a.png")
    write_image(tmp_path / "masks" / "a.png")
    write_jsonl(tmp_path / "m.jsonl", [{"scan": "img/a.png", "mask": "masks/a.png", "note": "see a.png"}])
    _, splits = load("manifest", tmp_path, path="m.jsonl", files=["scan"])
    with pytest.raises(DataError, match=r"field 'mask' names a file \('masks/a.png'\) but data.dataset.files lists only scan: "
                                        r"add 'mask' to data.dataset.files"):
        splits["all"].get(0)
    _, splits = load("manifest", tmp_path, path="m.jsonl", files=["scan", "mask"])
    row = splits["all"].get(0)
    assert row["mask"] == str(tmp_path / "masks" / "a.png") and row["note"] == "see a.png"  # text naming no file stays text
