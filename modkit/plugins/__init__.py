"""The plugin system: hook specifications, the registry, and loading plugins from entry points, modkit.toml and recipes."""
from modkit._compat import forwarder

__getattr__ = forwarder(__name__, "modkit.plugins.loader")
