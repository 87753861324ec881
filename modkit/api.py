"""The Python API over a run's life (docs/python-api.md): what ``modkit train``/``generate``/``sample``/
``eval`` do, from a notebook. ``modkit.train`` and ``modkit.load`` resolve here on first use."""
from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from modkit.core.batch import Batch
from modkit.core.gaussian import DiagGaussian
from modkit.data.dataset import ModalityView

from modkit.runs import lifecycle
from modkit.runs.lifecycle import load_weights
from modkit.errors import ModkitError
from modkit.runs.loading import LoadedRun

__all__ = ["Run", "Split", "train", "load", "load_weights"]


#: the logger the API's one line about threads goes to (``logging.getLogger("modkit")``): quiet unless the
#: notebook turns logging on; ``run.threads`` holds the same number
log = logging.getLogger("modkit")


@dataclass
class Run(LoadedRun):
    """A trained run (or an exported model) in memory: ``.model``, ``.recipe``, ``.run_dir`` and the methods below."""

    #: torch's intra-op thread count chosen when the run was loaded (the recipe's ``train.threads`` policy)
    threads: int = 0

    @classmethod
    def of(cls, loaded: LoadedRun) -> "Run":
        return cls(**{f.name: getattr(loaded, f.name) for f in fields(LoadedRun)})

    def __repr__(self) -> str:
        kind = "exported model" if self.exported else f"epoch {self.checkpoint_epoch}"
        return (f"<modkit.Run {self.recipe.name!r} at {self.run_dir} ({kind}): {', '.join(self.model.names)}; "
                f"fusion {self.recipe.model.fusion.type}, latent {self.recipe.model.latent_dim}, "
                f"{self.device.type}, {self.threads} thread{'s' if self.threads != 1 else ''}>")

    def generate(self, given: dict[str, Any] | None = None, target: str | None = None, n: int = 1, mean: bool = False) -> list:
        """``n`` renders of ``target`` (arrays for images, strings for text, class names for labels) drawn from
        q(z | given); nothing given: from the prior. A given value is a file path, a literal such as a label's
        name, or an array (a render this run returned, too)."""
        from modkit.reporting.generation import API_WORDS, generate_renders

        if target is None:
            raise ModkitError(f"generate needs a target modality (this run has {', '.join(self.model.names)})")
        return generate_renders(self, dict(given or {}), target, n, mean, API_WORDS)

    def sample(self, n: int = 1, seed: int | None = None, sampler: str | None = None) -> dict[str, list]:
        """``n`` draws z ~ p(z), every modality decoded: modality → ``n`` renders. ``sampler``: draw z from the
        latent sampler fitted under that name instead (``modkit fit-sampler``; docs/samplers.md)."""
        from modkit.reporting.generation import API_WORDS, prior_renders

        return prior_renders(self, n, seed, sampler, API_WORDS)

    def encode(self, given: dict[str, Any]):
        """q(z | given) as a DiagGaussian with one row per item: ``.mean`` and ``.logvar`` are (items, latent_dim).
        A value is one item (a file path, a literal, an array in any shape ``generate`` returns or the modality
        reads) or a batch of them (a list, or an array with a leading items axis); many items at a time:
        :meth:`embed`."""
        from modkit.reporting.generation import API_WORDS, check_known, items_batch

        if not given:
            raise ModkitError(f"encode needs at least one given modality (this run has {', '.join(self.model.names)})")
        check_known(self, given, API_WORDS)
        items = {name: self._items(name, value) for name, value in given.items()}
        with torch.no_grad():
            return _first_subset(self.model.posterior(items_batch(self, items, API_WORDS), list(given)))

    def embed(self, data: str | dict[str, Any] = "test", subset: Sequence[str] | None = None, batch_size: int = 256,
              logvar: bool = False):
        """Posterior means of many items as a numpy array (items, latent_dim), one batched encoding per
        ``batch_size`` items. ``data`` is a split of the run's data (``"test"``, ``"train"``: in the order
        :meth:`data` gives) or a dict as :meth:`encode` takes (modality → many values). ``subset``: the
        modalities to condition on (default: all ``data`` has). ``logvar=True``: (means, log-variances)."""
        from modkit.reporting.generation import API_WORDS, check_known, items_batch

        if batch_size < 1:
            raise ModkitError(f"batch_size must be at least 1 (got {batch_size})")
        if isinstance(data, str):
            batches = self.data(data).batches(batch_size)
            names = list(subset or self.model.names)
        elif isinstance(data, dict) and data:
            check_known(self, data, API_WORDS)
            items = {name: self._items(name, value) for name, value in data.items()}
            count = len(next(iter(items.values())))
            names = list(subset or data)
            batches = (items_batch(self, {k: v[i:i + batch_size] for k, v in items.items()}, API_WORDS)
                       for i in range(0, count, batch_size))
        else:
            raise ModkitError(f"embed takes a split ('test', 'train') or a dict of modality → values, got {type(data).__name__}")
        unknown = [name for name in names if name not in self.model.names]
        if unknown:
            raise ModkitError(f"subset: unknown modality '{unknown[0]}' (this run has {', '.join(self.model.names)})")
        means, logvars = [], []
        mask = self.model.subset_mask(names)
        with torch.no_grad():
            for batch in batches:
                post = _first_subset(self.model.posterior(batch.to(self.model.device), mask))
                means.append(post.mean.float().cpu().numpy())
                if logvar:
                    if not isinstance(post, DiagGaussian):
                        raise ModkitError(f"logvar=True needs a Gaussian posterior; this run's fusion "
                                          f"({self.recipe.model.fusion.type}) gives a {type(post).__name__}")
                    logvars.append(post.logvar.float().cpu().numpy())
        dim = self.model.latent_dim  # the carried width (wider than model.latent_dim with private latents or levels)
        mean = np.concatenate(means) if means else np.zeros((0, dim), np.float32)
        if not logvar:
            return mean
        return mean, (np.concatenate(logvars) if logvars else np.zeros((0, dim), np.float32))

    def data(self, split: str = "test") -> "Split":
        """The run's ``"train"`` or ``"test"`` split, as training saw it: ``len``, ``batches(batch_size)``,
        ``values(modality)`` (the model-ready values as a numpy array) and ``rows`` (indices into the dataset)."""
        if self.exported:
            raise ModkitError(f"{self.run_dir} is an exported model: it has no data; load the run directory it came from")
        if split not in ("train", "test"):
            raise ModkitError(f"split must be 'train' or 'test' (got {split!r})")
        return Split(split, getattr(self.setup, split))

    def evaluate(self, **settings: Any) -> dict[str, Any]:
        """The evaluation ``modkit eval`` runs (needs the run's data); keyword arguments are
        :class:`~modkit.evaluation.suite.EvalSettings` fields (``metrics=["coherence"]``, ``max_items=200``)."""
        from modkit.evaluation.suite import EvalSettings, evaluate_run

        if self.exported:
            raise ModkitError(f"{self.run_dir} is an exported model: it has no data to evaluate on; evaluate the run directory")
        try:
            chosen = EvalSettings(**settings)
        except TypeError as exc:
            raise ModkitError(f"evaluate: {exc}") from None
        return evaluate_run(self, chosen)

    def export(self, dest: Path | str) -> Path:
        """A portable folder (recipe, ``model.safetensors``, tokenizers) that ``modkit.load`` reads without the data."""
        from modkit.runs.export import export

        return export(self, dest)

    def _items(self, name: str, value: Any) -> list:
        """``value`` as a list of items of modality ``name``: a list or tuple is many; a string or path is one; an
        array is one item when the modality reads it as one, else (a leading axis of items) many."""
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, (str, Path)) or np.ndim(value) == 0:
            return [value]
        from modkit.errors import DataError
        from modkit.reporting.generation import API_WORDS, read_value

        modality = self.model.modalities[name]
        where = API_WORDS["given"].format(name=name)
        try:
            read_value(modality, value, where)
            return [value]
        except DataError as one:
            items = list(value)
            try:
                read_value(modality, items[0], where)
            except DataError:
                raise one from None
            return items


