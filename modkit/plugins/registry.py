"""Name → component tables, filled by plugins through the ``modkit_register`` hook.

Like timm's model registry, but every entry remembers the plugin and package that supplied it,
so ``modkit plugins`` can show provenance and name clashes can name both culprits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from modkit.errors import PluginError

if TYPE_CHECKING:
    from modkit.core.fusion import Fusion
    from modkit.core.latent_sampler import LatentSampler
    from modkit.core.modality import Modality
    from modkit.core.subsets import SubsetSampler
    from modkit.data.dataset import DatasetSource

#: what a Metric may ask the shared posterior pass for (``Metric.needs``; see modkit.evaluation.metric)
METRIC_NEEDS = frozenset({"decoded", "singles", "encoders"})

KINDS = ("modality", "fusion", "sampler", "dataset", "metric", "latent_sampler")


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    obj: Any
    plugin: str
    package: str

    @property
    def summary(self) -> str:
        doc = (getattr(self.obj, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""


def check_metric_class(obj: Any) -> str | None:
    """What is wrong with ``obj`` as a :class:`~modkit.evaluation.metric.Metric` class, or None when nothing is.

    Checked by shape here (the evaluation layer, where the protocol lives, sits above the registry)."""
    if not isinstance(obj, type):
        return f"is a {type(obj).__name__}, not a class"
    members = ("name", "group", "keys", "description", "needs", "start", "update", "compute", "summary", "report")
    missing = [m for m in members if not hasattr(obj, m)]
    if missing:
        return f"lacks {', '.join(missing)} (see modkit.Metric)"
    for attr in ("name", "group", "description"):
        if not isinstance(getattr(obj, attr), str) or not getattr(obj, attr):
            return f"declares {attr} {getattr(obj, attr)!r}, not a non-empty string"
    if not isinstance(obj.keys, tuple) or not obj.keys or not all(isinstance(k, str) and k for k in obj.keys):
        return f"declares keys {obj.keys!r}, not a non-empty tuple of strings"
    if not isinstance(obj.needs, frozenset) or not obj.needs <= METRIC_NEEDS:
        return f"declares needs {obj.needs!r}, not a frozenset among {sorted(METRIC_NEEDS)}"
    for method in members[5:]:
        if not callable(getattr(obj, method)):
            return f"has a {method} that is not a method"
    return None


class Registry:
    """Holds every registered component. Plugins write through ``add_*``; modkit reads through ``get``."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._owner: tuple[str, str] = ("modkit", "modkit")

    # -- writing (plugins) -------------------------------------------------------------------
    def add(self, kind: str, name: str, obj: Any) -> None:
        if kind not in self._tables:
            raise PluginError(f"plugin '{self._owner[0]}' registers unknown kind '{kind}' (kinds: {', '.join(KINDS)})")
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin '{self._owner[0]}' registers a {kind} with an empty or non-string name")
        table = self._tables[kind]
        if name in table:
            other = table[name]
            raise PluginError(
                f"plugin '{self._owner[0]}' registers {kind} '{name}', "
                f"which plugin '{other.plugin}' (package {other.package}) already registered"
            )
        table[name] = Entry(kind, name, obj, *self._owner)

    def add_modality(self, name: str, cls: "type[Modality]") -> None:
        """A :class:`~modkit.Modality` subclass whose ``Config`` is a ``ModalityConfig``."""
        from modkit.core.modality import Modality, ModalityConfig

        self._check_class("modality", name, cls, Modality, ModalityConfig)
        self.add("modality", name, cls)

    def add_fusion(self, name: str, cls: "type[Fusion]") -> None:
        """A :class:`~modkit.Fusion` subclass whose ``Config`` is a ``FusionConfig``."""
        from modkit.core.fusion import Fusion, FusionConfig

        self._check_class("fusion", name, cls, Fusion, FusionConfig)
        self.add("fusion", name, cls)

    def add_sampler(self, name: str, cls: "type[SubsetSampler]") -> None:
        """A :class:`~modkit.SubsetSampler` subclass whose ``Config`` is a ``SamplerConfig``."""
        from modkit.core.subsets import SamplerConfig, SubsetSampler

        self._check_class("sampler", name, cls, SubsetSampler, SamplerConfig)
        self.add("sampler", name, cls)

    def add_latent_sampler(self, name: str, cls: "type[LatentSampler]") -> None:
        """A :class:`~modkit.LatentSampler` subclass whose ``Config`` is a ``LatentSamplerConfig``: a density fitted
        after training to the embeddings of the training set, drawn from instead of the prior."""
        from modkit.core.latent_sampler import LatentSampler, LatentSamplerConfig

        self._check_class("latent_sampler", name, cls, LatentSampler, LatentSamplerConfig)
        self.add("latent_sampler", name, cls)

    def add_dataset(self, name: str, cls: "type[DatasetSource]") -> None:
        """A :class:`~modkit.DatasetSource` subclass: a class with ``load()`` whose ``Config`` is a pydantic model
        (checked by shape: the data layer sits above the registry)."""
        from pydantic import BaseModel

        plugin = self._owner[0]
        if not isinstance(cls, type):
            raise PluginError(f"plugin '{plugin}' registers dataset '{name}' as a {type(cls).__name__}, not a class "
                              "(a subclass of modkit.DatasetSource)")
        if not callable(getattr(cls, "load", None)):
            raise PluginError(f"plugin '{plugin}' registers dataset '{name}': class {cls.__name__} has no load() "
                              "(a subclass of modkit.DatasetSource)")
        own = getattr(cls, "Config", None)
        if not (isinstance(own, type) and issubclass(own, BaseModel)):
            raise PluginError(f"plugin '{plugin}' registers dataset '{name}': {cls.__name__}.Config is {own!r}, not a subclass of "
                              "modkit.DatasetConfig")
        self.add("dataset", name, cls)

    def add_metric(self, name: str, metric: "type | Callable[[Modality], Any]") -> None:
        """A :class:`~modkit.Metric` class (declaring ``name`` as registered), or a task-metric function
        ``fn(modality) -> None | state`` (a state has ``update(predicted, target)`` and ``compute()``)."""
        if isinstance(metric, type):
            problem = check_metric_class(metric)
            if problem is None and metric.name != name:
                problem = f"declares name '{metric.name}'"
            if problem:
                raise PluginError(f"plugin '{self._owner[0]}' registers metric '{name}': class {metric.__name__} {problem}")
        elif not callable(metric):
            raise PluginError(f"plugin '{self._owner[0]}' registers metric '{name}' as a {type(metric).__name__}: neither a "
                              "Metric class nor a function fn(modality) -> state")
        self.add("metric", name, metric)

    def _check_class(self, kind: str, name: str, cls: Any, base: type, config: type) -> None:
        """PluginError naming the plugin and what is wrong unless ``cls`` is a ``base`` subclass with a ``config`` Config."""
        plugin = self._owner[0]
        if not isinstance(cls, type):
            raise PluginError(f"plugin '{plugin}' registers {kind} '{name}' as a {type(cls).__name__}, not a class "
                              f"(a subclass of modkit.{base.__name__})")
        if not issubclass(cls, base):
            raise PluginError(f"plugin '{plugin}' registers {kind} '{name}': class {cls.__name__} is not a subclass of modkit.{base.__name__}")
        own = getattr(cls, "Config", None)
        if not (isinstance(own, type) and issubclass(own, config)):
            raise PluginError(f"plugin '{plugin}' registers {kind} '{name}': {cls.__name__}.Config is {own!r}, not a subclass of "
                              f"modkit.{config.__name__}")

    # -- reading (modkit) --------------------------------------------------------------------
    def get(self, kind: str, name: str) -> Any:
        return self._tables[kind][name].obj

    def has(self, kind: str, name: str) -> bool:
        return name in self._tables[kind]

    def names(self, kind: str) -> list[str]:
        return sorted(self._tables[kind])

    def entries(self, kind: str | None = None) -> Iterator[Entry]:
        for k in (kind,) if kind else KINDS:
            yield from sorted(self._tables[k].values(), key=lambda e: e.name)

    # -- transactions: a failing plugin leaves nothing behind --------------------------------
    def staged(self, plugin: str, package: str) -> "Registry":
        """A scratch registry that sees existing names (for clash checks) and records ``plugin``."""
        stage = Registry()
        stage._tables = {k: dict(v) for k, v in self._tables.items()}
        stage._owner = (plugin, package)
        return stage

    def commit(self, stage: "Registry") -> None:
        self._tables = stage._tables
