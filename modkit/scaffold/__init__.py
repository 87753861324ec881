"""``modkit new``: plugin packages generated from the templates beside this file."""
from modkit._compat import forwarder

__getattr__ = forwarder(__name__, "modkit.scaffold.generator")
