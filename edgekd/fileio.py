"""Atomic file writes: a crash or Ctrl-C mid-write leaves the old file (or none), never half of a new one.

Every checkpoint, export, manifest, log and report goes through here: write a uniquely named temporary file in the
target's folder, then ``os.replace`` it over the target (atomic on one filesystem).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np


def umask() -> int:
    """The process umask (read by setting and restoring it): temp files and folders are created private, and
    get the mode a plain open()/mkdir() would have given them before they are moved into place."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp, path)
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

    from edgekd.errors import EdgekdError

    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)) \
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp") else (False, None)
    if not ok:
        raise EdgekdError(f"{path}: cannot write an image with this extension (use .png or .jpg)")
    return write_bytes(path, buf.tobytes())


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
