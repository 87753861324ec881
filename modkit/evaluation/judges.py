"""Judges: read a class attribute off (generated) data of one modality, so coherence can be scored.

Three kinds, tried in this order for a (modality, attribute) pair:

* ``self``: the modality's data *is* the attribute (a label modality on field ``label``): its
  prediction, class ids, is the answer.
* ``dataset``: the dataset plugin knows the ground truth (``DatasetSource.judge``), as a
  procedurally generated dataset can by inspecting what it would have drawn.
* ``classifier``: a linear classifier (scikit-learn's logistic regression after standardising and,
  for wide features, PCA) that modkit trains on the training split's real data
  (``Modality.judge_features`` → attribute). Only the fitted numbers are kept, as arrays in
  ``judges.safetensors`` (no pickle: opening a shared run never runs code), and rebuilt as
  :class:`LinearReducer`/:class:`LinearClassifier`, which predict exactly as the fitted estimators do.
  Its balanced accuracy on real test data is the ceiling any coherence measured with it can reach.

Classifier judges are fixed per dataset, so that every run on it is scored by the same classifier (as the
papers score every model with one pretrained classifier per dataset). They are found, first that exists:
a judges file the user names (``EvalSettings.judges``, ``--judges``), the file a dataset plugin ships in its
package (``judges.safetensors`` beside its module, made by ``benchmarks/make_dataset_judges.py``), the
user's cache keyed by the dataset's identity (its recipe entry, folder and split); otherwise they are fitted once on
the dataset's real training data and cached there. Such a *dataset judges* file keys its classifiers by
dataset field, not by a run's modality names, and records for each field the modality kind and feature
width it was trained on: a run whose modality reads the field differently gets judges fitted for it instead.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from modkit.errors import ModkitError
from modkit.storage import files as rundir
from modkit.storage import state_file
from modkit.core.batch import Batch
from modkit.core.capabilities import DeclaresAttributes, Judgeable, Renderable, entry_index_of
from modkit.data.dataset import DatasetSource, ModalityView, Records
from modkit.core.engine import MultimodalVAE
from modkit.core.modality import Data

JUDGES_FILE = "judges.safetensors"
LEGACY_JUDGES_FILE = "judges.pkl"  # format 2, a pickle: never opened
JUDGES_FORMAT = 3
DATASET_JUDGES_KIND = "dataset-judges"  # a judges file keyed by dataset field, shared by every run on the dataset
DATASET_JUDGES_FORMAT = 1


def is_class_ids(x: Any) -> bool:
    return isinstance(x, Tensor) and x.dim() == 1 and not x.is_floating_point() and not x.dtype == torch.bool


def _scalar_class(value: Any) -> bool:
    if value is None:
        return False
    array = np.asarray(value)
    return array.ndim == 0 and array.dtype.kind in "iu"


MAX_VECTOR_ATTRIBUTES = 64


def split_attribute(name: str) -> tuple[str, int | None]:
    """``"attrs[3]"`` → ("attrs", 3): entry 3 of a 0/1 vector field; ``"label"`` → ("label", None)."""
    if name.endswith("]") and "[" in name:
        field, index = name[:-1].rsplit("[", 1)
        if index.isdigit():
            return field, int(index)
    return name, None


def _binary_vector(value: Any) -> int | None:
    array = np.asarray(value)
    if array.ndim == 1 and 0 < len(array) <= MAX_VECTOR_ATTRIBUTES and array.dtype.kind in "iubf" and np.isin(array, (0, 1)).all():
        return len(array)
    return None


def attribute_fields(records: Records, source: DatasetSource | None, sample_rows: Sequence[int]) -> list[str]:
    """The dataset's class attributes: those it declares, else every field whose values are integer scalars
    and every entry ``field[k]`` of a field holding 0/1 vectors (CelebA-style attributes)."""
    declared = source.attributes if isinstance(source, DeclaresAttributes) else None
    if declared is not None:
        return [f for f in declared if split_attribute(f)[0] in records.fields]
    found = []
    rows = [records.get(int(r)) for r in sample_rows[:32]]
    for name in records.fields:
        values = [row.get(name) for row in rows if row.get(name) is not None]
        if not values:
            continue
        if all(_scalar_class(v) for v in values):
            found.append(name)
            continue
        lengths = {_binary_vector(v) for v in values}
        if len(lengths) == 1 and None not in lengths:
            found += [f"{name}[{k}]" for k in range(lengths.pop())]
    return found


def attribute_values(records: Records, attributes: Sequence[str], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Per attribute, the (len(rows),) int64 class of each row; −1 where the value is missing."""
    out = {a: np.full(len(rows), -1, dtype=np.int64) for a in attributes}
    parts = {a: split_attribute(a) for a in attributes}
    arrays = getattr(records, "arrays", None)
    present = getattr(records, "present", {})
    if arrays is not None and all(f in arrays for f, _ in parts.values()):
        index = torch.as_tensor(rows, dtype=torch.long)
        for a, (f, k) in parts.items():
            values = arrays[f][index]
            values = (values if k is None else values[:, k]).numpy().astype(np.int64)
            if f in present:
                values = np.where(present[f][index].numpy(), values, -1)
            out[a] = values
        return out
    for i, r in enumerate(rows):
        record = records.get(int(r))
        for a, (f, k) in parts.items():
            v = record.get(f)
            if v is not None:
                out[a][i] = int(np.asarray(v)) if k is None else int(np.asarray(v).reshape(-1)[k])
    return out


