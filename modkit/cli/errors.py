"""How every command ends on a user's mistake: :func:`modkit.errors.user_errors`, named here too for the
commands' modules and for code that imported it from here."""
from modkit.errors import user_errors

__all__ = ["user_errors"]
