"""User-facing errors: the CLI prints these as one short message and exits non-zero, no traceback."""
from __future__ import annotations

import functools
import re
import sys
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class ModkitError(Exception):
    """An error caused by the user's input (recipe, data, plugin), not by a bug in modkit."""

    exit_code = 1


class RecipeError(ModkitError):
    """A recipe key has a bad value. `key` is the dotted path, e.g. ``model.fusion``."""

    exit_code = 2

    def __init__(self, key: str, message: str, source: str | None = None):
        self.key, self.message, self.source = key, message, source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}" if key else f"{where}{message}")


class PluginError(ModkitError):
    """A plugin failed to import, or registered a name another plugin already owns."""


class DataError(ModkitError):
    """A data file or row is missing, corrupt or inconsistent; the message names it."""


# user:password@ in a URI (postgresql://u:pw@db, http://u:pw@host) or without a scheme (u:pw@host): the password
_USERINFO = re.compile(r"(?P<pre>\b[A-Za-z][A-Za-z0-9+.-]*://)?(?P<user>[^\s:/@'\"=]+):(?P<password>[^\s/'\"]+)@(?=[\w\[])")


def redact(text: str) -> str:
    """``text`` with the password of every ``user:password@host`` (with a scheme or without) replaced by ``***``:
    what may be printed, logged or written into a run directory."""
    return _USERINFO.sub(lambda m: f"{m['pre'] or ''}{m['user']}:***@", str(text))


def user_errors(fn: F) -> F:
    """Make a command end on a user's mistake with one ``error: …`` line and its exit code, no traceback.

    It lives here, at the bottom layer, so that every command (the ``modkit`` group and ``modkit new``,
    which sits below the command line) can end the same way without importing from above itself.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ModkitError as exc:
            _echo(f"error: {redact(str(exc))}")  # a tracking or storage URI in a message keeps no password
            sys.exit(exc.exit_code)
        except OSError as exc:
            import errno

            # the file system refused a write (a read-only run folder, a full disk): the user's to fix, one line
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
                raise
            where = f" {exc.filename}" if exc.filename else ""
            _echo(redact(f"error: cannot write{where}: {exc.strerror or exc}; make it writable, or choose another --out"))
            sys.exit(1)
        except KeyboardInterrupt:
            _echo("interrupted")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _echo(line: str) -> None:
    import click  # the command line's own printer (encodings, colour stripping); imported only on an error

    click.echo(line, err=True)
