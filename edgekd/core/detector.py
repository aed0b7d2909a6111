"""FaceDetector: MediaPipe Tasks' BlazeFace short-range detector, the front end a phone app would use.

The model files ship inside the package (edgekd/assets, Apache-2.0, taken from the mediapipe 0.10.21 wheel; see the
NOTICEs there), so nothing downloads at run time: short-range (faces within ~2 m of a selfie camera) and
full-range (smaller, more distant faces). FaceDetector runs them through MediaPipe Tasks; edgekd.runtime.blazeface
runs the same models on LiteRT without the Tasks wrapper. ``fit_detector_mapping`` learns how the boxes relate to
the landmark boxes the model was trained on, so detector crops look like training crops.
"""
from __future__ import annotations

import hashlib
import logging
import sys
import time
import types
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgekd.core.crop import CropSpec, keypoint_features
from edgekd.core.errors import DataError, ModelError
from edgekd.core.imageio import load_image

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
ASSET = ASSETS_DIR / "face_detection_short_range.tflite"
ASSET_SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
FULL_RANGE_ASSET = ASSETS_DIR / "face_detection_full_range_sparse.tflite"
# every shipped detector file and its sha256, checked on load
SHIPPED = {ASSET: ASSET_SHA256,
           FULL_RANGE_ASSET: "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"}
DETECTOR_NAME = "MediaPipe BlazeFace short-range"


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x, y, w, h in image pixels
    score: float
    keypoints: np.ndarray  # (6, 2) image pixels: eyes, nose tip, mouth, ear tragions


def _import_mediapipe():
    """Import mediapipe without letting it import all of TensorFlow (it only wants a docs decorator from it).

    The stub lives in sys.modules just for the import: TensorFlow itself needs the real module later.
    """
    stubbed = "tensorflow" not in sys.modules and "tensorflow.tools.docs" not in sys.modules
    if stubbed:
        stub = types.ModuleType("tensorflow.tools.docs")
        stub.doc_controls = types.SimpleNamespace(do_not_generate_docs=lambda x: x)
        sys.modules["tensorflow.tools.docs"] = stub
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions
    except ImportError as e:
        raise ModelError(f"the face detector needs mediapipe (pip install mediapipe): {e}") from None
    finally:
        if stubbed:
            sys.modules.pop("tensorflow.tools.docs", None)
    return mp, vision, BaseOptions


def check_asset(path: Path = ASSET) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError:
        raise ModelError(f"{path}: face detector model missing (it ships with edgekd; reinstall the package)") from None
    expected = SHIPPED.get(Path(path))
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ModelError(f"{path}: face detector model has the wrong sha256 (corrupt install?)")
    return data


class FaceDetector:
    """``detect(rgb_uint8) -> list[Detection]``, best score first. Use as a context manager or call close():
    MediaPipe's detector fails in ``__del__`` when left to interpreter exit."""

    def __init__(self, model_path: str | Path | None = None, min_score: float = 0.5,
                 min_suppression: float = 0.3):
        mp, vision, BaseOptions = _import_mediapipe()
        path = Path(model_path) if model_path else ASSET
        data = check_asset(path)
        self._mp = mp
        options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_buffer=data),
                                             min_detection_confidence=min_score,
                                             min_suppression_threshold=min_suppression)
        self._det = vision.FaceDetector.create_from_options(options)
        kind = DETECTOR_NAME if path == ASSET else \
            "MediaPipe BlazeFace full-range" if path == FULL_RANGE_ASSET else f"MediaPipe Tasks {path.name}"
        self.name = f"{kind} (mediapipe {mp.__version__})"
        self.min_score = float(min_score)
        self.last_ms = float("nan")

    def detect(self, image: np.ndarray) -> list[Detection]:
        if self._det is None:
            raise RuntimeError("FaceDetector is closed")
        img = np.ascontiguousarray(image, dtype=np.uint8)
        t0 = time.perf_counter()
        result = self._det.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=img))
        self.last_ms = (time.perf_counter() - t0) * 1e3
        h, w = img.shape[:2]
        out = []
        for d in result.detections:
            b = d.bounding_box
            kps = np.array([(k.x * w, k.y * h) for k in (d.keypoints or [])], dtype=np.float32).reshape(-1, 2)
            score = d.categories[0].score if d.categories else float("nan")
            out.append(Detection((float(b.origin_x), float(b.origin_y), float(b.width), float(b.height)),
                                 float(score), kps))
        return sorted(out, key=lambda d: -d.score)

    def close(self) -> None:
        if self._det is not None:
            self._det.close()
            self._det = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):  # best effort before interpreter shutdown tears MediaPipe's ctypes down
        try:
            self.close()
        except Exception:
            pass


