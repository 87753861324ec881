"""A run's life, the top layer: start, lock, resume, finish (``lifecycle``), the callbacks it puts on the
training loop (``callbacks``), loading a finished run (``loading``) and exporting it (``export``). The
files of a run directory live one layer down, in :mod:`modkit.storage`.

Plugins import what they need from :mod:`modkit`; the old flat names (``modkit.runs.load_run``) still
resolve, with a warning.
"""
from modkit._compat import forwarder

__getattr__ = forwarder(__name__, "modkit.runs.loading")
