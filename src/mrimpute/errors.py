"""Exceptions for user-facing errors: the CLI prints their message on one line and exits non-zero."""


class MrimputeError(Exception):
    """Base class for every error caused by user input or environment, not by a bug."""


class InputError(MrimputeError):
    """An input file is unreadable, malformed or holds invalid values."""


class GridMismatchError(InputError):
    """Two inputs do not share one voxel grid."""


class CheckpointError(MrimputeError):
    """A model file is missing, unreadable, or does not offer what was asked."""


class OutputError(MrimputeError):
    """An output cannot be written (exists without --force, folder not writable, ...)."""
