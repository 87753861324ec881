"""A run directory: its files (``files``: atomic writes, strict JSON), nested state in safetensors
(``state_file``), its checkpoints (``checkpoint``: layout, format check, recovery, conversion), its
life (``lifecycle``: start, lock, resume, load, export) and loading a finished run (``loading``).

Plugins import what they need from :mod:`modkit`; the old flat names (``modkit.runs.load_run``) still
resolve, with a warning.
"""
from modkit._compat import forwarder

__getattr__ = forwarder(__name__, "modkit.runs.loading")
