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
