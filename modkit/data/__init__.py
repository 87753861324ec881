"""Data: datasets as records, viewed through modalities as batches with presence (``dataset``), streamed from disk (``streaming``).

Plugins import what they need from :mod:`modkit`; the old flat names (``modkit.data.ArrayRecords``) still resolve, with a warning.
"""
from modkit._compat import forwarder

__getattr__ = forwarder(__name__, "modkit.data.dataset", "modkit.core.records")
