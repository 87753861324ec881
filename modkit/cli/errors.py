"""How every command ends on a user's mistake: one ``error: ...`` line and a non-zero exit, no traceback."""
from __future__ import annotations

import functools
import sys

import click

from modkit.errors import ModkitError


def user_errors(fn):
    """Turn :class:`ModkitError` into ``error: …`` and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ModkitError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper
