"""Datasets as rows of raw values, viewed through the model's modalities as batches with presence.

A dataset plugin returns :class:`Records` per split. :class:`ModalityView` maps each recipe
modality to a record field, preprocesses and collates, and ANDs the dataset's own missing
values with a per-row presence mask (weak supervision). Batches are built in ``__getitems__``
so torch's DataLoader (workers, pinned memory) fetches whole batches at once.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor

from modkit.core.batch import Batch
from modkit.core.records import Column, Records, check_field_lengths
from modkit.errors import DataError, ModkitError, RecipeError
from modkit.core.modality import Modality


class ArrayRecords(Records):
    """In-memory arrays, one per field, already in model-ready form (the fast path: one index op per batch).

    ``objects`` holds fields of raw values that a modality must preprocess (strings for a
    tokenizer, say); ``None`` in them means missing. A view whose modalities read array fields
    only keeps the fast path; one that reads an object field goes through ``preprocess``.
    """

    in_memory: ClassVar[bool] = True

    def __init__(self, arrays: dict[str, Any], present: dict[str, np.ndarray] | None = None,
                 objects: dict[str, Sequence[Any]] | None = None):
        self.arrays = {k: torch.as_tensor(v) for k, v in arrays.items()}
        self.objects = {k: list(v) for k, v in (objects or {}).items()}
        sizes = {k: len(v) for k, v in [*self.arrays.items(), *self.objects.items()]}
        if len(set(sizes.values())) != 1:
            raise DataError(f"fields have different lengths: {sizes}")
        self.n = next(iter(sizes.values()))
        self.present = {k: torch.as_tensor(v, dtype=torch.bool) for k, v in (present or {}).items()}
        self.fields = list(self.arrays) + list(self.objects)

    def __len__(self) -> int:
        return self.n

    def get(self, i: int) -> dict[str, Any]:
        row = {k: (v[i] if k not in self.present or self.present[k][i] else None) for k, v in self.arrays.items()}
        row.update({k: v[i] for k, v in self.objects.items()})
        return row

    def take(self, index: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        ones = torch.ones(len(index), dtype=torch.bool)
        return {k: (v[index], self.present[k][index] if k in self.present else ones) for k, v in self.arrays.items()}

    def with_fields(self, fields: dict[str, Any]) -> "ArrayRecords":
        """:meth:`Records.with_fields`, computed now and kept in memory: numbers of one shape become array fields
        (``None`` entries missing), anything else object fields, so a view over number fields keeps its fast path."""
        check_field_lengths(fields, self.n)
        arrays = {k: v for k, v in self.arrays.items() if k not in fields}
        present = {k: v for k, v in self.present.items() if k not in fields}
        objects = {k: v for k, v in self.objects.items() if k not in fields}
        for name, values in fields.items():
            if callable(values):
                values = [values(self.get(i)) for i in range(self.n)]
            array, mask = _as_array(values)
            if array is None:
                objects[name] = list(values)
            else:
                arrays[name] = array
                if mask is not None:
                    present[name] = mask
        return ArrayRecords(arrays, present, objects)


def _as_array(values: Any) -> tuple[Tensor | None, np.ndarray | None]:
    """Values as one numeric tensor and, if some are None, their presence mask; (None, None) if they are not numbers."""
    if isinstance(values, (np.ndarray, Tensor)):
        return torch.as_tensor(values), None
    values = list(values)
    mask = np.array([v is not None for v in values])
    known = [v for v in values if v is not None]
    if not known:
        return None, None
    try:
        stacked = np.stack([np.asarray(v.numpy() if isinstance(v, Tensor) else v) for v in known])
    except (ValueError, TypeError):
        return None, None
    if stacked.dtype.kind not in "biuf":
        return None, None
    if mask.all():
        return torch.as_tensor(stacked), None
    full = np.zeros((len(values), *stacked.shape[1:]), dtype=stacked.dtype)
    full[mask] = stacked
    return torch.as_tensor(full), mask


class ColumnRecords(Records):
    """Rows from columns of raw values (file paths, strings, numbers, lists), preprocessed per item.

    A column is a sequence, or a callable ``f(i)`` for values made lazily (a mask drawn from
    polygons, a file checked when read). ``names[i]`` says where row ``i`` came from (a file and
    line) for error messages; ``errors`` maps rows known bad at read time to their message.
    """

    def __init__(self, columns: dict[str, Any], n: int | None = None, names: Sequence[str] | None = None,
                 errors: dict[int, str] | None = None):
        self.columns = dict(columns)
        sizes = {k: len(v) for k, v in self.columns.items() if not callable(v)}
        if n is None:
            if not sizes:
                raise ValueError("ColumnRecords needs n when every column is lazy")
            n = next(iter(sizes.values()))
        wrong = {k: size for k, size in sizes.items() if size != n}
        if wrong:
            raise DataError(f"fields have different lengths: {wrong} (expected {n})")
        self.n = n
        self.names = names
        self.errors = dict(errors or {})
        self.fields = list(self.columns)

    def __len__(self) -> int:
        return self.n

    def describe(self, i: int) -> str:
        return self.names[i] if self.names is not None else f"row {i}"

    def get(self, i: int) -> dict[str, Any]:
        if i in self.errors:
            raise DataError(self.errors[i])
        return {k: (v(i) if callable(v) else v[i]) for k, v in self.columns.items()}

    def problems(self) -> list[str]:
        return [self.errors[i] for i in sorted(self.errors)]


class DatasetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str


class DatasetSource:
    """Base class for dataset plugins: ``load()`` returns ``{"train": Records, "test": Records}`` or ``{"all": Records}``."""

    Config: ClassVar[type[DatasetConfig]] = DatasetConfig
    #: fields holding class attributes that coherence and probes judge by (None: every integer field)
    attributes: ClassVar[list[str] | None] = None

    def __init__(self, config: DatasetConfig, root: Path):
        self.config = config
        self.root = root

    def load(self) -> dict[str, Records]:  # pragma: no cover - abstract
        raise NotImplementedError

    def find_folder(self, subfolders: Sequence[str | Path], holds: Callable[[Path], bool], what: str) -> Path:
        """The dataset's folder: ``data.root/<config.dir>`` if the config names one, else the first of
        ``data.root`` and ``data.root/<subfolder>`` that ``holds`` the dataset; a DataError naming ``what``
        and every place looked otherwise. For adapters of datasets with a conventional layout."""
        named = getattr(self.config, "dir", None)
        candidates = [self.root / named] if named else [self.root, *(self.root / sub for sub in subfolders)]
        for folder in candidates:
            if holds(folder):
                return folder
        raise DataError(f"no {what} in {' or '.join(map(str, candidates))}")

    def judge(self, field: str, samples: list[Any]) -> dict[str, np.ndarray] | None:
        """Ground truth for generated samples of ``field``, each as its modality renders it (an RGB array in
        [0, 1] or a string): per attribute, the (B,) class each sample shows. A procedurally generated dataset
        can answer exactly (parse a caption, read a colour); None (default) makes evaluation train a classifier."""
        return None


class DerivedDatasetConfig(DatasetConfig):
    """A derived dataset's options; ``base`` holds the options of the dataset it extends (``type`` excluded)."""

    base: dict[str, Any] = Field(default_factory=dict, description="options for the dataset this one extends")


