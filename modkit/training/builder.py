"""Recipe → components: look each ``type`` up in the registry, validate its options, construct it.

:func:`build` is the one front door: the modalities (each prepared once on the training split), the fusion,
the sampler, the model and the training/test views, from the recipe's dataset, from splits in hand, or from
no data at all (an exported model, rebuilt from the files its modalities kept).

Every failure here is the user's (an unknown name, a bad option, a field the dataset lacks, data
that do not fit the modality) and becomes a :class:`RecipeError` naming the recipe key.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from modkit.core.batch import Batch
from modkit.data.dataset import Column, DatasetSource, ModalityView, Records, split_records, weak_supervision
from modkit.core.engine import MultimodalVAE
from modkit.core.fusion import Fusion
from modkit.errors import DataError, ModkitError, RecipeError
from modkit.core.modality import Modality
from modkit.plugins.loader import PluginSet
from modkit.config.recipe import Component, Recipe, component_config
from modkit.core.subsets import SubsetSampler
from modkit.training import distributed
from modkit.training.distributed import SINGLE, Dist


@dataclass
class Setup:
    recipe: Recipe
    model: MultimodalVAE
    sampler: SubsetSampler
    train: ModalityView
    test: ModalityView
    #: rows held out of training and scored after each epoch (``data.monitor_fraction``); None without them
    monitor: ModalityView | None = None


def lookup(plugins: PluginSet, kind: str, component: Component, key: str, source: str | None):
    if not plugins.registry.has(kind, component.type):
        names = plugins.registry.names(kind)
        raise RecipeError(key, f"unknown {kind} '{component.type}' (available: {', '.join(names) or 'none'}){plugins.broken_hint()}", source)
    return plugins.registry.get(kind, component.type)


def dataset_source(recipe: Recipe, plugins: PluginSet, source: str | None = None) -> DatasetSource:
    """The recipe's dataset plugin object, not loaded yet (its ``load``, ``attributes`` and ``judge`` hooks)."""
    spec = recipe.data.dataset
    cls = lookup(plugins, "dataset", spec, "data.dataset", source)
    config = component_config(spec, getattr(cls, "Config", None) or DatasetSource.Config, "data.dataset", source)
    return cls(config, Path(recipe.data.root or "data"))


def load_records(recipe: Recipe, plugins: PluginSet, source: str | None) -> tuple[Records, np.ndarray, np.ndarray]:
    """The dataset plugin's records and the train/test row indices (a seeded split if it has none)."""
    return split_splits(recipe, dataset_source(recipe, plugins, source).load())


def split_splits(recipe: Recipe, splits: Mapping[str, Records]) -> tuple[Records, np.ndarray, np.ndarray]:
    """Splits as a dataset plugin's ``load`` returns them (``all``, or ``train`` and ``test``) → the records and
    the train/test row indices (a seeded split of ``all``)."""
    spec = recipe.data.dataset
    if "all" in splits:
        records = splits["all"]
        train, test = split_records(records, recipe.data.test_fraction, recipe.data.split_seed)
    elif "train" not in splits or "test" not in splits:
        raise ModkitError(f"dataset '{spec.type}' returned splits {sorted(splits)}; expected 'all' or 'train' and 'test'")
    else:
        train_records, test_records = splits["train"], splits["test"]
        # records that can join their splits into one (GatheredRecords) keep the one-index-per-batch fast path
        join = getattr(train_records, "concat", None)
        records = join(test_records) if join is not None and type(test_records) is type(train_records) else _Concat(train_records, test_records)
        train, test = np.arange(len(train_records)), len(train_records) + np.arange(len(test_records))
    check_problems(records, recipe.data.on_bad_sample)
    return records, train, test


def check_problems(records: Records, on_bad_sample: str) -> None:
    """Stop before training on rows the dataset already found bad, unless the recipe skips them."""
    problems = records.problems()
    if problems and on_bad_sample == "error":
        more = f" (and {len(problems) - 1} more bad row{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise DataError(f"{problems[0]}{more}; set data.on_bad_sample: skip to skip bad samples")