def iterate(view: ModalityView, batch_size: int) -> Iterator[tuple[np.ndarray, Batch]]:
    """(positions in the view, batch) in order; rows a skip-bad view dropped are reported by a short batch."""
    for start in range(0, len(view), batch_size):
        positions = np.arange(start, min(start + batch_size, len(view)))
        yield positions, view.__getitems__(positions.tolist())


def select(data: Data, index: Tensor) -> Data:
    return {k: v[index] for k, v in data.items()} if isinstance(data, dict) else data[index]


def flatten_lead(data: Data, lead: int) -> Data:
    """Merge the first ``lead`` dims (subsets × batch) into one batch dim."""
    merge = lambda t: t.reshape(-1, *t.shape[lead:])  # noqa: E731
    return {k: merge(v) for k, v in data.items()} if isinstance(data, dict) else merge(data)


def _reducer(dim: int, rows: int | None = None):
    """Standardise, and project to 128 dimensions above 256 features (fewer where fewer rows fit it: PCA cannot
    find more components than rows): fitted once per modality, shared by its judges."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    components = 128 if rows is None else max(1, min(128, rows))
    return make_pipeline(StandardScaler(), *([PCA(n_components=components, random_state=0)] if dim > 256 else []))


def _classifier():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=500)


@dataclass
class LinearReducer:
    """A fitted StandardScaler (+ PCA) as its numbers: ``((x - mean) / scale - pca_mean) @ components.T``."""

    mean: np.ndarray
    scale: np.ndarray
    pca_mean: np.ndarray | None = None
    components: np.ndarray | None = None

    @classmethod
    def of(cls, pipeline) -> "LinearReducer":
        scaler, *pca = [step for _, step in pipeline.steps]
        if pca:
            return cls(scaler.mean_, scaler.scale_, pca[0].mean_, pca[0].components_)
        return cls(scaler.mean_, scaler.scale_)

    @property
    def n_features_in_(self) -> int:
        return len(self.mean)

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        return x if self.components is None else (x - self.pca_mean) @ self.components.T


@dataclass
class LinearClassifier:
    """A fitted linear classifier as its numbers (scikit-learn's ``decision_function`` then ``predict``)."""

    coef: np.ndarray  # (1, F) for two classes, else (C, F)
    intercept: np.ndarray
    classes: np.ndarray

    @classmethod
    def of(cls, fitted) -> "LinearClassifier":
        return cls(fitted.coef_, fitted.intercept_, fitted.classes_)

    def predict(self, x: np.ndarray) -> np.ndarray:
        scores = np.asarray(x, dtype=np.float64) @ self.coef.T + self.intercept
        picked = (scores[:, 0] > 0).astype(np.int64) if self.coef.shape[0] == 1 else scores.argmax(1)
        return self.classes[picked]


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float | None:
    """sklearn's class-balanced accuracy (mean per-class recall); None without samples."""
    from sklearn.metrics import balanced_accuracy_score

    if len(y) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # predicted classes absent from y_true are fine here
        return float(balanced_accuracy_score(y, pred))


@dataclass
class JudgeSet:
    attributes: list[str]
    fields: dict[str, str]  # modality → dataset field
    kinds: dict[tuple[str, str], str] = field(default_factory=dict)
    classifiers: dict[tuple[str, str], Any] = field(default_factory=dict)
    reducers: dict[str, Any] = field(default_factory=dict)  # modality → its fitted feature reducer
    scores: dict[str, dict[str, float | None]] = field(default_factory=dict)  # "modality/attribute" → accuracy on real test data
    source: DatasetSource | None = None
    origin: dict[str, Any] = field(default_factory=dict)  # where the classifier judges came from (eval.json's judge_source)

    def pairs(self, modality: str) -> list[str]:
        return [a for (m, a) in self.kinds if m == modality]

    def judge(self, model: MultimodalVAE, modality: str, predicted: Data) -> dict[str, np.ndarray]:
        """Per attribute, the class each (flat-batched) predicted sample shows."""
        out: dict[str, np.ndarray] = {}
        ground = None
        reduced = None
        for attr in self.pairs(modality):
            kind = self.kinds[(modality, attr)]
            if kind == "self":
                k = split_attribute(attr)[1]
                flat = predicted if k is None else predicted.reshape(len(predicted), -1)
                values = flat if k is None else flat[:, k if flat.shape[1] > 1 else 0]  # a split attribute: its one column
                out[attr] = values.detach().cpu().numpy().round().astype(np.int64)
            elif kind == "dataset":
                if ground is None:
                    ground = self.source.judge(self.fields[modality], renders(model, modality, predicted)) or {}
                if attr in ground:
                    out[attr] = np.asarray(ground[attr]).astype(np.int64)
            else:
                if reduced is None:
                    features = model.modalities[modality].judge_features(predicted)
                    reducer = self.reducers[modality]
                    if features is None or features.shape[1] != reducer.n_features_in_:
                        return out  # predictions not shaped like the data the judges were trained on: no verdict
                    reduced = reducer.transform(features.detach().cpu().numpy())
                out[attr] = self.classifiers[(modality, attr)].predict(reduced)
        return out

    # -- persistence -------------------------------------------------------------------------
    def save(self, path) -> None:
        payload = {"attributes": self.attributes, "fields": self.fields, "kinds": self.kinds, "scores": self.scores,
                   "classifiers": {k: vars(c) for k, c in self.classifiers.items()},
                   "reducers": {k: vars(r) for k, r in self.reducers.items()}}
        rundir.atomic_write_bytes(path, state_file.to_bytes(payload, "judges", JUDGES_FORMAT))

    @classmethod
    def load(cls, path, source: DatasetSource | None) -> "JudgeSet":
        """The judges in ``path``; a file that is not modkit's judges format is a ModkitError naming it."""
        try:
            payload = state_file.read(path, "judges", JUDGES_FORMAT)
            classifiers = {k: LinearClassifier(**v) for k, v in payload["classifiers"].items()}
            reducers = {k: LinearReducer(**v) for k, v in payload["reducers"].items()}
            problem = _judge_problem(classifiers, reducers)
            if problem:
                raise ModkitError(f"{path} is damaged ({problem})")
            return cls(payload["attributes"], payload["fields"], payload["kinds"], classifiers, reducers, payload["scores"], source)
        except ModkitError as exc:
            raise ModkitError(f"{exc}; delete it (or use --retrain-judges) to have the judges fitted again") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise ModkitError(f"{path} is not a modkit judges file ({exc}); delete it (or use --retrain-judges) to have "
                              "the judges fitted again") from None


def _judge_problem(classifiers: dict, reducers: dict) -> str | None:
    """What is wrong with judges read from a file (numbers of the wrong type or shapes that do not chain:
    reducer → classifier), or None; checked before any of them predicts."""
    def numeric(name: str, value: Any, ndim: int) -> str | None:
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf" or value.ndim != ndim:
            return f"{name} is not a {ndim}-D array of numbers"
        return None

    widths: dict[Any, int] = {}
    for key, r in reducers.items():
        bad = numeric(f"reducer {key} mean", r.mean, 1) or numeric(f"reducer {key} scale", r.scale, 1)
        if bad:
            return bad
        if r.scale.shape != r.mean.shape:
            return f"reducer {key}: scale has {r.scale.shape[0]} values for {r.mean.shape[0]} features"
        widths[key] = len(r.mean)
        if r.components is not None:
            bad = numeric(f"reducer {key} components", r.components, 2) or numeric(f"reducer {key} pca_mean", r.pca_mean, 1)
            if bad:
                return bad
            if r.components.shape[1] != len(r.mean) or r.pca_mean.shape != r.mean.shape:
                return f"reducer {key}: its PCA is {list(r.components.shape)} for {len(r.mean)} features"
            widths[key] = r.components.shape[0]
    for key, c in classifiers.items():
        bad = (numeric(f"classifier {key} coef", c.coef, 2) or numeric(f"classifier {key} intercept", c.intercept, 1)
               or numeric(f"classifier {key} classes", c.classes, 1))
        if bad:
            return bad
        rows = c.coef.shape[0]
        if c.intercept.shape[0] != rows or len(c.classes) != (2 if rows == 1 else rows):
            return f"classifier {key}: {rows} coefficient rows, {c.intercept.shape[0]} intercepts, {len(c.classes)} classes"
        modality = key[0] if isinstance(key, tuple) and key else None
        if modality in widths and c.coef.shape[1] != widths[modality]:
            return f"classifier {key} reads {c.coef.shape[1]} features, its reducer gives {widths[modality]}"
    return None


def renders(model: MultimodalVAE, modality: str, data: Data) -> list:
    """Each sample of a batch as a person would see it (``Modality.render``): RGB arrays or strings."""
    n = len(data["lengths"] if isinstance(data, dict) and "lengths" in data else next(iter(data.values())) if isinstance(data, dict) else data)
    one = (lambda i: {k: v[i] for k, v in data.items()}) if isinstance(data, dict) else (lambda i: data[i])
    return [model.modalities[modality].render(one(i)) for i in range(n)]


def plan_judges(model: MultimodalVAE, view: ModalityView, attributes: list[str], source: DatasetSource | None) -> JudgeSet:
    """Decide the kind of judge for every (modality, attribute) pair, probing on a few real rows."""
    fields = dict(view.fields)
    judges = JudgeSet(attributes, fields, source=source)
    probe = view.__getitems__(list(range(min(4, len(view)))))
    for name in model.names:
        data = probe.data[name]
        f = fields[name]
        own = [a for a in attributes if split_attribute(a)[0] == f]
        index = entry_index_of(model.modalities[name])
        if own and index is not None:  # a split attribute: one entry of the field's vector, its data the whole vector
            judges.kinds.update({(name, a): "self" for a in own if split_attribute(a)[1] == index})
            continue
        if own:
            # the modality's data are the attribute(s): judge them directly where the data have their shape
            for a in own:
                k = split_attribute(a)[1]
                if (k is None and is_class_ids(data)) or (k is not None and isinstance(data, Tensor) and data.dim() == 2
                                                          and data.shape[1] > k and data.shape[1] == len([o for o in own if "[" in o])):
                    judges.kinds[(name, a)] = "self"
            continue
        knows = (source is not None and type(source).judge is not DatasetSource.judge  # overridden: the dataset knows the truth
                 and isinstance(model.modalities[name], Renderable))  # … of what it is shown, as a person would see it
        ground = source.judge(f, renders(model, name, data)) if knows else None
        for attr in attributes:
            if ground and attr in ground:
                judges.kinds[(name, attr)] = "dataset"
            elif (isinstance(model.modalities[name], Judgeable) and model.modalities[name].judge_features(data) is not None
                  and not is_class_ids(data)):
                judges.kinds[(name, attr)] = "classifier"
    return judges


def fit_classifiers(model: MultimodalVAE, judges: JudgeSet, train: ModalityView, train_attrs: dict[str, np.ndarray],
                    test: ModalityView, test_attrs: dict[str, np.ndarray], batch_size: int, max_rows: int, seed: int = 0,
                    only: Sequence[tuple[str, str]] | None = None) -> None:
    """Train each ``classifier`` judge (those of ``only``, when given) on real training data; score every judge
    not already scored on its own held-out data on real test data."""
    wanted = [(m, a) for (m, a), k in judges.kinds.items() if k == "classifier" and (only is None or (m, a) in only)]
    if wanted:
        rng = np.random.default_rng(seed)
        positions = np.sort(rng.permutation(len(train))[:max_rows])
        feats, kept = _collect_features(model, train, positions, {m for m, _ in wanted}, batch_size)
        reduced = {}
        for m in {m for m, _ in wanted}:
            x, present = feats[m]
            judges.reducers[m] = LinearReducer.of(_reducer(x.shape[1], int(present.sum())).fit(x[present]))
            reduced[m] = judges.reducers[m].transform(x)
        for m, a in wanted:
            present = feats[m][1]
            y = train_attrs[a][kept]
            keep = present & (y >= 0)
            if len(np.unique(y[keep])) < 2:
                del judges.kinds[(m, a)]
                continue
            clf = _classifier()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf.fit(reduced[m][keep], y[keep])
            judges.classifiers[(m, a)] = LinearClassifier.of(clf)
    # every judge's accuracy on real test data: the ceiling for coherence measured with it
    modalities = {m for m, _ in judges.kinds}
    for m in modalities:
        preds: dict[str, list[np.ndarray]] = {}
        masks: list[np.ndarray] = []
        seen: list[np.ndarray] = []
        for pos, batch in iterate(test, batch_size):
            if len(batch) != len(pos):
                continue
            data = batch.to(model.device).data[m]
            for a, p in judges.judge(model, m, data).items():
                preds.setdefault(a, []).append(p)
            masks.append(batch.present[:, model.names.index(m)].numpy())
            seen.append(pos)
        if not masks:
            continue
        present = np.concatenate(masks)
        for a, chunks in preds.items():
            if judges.scores.get(f"{m}/{a}", {}).get("scored_on"):
                continue  # a fixed judge: its ceiling was measured once, on the data it was not trained on
            y = test_attrs[a][np.concatenate(seen)]
            keep = present & (y >= 0)
            judges.scores[f"{m}/{a}"] = {"kind": judges.kinds[(m, a)], "balanced_accuracy": balanced_accuracy(y[keep], np.concatenate(chunks)[keep]),
                                         "items": int(keep.sum()), "scored_on": "this run's test split"}


@torch.no_grad()
def _collect_features(model: MultimodalVAE, view: ModalityView, positions: np.ndarray, names: set[str], batch_size: int):
    feats: dict[str, list] = {m: [] for m in names}
    present: dict[str, list] = {m: [] for m in names}
    kept: list[np.ndarray] = []
    for start in range(0, len(positions), batch_size):
        pos = positions[start:start + batch_size]
        batch = view.__getitems__(pos.tolist())
        if len(batch) != len(pos):
            continue
        kept.append(pos)
        on_device = batch.to(model.device)  # a plugin's judge_features may use its own (device) weights
        for m in names:
            feats[m].append(model.modalities[m].judge_features(on_device.data[m]).float().cpu().numpy())
            present[m].append(batch.present[:, model.names.index(m)].numpy())
    return {m: (np.concatenate(feats[m]), np.concatenate(present[m])) for m in names}, np.concatenate(kept)


# -- judges fixed per dataset ------------------------------------------------------------------------
@dataclass
class DatasetJudges:
    """Classifier judges of one dataset, keyed by dataset field: what every run on the dataset is scored with."""

    attributes: list[str]
    classifiers: dict[tuple[str, str], LinearClassifier]  # (field, attribute) → classifier
    reducers: dict[str, LinearReducer]  # field → feature reducer
    features: dict[str, dict[str, Any]]  # field → {"modality": the modality kind, "dim": feature width}
    scores: dict[str, dict[str, Any]]  # "field/attribute" → {"balanced_accuracy", "items"} on the judge's held-out real data
    identity: dict[str, Any] = field(default_factory=dict)  # the dataset (recipe entry) and split it was trained on
    provenance: dict[str, Any] = field(default_factory=dict)  # command, commit, date, machine, library versions

    def save(self, path) -> None:
        payload = {"attributes": self.attributes, "classifiers": {k: vars(c) for k, c in self.classifiers.items()},
                   "reducers": {k: vars(r) for k, r in self.reducers.items()}, "features": self.features,
                   "scores": self.scores, "identity": self.identity, "provenance": self.provenance}
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        rundir.atomic_write_bytes(Path(path), state_file.to_bytes(payload, DATASET_JUDGES_KIND, DATASET_JUDGES_FORMAT))

    @classmethod
    def load(cls, path) -> "DatasetJudges":
        """The judges in ``path`` (numbers only: nothing executes); anything else is a ModkitError naming it."""
        try:
            p = state_file.read(path, DATASET_JUDGES_KIND, DATASET_JUDGES_FORMAT)
            return cls(list(p["attributes"]), {tuple(k): LinearClassifier(**v) for k, v in p["classifiers"].items()},
                       {k: LinearReducer(**v) for k, v in p["reducers"].items()}, p["features"], p["scores"],
                       p.get("identity", {}), p.get("provenance", {}))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ModkitError(f"{path} is not a modkit dataset judges file ({exc})") from None


def modality_kind(modality: Any) -> str:
    return f"{type(modality).__module__.split('.')[0]}.{type(modality).__name__}"


def dataset_identity(run: Any) -> dict[str, Any]:
    """What makes two runs' real data the same for a judge: the dataset's recipe entry, the folder it is read from
    (judges fitted on a stand-in in one folder must not be reused for the real files in another) and the split."""
    from pathlib import Path

    data = run.recipe.data
    root = str(Path(data.root).expanduser().resolve()) if data.root else None
    return {"dataset": data.dataset.model_dump(mode="json"), "root": root, "test_fraction": data.test_fraction,
            "split_seed": data.split_seed}


def cache_dir() -> "Path":
    import os
    from pathlib import Path

    return Path(os.environ.get("MODKIT_CACHE_DIR") or Path.home() / ".cache" / "modkit") / "judges"


def cached_judges_path(identity: dict[str, Any]) -> "Path":
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"{identity['dataset'].get('type', 'dataset')}-{digest}.safetensors"


def shipped_judges_path(source: DatasetSource | None) -> "Path | None":
    """``judges.safetensors`` beside the dataset plugin's module, when it ships one."""
    import inspect
    from pathlib import Path

    if source is None:
        return None
    try:
        path = Path(inspect.getfile(type(source))).parent / JUDGES_FILE
    except (TypeError, OSError):
        return None
    return path if path.is_file() else None


def to_dataset_judges(judges: JudgeSet, model: MultimodalVAE, dims: dict[str, int], identity: dict[str, Any],
                      provenance: dict[str, Any] | None = None) -> DatasetJudges:
    """A run's fitted classifier judges re-keyed by dataset field (what :func:`adopt` reads back)."""
    out = DatasetJudges(list(judges.attributes), {}, {}, {}, {}, identity, provenance or {})
    for (m, a), clf in judges.classifiers.items():
        f = judges.fields[m]
        out.classifiers[(f, a)] = clf
        out.reducers[f] = judges.reducers[m]
        out.features[f] = {"modality": modality_kind(model.modalities[m]), "dim": int(dims[m])}
        if f"{m}/{a}" in judges.scores:
            out.scores[f"{f}/{a}"] = dict(judges.scores[f"{m}/{a}"])
    return out


def adopt(judges: JudgeSet, fixed: DatasetJudges, model: MultimodalVAE, dims: dict[str, int]) -> list[tuple[str, str]]:
    """Take every classifier judge of ``judges`` from ``fixed`` where it has the pair's field and attribute and was
    trained on features of the same modality kind and width; returns the pairs it could not take."""
    missing = []
    for (m, a), kind in judges.kinds.items():
        if kind != "classifier":
            continue
        f = judges.fields[m]
        spec = fixed.features.get(f, {})
        if (f, a) in fixed.classifiers and spec.get("modality") == modality_kind(model.modalities[m]) and spec.get("dim") == dims.get(m):
            judges.classifiers[(m, a)] = fixed.classifiers[(f, a)]
            judges.reducers[m] = fixed.reducers[f]
            score = fixed.scores.get(f"{f}/{a}", {})
            judges.scores[f"{m}/{a}"] = {"kind": "classifier", "balanced_accuracy": score.get("balanced_accuracy"),
                                         "items": score.get("items"), "scored_on": "the judge's own held-out real data"}
        else:
            missing.append((m, a))
    return missing


def feature_dims(model: MultimodalVAE, view: ModalityView, judges: JudgeSet) -> dict[str, int]:
    """Each classifier-judged modality's feature width, read off a few real rows."""
    names = {m for (m, _), k in judges.kinds.items() if k == "classifier"}
    if not names or len(view) == 0:
        return {}
    probe = view.__getitems__(list(range(min(2, len(view))))).to(model.device)
    return {m: int(model.modalities[m].judge_features(probe.data[m]).reshape(len(probe), -1).shape[1]) for m in names}


def load_or_fit_judges(context: Any) -> JudgeSet:
    """The judges an evaluation scores coherence with (see the module's docstring for where classifier judges come
    from); ``settings.retrain_judges`` fits them on this run's training split instead. The judges used are written
    to the run directory (``judges.safetensors``) as a record; eval.json's ``judge_source`` says where they came from."""
    from pathlib import Path

    run, test, train, settings = context.run, context.test, context.train, context.settings
    model, source = run.model, run.dataset_source()
    judges = plan_judges(model, train, context.attributes, source)
    dims = feature_dims(model, train, judges)
    wanted = [(m, a) for (m, a), k in judges.kinds.items() if k == "classifier"]
    identity = dataset_identity(run)
    missing, origin = list(wanted), {"classifiers": "none needed"}
    if wanted and not settings.retrain_judges:
        named = getattr(settings, "judges", None) or getattr(getattr(run.recipe, "eval", None), "judges", None)
        if named:
            path = Path(named).expanduser()
            if not path.is_file():
                raise ModkitError(f"--judges: {path} does not exist")
            candidates = [("named", path)]
        else:
            candidates = [("dataset plugin", shipped_judges_path(source)), ("cache", cached_judges_path(identity))]
        for where, path in candidates:
            if path is None or not path.is_file():
                continue
            fixed = DatasetJudges.load(path)
            missing = adopt(judges, fixed, model, dims)
            origin = {"classifiers": where, "file": str(path), "trained_on": fixed.identity, "provenance": fixed.provenance}
            break
        if named and missing:
            context.echo(f"warning: {named} has no judge for {', '.join(f'{m}/{a}' for m, a in missing)}; fitting those on this run's data")
    fitted_here = bool(missing)
    if missing:
        rows = min(len(train), settings.judge_rows)
        context.echo(f"fitting coherence judges ({', '.join(f'{m}/{a}' for m, a in missing)}) on {rows} real training rows …")
        train_attrs = attribute_values(train.records, context.attributes, train.rows.numpy())
        fit_classifiers(model, judges, train, train_attrs, test, context.test_attributes, settings.batch_size,
                        settings.judge_rows, settings.seed, only=missing)
        if origin.get("classifiers") == "none needed" or len(missing) == len(wanted):
            origin = {"classifiers": "fitted on this run's training split" if settings.retrain_judges else "fitted now, cached"}
    else:
        fit_classifiers(model, judges, train, {}, test, context.test_attributes, settings.batch_size, settings.judge_rows,
                        settings.seed, only=[])
    if fitted_here and not settings.retrain_judges and not getattr(settings, "judges", None) and len(missing) == len(wanted):
        try:  # the first evaluation on this dataset and split fixes the judges for every later one
            path = cached_judges_path(identity)
            to_dataset_judges(judges, model, dims, identity, {"fitted_by": "modkit eval", "run": str(run.run_dir)}).save(path)
            origin["file"] = str(path)
        except OSError as exc:
            context.echo(f"warning: could not cache the judges ({exc})")
    judges.origin = origin
    judges.save(run.run_dir / JUDGES_FILE)
    return judges


def judges_for(context: Any) -> JudgeSet:
    """:func:`load_or_fit_judges`, once per evaluation: every metric that reads a judge (coherence, FID's
    features) shares the one set."""
    cached = context.__dict__.get("_judges")
    if cached is None:
        cached = context.__dict__["_judges"] = load_or_fit_judges(context)
    return cached
