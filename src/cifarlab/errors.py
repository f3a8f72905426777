"""Errors and warnings meant for the user: the CLI prints them as one line, without a traceback."""


class CifarlabError(Exception):
    """Something the user can fix (a bad flag, a missing file, bad data). Shown as one line."""


class TrainingDiverged(CifarlabError):
    """The training loss became NaN or infinite (usually: the learning rate is too high)."""


class DataError(CifarlabError):
    """The data source is missing, incomplete or unreadable."""


class DataWarning(UserWarning):
    """The data was usable but was changed on the way in (resized, converted to RGB, ...)."""