class _Concat(Records):
    """Train and test records as one index space, so views only hold row numbers."""

    def __init__(self, a: Records, b: Records):
        self.a, self.b = a, b
        self.fields = list(dict.fromkeys([*a.fields, *b.fields]))

    def __len__(self) -> int:
        return len(self.a) + len(self.b)

    def get(self, i: int):
        return self.a.get(i) if i < len(self.a) else self.b.get(i - len(self.a))

    def describe(self, i: int) -> str:
        return self.a.describe(i) if i < len(self.a) else self.b.describe(i - len(self.a))

    def problems(self) -> list[str]:
        return self.a.problems() + self.b.problems()


def build_modalities(recipe: Recipe, plugins: PluginSet, records: Records, train_rows: np.ndarray, run_dir: Path | None,
                     source: str | None, latent_dim: int | None = None, prepare: bool = True) -> dict[str, Modality]:
    """The recipe's modalities (each entry expanded), constructed at ``latent_dim`` and, unless ``prepare`` is
    False, each prepared on the training rows right after it is constructed."""
    latent_dim = recipe.model.latent_dim if latent_dim is None else latent_dim
    modalities: dict[str, Modality] = {}
    for name, spec in recipe.modalities.items():
        key = f"modalities.{name}"
        cls = lookup(plugins, "modality", spec, f"{key}.type", source)
        config = component_config(spec, cls.Config, key, source)
        field = recipe.field_of(name)
        if records.fields and field not in records.fields:
            raise RecipeError(f"{key}.field", f"dataset '{recipe.data.dataset.type}' has no field '{field}' (fields: {', '.join(records.fields)})", source)
        parts = cls.expand(name, config.model_copy(update={"field": field}))
        for sub, sub_config in parts.items():
            if sub != name and (sub in modalities or sub in recipe.modalities):
                raise RecipeError(key, f"expands into a modality named '{sub}', which the recipe already has", source)
            if not sub.replace("_", "").replace("-", "").isalnum():
                raise RecipeError(key, f"expands into a modality named '{sub}'; names may use letters, digits, '_' and '-' only", source)
            sub_field = sub_config.field or field
            if records.fields and sub_field not in records.fields:
                raise RecipeError(f"{key}.field", f"dataset '{recipe.data.dataset.type}' has no field '{sub_field}' (fields: {', '.join(records.fields)})", source)
            modality = cls(sub, sub_config.model_copy(update={"field": sub_field}), latent_dim)
            if prepare:
                prepare_modality(modality, recipe, records, train_rows, run_dir)
            modalities[sub] = modality
    return modalities


def prepare_modality(modality: Modality, recipe: Recipe, records: Records, train_rows: np.ndarray, run_dir: Path | None) -> None:
    """Fit the modality's data-dependent state on its training column (or reuse what ``run_dir`` keeps)."""
    modality.prepare(Column(records, field_of(modality), train_rows, skip_bad=recipe.data.on_bad_sample == "skip"), run_dir)


def field_of(modality: Modality) -> str:
    """The dataset column a built modality reads (expanded modalities carry it in their config)."""
    return modality.config.field or modality.name


def check_data(view: ModalityView, source: str | None) -> None:
    """Run the first rows through each modality's ``check`` so size mismatches fail before training."""
    if len(view) == 0:
        raise ModkitError("the training split is empty")
    # in-memory data are checked whole (cheap); files are checked on a few rows, then row by row as read
    n = len(view) if view.fast_path and view.records.in_memory else min(len(view), 4 if not view.skip_bad else 64)
    batch: Batch = view.__getitems__(list(range(n)))
    if len(batch) == 0:
        raise ModkitError(f"the first {n} training samples are all bad (skipped); check the data")
    for name, modality in view.modalities.items():
        try:
            modality.check(batch.data[name])
        except ValueError as exc:
            raise RecipeError(f"modalities.{name}", f"does not fit the data in field '{view.fields[name]}': {exc}", source) from None


