"""The shapes dataset's ground-truth judge: parsing its own captions and images gives back the scene's attributes and label."""
from __future__ import annotations

import numpy as np

from modkit_shapes import Shapes, ShapesConfig, generate


def test_parsed_captions_give_the_true_attributes_and_label(tmp_path):
    source = Shapes(ShapesConfig(type="shapes", n=60, image_size=16), tmp_path)
    records = source.load()["all"]
    rows = [records.get(i) for i in range(len(records))]
    for field in ("caption", "translation"):
        truth = source.judge(field, [r[field] for r in rows])
        assert np.array_equal(truth["label"], np.array([int(r["label"]) for r in rows]))
        vectors = np.stack([np.asarray(r["attributes"]) for r in rows]).astype(np.int64)
        assert np.array_equal(np.stack([truth[f"attributes[{k}]"] for k in range(48)], 1), vectors)
    bad = source.judge("caption", ["a purple banana", rows[0]["caption"]])
    assert bad["label"][0] == -1 and bad["attributes[0]"][0] == -1 and bad["label"][1] == int(rows[0]["label"])
    assert source.judge("image_edges", [np.zeros((16, 16, 3))]) is None  # a derived view: a classifier judges it


def test_the_dataset_judges_images_by_parsing_them(tmp_path):
    records, _ = generate(ShapesConfig(type="shapes", n=40, image_size=32, difficulty="medium", seed=5))
    source = Shapes(ShapesConfig(type="shapes", n=40, image_size=32, difficulty="medium", seed=5), tmp_path)
    images = list(records.arrays["image"].numpy().transpose(0, 2, 3, 1))
    verdict = source.judge("image", images)
    expected = records.arrays["attributes"].numpy().astype(np.int64)
    found = np.stack([verdict[f"attributes[{k}]"] for k in range(expected.shape[1])], 1)
    assert (found == expected).mean() > 0.99 and (verdict["label"] == records.arrays["label"].numpy()).mean() > 0.95
    blank = source.judge("image", [np.full((32, 32, 3), 0.2, dtype=np.float32)])  # nothing drawn: nothing present
    assert all(blank[f"attributes[{k}]"][0] == 0 for k in range(0, 48, 12))
    assert source.judge("image_edges", images) is None  # a derived view: a classifier judges it