# --- matching detections to annotated faces ---------------------------------------------------------------------
def points_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """Tight (x, y, w, h) box of landmarks."""
    p = np.asarray(points, dtype=np.float64)
    lo, hi = p.min(axis=0), p.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def match_box(boxes, points: np.ndarray) -> int | None:
    """Index of the box overlapping the landmark box most; None when no box overlaps it (a miss)."""
    gt = points_box(points)
    scores = [iou(b, gt) for b in boxes]
    if not scores or max(scores) <= 0.0:
        return None
    return int(np.argmax(scores))


# --- detector box -> landmark box ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DetectorMapping:
    """centre = det_centre + offset * det_side, side = scale * det_side (see CropSpec.box_from_detector), and
    where keypoints were found on enough faces, the keypoint mapping that CropSpec prefers.

    ``spread`` is the median absolute deviation of the per-face offsets and log scale: how much faces vary;
    ``keypoint_spread`` the same for what the keypoint mapping leaves, over every view it was fitted on (the
    worst 10 % it leaves out of the fit included)."""

    detector_offset: tuple[float, float]
    detector_scale: float
    faces_used: int
    faces_missed: int
    spread: tuple[float, float, float]  # median absolute deviation of offset x, offset y, log scale
    keypoint_weights: tuple[tuple[float, ...], ...] | None = None
    keypoint_spread: tuple[float, float, float] | None = None

    def apply(self, crop: CropSpec) -> CropSpec:
        return replace(crop, detector_offset=tuple(self.detector_offset), detector_scale=self.detector_scale,
                       detector_keypoint_weights=self.keypoint_weights)

    def to_dict(self) -> dict:
        d = {"detector_offset": list(self.detector_offset), "detector_scale": self.detector_scale,
             "faces_used": self.faces_used, "faces_missed": self.faces_missed, "spread": list(self.spread)}
        # always present (None when too few faces had keypoints): a manifest without the key predates the fit
        d["keypoint_weights"] = None if self.keypoint_weights is None else [list(r) for r in self.keypoint_weights]
        d["keypoint_spread"] = None if self.keypoint_spread is None else list(self.keypoint_spread)
        return d


def fit_box_mapping(pairs) -> tuple[tuple[float, float], float, tuple[float, float, float]]:
    """Offset/scale taking (x, y, w, h) source boxes to (cx, cy, side) target squares: 10%-trimmed means.

    Trimmed rather than plain least squares, so a few wrong matches or odd annotations do not pull the crop; means
    rather than medians, because some detectors (dlib's HOG) give boxes in a few discrete sizes, whose median
    is one of those sizes rather than the typical ratio.
    """
    pairs = list(pairs)
    if not pairs:
        raise ModelError("no detected faces to fit a detector box mapping on")
    dx, dy, ls = [], [], []
    for (x, y, w, h), (cx, cy, side) in pairs:
        s = max(w, h)
        dx.append((cx - (x + w / 2.0)) / s)
        dy.append((cy - (y + h / 2.0)) / s)
        ls.append(np.log(side / s))
    dx, dy, ls = (np.asarray(v) for v in (dx, dy, ls))
    mad = tuple(float(np.median(np.abs(v - np.median(v)))) for v in (dx, dy, ls))
    return (_trimmed_mean(dx), _trimmed_mean(dy)), float(np.exp(_trimmed_mean(ls))), mad


def _trimmed_mean(v: np.ndarray, cut: float = 0.1) -> float:
    lo, hi = np.quantile(v, [cut, 1.0 - cut])
    kept = v[(v >= lo) & (v <= hi)]
    return float(kept.mean() if kept.size else np.median(v))


MIN_KEYPOINT_FACES = 100  # 45 weights: fewer faces (not views) than this keep the box mapping alone