class _NoRecords(Records):
    """No data at all: an exported model is rebuilt from its own files (tokenizers), never from data."""

    def __len__(self) -> int:
        return 0


def build_parts(recipe: Recipe, plugins: PluginSet, run_dir: Path | None, source: str | None, records: Records | None = None,
                train_rows: np.ndarray | None = None) -> tuple[dict[str, Modality], Fusion, SubsetSampler]:
    """The modalities (each prepared once, on ``records``' training rows or from ``run_dir``'s files alone), the
    fusion and the sampler.

    A fusion that sizes the latent itself (:meth:`Fusion.latent_width`, M2's ``z_dim`` beside its y map) is
    asked first, with the modalities constructed at ``model.latent_dim`` but not yet prepared; they are then
    constructed again at its width. A fusion with private latents (:meth:`Fusion.private_latents`, P each) gets
    its modalities built at ``model.latent_dim`` + P (at P with a hierarchical layout, where ``model.latent_dim`` is the top
    latent) and a latent ``model.latent_dim`` + N·P wide. Preparing comes
    last, once per modality: fitting a tokenizer on the data twice cost a second pass, and on a fresh run the
    second fit overwrote the first one's files.
    """
    records = records if records is not None else _NoRecords()
    train_rows = train_rows if train_rows is not None else np.zeros(0, dtype=np.int64)
    fusion_cls = lookup(plugins, "fusion", recipe.model.fusion, "model.fusion", source)
    config = component_config(recipe.model.fusion, fusion_cls.Config, "model.fusion", source)
    width = recipe.model.latent_dim
    private = fusion_cls.private_latents(config)
    if private:  # latent_dim is the shared part: each modality is built at shared + its private part, or its own part
        # alone under a top latent (Fusion.private_latents, Fusion.modality_width)
        modalities = build_modalities(recipe, plugins, records, train_rows, run_dir, source,
                                      fusion_cls.modality_width(config, recipe.model.latent_dim))
        width = recipe.model.latent_dim + len(modalities) * private
    elif _sizes_latent(fusion_cls):
        modalities = build_modalities(recipe, plugins, records, train_rows, run_dir, source, prepare=False)
        width = fusion_cls.latent_width(modalities, recipe.model.latent_dim, config)
        if width != recipe.model.latent_dim:
            modalities = build_modalities(recipe, plugins, records, train_rows, run_dir, source, width, prepare=False)
        for modality in modalities.values():
            prepare_modality(modality, recipe, records, train_rows, run_dir)
    else:  # constructed and prepared in turn, as every recipe's model was built before fusions could size the latent
        modalities = build_modalities(recipe, plugins, records, train_rows, run_dir, source)
    fusion = fusion_cls(modalities, width, config)
    sampler_cls = lookup(plugins, "sampler", recipe.model.sampler, "model.sampler", source)
    sampler = sampler_cls(len(modalities), component_config(recipe.model.sampler, sampler_cls.Config, "model.sampler", source), seed=recipe.seed)
    return modalities, fusion, sampler


def _sizes_latent(fusion_cls: type) -> bool:
    """Whether the fusion overrides :meth:`Fusion.latent_width` (sizes the latent from the modalities)."""
    return getattr(fusion_cls.latent_width, "__func__", None) is not Fusion.latent_width.__func__


def model_shapes(recipe: Recipe, plugins: PluginSet, run_dir: Path | None, source: str | None = None) -> dict[str, tuple[int, ...]] | None:
    """The shapes of every tensor in the state of the model ``recipe`` builds, built on the meta device, so
    nothing is allocated whatever sizes the recipe asks for; the modalities are prepared from ``run_dir``'s files
    alone. None when the model cannot be built without its data (a size check then has nothing to go on)."""
    import torch

    try:
        with torch.device("meta"):
            model = build(recipe, plugins, run_dir, source, data=None).model
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}
    except Exception:  # noqa: BLE001 - a modality that needs its data (a tokenizer to fit), or a plugin that cannot
        return None  # build on the meta device: no check here; the real build reports a recipe's own errors


