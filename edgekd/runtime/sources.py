"""What `predict` reads: one image, several paths, a folder or a glob pattern, turned into one list of images.

Ultralytics and MediaPipe users hand a predictor whatever they have (an array, a file, a folder, ``photos/*.jpg``),
so the CLI and ``Landmarker.predict`` expand it here, the same way: a folder gives its image files (by extension,
not recursively, sorted), a pattern the image files it matches (``**`` recurses), and a file named outright is
always kept, so a file that turns out unreadable is reported rather than silently left out.
"""
from __future__ import annotations

import glob
from pathlib import Path

import numpy as np

from edgekd.core.errors import DataError
from edgekd.core.imageio import IMAGE_EXTENSIONS

GLOB_CHARACTERS = "*?["


def is_pattern(source) -> bool:
    """A glob pattern (``photos/*.jpg``) rather than a file: it holds a wildcard and names no existing file."""
    text = str(source)
    return any(c in text for c in GLOB_CHARACTERS) and not Path(text).exists()


def is_many(source) -> bool:
    """Whether ``source`` stands for a list of images (a folder, a pattern, a list) rather than one image."""
    if isinstance(source, np.ndarray):
        return False
    if isinstance(source, (list, tuple)):
        return True
    return Path(str(source)).is_dir() or is_pattern(source)


def _images_in(paths) -> list[Path]:
    return sorted(p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def expand(source) -> list:
    """``source`` as a flat list of arrays and file paths, in the order given (folders and patterns sorted).

    A folder without an image, or a pattern that matches none, is a DataError naming it: an empty run would look
    like a run that found no face."""
    if isinstance(source, np.ndarray):
        return [source]
    if isinstance(source, (list, tuple)):
        return [item for one in source for item in expand(one)]
    if isinstance(source, (str, Path)):
        path = Path(source)
        if str(source).strip() == "":
            raise DataError("image '': expected the path of an image, a folder or a pattern such as 'photos/*.jpg'")
        if path.is_dir():
            found = _images_in(path.iterdir())
            if not found:
                raise DataError(f"{path}: no image in this folder (expected {', '.join(IMAGE_EXTENSIONS)} files)")
            return found
        if is_pattern(source):
            found = _images_in(Path(p) for p in glob.glob(str(source), recursive=True))
            if not found:
                raise DataError(f"{source}: no image file matches this pattern")
            return found
        return [path]
    raise DataError(f"{type(source).__name__}: expected an image array, a path, a folder, a pattern or a list of them")


def label(item, index: int) -> str:
    """How results and messages name an input: its path, or ``image <index>`` for an array."""
    return str(item) if not isinstance(item, np.ndarray) else f"image {index}"