def _first_subset(post):
    """The posterior of the one conditioning subset, its subset axis dropped: (items, latent_dim).

    Fusions return a Gaussian (PoE), a mixture over experts or subset products (MoE, MoPoE: the subset axis
    comes after the mixture's component axis) or blocks of the latent (private latents); each is cut alike."""
    return _index_subset(post, 0)


def _index_subset(post, i: int):
    from modkit.core.private import TopDown
    from modkit.distributions import Concatenated, DiagLaplace, Pushforward, Stacked, WeightedMixture

    if isinstance(post, DiagGaussian):
        return DiagGaussian(post.mu[i], post.logvar[i])
    if isinstance(post, DiagLaplace):
        return DiagLaplace(post.loc[i], post.scale[i])
    if isinstance(post, WeightedMixture):
        mixture = WeightedMixture.__new__(type(post))
        mixture.components = _index_subset_of_components(post.components, i)
        mixture.log_weights, mixture.valid = post.log_weights[:, i], post.valid[:, i]
        return mixture
    if isinstance(post, Concatenated):
        return Concatenated(_index_subset(part, i) for part in post.parts)
    if isinstance(post, Pushforward):  # the map is shared by every row: only the base has a subset axis
        return Pushforward(_index_subset(post.base, i), post.to_base)
    if isinstance(post, Stacked):  # one distribution per subset row
        return post.parts[i]
    if isinstance(post, TopDown):  # a hierarchical posterior: the subset axis leads its given mask
        return TopDown(post.layout, post.given[i], post.mu, post.logvar, post.top, post.down, post.reason)
    if hasattr(post, "index_subset"):  # a fusion's own distribution cuts itself (MHVAE's ladder)
        return post.index_subset(i)
    raise ModkitError(f"cannot take one subset of a {type(post).__name__} posterior")


