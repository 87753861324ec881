"""``python -m modkit``: the command line, with the working directory taken off the import path first.

``python -m`` puts the working directory first on ``sys.path``; a folder someone shared (a ``./click.py``,
a module its ``modkit.toml`` names) would then be imported as code. The installed ``modkit`` command never
has it there, and neither does this (``python -P`` and PYTHONSAFEPATH do the same before anything loads).
"""
import os
import sys

if not sys.flags.safe_path and sys.path:
    here = os.path.realpath(os.getcwd())
    if sys.path[0] in ("", ".") or os.path.realpath(sys.path[0]) == here:
        del sys.path[0]

from modkit.cli.main import main  # noqa: E402

main()
