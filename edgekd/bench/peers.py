"""Peers scored by the same metric code in their own native pipeline: dlib's 68-point shape predictor.

``detector`` protocol: dlib's HOG frontal-face detector (upsampled once, as dlib's examples do) finds the face,
misses counted like ours. ``gt`` protocol: the ground-truth landmark box is moved into the HOG detector's box
convention (square, shifted), because the predictor was trained on such boxes; the mapping was fitted on the
300-W *training* faces with ``python -m edgekd.bench.peers fit ROOT`` and is stored below.

The predictor file comes from PyPI's ``face-recognition-models`` (or Debian's libdlib-data); dlib from ``dlib-bin``.
Install both with ``pip install edgekd[peers]``. Its model was trained on iBUG 300-W data (non-commercial terms),
which very likely includes the 300-W test images, so its NME there is a reference, not a fair bar.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from edgekd.core.crop import CropSpec
from edgekd.core.detector import fit_box_mapping, match_box
from edgekd.core.errors import EdgekdError
from edgekd.core.imageio import load_image
from edgekd.data.readers import read_dataset

log = logging.getLogger(__name__)

DLIB_NAME = "dlib 68-pt"
UPSAMPLE = 1
# Landmark square (CropSpec.box_from_points) -> dlib HOG box: centre += offset * side, side *= scale.
# Fitted by `python -m edgekd.bench.peers fit path/to/300w` on the 300-W training faces (lfpw+helen trainset).
# 1601 of 1675 faces used (74 missed by HOG); median absolute deviation of offset x/y 0.065/0.025, log scale 0.014.
DLIB_GT_OFFSET = (-0.0068, -0.0888)
DLIB_GT_SCALE = 1.0312

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
DEBIAN_PATHS = (Path("/usr/share/dlib") / PREDICTOR_FILE, Path("/usr/share/dlib-data") / PREDICTOR_FILE)


def predictor_path() -> Path:
    try:
        import face_recognition_models

        p = Path(face_recognition_models.pose_predictor_model_location())
        if p.is_file():
            return p
    except ImportError:
        pass
    for p in DEBIAN_PATHS:
        if p.is_file():
            return p
    raise EdgekdError(f"--compare dlib needs {PREDICTOR_FILE}: pip install face-recognition-models "
                      f"(or apt-get install libdlib-data)")


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise EdgekdError("--compare dlib needs dlib: pip install 'edgekd[peers]' (dlib-bin and "
                          "face-recognition-models)") from None
    return dlib


class DlibPeer:
    """dlib's HOG detector + 68-point predictor. Boxes are (x, y, w, h) image pixels, points (68, 2) 0-based."""

    def __init__(self, path: str | Path | None = None, upsample: int = UPSAMPLE,
                 gt_offset=DLIB_GT_OFFSET, gt_scale: float = DLIB_GT_SCALE):
        dlib = _import_dlib()
        self._dlib = dlib
        self.path = Path(path) if path else predictor_path()
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(self.path))
        self.upsample = upsample
        self.gt_offset, self.gt_scale = tuple(gt_offset), float(gt_scale)
        self.name = DLIB_NAME
        self.runtime = f"dlib {dlib.__version__}"
        self.num_points = 68

    @property
    def size_mb(self) -> float:
        return self.path.stat().st_size / 1e6

    def detect(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        rects = self.detector(np.ascontiguousarray(image), self.upsample)
        return [(float(r.left()), float(r.top()), float(r.width()), float(r.height())) for r in rects]

    def gt_box(self, points: np.ndarray) -> tuple[float, float, float, float]:
        """The dlib-convention box for an annotated face, from its landmark square."""
        cx, cy, side = CropSpec.box_from_points(points)
        cx += self.gt_offset[0] * side
        cy += self.gt_offset[1] * side
        s = self.gt_scale * side
        return cx - s / 2.0, cy - s / 2.0, s, s

    def predict_box(self, image: np.ndarray, box) -> np.ndarray:
        x, y, w, h = box
        # dlib rectangles are inclusive integer pixel ranges: width = right - left + 1
        rect = self._dlib.rectangle(int(round(x)), int(round(y)), int(round(x + w - 1)), int(round(y + h - 1)))
        shape = self.predictor(np.ascontiguousarray(image), rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def close(self) -> None:
        pass


def run_peer(peer: DlibPeer, image: np.ndarray, points: np.ndarray, protocols) -> tuple[dict, dict]:
    """One annotated face through the peer's pipeline(s): ({protocol: points or None}, timings in ms)."""
    out, times = {}, {}
    if "detector" in protocols:
        t0 = time.perf_counter()
        boxes = peer.detect(image)
        times["detector"] = (time.perf_counter() - t0) * 1e3
        k = match_box(boxes, points)
        if k is None:
            out["detector"] = None
        else:
            t1 = time.perf_counter()
            out["detector"] = peer.predict_box(image, boxes[k])
            times["model"] = (time.perf_counter() - t1) * 1e3
    if "gt" in protocols:
        t1 = time.perf_counter()
        out["gt"] = peer.predict_box(image, peer.gt_box(points))
        times.setdefault("model", (time.perf_counter() - t1) * 1e3)
    return out, times


def fit_dlib_gt_mapping(samples, peer: DlibPeer | None = None):
    """Fit the landmark-square -> HOG-box mapping on training samples; returns (offset, scale, spread, used, missed)."""
    from tqdm import tqdm

    peer = peer or DlibPeer()
    pairs, missed = [], 0
    for s in tqdm(samples, desc="fit dlib box", unit="face", leave=False):
        boxes = peer.detect(load_image(s))
        k = match_box(boxes, s.points)
        if k is None:
            missed += 1
            continue
        cx, cy, side = CropSpec.box_from_points(s.points)
        x, y, w, h = boxes[k]
        pairs.append(((cx - side / 2.0, cy - side / 2.0, side, side), (x + w / 2.0, y + h / 2.0, max(w, h))))
    offset, scale, spread = fit_box_mapping(pairs)
    return offset, scale, spread, len(pairs), missed


def _main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m edgekd.bench.peers")
    ap.add_argument("command", choices=["fit"])
    ap.add_argument("root", help="300-W root (its training split is used)")
    args = ap.parse_args(argv)
    samples = read_dataset("300w", args.root, "train")
    offset, scale, spread, used, missed = fit_dlib_gt_mapping(samples)
    print(f"DLIB_GT_OFFSET = ({offset[0]:.4f}, {offset[1]:.4f})\nDLIB_GT_SCALE = {scale:.4f}\n"
          f"# {used} training faces used, {missed} missed by HOG; MAD of offset x/y, log-scale: "
          f"{spread[0]:.4f} {spread[1]:.4f} {spread[2]:.4f}")


if __name__ == "__main__":
    _main()
