"""The ``modkit`` command line (``main``) and its commands for finished runs (``run_commands``)."""
from modkit._compat import forwarder

__getattr__ = forwarder(__name__, "modkit.cli.main")