def _index_subset_of_components(components, i: int):
    """The mixture's components (M, S, items, D) at subset ``i``: (M, items, D)."""
    from modkit.distributions import DiagLaplace, Stacked

    if isinstance(components, DiagGaussian):
        return DiagGaussian(components.mu[:, i], components.logvar[:, i])
    if isinstance(components, DiagLaplace):
        return DiagLaplace(components.loc[:, i], components.scale[:, i])
    if isinstance(components, Stacked):  # components of different kinds (JNF's joint, flow and prior), each (S, items, D)
        return Stacked(_index_subset(part, i) for part in components.parts)
    raise ModkitError(f"cannot take one subset of a mixture of {type(components).__name__}")


@dataclass
class Split:
    """One split of a run's data (``run.data("test")``): the dataset rows training assigned to it."""

    name: str
    view: ModalityView

    def __len__(self) -> int:
        return len(self.view)

    def __repr__(self) -> str:
        return f"<modkit split {self.name!r}: {len(self)} items, {', '.join(self.view.names)}>"

    @property
    def rows(self) -> np.ndarray:
        """The split's items as row indices of the dataset."""
        return self.view.rows.numpy()

    def batches(self, batch_size: int = 256) -> Iterator[Batch]:
        """The split in order as :class:`modkit.Batch` objects of ``batch_size`` items (``.data``, ``.present``)."""
        for start in range(0, len(self.view), batch_size):
            yield self.view.__getitems__(list(range(start, min(start + batch_size, len(self.view)))))

    def values(self, modality: str, batch_size: int = 1024) -> np.ndarray:
        """Every item's model-ready value of ``modality`` (class ids for a label, (C, H, W) floats for an image),
        stacked along a first axis; a dict of arrays for a modality whose samples are dicts."""
        if modality not in self.view.names:
            raise ModkitError(f"values: unknown modality '{modality}' (this run has {', '.join(self.view.names)})")
        parts = [batch.data[modality] for batch in self.batches(batch_size)]
        if parts and isinstance(parts[0], dict):
            return {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}
        return torch.cat(parts).numpy()


def train(recipe: Path | str | dict[str, Any] | None = None, overrides: dict[str, Any] | list[str] | None = None, out: Path | str | None = None,
          resume: Path | str | None = None, device: str | None = None, echo: Callable[[str], None] = print) -> Run:
    """Train ``recipe`` (a YAML path or a dict, as a recipe file holds) into ``out`` (default: the project's
    runs folder) and return the trained run, loaded. ``overrides`` are ``--set`` values: ``{"train.epochs": 2}``
    or ``["train.epochs=2"]``. ``resume`` continues a run directory instead (``recipe`` then ``None``)."""
    sets = [f"{k}={_yaml(v)}" for k, v in overrides.items()] if isinstance(overrides, dict) else list(overrides or [])
    if device is not None:
        sets.append(f"train.device={device}")
    with _in_python_words():
        trained = lifecycle.train(recipe, overrides=sets, out=out, resume=resume, echo=echo)
    return load(trained.run_dir, device or "auto", plugins=True)  # your own recipe: its plugins were imported to train


#: the command line's words for what the Python API calls by its keyword arguments
_CLI_TO_PYTHON = [(re.compile(r"--(out|resume|device)\b ?"), r"\1="), (re.compile(r"--set\b"), "overrides"),
                  (re.compile(r"'modkit (\w+) --help'"), r"help(modkit.\1)"), (re.compile(r"\bRECIPE\b"), "recipe")]


@contextlib.contextmanager
def _in_python_words():
    """The run lifecycle speaks the command line's language (``--out``, ``--resume``); from Python the same mistake
    is named by the keyword argument the caller wrote (``out=``, ``resume=``). The error keeps its type."""
    try:
        yield
    except ModkitError as exc:
        text = str(exc)
        for pattern, repl in _CLI_TO_PYTHON:
            text = pattern.sub(repl, text)
        exc.args = (text,)
        raise


def load(run_dir: Path | str, device: str | torch.device | None = "auto", plugins: bool | list[str] = ()) -> Run:
    """A run directory, or a folder ``Run.export`` wrote: the model in eval mode, ready to generate.

    Only installed plugins are used: the folder may come from anyone, and a module its recipe names could run
    code. ``plugins=["my_plugin"]`` (or True for all) imports the recipe's modules you trust.

    It sets torch's CPU threads as training does (the recipe's ``train.threads``: one thread for the small models
    of these recipes, unless ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` already chose): torch's default of one thread
    per core made single encodes many times slower on a shared machine (benchmarks/api_threads.py). The count is
    ``run.threads`` and one INFO line
    on the ``modkit`` logger."""
    from modkit.training.accel import resolve_device
    from modkit.training.threads import apply_threads

    # building the model and reading the data run torch operators too: under the policy's choice for a model
    # not yet known (one thread on the CPU, unless the environment chose), then the recipe's, given the model
    with _in_python_words():
        apply_threads("auto", resolve_device(device))
        run = Run.of(lifecycle.load(run_dir, device, plugins))
    run.threads = apply_threads(run.recipe.train.threads, run.device, run.model, run.recipe.data.batch_size)
    log.info("modkit.load: torch uses %d CPU thread%s (train.threads=%s)", run.threads, "" if run.threads == 1 else "s",
             run.recipe.train.threads)
    return run


def _yaml(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)
