"""Judges and checkpoints are stored as numbers (safetensors + JSON), and what is read back predicts
exactly what the fitted scikit-learn estimators predict."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modkit.errors import ModkitError
from modkit.evaluation.judges import JudgeSet, LinearClassifier, LinearReducer, _reducer
from modkit.storage import state_file


@pytest.mark.parametrize("classes, features", [(2, 20), (5, 20), (3, 300)])  # 300 features: standardise + PCA
def test_linear_judges_predict_as_sklearn_does(classes, features):
    x, y = make_classification(600, features, n_informative=8, n_classes=classes, random_state=0)
    y = y * 3 + 1  # class ids that are not 0..C-1
    reducer = _reducer(features).fit(x[:400])
    fitted = LogisticRegression(max_iter=500).fit(reducer.transform(x[:400]), y[:400])
    mine_reducer, mine = LinearReducer.of(reducer), LinearClassifier.of(fitted)
    np.testing.assert_allclose(mine_reducer.transform(x[400:]), reducer.transform(x[400:]), rtol=1e-10, atol=1e-10)
    assert (mine.predict(mine_reducer.transform(x[400:])) == fitted.predict(reducer.transform(x[400:]))).all()


def test_judge_set_round_trips_through_safetensors(tmp_path):
    x, y = make_classification(200, 10, n_classes=3, n_informative=5, random_state=1)
    reducer = LinearReducer.of(_reducer(10).fit(x))
    clf = LinearClassifier.of(LogisticRegression(max_iter=500).fit(reducer.transform(x), y))
    judges = JudgeSet(["label"], {"image": "image"}, {("image", "label"): "classifier"}, {("image", "label"): clf},
                      {"image": reducer}, {"image/label": {"kind": "classifier", "balanced_accuracy": None}})
    judges.save(tmp_path / "judges.safetensors")
    back = JudgeSet.load(tmp_path / "judges.safetensors", None)
    assert back.kinds == judges.kinds and back.scores == judges.scores and back.fields == judges.fields
    assert (back.classifiers[("image", "label")].predict(back.reducers["image"].transform(x)) == clf.predict(reducer.transform(x))).all()
    (tmp_path / "judges.safetensors").write_bytes(b"\x80\x04not a judges file")
    with pytest.raises(ModkitError, match="judges.safetensors is not a readable safetensors file.*--retrain-judges"):
        JudgeSet.load(tmp_path / "judges.safetensors", None)


def test_state_file_round_trip_keeps_types(tmp_path):
    state = {"a": 1, "b": 2.5, "inf": math.inf, "none": None, "s": "x", "flag": True,
             "t": torch.arange(6, dtype=torch.int64).reshape(2, 3), "half": torch.ones(2, dtype=torch.bfloat16),
             "tuple": (3, np.arange(4, dtype=np.uint32), "MT19937"), "ints": {0: {"step": torch.tensor(3.0)}, 1: {}},
             "pairs": {("image", "label"): "classifier"}, "$odd": [1, [2, {"$tensor": "not one"}]]}
    path = tmp_path / "s.safetensors"
    path.write_bytes(state_file.to_bytes(state, "test", 7))
    back = state_file.read(path, "test", 7)
    assert set(back) == set(state) and back["a"] == 1 and back["inf"] == math.inf and back["none"] is None
    assert torch.equal(back["t"], state["t"]) and back["half"].dtype == torch.bfloat16
    assert isinstance(back["tuple"], tuple) and back["tuple"][1].dtype == np.uint32 and (back["tuple"][1] == np.arange(4)).all()
    assert list(back["ints"]) == [0, 1] and torch.equal(back["ints"][0]["step"], torch.tensor(3.0))
    assert back["pairs"] == {("image", "label"): "classifier"} and back["$odd"] == [1, [2, {"$tensor": "not one"}]]
    with pytest.raises(ModkitError, match="is a test in format '7'; this modkit reads format 8"):
        state_file.read(path, "test", 8)
    with pytest.raises(ModkitError, match="is not a modkit checkpoint file"):
        state_file.read(path, "checkpoint", 7)
    with pytest.raises(TypeError, match="a object cannot be stored"):
        state_file.to_bytes({"x": object()}, "test", 1)


def test_the_judge_cache_key_names_the_data_folder(tmp_path):
    """Judges fitted on a stand-in in one folder are not picked up for the real files in another."""
    from types import SimpleNamespace

    from modkit.config.recipe import DataSpec
    from modkit.evaluation.judges import cached_judges_path, dataset_identity

    def run(root):
        return SimpleNamespace(recipe=SimpleNamespace(data=DataSpec(dataset={"type": "polymnist"}, root=root)))

    stand_in, real = dataset_identity(run(str(tmp_path / "a"))), dataset_identity(run(str(tmp_path / "b")))
    assert stand_in["root"] == str((tmp_path / "a").resolve())
    assert cached_judges_path(stand_in) != cached_judges_path(real)
    assert cached_judges_path(stand_in) == cached_judges_path(dataset_identity(run(str(tmp_path / "a" / "."))))


def test_a_judges_projection_fits_fewer_rows_than_its_components():
    """A small test set (a quick run's 80 training scenes of 32×32 images) still fits a judge's PCA."""
    import numpy as np

    from modkit.evaluation.judges import LinearReducer, _reducer

    x = np.random.default_rng(0).normal(size=(80, 1024))
    reducer = LinearReducer.of(_reducer(1024, 80).fit(x))
    assert reducer.transform(x).shape == (80, 80)
    assert LinearReducer.of(_reducer(1024).fit(np.random.default_rng(1).normal(size=(300, 1024)))).transform(x).shape == (80, 128)
