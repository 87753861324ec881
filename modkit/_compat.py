"""Old import paths keep working for one release, with a one-line warning naming the new import.

Until 0.2 ``modkit/`` was a flat folder (``modkit.gaussian``, ``modkit.trainer``, ...). Those
modules now live in folders by role; :class:`_MovedFinder` answers an import of an old flat name
with the module at its new place, and packages that replaced a flat module of the same name
(``modkit.data``, ``modkit.runs``, ...) forward attribute look-ups through :func:`forwarder`.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Any, Callable

#: old flat module -> its new home (modules whose old name is now a package are not listed here, nor
#: ``modkit.distributions``, which is again a real module: the public face of the distribution math)
MOVED_MODULES: dict[str, str] = {
    "modkit.batch": "modkit.core.batch",
    "modkit.modality": "modkit.core.modality",
    "modkit.fusion": "modkit.core.fusion",
    "modkit.engine": "modkit.core.engine",
    "modkit.gaussian": "modkit.core.gaussian",
    "modkit.likelihoods": "modkit.core.likelihoods",
    "modkit.subsets": "modkit.core.subsets",
    "modkit.subset_kl": "modkit.core.subset_kl",
    "modkit.nn": "modkit.core.nn",
    "modkit.streaming": "modkit.data.streaming",
    "modkit.hookspecs": "modkit.plugins.hookspecs",
    "modkit.registry": "modkit.plugins.registry",
    "modkit.builtin": "modkit.plugins.builtin",
    "modkit.project": "modkit.config.project",
    "modkit.recipe": "modkit.config.recipe",
    "modkit.trainer": "modkit.training.trainer",
    "modkit.accel": "modkit.training.accel",
    "modkit.distributed": "modkit.training.distributed",
    "modkit.build": "modkit.training.builder",
    "modkit.rundir": "modkit.storage.files",
    "modkit.runs.files": "modkit.storage.files",
    "modkit.runs.state_file": "modkit.storage.state_file",
    "modkit.runs.checkpoint": "modkit.storage.checkpoint",
    "modkit.evaluate": "modkit.evaluation.epoch_metrics",
    "modkit.likelihood_estimates": "modkit.evaluation.likelihood",
    "modkit.judges": "modkit.evaluation.judges",
    "modkit.representations": "modkit.evaluation.representations",
    "modkit.metrics": "modkit.evaluation.task_metrics",
    "modkit.generation": "modkit.reporting.generation",
    "modkit.figures": "modkit.reporting.figures",
    "modkit.render": "modkit.reporting.samples",
    "modkit.report": "modkit.reporting.report",
    "modkit.cli_eval": "modkit.cli.run_commands",
    "modkit.experiments.sweep": "modkit.sweep",
}

#: packages that no longer exist but held a module that moved: importing them gives an empty package, so that
#: ``from modkit.experiments import sweep`` reaches the moved module (the research code that was there lives in
#: the repository's reproductions/ folder, outside the installed package)
VANISHED_PACKAGES = {name.rsplit(".", 1)[0] for name in MOVED_MODULES} - {"modkit"}


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} moved in modkit 0.2: use {new}", DeprecationWarning, stacklevel=3)


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        _warn(spec.name, self.new)
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        # The module is already executed at its new name; keep its own spec and name.
        pass


class _EmptyPackageLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default: an empty module with the spec's (empty) __path__

    def exec_module(self, module: ModuleType) -> None:
        pass


class _MovedFinder(importlib.abc.MetaPathFinder):
    """Maps ``import modkit.gaussian`` to ``modkit.core.gaussian`` (same module object). Last on
    ``sys.meta_path``: asked only for names no real module has."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname in VANISHED_PACKAGES:
            return importlib.machinery.ModuleSpec(fullname, _EmptyPackageLoader(), is_package=True)
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once per interpreter."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())


def forwarder(package: str, *modules: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` that finds old names of ``package`` in ``modules`` (with a warning).

    Names that are none of theirs raise AttributeError, so ``from package import submodule``
    still imports the submodule.
    """

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        for module_name in modules:
            module = importlib.import_module(module_name)
            if name in getattr(module, "__dict__", {}):
                # the facade is imported by the time a forwarded name is looked up; reading it from sys.modules
                # keeps this bottom-layer module from importing every layer above it
                facade = sys.modules.get("modkit")
                where = "modkit" if name in getattr(facade, "__all__", ()) else module_name
                _warn(f"{package}.{name}", f"from {where} import {name}")
                return getattr(module, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
