"""User-facing errors: each carries a one-line message that names the file or block and the problem.

The command-line entry points catch ``NasError`` and print its message instead of a traceback.
"""


class NasError(Exception):
    """Bad input a user can fix: the message is the whole story."""


class GenomeError(NasError, ValueError):
    """A genome string that does not parse, or a genome that breaks its search space."""


class SpaceError(NasError):
    """A search-space file that is missing or malformed."""


class DataError(NasError):
    """A data file or folder that is missing or malformed."""


class RunDirError(NasError):
    """A run directory that is missing, incomplete or belongs to another configuration."""


class SettingError(NasError, ValueError):
    """A flag or setting with an illegal value; the message names the flag (``--population``)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): for one-line errors."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def check_positive(**values: float | None) -> None:
    """Each given setting (``max_params=...``) must be None or positive; the error names it as a flag."""
    for name, value in values.items():
        if value is not None and not value > 0:
            raise SettingError(f"--{name.replace('_', '-')} must be positive, got {value:g}")
