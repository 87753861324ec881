"""Name → component tables, filled by plugins through the ``modkit_register`` hook.

Like timm's model registry, but every entry remembers the plugin and package that supplied it,
so ``modkit plugins`` can show provenance and name clashes can name both culprits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from modkit.errors import PluginError

KINDS = ("modality", "fusion", "sampler", "dataset", "metric")


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

    def add_modality(self, name: str, cls: Any) -> None:
        self.add("modality", name, cls)

    def add_fusion(self, name: str, cls: Any) -> None:
        self.add("fusion", name, cls)

    def add_sampler(self, name: str, cls: Any) -> None:
        self.add("sampler", name, cls)

    def add_dataset(self, name: str, cls: Any) -> None:
        self.add("dataset", name, cls)

    def add_metric(self, name: str, fn: Any) -> None:
        self.add("metric", name, fn)

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