def available_memory() -> int:
    """Bytes this process may allocate at most: the machine's memory, or less under an address-space limit."""
    import os
    import resource

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return min(total, soft) if soft not in (resource.RLIM_INFINITY, -1) else total


def state_bytes(shapes: Mapping[str, tuple[int, ...]], bytes_per_value: int = 4) -> int:
    return sum(int(np.prod(shape, dtype=np.float64)) for shape in shapes.values()) * bytes_per_value


def refuse_oversized(recipe: Recipe, plugins: PluginSet, source: str | None, copies: int = 4) -> None:
    """A recipe whose model (its weights, gradients and the optimizer's two moments: ``copies``) cannot fit in
    this machine's memory is refused before a byte of it is allocated."""
    shapes = model_shapes(recipe, plugins, None, source)
    if shapes is None:
        return
    need, have = state_bytes(shapes) * copies, available_memory()
    if need > have:
        raise RecipeError("modalities", f"the model this recipe describes has {state_bytes(shapes) // 4:,} parameters "
                          f"({need / 2**30:.1f} GiB to train), more than this machine's {have / 2**30:.1f} GiB; "
                          f"make its hidden sizes smaller", source)


def build_model(recipe: Recipe, plugins: PluginSet, run_dir: Path, source: str | None = None) -> MultimodalVAE:
    """The model alone, without data: what an exported folder (recipe, weights, tokenizers) is loaded into."""
    return build(recipe, plugins, run_dir, source, data=None).model


def repeat_rows(rows: np.ndarray, presence: np.ndarray, recipe: Recipe, train_rows: np.ndarray,
                n_modalities: int) -> tuple[np.ndarray, np.ndarray]:
    """``data.repeat``: the epoch's rows repeated, "match" so that an epoch is as long as under MVAE's split
    protocol (a pairs-only arm then takes as many optimiser steps as the arm it is compared with), "all" so that it
    is as long as the training split (a fine-tuning on few labels takes as many steps as one on every label)."""
    repeat = recipe.data.repeat
    if repeat == "match":
        split = weak_supervision(train_rows, n_modalities, recipe.data.paired_fraction, recipe.data.split_seed, "split")[0]
        repeat = max(1, round(len(split) / max(1, len(rows))))
    elif repeat == "all":
        repeat = max(1, round(len(train_rows) / max(1, len(rows))))
    if repeat == 1:
        return rows, presence
    return np.tile(rows, repeat), np.tile(presence, (repeat, 1))


