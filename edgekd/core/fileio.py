"""Atomic file writes: a crash or Ctrl-C mid-write leaves the old file (or none), never half of a new one.

Every checkpoint, export, manifest, log and report goes through here: write a uniquely named temporary file in the
target's folder, then ``os.replace`` it over the target (atomic on one filesystem). Temporary names carry the
writer's process id (``.<name>.<pid>.<random>.tmp``), so what a ``kill -9`` leaves behind is recognised and removed
at the next write of the same target (``remove_stale_temps``) without touching a live writer's files.

Also here, because every verb needs them the same way: run folders as Ultralytics users know them
(``runs/<verb>/exp``, ``exp2``, ...; ``next_run_dir``) and the rule that an output never equals or lies inside an
input (``check_outside_inputs``).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgekd.core.errors import FILE_NOT_FOLDER, EdgekdError, OptionError, OutputError

log = logging.getLogger(__name__)


def umask() -> int:
    """The process umask (read by setting and restoring it): temp files and folders are created private, and
    get the mode a plain open()/mkdir() would have given them before they are moved into place."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    except OSError as e:  # a read-only folder: name the file asked for, not the hidden temporary one
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp, path)
    except OSError as e:  # a full disk while writing: the same, and no temporary file left
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, obj, indent: int = 1) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def write_image(path, rgb: np.ndarray) -> Path:
    """Encode an RGB uint8 image by the file's extension (.png, .jpg, ...) and write it atomically."""
    import cv2

    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)) \
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp") else (False, None)
    if not ok:
        raise EdgekdError(f"{path}: cannot write an image with this extension (use .png or .jpg)")
    return write_bytes(path, buf.tobytes())


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process (or a number no process can have)
        return pid < 2**31
    return True


def temp_names(target) -> re.Pattern:
    """The temporary names edgekd's writers give ``target`` while writing it (group ``pid``): ``write_bytes``'s
    ``.<name>.<pid>.<random>.tmp``, checkpoints' and exports' ``.<stem>.<pid>.tmp<suffix>`` and prepare's folder
    ``.<name>.<pid>.tmp-<random>``."""
    t = Path(target)
    name, stem, suffix = (re.escape(x) for x in (t.name, t.stem, t.suffix))
    return re.compile(rf"^\.(?:{name}\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp|{stem}\.(?P<pid2>\d+)\.tmp{suffix}"
                      rf"|{name}\.(?P<pid3>\d+)\.tmp-[A-Za-z0-9_]+)$")


def remove_stale_temps(target) -> list[Path]:
    """Remove the temporary files (and prepare's temporary folders) that an interrupted writer of ``target`` left
    beside it; a process still alive keeps its own. Each removal is named in one log line."""
    target = Path(target)
    pattern = temp_names(target)
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return []
    removed = []
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None or _pid_alive(int(m["pid"] or m["pid2"] or m["pid3"])):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as e:
            log.warning("%s: temporary file of an interrupted run; could not remove it (%s)", path, e.strerror)
            continue
        log.info("removed %s, left by an interrupted run", path)
        removed.append(path)
    return removed


def next_run_dir(base, name: str = "exp", exist_ok: bool = False, option: str = "--name") -> Path:
    """``base/name``, or with ``exist_ok=False`` the first of ``name``, ``name2``, ``name3``, ... that does not exist
    yet, as Ultralytics numbers its run folders: a rerun never mixes its files with an earlier run's."""
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise OptionError(f"{option} {name!r}: expected a plain folder name (no '/'), e.g. exp")
    base = Path(base)
    if exist_ok or not (base / name).exists():
        return base / name
    n = 2
    while (base / f"{name}{n}").exists():
        n += 1
    return base / f"{name}{n}"


# The file that makes a folder a verb's own output folder, as manifest.json makes a prepared folder prepare's: a
# verb writes into a folder that is new, empty, or marked by that verb; anything else holds the user's files.
OUTPUT_MARKER = ".edgekd-output.json"


def _verb_of(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / OUTPUT_MARKER).read_text())["verb"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_output_dir(folder, verb: str, option: str) -> Path:
    """Refuse an output folder that ``verb`` did not make: a file, a folder marked by another verb, or a folder
    holding anything without the marker (a user's report.md would otherwise be overwritten). A missing or empty
    folder is fine. ``option`` names it as the user gave it (``--out-dir D``)."""
    folder = Path(folder)
    if str(folder) in ("", "."):
        raise OutputError(f"{option}: expected a folder to write (not the current folder)")
    check_no_file_in_the_way(folder, option, folder=True)
    if not folder.exists() and not folder.is_symlink():
        return folder
    marked = _verb_of(folder)
    if marked == verb:
        return folder
    if marked is not None:
        raise OutputError(f"{option}: {folder} is the output folder of `edgekd {marked}`, not of `edgekd {verb}`; "
                          f"choose another folder")
    entries = sorted(p.name for p in folder.iterdir())
    if entries:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise OutputError(f"{option}: {folder} holds files `edgekd {verb}` did not write ({shown}); refusing to "
                          f"write into it: choose a new or empty folder")
    return folder


def check_no_file_in_the_way(path, option: str, folder: bool = False) -> None:
    """Refuse, before any work, an output path one of whose parent folders (or, with ``folder``, the path itself)
    is a file: "<file>: is a file, not a folder", the one wording every verb uses."""
    path = Path(path)
    for p in ([path] if folder else []) + list(path.parents):
        if p.exists():
            if not p.is_dir():
                raise OutputError(f"{p}: {FILE_NOT_FOLDER} (needed as a folder for {option} {path})")
            return


def mark_output_dir(folder, verb: str) -> Path:
    """Create ``folder`` if need be and mark it as ``verb``'s output folder (``check_output_dir`` first)."""
    folder = Path(folder)
    if _verb_of(folder) != verb:
        write_json(folder / OUTPUT_MARKER, {"verb": verb,
                                            "note": f"written by `edgekd {verb}`, which rewrites its own files in "
                                                    f"this folder and refuses folders without this file"})
    return folder



def is_within(path, folder) -> bool:
    """Whether ``path`` is ``folder`` or inside it, after resolving links (both may not exist yet)."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


def check_outside_inputs(out, option: str, inputs: dict) -> None:
    """Refuse an output that equals an input, lies inside an input folder, or would contain one (a command that
    replaces its output folder must not take an input with it). ``inputs``: option name -> path (None skipped)."""
    for name, path in inputs.items():
        if path is None or str(path) == "":
            continue
        if is_within(out, path):
            where = "is" if Path(out).resolve() == Path(path).resolve() else "lies inside"
            raise OutputError(f"{option} {out}: {where} the input {name} {path}; choose an output outside the inputs")
        if Path(path).exists() and is_within(path, out):
            raise OutputError(f"{option} {out}: contains the input {name} {path}; choose an output outside the inputs")


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
