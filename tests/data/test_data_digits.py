"""digits: image and label untouched; caption, translation and attributes derived from the label."""
import numpy as np
import torch
from sklearn.datasets import load_digits

from modkit.data.dataset import ArrayRecords, ModalityView


def is_prime(d: int) -> bool:
    return d > 1 and all(d % k for k in range(2, d))


def test_image_and_label_are_unchanged(load, tmp_path):
    _, splits = load("digits", tmp_path)
    records = splits["all"]
    bunch = load_digits()
    assert isinstance(records, ArrayRecords)
    assert torch.equal(records.arrays["image"], torch.as_tensor(bunch.images[:, None] / 16.0, dtype=torch.float32))
    assert torch.equal(records.arrays["label"], torch.as_tensor(bunch.target, dtype=torch.int64))


def test_derived_fields_follow_the_label(load, tmp_path):
    source, splits = load("digits", tmp_path, language="es")
    records = splits["all"]
    names = source.attribute_names
    assert names[:3] == ["odd", "prime", "at_least_five"]
    spanish = ["cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"]
    for i in range(0, len(records), 97):
        row = records.get(i)
        d = int(row["label"])
        assert row["caption"] == f"a handwritten {source.class_names[d]}"
        assert row["translation"] == spanish[d]
        attrs = dict(zip(names, row["attributes"].tolist()))
        assert attrs["odd"] == (d % 2 == 1) and attrs["prime"] == is_prime(d) and attrs["at_least_five"] == (d >= 5)
        assert attrs["square"] == any(k * k == d for k in range(4))
    assert records.get(7)["caption"] == f"a handwritten {source.class_names[int(records.get(7)['label'])]}"
    # the attributes determine the digit: ten distinct codes
    codes = {tuple(records.get(i)["attributes"].tolist()) for i in range(len(records))}
    assert len(codes) == 10


def test_other_languages(load, tmp_path):
    _, splits = load("digits", tmp_path, language="de")
    seven = next(r for r in (splits["all"].get(i) for i in range(50)) if int(r["label"]) == 7)
    assert seven["translation"] == "sieben"


class Recorder:
    """A stand-in modality that records whether preprocess ran (fast path: it must not)."""

    def __init__(self):
        self.calls = 0

    def preprocess(self, value):
        self.calls += 1
        return torch.as_tensor(np.asarray(value))

    def collate(self, samples):
        return torch.stack(samples) if not isinstance(samples[0], str) else samples


def test_image_label_views_keep_the_fast_path_and_text_views_preprocess(load, tmp_path):
    _, splits = load("digits", tmp_path)
    records = splits["all"]
    image, label = Recorder(), Recorder()
    batch = ModalityView(records, {"image": image, "label": label}, {"image": "image", "label": "label"}).__getitems__([0, 1, 2])
    assert image.calls == 0 and label.calls == 0 and batch.data["image"].shape == (3, 1, 8, 8)

    class Text(Recorder):
        def preprocess(self, value):
            self.calls += 1
            assert isinstance(value, str)
            return torch.tensor(len(value))

    text = Text()
    batch = ModalityView(records, {"image": image, "caption": text}, {"image": "image", "caption": "caption"}).__getitems__([0, 1])
    assert text.calls == 2 and image.calls == 2 and batch.present.all()
