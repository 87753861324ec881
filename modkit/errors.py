"""User-facing errors: the CLI prints these as one short message and exits non-zero, no traceback."""
from __future__ import annotations


class ModkitError(Exception):
    """An error caused by the user's input (recipe, data, plugin), not by a bug in modkit."""

    exit_code = 1


class RecipeError(ModkitError):
    """A recipe key has a bad value. `key` is the dotted path, e.g. ``model.fusion``."""

    exit_code = 2

    def __init__(self, key: str, message: str, source: str | None = None):
        self.key, self.message, self.source = key, message, source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}" if key else f"{where}{message}")


class PluginError(ModkitError):
    """A plugin failed to import, or registered a name another plugin already owns."""


class DataError(ModkitError):
    """A data file or row is missing, corrupt or inconsistent; the message names it."""
