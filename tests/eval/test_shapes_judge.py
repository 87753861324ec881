"""The shapes dataset's ground-truth judge: parsing its own captions gives back the scene's attributes and label."""
from __future__ import annotations

import numpy as np

from modkit_shapes import Shapes, ShapesConfig


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
    assert source.judge("image", [np.zeros((16, 16, 3))]) is None