def withhold(rows: np.ndarray, presence: np.ndarray, withheld: list[str], names: list[str],
             source: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``data.withhold``: those modalities missing from every training row; rows left with none are dropped."""
    if not withheld:
        return rows, presence
    unknown = [w for w in withheld if w not in names]
    if unknown or len(set(withheld)) == len(names):
        raise RecipeError("data.withhold", f"'{unknown[0]}' is not a modality of this recipe ({', '.join(names)})" if unknown
                          else "withholds every modality: nothing would be left to train on", source)
    presence = presence.copy()
    presence[:, [names.index(w) for w in withheld]] = False
    keep = presence.any(axis=1)
    return rows[keep], presence[keep]


DATASET = "dataset"


def split_validation(train_rows: np.ndarray, fraction: float, seed: int, stream: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows): ``fraction`` of the training rows held out, drawn with a generator of its
    own (``seed`` + ``stream``: the train/test split and the pairing use ``seed`` and ``seed`` + 1, the validation
    split + 2, the monitor rows + 3)."""
    perm = np.random.default_rng(seed + stream).permutation(len(train_rows))
    n_val = max(1, int(round(fraction * len(train_rows))))
    return np.sort(train_rows[perm[n_val:]]), np.sort(train_rows[perm[:n_val]])


def build(recipe: Recipe, plugins: PluginSet, run_dir: Path | None = None, source: str | None = None, *,
          data: str | Mapping[str, Records] | None = DATASET) -> Setup:
    """Everything a recipe describes, each modality prepared once: the one way modkit assembles a model.

    ``data`` is where the rows come from: ``"dataset"`` (the recipe's ``data.dataset`` plugin, loaded),
    splits in hand as a dataset plugin's ``load`` returns them (``{"all": records}`` or ``{"train": …,
    "test": …}``), or None: no data, the modalities rebuilt from the files ``run_dir`` keeps (an exported
    model), and a :class:`Setup` without sampler views (``train`` and ``test`` None).
    """
    plugins.require_ok(recipe.plugins)
    if data is None:
        modalities, fusion, sampler = build_parts(recipe, plugins, run_dir, source)
        return Setup(recipe, MultimodalVAE(modalities, fusion, fusion.latent_dim), sampler, None, None)
    if isinstance(data, str):
        if data != DATASET:
            raise ValueError(f"build(data={data!r}): use 'dataset', a mapping of splits, or None")
        records, train_rows, test_rows = load_records(recipe, plugins, source)
    else:
        records, train_rows, test_rows = split_splits(recipe, data)
    if recipe.data.evaluate_on == "validation":  # the test split is set aside; training's rows lose a validation part
        train_rows, test_rows = split_validation(train_rows, recipe.data.validation_fraction, recipe.data.split_seed)
    monitor_rows = None
    if recipe.data.monitor_fraction:  # after the validation split, so a tuned setting's held-out rows stay the same
        train_rows, monitor_rows = split_validation(train_rows, recipe.data.monitor_fraction, recipe.data.split_seed, stream=3)
    modalities, fusion, sampler = build_parts(recipe, plugins, run_dir, source, records, train_rows)
    names = list(modalities)
    fields = {n: field_of(m) for n, m in modalities.items()}

    unpaired = recipe.data.unpaired
    if isinstance(unpaired, list):
        unknown = [u for u in unpaired if u not in names]
        if unknown or not unpaired or len(set(unpaired)) == len(names):
            raise RecipeError("data.unpaired", f"'{unknown[0]}' is not a modality of this recipe ({', '.join(names)})" if unknown else
                              f"name some but not all of the modalities ({', '.join(names)}), or use split or drop", source)
        unpaired = [names.index(u) for u in unpaired]
    rows, presence = weak_supervision(train_rows, len(names), recipe.data.paired_fraction, recipe.data.split_seed, unpaired)
    rows, presence = withhold(rows, presence, recipe.data.withhold, names, source)
    rows, presence = repeat_rows(rows, presence, recipe, train_rows, len(names))
    skip = recipe.data.on_bad_sample == "skip"
    train = ModalityView(records, modalities, fields, rows, presence, skip_bad=skip)
    test = ModalityView(records, modalities, fields, test_rows, skip_bad=skip)
    check_data(train, source)
    monitor = None if monitor_rows is None else ModalityView(records, modalities, fields, monitor_rows, skip_bad=skip)
    model = MultimodalVAE(modalities, fusion, fusion.latent_dim)
    return Setup(recipe, model, sampler, train, test, monitor)


def build_on_ranks(recipe: Recipe, plugins: PluginSet, run_dir: Path | None, source: str | None = None,
                   dist: Dist = SINGLE) -> Setup:
    """:func:`build` under torchrun: rank 0 builds first (modalities may fit and save state in the run
    directory), then the others reuse its files where the filesystem is shared."""
    if not dist.active:
        return build(recipe, plugins, run_dir, source)
    if dist.main:
        setup = build(recipe, plugins, run_dir, source)
        distributed.barrier(dist)
        return setup
    distributed.barrier(dist)
    shared = run_dir if run_dir is not None and run_dir.is_dir() else None
    return build(recipe, plugins, shared, source)