class DerivedDataset(DatasetSource):
    """A dataset that is another one plus fields, without touching how the other stores its rows.

    Set ``base`` to the dataset it extends — its class, or the name it is registered under (looked up among
    the installed plugins and modkit.toml's) — and write :meth:`add_fields`. Every split of the base dataset
    comes back with the new fields (:meth:`Records.with_fields`); ``judge`` and ``attributes`` are the base's
    unless overridden. Subclass :class:`DerivedDatasetConfig` for options of your own.
    """

    Config: ClassVar[type[DatasetConfig]] = DerivedDatasetConfig
    base: ClassVar[str | type[DatasetSource]]

    def base_source(self) -> DatasetSource:
        """The base dataset, configured with ``config.base`` (an unknown option is a RecipeError naming it)."""
        cls, name = registered_dataset(self.base)
        options = dict(getattr(self.config, "base", {}) or {})
        try:
            config = cls.Config.model_validate({"type": name, **options})
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"])
            raise RecipeError(f"data.dataset.base.{where}", f"{exc.errors()[0]['msg']} (dataset '{name}')") from None
        return cls(config, self.root)

    def load(self) -> dict[str, Records]:
        self._base = self.base_source()
        return {split: records.with_fields(self.add_fields(records, split)) for split, records in self._base.load().items()}

    def add_fields(self, records: Records, split: str) -> dict[str, Any]:
        """The fields to add to one split: ``{name: values}`` — ``len(records)`` raw values (a list, an array;
        ``None`` for missing) or a function of one row's ``records.get(i)`` dict."""
        raise NotImplementedError(f"{type(self).__name__} must define add_fields()")

    def judge(self, field: str, samples: list[Any]) -> dict[str, np.ndarray] | None:
        base = getattr(self, "_base", None) or self.base_source()
        return base.judge(field, samples)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "attributes" not in cls.__dict__ and isinstance(cls.__dict__.get("base"), type):
            cls.attributes = cls.__dict__["base"].attributes