def fit_keypoint_mapping(triples, ridge: float = 1e-6):
    """(weights, spread) of the keypoint mapping from (box xywh, (6, 2) keypoints, (cx, cy, side) target) triples:
    ridge least squares of the target's offset and log scale (in box sides) on ``keypoint_features``, then once
    more without the 10 % of faces it fits worst, so a few wrong matches do not pull it. None when fewer than
    MIN_KEYPOINT_FACES faces have 6 keypoints."""
    triples = list(triples)
    X, Y = [], []
    for (x, y, w, h), keypoints, (cx, cy, side) in triples:
        f = keypoint_features((x, y, w, h), keypoints)
        if f is None:
            continue
        s = max(w, h)
        X.append(f)
        Y.append(((cx - (x + w / 2.0)) / s, (cy - (y + h / 2.0)) / s, np.log(side / s)))
    if len({tuple(t) for *_, t in triples}) < MIN_KEYPOINT_FACES:  # faces, not views: a face's views share its target
        return None, None
    X, Y = np.asarray(X), np.asarray(Y)
    keep = np.ones(len(X), bool)
    for _ in range(2):
        A = X[keep]
        W = np.linalg.solve(A.T @ A + ridge * len(A) * np.eye(A.shape[1]), A.T @ Y[keep])
        residual = Y - X @ W
        size = np.linalg.norm(residual / residual[keep].std(0), axis=1)
        keep = size <= np.quantile(size, 0.9)
    residual = Y - X @ W
    spread = tuple(float(np.median(np.abs(r - np.median(r)))) for r in residual.T)
    return tuple(tuple(float(v) for v in row) for row in W.T), spread


# Views of each training image for the keypoint fit: the image itself, and centred on a black canvas 1.6 and 2.5
# times its size. BlazeFace reads the whole image at 128 px, so its keypoints sit differently in its box when the
# face fills less of the frame; the 300-W training images are cut to about twice the face (the face
# fills half of the image), which a camera frame or a photo rarely is (edgekd 0.7.0: fitted on those views alone,
# the keypoint mapping put crops 5 % too large on photos where the face fills a third).
KEYPOINT_FIT_PADS = (1.0, 1.6, 2.5)


def padded_view(image: np.ndarray, pad: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` centred on a black canvas ``pad`` times its size, and the canvas position of its corner."""
    if pad == 1.0:
        return image, np.zeros(2)
    h, w = image.shape[:2]
    top, left = int(round(h * (pad - 1) / 2)), int(round(w * (pad - 1) / 2))
    import cv2

    return cv2.copyMakeBorder(image, top, top, left, left, cv2.BORDER_CONSTANT, value=0), np.array([left, top], float)


def fit_detector_mapping(samples, detector: FaceDetector | None = None, progress: bool = True,
                         pads: tuple[float, ...] = KEYPOINT_FIT_PADS) -> DetectorMapping:
    """Fit CropSpec.detector_offset/detector_scale (and detector_keypoint_weights) on (training) samples: where
    MediaPipe's box and keypoints sit relative to ``CropSpec.box_from_points`` of the annotation. The box mapping
    is fitted on the images as they are; the keypoint mapping also on each image shrunk inside a larger canvas
    (``pads``, see KEYPOINT_FIT_PADS). Faces the detector misses in the image itself are counted as missed and
    left out of the box fit; whatever views of them it finds still go into the keypoint fit.

    Apply the result with ``mapping.apply(crop_spec)``; store it in the manifest/metadata so runtime crops match.
    """
    own = detector is None
    det = detector or FaceDetector()
    pairs, triples, missed = [], [], 0
    try:
        it = samples
        if progress:
            from tqdm import tqdm

            it = tqdm(samples, desc="fit detector box", unit="face", leave=False)
        for s in it:
            try:
                image = load_image(s)
            except DataError as e:
                log.warning("%s; skipped", e)
                continue
            target = CropSpec.box_from_points(s.points)
            for pad in (1.0, *(p for p in pads if p != 1.0)):  # the image itself first, always
                view, corner = padded_view(image, pad)
                dets = det.detect(view)
                k = match_box([(x - corner[0], y - corner[1], w, h) for x, y, w, h in (d.box for d in dets)], s.points)
                if k is None:
                    missed += pad == 1.0
                    continue
                box = tuple(float(v) for v in (dets[k].box[0] - corner[0], dets[k].box[1] - corner[1],
                                               dets[k].box[2], dets[k].box[3]))
                triples.append((box, np.asarray(dets[k].keypoints, np.float64) - corner, target))
                if pad == 1.0:
                    pairs.append((dets[k].box, target))
    finally:
        if own:
            det.close()
    offset, scale, spread = fit_box_mapping(pairs)
    weights, keypoint_spread = fit_keypoint_mapping(triples)
    return DetectorMapping(offset, scale, len(pairs), missed, spread, weights, keypoint_spread)
