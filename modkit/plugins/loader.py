"""Plugin discovery and loading (pluggy).

Sources, in order: modkit's own built-ins, the ``modkit`` entry-point group (installed packages,
first-party ones included), then module names from ``modkit.toml`` or a recipe's ``plugins:``.
A plugin that fails to import or to register is recorded as broken; the others keep working.

Training from your own recipe imports what its ``plugins:`` names. Loading a run or an exported folder
someone else wrote does not (:func:`plugins_for_loading`): its recipe is data, and a module name in it
would be code run just by opening the folder. Such a load uses installed entry-point plugins, and a
module the recipe names beyond them is imported only when the caller names it (``--trust-plugins``,
``modkit.load(..., plugins=[...])``).
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterable

import pluggy

from modkit.plugins import hookspecs
from modkit.errors import PluginError
from modkit.plugins.registry import Registry

ENTRY_POINT_GROUP = "modkit"


@dataclass
class PluginInfo:
    name: str
    package: str
    source: str  # "builtin", "entry point", "modkit.toml", "recipe"
    module: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class PluginSet:
    """The loaded plugins, the registry they filled, and a record of every failure."""

    manager: pluggy.PluginManager
    registry: Registry
    infos: list[PluginInfo] = field(default_factory=list)

    @property
    def broken(self) -> list[PluginInfo]:
        return [i for i in self.infos if not i.ok]

    def add_module(self, module_name: str, source: str) -> PluginInfo:
        """Import ``module_name`` and register it, unless a plugin of that module is already loaded."""
        for info in self.infos:
            if info.module == module_name:
                return info
        info = PluginInfo(name=module_name, package=_package_of(module_name), source=source, module=module_name)
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any import failure makes the plugin broken, not modkit
            info.error = f"import failed: {type(exc).__name__}: {exc}"
            self.infos.append(info)
            return info
        self._register(module, info)
        return info

    def add_plugin(self, plugin: Any, name: str, source: str = "python") -> PluginInfo:
        """Register a plugin object (or module) already in hand: a notebook's or a test's own hooks."""
        info = PluginInfo(name=name, package="local", source=source, module=getattr(plugin, "__name__", name))
        self._register(plugin, info)
        return info

    def _register(self, plugin: Any, info: PluginInfo) -> None:
        self.infos.append(info)
        try:
            self.manager.register(plugin, name=info.name)
        except ValueError as exc:  # pluggy: already registered under that name
            info.error = str(exc)
            return
        except pluggy.PluginValidationError as exc:
            info.error = f"invalid hook implementation: {exc}"
            return
        impls = [i for i in self.manager.hook.modkit_register.get_hookimpls() if i.plugin is plugin]
        stage = self.registry.staged(info.name, info.package)
        try:
            for impl in impls:
                impl.function(registry=stage)
        except PluginError as exc:
            info.error = str(exc)
        except Exception as exc:  # noqa: BLE001
            last = traceback.extract_tb(exc.__traceback__)[-1]
            info.error = f"modkit_register failed: {type(exc).__name__}: {exc} ({last.filename}:{last.lineno})"
        if info.error is None:
            self.registry.commit(stage)
        else:
            self.manager.unregister(plugin)

    def require_ok(self, names: Iterable[str]) -> None:
        """Raise if any of the plugin modules ``names`` is broken (used for plugins a recipe asks for)."""
        for info in self.infos:
            if info.module in set(names) and not info.ok:
                raise PluginError(f"plugin '{info.name}' ({info.source}) is broken: {info.error}")

    def broken_hint(self) -> str:
        if not self.broken:
            return ""
        return " (broken plugins that may have provided it: " + ", ".join(i.name for i in self.broken) + ")"


def _package_of(module_name: str) -> str:
    top = module_name.split(".")[0]
    dists = md.packages_distributions().get(top)
    return dists[0] if dists else "local"


def load_plugins(extra_modules: Iterable[str] = (), source: str = "modkit.toml", entry_points: bool = True) -> PluginSet:
    """Load built-ins, entry points, then ``extra_modules``; never raises for a broken plugin."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    plugins = PluginSet(manager, Registry())
    from modkit.plugins import builtin

    plugins._register(builtin, PluginInfo("builtin", "modkit", "builtin", builtin.__name__))
    if entry_points:
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            package = ep.dist.name if ep.dist is not None else "unknown"
            info = PluginInfo(name=ep.name, package=package, source="entry point", module=ep.value)
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001
                info.error = f"import failed: {type(exc).__name__}: {exc}"
                plugins.infos.append(info)
                continue
            plugins._register(plugin, info)
    for module_name in extra_modules:
        plugins.add_module(module_name, source)
    return plugins


def plugins_for(recipe_plugins: Iterable[str], project_plugins: Iterable[str]) -> PluginSet:
    """The plugins a run uses: installed ones, then ``modkit.toml``'s modules, then the recipe's ``plugins:``."""
    plugins = load_plugins(project_plugins, source="modkit.toml")
    for name in recipe_plugins:
        plugins.add_module(name, source="recipe")
    return plugins


def _installed(name: str, plugins: PluginSet) -> bool:
    """Whether module ``name`` is already loaded as an installed (entry-point or built-in) plugin, or is the
    package one of them lives in, or was loaded from the user's own ``modkit.toml``."""
    for info in plugins.infos:
        if not info.ok or info.source not in ("builtin", "entry point", "modkit.toml"):
            continue
        module = info.module.split(":")[0]
        if name == module or module.startswith(name + "."):
            return True
    return False


def plugins_for_loading(recipe_plugins: Iterable[str], project_plugins: Iterable[str], trusted: bool | Iterable[str] = (),
                        source: str = "recipe.yaml") -> PluginSet:
    """The plugins a load of a run or an exported folder uses: installed ones and the user's own ``modkit.toml``
    modules; a module the recipe names beyond them is imported only if ``trusted`` names it (or is True)."""
    plugins = load_plugins(project_plugins, source="modkit.toml")
    allowed = trusted if isinstance(trusted, bool) else set(trusted)
    wanted = []
    for name in recipe_plugins:
        if _installed(name, plugins):
            continue
        if allowed is True or (allowed is not False and name in allowed):
            wanted.append(name)
            plugins.add_module(name, source="recipe (trusted)")
            continue
        raise PluginError(f"{source} names plugin module {name!r}, which is not an installed modkit plugin; loading a run "
                          f"never imports code named by its folder. If you trust it, load with --trust-plugins "
                          f"(Python: modkit.load(path, plugins=[{name!r}])), or install it as a package")
    plugins.require_ok(wanted)
    return plugins
