"""The one exception type for problems a user can fix (bad input, missing files, missing packages)."""


class ModPluralError(Exception):
    """A user-facing error; the CLI prints its message as one line and exits non-zero."""
