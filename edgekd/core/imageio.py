"""Image and point files: the `Sample` record every reader yields, and reading an image or an iBUG .pts file.

A foundation (floor 0): the runtime reads images and writes .pts through it without importing the dataset readers.
Points are float32 (N, 2), 0-based pixel coordinates with pixel centres at integers (.pts files are 1-based).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgekd.core.errors import FOLDER_NOT_FILE, DataError
from edgekd.core.fileio import write_text

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm")


@dataclass
class Sample:
    id: str
    image_path: str  # for COFW (images inside the .mat) a "file.mat#index" label; `image` holds the pixels
    points: np.ndarray  # (N, 2) float32, 0-based
    box: np.ndarray | None = None  # dataset's own face box (x, y, w, h), if it has one
    attrs: dict = field(default_factory=dict)
    tags: tuple[str, ...] = ()  # named test subsets this face belongs to ("common", "full", "pose", ...)
    image: np.ndarray | None = None


def load_image(sample_or_path) -> np.ndarray:
    """HxWx3 uint8 RGB. A missing or undecodable file is a DataError naming it."""
    if isinstance(sample_or_path, Sample):
        if sample_or_path.image is not None:
            return as_rgb(sample_or_path.image, sample_or_path.image_path)
        path = sample_or_path.image_path
    else:
        path = str(sample_or_path)
    if path == "":
        raise DataError("image '': expected the path of an image file")
    if Path(path).is_dir():
        raise DataError(f"{path}: {FOLDER_NOT_FILE} (an image)")
    if not Path(path).is_file():
        raise DataError(f"{path}: image file not found")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise DataError(f"{path}: not a readable image (corrupt or unsupported format)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def as_rgb(img: np.ndarray, source: str) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise DataError(f"{source}: expected an HxW or HxWx3 image, got shape {img.shape}")
    return np.ascontiguousarray(img[:, :, :3]).astype(np.uint8)


# --- iBUG .pts --------------------------------------------------------------------------------------------------
def read_pts(path, num_points: int | None = None) -> np.ndarray:
    """Read an iBUG .pts file, with or without its `version / n_points / {` header; returns 0-based points."""
    path = Path(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        raise DataError(f"{path}: cannot read annotation ({e.strerror})") from None
    declared = None
    values = []
    for raw in lines:
        line = raw.strip()
        if not line or line in ("{", "}") or line.startswith("version"):
            continue
        if line.startswith("n_points"):
            try:
                declared = int(line.split(":", 1)[1])
            except (IndexError, ValueError):
                raise DataError(f"{path}: malformed header line {raw!r}") from None
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            values.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise DataError(f"{path}: malformed point line {raw!r}, expected 'x y'") from None
    pts = np.asarray(values, dtype=np.float32).reshape(-1, 2) - 1.0
    if declared is not None and declared != len(pts):
        raise DataError(f"{path}: header says {declared} points, file has {len(pts)} (truncated?)")
    if num_points is not None and len(pts) != num_points:
        raise DataError(f"{path}: expected {num_points} points, found {len(pts)}")
    if not np.all(np.isfinite(pts)):
        raise DataError(f"{path}: non-finite coordinates")
    return pts


def write_pts(path, points: np.ndarray, header: bool = True) -> None:
    """Write 0-based points as a 1-based .pts (used by tests and by `edgekd predict --pts`)."""
    lines = []
    if header:
        lines += ["version: 1", f"n_points:  {len(points)}", "{"]
    lines += [f"{x + 1:.3f} {y + 1:.3f}" for x, y in np.asarray(points, dtype=np.float64)]
    if header:
        lines.append("}")
    write_text(path, "\n".join(lines) + "\n")