def registered_dataset(base: str | type[DatasetSource]) -> tuple[type[DatasetSource], str]:
    """A dataset class and the name its config's ``type`` takes, from a class or a registered name."""
    if isinstance(base, type):
        return base, base.__name__
    from modkit.config.project import load_project
    from modkit.plugins.loader import load_plugins

    registry = load_plugins(load_project().plugins).registry
    if not registry.has("dataset", base):
        raise ModkitError(f"the base dataset '{base}' is not registered (datasets: {', '.join(registry.names('dataset'))})")
    return registry.get("dataset", base), base


class ModalityView(torch.utils.data.Dataset):
    """Rows of a :class:`Records` seen as batches for the model's modalities."""

    def __init__(self, records: Records, modalities: dict[str, Modality], fields: dict[str, str],
                 rows: np.ndarray | None = None, presence: np.ndarray | None = None, skip_bad: bool = False):
        self.records = records
        self.modalities = modalities
        self.names = list(modalities)
        self.fields = fields
        self.rows = torch.as_tensor(np.arange(len(records)) if rows is None else rows, dtype=torch.long)
        n = len(self.names)
        self.presence = torch.ones(len(self.rows), n, dtype=torch.bool) if presence is None else torch.as_tensor(presence, dtype=torch.bool)
        self.skip_bad = skip_bad
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def fast_path(self) -> bool:
        """Every modality reads a model-ready array field: batches are one index op, no preprocess."""
        return isinstance(self.records, ArrayRecords) and all(self.fields[n] in self.records.arrays for n in self.names)

    def __getitem__(self, i: int) -> Batch:
        return self.__getitems__([i])

    def __getitems__(self, index: Sequence[int]) -> Batch:
        index = torch.as_tensor(index, dtype=torch.long)
        rows = self.rows[index]
        presence = self.presence[index].clone()
        if self.fast_path:
            taken = self.records.take(rows)
            data = {}
            for j, name in enumerate(self.names):
                values, present = taken[self.fields[name]]
                data[name] = values
                presence[:, j] &= present
            return Batch(data, presence)
        return self._per_item(rows, presence)

    def _per_item(self, rows: Tensor, presence: Tensor) -> Batch:
        samples: dict[str, list] = {name: [] for name in self.names}
        keep = []
        for b, r in enumerate(rows.tolist()):
            try:
                record = self.records.get(r)
                row = {}
                for j, name in enumerate(self.names):
                    value = record.get(self.fields[name]) if presence[b, j] else None
                    row[name] = None if value is None else self._preprocess(name, value, r)
            except DataError:
                if not self.skip_bad:
                    raise
                self.skipped += 1
                continue
            keep.append(b)
            for j, name in enumerate(self.names):
                presence[b, j] &= row[name] is not None
                samples[name].append(row[name])
        presence = presence[keep]
        data = {name: self.modalities[name].collate(samples[name]) for name in self.names} if keep else {}
        return Batch(data, presence, skipped=len(rows) - len(keep))

    def _preprocess(self, name: str, value: Any, r: int) -> Any:
        try:
            return self.modalities[name].preprocess(value)
        except DataError as exc:
            raise DataError(f"{self.records.describe(r)}, field '{self.fields[name]}': {exc}") from None
        except Exception as exc:  # noqa: BLE001 - any failure to read a value is bad data, named
            raise DataError(f"{self.records.describe(r)}, field '{self.fields[name]}': {type(exc).__name__}: {exc}") from None


