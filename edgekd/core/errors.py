"""User-facing errors: the CLI prints these as one line (no traceback) and exits with status 2.

Raise them for anything a user can fix (a bad file, a missing checkpoint, mismatched shapes, an option out of
range); let real bugs raise ordinary exceptions so they keep their traceback. Operating-system errors (a read-only
folder, a full disk, a permission) are user-fixable too: ``describe_os_error`` turns them into the same one line,
naming the path, in the CLI's one error handler.
"""
from __future__ import annotations

import errno


class EdgekdError(Exception):
    """A problem the user can fix; the message names the file and what was expected."""


class DataError(EdgekdError):
    """A dataset file (image, annotation, prepared folder) is missing, corrupt or of the wrong shape."""


class MissingSplit(DataError):
    """A dataset root has no files at all for the asked split (e.g. a download without its test set)."""


class ModelError(EdgekdError):
    """A checkpoint or .tflite is missing, or does not match the data (landmark count, input size)."""


class OptionError(EdgekdError):
    """An option's value is out of its valid range; the message names the option and the range."""


class OutputError(EdgekdError):
    """An output path that would overwrite or delete an input, or something the command did not make."""


# One wording per kind of fault, used by every verb
FILE_NOT_FOLDER = "is a file, not a folder"
FOLDER_NOT_FILE = "is a folder, expected a file"

# What the user can do about the usual OS errors, in words that name the cause rather than an errno.
_OS_HINTS = {
    errno.EROFS: "read-only file system; choose an output on a writable disk",
    errno.ENOSPC: "no space left on the device; free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EISDIR: FOLDER_NOT_FILE,
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "file name too long",
    errno.EMFILE: "too many open files",
}


def describe_os_error(e: OSError) -> str:
    """One line for an OSError: ``<path>: <what went wrong>`` (the path may be missing for errors raised by
    native code, such as HDF5's, whose own message is then kept, cut to its first line)."""
    import os

    path = e.filename if e.filename is not None else e.filename2
    reason = _OS_HINTS.get(e.errno) or e.strerror or ""
    if path is not None and e.errno in (errno.EEXIST, errno.ENOTDIR):
        # mkdir of a path that is a file says "exists", and a file on the way says "not a directory": name the file
        p = os.fspath(path)
        while p and p != os.path.dirname(p):
            if os.path.lexists(p):
                if not os.path.isdir(p):
                    return f"{p}: {FILE_NOT_FOLDER}" if p == os.fspath(path) else \
                        f"{p}: {FILE_NOT_FOLDER} (needed as a folder for {path})"
                break
            p = os.path.dirname(p)
    if not reason:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return f"{path}: {reason}" if path is not None else reason


def check_range(option: str, value, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False,
                integer: bool = False) -> None:
    """The one range check of option values (config dataclasses call it in ``validate``): NaN, infinity, a wrong
    sign or type all fail with the option, the value and the valid range in one line, e.g.
    ``--margin nan: expected a number in [0, 1]``."""
    import math

    def num(x) -> str:
        return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"

    kind = "a whole number" if integer else "a number"
    if lo is None and hi is None:
        interval = ""
    elif hi is None:
        interval = f"{'>' if lo_open else '>='} {num(lo)}"
    elif lo is None:
        interval = f"{'<' if hi_open else '<='} {num(hi)}"
    else:
        interval = f"in {'(' if lo_open else '['}{num(lo)}, {num(hi)}{')' if hi_open else ']'}"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        raise OptionError(f"{option} {value}: expected {kind} {interval}".rstrip())
