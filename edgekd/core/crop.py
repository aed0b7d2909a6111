"""CropSpec: the one crop definition shared by training, export metadata, desktop runtime and the Android app.

A face box (from the landmarks, or from a face detector mapped to the landmark-box convention) becomes a square
of side ``box_side * (1 + 2 * margin)`` around the box centre, scaled to ``input_size`` pixels by a similarity
transform (no rotation, aspect ratio kept; the paper's non-uniform resize distorts faces and cannot be reproduced
from a detector box). Model outputs live in the crop, normalised as ``crop_px / input_size - 0.5`` (about
[-0.5, 0.5], x right, y down), and go back to the image through the inverse transform.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from edgekd.core.errors import DataError

MIN_INPUT, MAX_INPUT = 64, 224  # 64 only for fast tests; prepared data uses 96-224


def check_input_size(input_size: int, option: str = "input size") -> None:
    """The one input-size rule (prepare, models): a multiple of 32 (MobileNetV2's total stride) in range."""
    if input_size % 32 or not MIN_INPUT <= input_size <= MAX_INPUT:
        raise DataError(f"{option} {input_size}: expected a multiple of 32 from {MIN_INPUT} to {MAX_INPUT}")


@dataclass(frozen=True)
class CropSpec:
    input_size: int = 128
    margin: float = 0.15
    # How a face detector's box maps to the landmark box the model was trained on, fitted on training faces
    # (see edgekd.core.detector.fit_detector_mapping): centre = det_centre + offset * det_side,
    # side = scale * det_side, where det_side = max(w, h) of the detector box.
    detector_offset: tuple[float, float] = (0.0, 0.0)
    detector_scale: float = 1.0
    # Optional, and better where the detector gives BlazeFace's 6 keypoints (fit_detector_mapping): three rows of
    # KEYPOINT_FEATURES weights predicting the centre offset (x, y, in detector-box sides) and the log scale from
    # where the eyes, nose, mouth and ears sit in the box. None: the box mapping above.
    detector_keypoint_weights: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self):
        w = self.detector_keypoint_weights
        if w is not None and (np.shape(w) != (3, NUM_KEYPOINT_FEATURES) or not np.isfinite(w).all()):
            raise ValueError(f"detector_keypoint_weights: expected 3 rows of {NUM_KEYPOINT_FEATURES} finite numbers")

    # --- boxes: (cx, cy, side) squares ------------------------------------------------------------------------
    @staticmethod
    def box_from_points(points: np.ndarray) -> tuple[float, float, float]:
        """Square around the landmark extent (pixel-centre coordinates)."""
        pts = np.asarray(points, dtype=np.float64)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        cx, cy = (lo + hi) / 2.0
        return float(cx), float(cy), float(max(hi - lo))

    def box_from_detector(self, box_xywh, keypoints=None) -> tuple[float, float, float]:
        """Detector box (x, y, w, h) and, when the spec has keypoint weights, the detector's 6 keypoints (image
        pixels) -> the landmark-box square they predict.

        The keypoint mapping is used only when its answer stays within KEYPOINT_GUARD of the box mapping's (centre
        within 0.25 box sides, scale within a factor exp(0.3)): keypoints from a detector that is not the one it
        was fitted on, or from a face far outside the training poses, fall back to the box."""
        x, y, w, h = (float(v) for v in box_xywh)
        side = max(w, h)
        cx, cy = x + w / 2.0, y + h / 2.0
        box = (cx + self.detector_offset[0] * side, cy + self.detector_offset[1] * side, self.detector_scale * side)
        features = (keypoint_features(box_xywh, keypoints)
                    if self.detector_keypoint_weights is not None and keypoints is not None else None)
        if features is None:
            return box
        dx, dy, log_scale = np.asarray(self.detector_keypoint_weights, dtype=np.float64) @ features
        by_keypoints = (cx + dx * side, cy + dy * side, float(np.exp(log_scale)) * side)
        centre_guard, scale_guard = KEYPOINT_GUARD
        if (max(abs(by_keypoints[0] - box[0]), abs(by_keypoints[1] - box[1])) > centre_guard * side
                or abs(np.log(by_keypoints[2] / box[2])) > scale_guard):
            return box
        return tuple(float(v) for v in by_keypoints)

    # --- transforms ---------------------------------------------------------------------------------------------
    def matrix(self, box: tuple[float, float, float]) -> np.ndarray:
        """2x3 affine matrix taking image pixels to crop pixels for a (cx, cy, side) box."""
        cx, cy, side = box
        full = side * (1.0 + 2.0 * self.margin)
        if not np.isfinite(full) or full <= 0:
            raise DataError(f"degenerate face box {box}: the landmarks or detection have no extent")
        s = self.input_size / full
        # pixel centres: image point (cx, cy) lands on crop point ((size - 1) / 2, (size - 1) / 2)
        c = (self.input_size - 1) / 2.0
        return np.array([[s, 0.0, c - s * cx], [0.0, s, c - s * cy]], dtype=np.float64)

    def crop(self, image: np.ndarray, box: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
        """Cut the model input out of an HxWx3 uint8 image. Returns (crop, matrix)."""
        m = self.matrix(box)
        return warp(image, m, self.input_size), m

    # --- labels -------------------------------------------------------------------------------------------------
    def normalize(self, crop_points: np.ndarray) -> np.ndarray:
        return np.asarray(crop_points, dtype=np.float32) / self.input_size - 0.5

    def denormalize(self, values: np.ndarray) -> np.ndarray:
        """Model output (..., 2N) or (..., N, 2) -> crop pixels (..., N, 2)."""
        v = np.asarray(values, dtype=np.float32)
        if v.shape[-1] != 2:
            v = v.reshape(*v.shape[:-1], -1, 2)
        return (v + 0.5) * self.input_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CropSpec":
        d = dict(d)
        d["detector_offset"] = tuple(d.get("detector_offset", (0.0, 0.0)))
        if d.get("detector_keypoint_weights") is not None:
            d["detector_keypoint_weights"] = tuple(tuple(float(v) for v in row)
                                                   for row in d["detector_keypoint_weights"])
        return cls(**{k: d[k] for k in ("input_size", "margin", "detector_offset", "detector_scale",
                                        "detector_keypoint_weights") if k in d})


# --- detector keypoints -> crop box ---------------------------------------------------------------------------------
KEYPOINT_FEATURES = ("1", "6 keypoints (x, y) relative to the box centre, in box sides (12 values)",
                     "log eye distance", "log distance from the eyes' midpoint to the mouth")
NUM_KEYPOINT_FEATURES = 15
KEYPOINT_GUARD = (0.25, 0.3)  # box sides off the box mapping's centre, |log| off its scale


def keypoint_features(box_xywh, keypoints) -> np.ndarray | None:
    """The NUM_KEYPOINT_FEATURES numbers a keypoint mapping reads, or None unless ``keypoints`` are 6 finite points
    (BlazeFace's order: right eye, left eye, nose tip, mouth, right ear, left ear).

    Why keypoints: the box mapping leaves BlazeFace's crop off the landmark box by 2.7 / 3.9 % of its side in x / y
    and 6.4 % in size (standard deviations over the 168 validation faces), which costs the 0.6.0 network 0.15 NME
    points against ground-truth crops; from the keypoints it is 2.2 / 2.3 / 4.1 % and 0.08 points
    (edgekd 0.7.0, CHANGELOG.md): where the eyes and mouth sit says where the landmarks are and how large the
    face is better than the box's edges do."""
    k = np.asarray(keypoints, dtype=np.float64) if keypoints is not None else None
    x, y, w, h = (float(v) for v in box_xywh)
    side = max(w, h)
    if k is None or k.shape != (6, 2) or not np.isfinite(k).all() or side <= 0:
        return None
    rel = (k - (x + w / 2.0, y + h / 2.0)) / side
    eyes = np.linalg.norm(rel[0] - rel[1])
    mouth = np.linalg.norm((rel[0] + rel[1]) / 2.0 - rel[3])
    return np.concatenate([[1.0], rel.ravel(), [np.log(max(eyes, 1e-3)), np.log(max(mouth, 1e-3))]])


def warp(image: np.ndarray, matrix: np.ndarray, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Affine warp of ``image`` to a size x size crop; ``out`` is an optional (size, size, C) buffer to fill.

    Big downscales pre-shrink by powers of two (cv2.pyrDown) so they do not alias, and only the pyramid region
    under the crop is computed (a 400 px face in a 2001x1503 photo: 0.7 ms against 10.9 ms for the whole-image
    pyramid on one Xeon core). The crop is bit-identical to shrinking the whole image: each level's region carries
    the 2-pixel margin pyrDown's 5-tap filter reads, so only cut edges that are the image's own borders reflect,
    as they would in the whole image, and the final warp gets the exact inverse map shifted by the region's
    integer offset (OpenCV's fixed-point sampler then reads the same pixels with the same weights). Rotated
    maps shrink whole levels: their shifted translation could round one sample differently.
    """
    m = np.array(matrix, dtype=np.float64)
    levels = [image.shape[1::-1]]  # (width, height) of each pyramid level
    scale = float(np.sqrt(abs(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0])))
    while scale < 0.5 and min(levels[-1]) >= 4:
        levels.append(((levels[-1][0] + 1) // 2, (levels[-1][1] + 1) // 2))
        m[:, :2] *= 2.0  # pyrDown's pixel j is centred on source pixel 2j, so the offset stays
        scale *= 2.0
    inv = invert(m)  # what warpAffine computes from a forward matrix (same operations, bit for bit)
    if len(levels) > 1 and m[0, 1] == 0 and m[1, 0] == 0:
        regions = [_footprint(inv, size, *levels[-1])]  # half-open (x0, y0, x1, y1) per level, top level last
        if regions[0] is None:  # the crop misses the image: all border
            out = np.empty((size, size) + image.shape[2:], image.dtype) if out is None else out
            out[...] = 0
            return out
        for lw, lh in reversed(levels[:-1]):
            x0, y0, x1, y1 = regions[0]
            regions.insert(0, (max(0, 2 * x0 - 2), max(0, 2 * y0 - 2), min(lw, 2 * x1 + 1), min(lh, 2 * y1 + 1)))
        x0, y0, x1, y1 = regions[0]
        image = image[y0:y1, x0:x1]
        for (px0, py0, _, _), (x0, y0, x1, y1) in zip(regions, regions[1:]):
            down = cv2.pyrDown(image)  # starts at an even pixel (or the image edge), so its pixel i is px0 / 2 + i
            image = down[y0 - py0 // 2:y1 - py0 // 2, x0 - px0 // 2:x1 - px0 // 2]
        inv[:, 2] -= (x0, y0)
    else:  # rotated maps (augmentation): a shifted rotation rounds differently in the sampler; whole levels
        for _ in levels[1:]:
            image = cv2.pyrDown(image)
    return _sample(image, inv, size, out)


def _footprint(inv: np.ndarray, size: int, w: int, h: int):
    """Half-open (x0, y0, x1, y1) of the level's pixels the bilinear sampling can read (1-pixel safety margin
    for the sampler's 1/32-pixel fixed point), or None when the crop lies wholly outside the level."""
    corners = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]], np.float64)
    src = corners @ inv.T
    lo, hi = np.floor(src.min(axis=0)), np.floor(src.max(axis=0))
    x0, y0 = max(0, int(lo[0]) - 1), max(0, int(lo[1]) - 1)
    x1, y1 = min(w, int(hi[0]) + 3), min(h, int(hi[1]) + 3)
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _sample(image: np.ndarray, inv: np.ndarray, size: int, out) -> np.ndarray:
    return cv2.warpAffine(image, inv, (size, size), dst=out, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    return (pts @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def to_box(normalised, input_size: int):
    """Normalised crop coordinates -> (point - crop centre) / crop side, which do not depend on the input size
    (NumPy arrays or TensorFlow tensors: trainers.Ensemble moves a teacher's outputs between input sizes with it,
    and cached teacher outputs are stored in it).

    Crop pixels put the box centre at (size - 1) / 2 (pixel centres), so a normalised coordinate (pixels / size
    - 0.5) is the box coordinate minus 1 / (2 size): half a pixel, about 0.03 NME points at 128 px if ignored.
    """
    return normalised + 0.5 / input_size


def from_box(box, input_size: int):
    """Box coordinates (``to_box``) -> normalised crop coordinates at ``input_size``."""
    return box - 0.5 / input_size