def split_records(records: Records, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random train/test split of row indices."""
    perm = np.random.default_rng(seed).permutation(len(records))
    n_test = max(1, int(round(test_fraction * len(records))))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def weak_supervision(rows: np.ndarray, n_modalities: int, paired_fraction: float, seed: int,
                     unpaired: str | Sequence[int] = "split") -> tuple[np.ndarray, np.ndarray]:
    """MVAE's protocol: keep ``paired_fraction`` of rows paired; the others become what ``unpaired`` says.

    Returns (rows, presence): paired rows see all modalities. With ``"split"`` (MVAE) each unpaired row
    appears N times, each time with one modality only, so the model never sees its modalities together;
    with ``"drop"`` unpaired rows are left out (training on the pairs alone); with a list of modality
    indices each unpaired row appears once with only those (``[0]``: image-only rows, MEME's scheme
    where one modality is missing).
    """
    if paired_fraction >= 1.0 or n_modalities == 1:
        return rows, np.ones((len(rows), n_modalities), dtype=bool)
    perm = np.random.default_rng(seed + 1).permutation(len(rows))
    n_paired = int(round(paired_fraction * len(rows)))
    paired, unpaired_rows = rows[perm[:n_paired]], rows[perm[n_paired:]]
    if unpaired == "split":
        shown = np.eye(n_modalities, dtype=bool)
    elif unpaired == "drop":
        shown = np.zeros((0, n_modalities), dtype=bool)
    else:
        shown = np.zeros((1, n_modalities), dtype=bool)
        shown[0, list(unpaired)] = True
    out_rows = np.concatenate([paired, np.repeat(unpaired_rows, len(shown))])
    presence = np.concatenate([np.ones((len(paired), n_modalities), dtype=bool), np.tile(shown, (len(unpaired_rows), 1))])
    return out_rows, presence


class EpochBatchSampler(torch.utils.data.Sampler):
    """Batches of indices from a permutation seeded by (seed, epoch): no state to checkpoint.

    ``rank``/``world`` shard each batch-aligned permutation like DistributedSampler (padding by
    wrap-around so every rank gets the same number of steps); ``start`` skips batches already
    done, for an exact mid-epoch resume.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.shuffle, self.rank, self.world = n, batch_size, seed, shuffle, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def steps(self) -> int:
        return math.ceil(math.ceil(self.n / self.world) / self.batch_size)

    def __len__(self) -> int:
        return self.steps() - self.start

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch))
        else:
            order = torch.arange(self.n)
        per_rank = math.ceil(self.n / self.world)
        if per_rank * self.world > self.n:
            order = torch.cat([order, order[: per_rank * self.world - self.n]])
        mine = order[self.rank :: self.world]
        for step in range(self.start, self.steps()):
            yield mine[step * self.batch_size : (step + 1) * self.batch_size].tolist()


class BalancedBatchSampler(EpochBatchSampler):
    """Batches of ``paired_per_batch`` paired rows and ``batch_size`` − that many others (M2's balanced labelled +
    unlabelled batches), from permutations seeded by (seed, epoch) like :class:`EpochBatchSampler`.

    An epoch is one pass over the other rows; the paired rows are drawn in a shuffled order that is continued
    across the epoch (a new permutation each time they run out), so every paired row is seen about equally often.
    ``paired`` is a boolean per training row. With ``world`` > 1 each global batch is shared out row by row
    (rank r takes rows r, r + world, …), so every rank's batch keeps the same balance when both parts divide.
    """

    def __init__(self, paired: Sequence[bool] | np.ndarray, batch_size: int, paired_per_batch: int, seed: int = 0,
                 rank: int = 0, world: int = 1):
        flags = np.asarray(paired, dtype=bool)
        if not 0 < paired_per_batch < batch_size * world:
            raise ValueError(f"paired_per_batch {paired_per_batch} must be between 1 and the batch size "
                             f"{batch_size * world} minus one")
        self.paired_rows = torch.as_tensor(np.flatnonzero(flags), dtype=torch.long)
        self.other_rows = torch.as_tensor(np.flatnonzero(~flags), dtype=torch.long)
        if not len(self.paired_rows) or not len(self.other_rows):
            raise ValueError(f"balanced batches need paired and unpaired rows (paired {len(self.paired_rows)}, "
                             f"unpaired {len(self.other_rows)})")
        self.k, self.global_batch = paired_per_batch, batch_size * world
        super().__init__(len(flags), batch_size, seed=seed, shuffle=True, rank=rank, world=world)

    def steps(self) -> int:
        return math.ceil(len(self.other_rows) / (self.global_batch - self.k))

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        others = self.other_rows[torch.randperm(len(self.other_rows), generator=g)]
        n_steps = self.steps()
        needed = n_steps * self.k
        draws = [self.paired_rows[torch.randperm(len(self.paired_rows), generator=g)]
                 for _ in range(math.ceil(needed / len(self.paired_rows)))]
        paired = torch.cat(draws)[:needed]
        per = self.global_batch - self.k
        for step in range(self.start, n_steps):
            batch = torch.cat([paired[step * self.k:(step + 1) * self.k], others[step * per:(step + 1) * per]])
            yield batch[self.rank::self.world].tolist()


def _identity(batch: Batch) -> Batch:
    return batch


def make_loader(view: ModalityView, sampler: EpochBatchSampler, num_workers: int = 0, pin_memory: bool = False,
                generator: torch.Generator | None = None) -> torch.utils.data.DataLoader:
    """``generator`` seeds the workers; pass one so that starting an epoch does not draw from the global RNG
    (DataLoader does, once per ``iter``), which would shift the training noise after a mid-epoch resume."""
    return torch.utils.data.DataLoader(view, batch_sampler=sampler, collate_fn=_identity, num_workers=num_workers,
                                       pin_memory=pin_memory, persistent_workers=num_workers > 0, generator=generator)
