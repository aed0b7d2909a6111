"""User-facing errors: the CLI prints these as one line (no traceback) and exits with status 2.

Raise them for anything a user can fix (a bad file, a missing checkpoint, mismatched shapes); let real bugs raise
ordinary exceptions so they keep their traceback.
"""


class EdgekdError(Exception):
    """A problem the user can fix; the message names the file and what was expected."""


class DataError(EdgekdError):
    """A dataset file (image, annotation, prepared folder) is missing, corrupt or of the wrong shape."""


class MissingSplit(DataError):
    """A dataset root has no files at all for the asked split (e.g. a download without its test set)."""


class ModelError(EdgekdError):
    """A checkpoint or .tflite is missing, or does not match the data (landmark count, input size)."""
