"""Run directories: the files a run writes (``files``) and loading a finished run back (``loading``)."""
from modkit._compat import forwarder

__getattr__ = forwarder(__name__, "modkit.runs.loading")
