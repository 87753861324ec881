"""Stamps in generated pages without one machine's folders.

Result files and generated docs stamp the command that wrote them and the folders it read or wrote; an
author's home or scratch folder means nothing to a reader and leaks their machine. The benchmarks
(``benchmarks/``) and the reproductions (``reproductions/``) both write such stamps and both import this one
rule; standard library only.
"""
from __future__ import annotations

import re
from pathlib import Path

#: an absolute path in a command line or a stamp: a "/" that does not follow a word, a dot, a colon, a slash or an
#: ellipsis (so URLs and fractions such as 1/2 are left alone)
ABSOLUTE = re.compile(r"(?<![\w.~:/…-])/(?:[\w.+@-]+/)*[\w.+@*-]+")


def portable(text: str, root: Path | str) -> str:
    """``text`` with every absolute path made portable: relative to ``root`` (the repository) when inside it, else
    ``…/`` and its last name (``--out /work/repro-19`` → ``--out …/repro-19``). Applying it twice changes nothing."""
    root = Path(root)

    def one(match: re.Match) -> str:
        path = Path(match.group(0))
        try:
            return path.relative_to(root).as_posix() or "."
        except ValueError:
            return "…/" + path.name
    return ABSOLUTE.sub(one, text)
