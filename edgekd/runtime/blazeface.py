"""BlazeFace on LiteRT, tiling for small faces, and ``open_detector``: the face detector `predict` asks for.

BlazeFace runs here without the MediaPipe Tasks wrapper, doing what MediaPipe's graphs do (letterboxed [-1, 1]
input, SSD anchors, sigmoid scores, weighted non-maximum suppression, projection back through the letterbox) with
the constants of ``face_detection_short_range.pbtxt`` and ``face_detection_full_range.pbtxt``. It finds the boxes
Tasks finds (same scores; Tasks moves boxes that cross the left/top image edge inside it, keeping their size) and
skips the wrapper's per-call cost (1.34 against 1.83 ms on the astronaut, one Xeon core), and it runs the
full-range model without Tasks' per-tensor "sparsity" warnings.

Both models see the whole image letterboxed to 128 or 192 pixels, so a face under ~6 % (short) or ~8 % (full) of
the image side is lost: in a 4x4 grid of faces short-range finds 0 and full-range 4 of 16. ``TiledDetector`` also
runs the detector on overlapping tiles, which finds all 16 (see ``open_detector``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from edgekd.core.detector import ASSET, FULL_RANGE_ASSET, Detection, FaceDetector, check_asset
from edgekd.core.errors import ModelError
from edgekd.core.interpreter import make_interpreter
from edgekd.runtime.model import dequantize_output, quantize_input

RANGES = ("short-range", "full-range")
BACKENDS = ("auto", "tasks", "litert")


@dataclass(frozen=True)
class BlazeFaceSpec:
    """One BlazeFace model: its file, input size and anchor layout ((stride, anchors per cell), ...)."""

    name: str
    path: object
    input_size: int
    layers: tuple[tuple[int, int], ...]

    def anchors(self) -> np.ndarray:
        """(A, 2) anchor centres in [0, 1], in the order of the model's outputs (MediaPipe's SsdAnchorsCalculator
        with fixed anchor size: cell by cell, row-major, each cell's anchors together)."""
        out = []
        for stride, per_cell in self.layers:
            n = -(-self.input_size // stride)
            ys, xs = np.mgrid[0:n, 0:n]
            centres = np.stack([(xs + 0.5) / n, (ys + 0.5) / n], axis=-1).reshape(-1, 1, 2)
            out.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
        return np.concatenate(out).astype(np.float32)


SPECS = {
    # short-range: strides 8, 16, 16, 16 -> 2 anchors per 16x16 cell, 6 per 8x8 cell (896)
    "short-range": BlazeFaceSpec("MediaPipe BlazeFace short-range", ASSET, 128, ((8, 2), (16, 6))),
    # full-range: one layer of stride 4, one anchor per 48x48 cell (2304)
    "full-range": BlazeFaceSpec("MediaPipe BlazeFace full-range (sparse)", FULL_RANGE_ASSET, 192, ((4, 1),)),
}


class BlazeFace:
    """``detect(rgb_uint8) -> list[Detection]``, best score first, like FaceDetector; buffers are reused."""

    def __init__(self, detector: str = "short-range", min_score: float = 0.5, min_suppression: float = 0.3,
                 num_threads: int = 1, path=None):
        """``path``: another .tflite with ``detector``'s input size and anchors (a requantized copy, say) in place
        of the spec's file; a model with int8 input and outputs is fed and read through its quantization."""
        if detector not in SPECS:
            raise ModelError(f"detector {detector!r}: expected one of {', '.join(SPECS)}")
        self.spec = SPECS[detector] if path is None else replace(SPECS[detector], path=path)
        self.min_score, self.min_suppression = float(min_score), float(min_suppression)
        self.interp, label = make_interpreter(content=check_asset(self.spec.path), num_threads=num_threads)
        self._in = self.interp.get_input_details()[0]
        outs = sorted(self.interp.get_output_details(), key=lambda d: -int(d["shape"][-1]))
        self._boxes, self._scores = outs[:2]
        self.anchors = self.spec.anchors()
        if int(outs[0]["shape"][1]) != len(self.anchors):
            raise ModelError(f"{self.spec.path}: {outs[0]['shape'][1]} boxes, expected {len(self.anchors)} anchors")
        s = self.spec.input_size
        self._u8 = np.empty((s, s, 3), np.uint8)
        self._x = np.empty((1, s, s, 3), self._in["dtype"])
        # an integer input: pixel -> quantized value through a 256-entry table, the float path's [-1, 1] value
        # quantized as the model's own QUANTIZE would, without a float image in between
        self._lut = None if self._x.dtype == np.float32 else input_table(self._in)
        self.name = f"{self.spec.name} ({label})"
        self.last_ms = float("nan")

    def detect(self, image: np.ndarray) -> list[Detection]:
        if self.interp is None:
            raise RuntimeError("BlazeFace is closed")
        t0 = time.perf_counter()
        h, w = image.shape[:2]
        side = float(max(w, h))  # the letterbox: a square around the image centre, zero outside
        left, top, k = w / 2.0 - side / 2.0, h / 2.0 - side / 2.0, self.spec.input_size / side
        m = np.array([[k, 0.0, -k * left], [0.0, k, -k * top]])
        cv2.warpAffine(image, m, self._u8.shape[1::-1], dst=self._u8, flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if self._lut is None:
            np.multiply(self._u8, np.float32(2.0 / 255.0), out=self._x[0])
            self._x -= 1.0
        else:
            np.take(self._lut, self._u8, out=self._x[0])
        self.interp.set_tensor(self._in["index"], self._x)
        self.interp.invoke()
        boxes, scores = (dequantize_output(self.interp.get_tensor(d["index"]), d) for d in (self._boxes, self._scores))
        found = self._decode(boxes[0], scores[0, :, 0])
        out = [Detection((left + b[0] * side, top + b[1] * side, (b[2] - b[0]) * side, (b[3] - b[1]) * side),
                         float(score), np.stack([left + kp[:, 0] * side, top + kp[:, 1] * side], 1).astype(np.float32))
               for b, score, kp in found]
        self.last_ms = (time.perf_counter() - t0) * 1e3
        return out

    def _decode(self, raw: np.ndarray, logits: np.ndarray):
        """Raw regressors and logits -> [(xmin, ymin, xmax, ymax), score, (6, 2) keypoints] in [0, 1] of the
        letterbox, after weighted non-maximum suppression."""
        score = self.min_score
        limit = -np.inf if score <= 0 else np.inf if score >= 1 else np.log(score / (1.0 - score))  # as a logit
        keep = np.flatnonzero(np.clip(logits, -100, 100) >= limit)
        if not keep.size:
            return []
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep].astype(np.float64), -100, 100)))
        v = raw[keep] / np.float32(self.spec.input_size)
        centre = self.anchors[keep]
        half = v[:, 2:4] / 2.0
        boxes = np.concatenate([v[:, :2] + centre - half, v[:, :2] + centre + half], 1)
        keypoints = v[:, 4:16].reshape(-1, 6, 2) + centre[:, None, :]
        return weighted_nms(boxes, scores, keypoints, self.min_suppression)

    def close(self) -> None:
        self.interp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def input_table(detail: dict) -> np.ndarray:
    """The 256 values an integer input tensor ``detail`` takes for pixels 0-255: the float path's [-1, 1] value of
    each pixel, quantized with the tensor's (scale, zero point)."""
    return quantize_input(np.arange(256, dtype=np.uint8) * np.float32(2.0 / 255.0) - np.float32(1.0), detail)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, threshold: float):
    """MediaPipe's WEIGHTED non-maximum suppression: the best box and every box overlapping it by IoU above
    ``threshold`` merge into their score-weighted mean (box and keypoints), keeping the best score. Blending the
    overlapping anchors steadies the box from frame to frame, which plain NMS would not."""
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    out = []
    while order.size:
        top = order[0]
        lo = np.maximum(boxes[order, :2], boxes[top, :2])
        hi = np.minimum(boxes[order, 2:], boxes[top, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
        union = area[order] + area[top] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        merged = order[iou > threshold]
        if not merged.size:  # a degenerate box overlaps nothing, not even itself
            merged = order[:1]
        wgt = scores[merged][:, None]
        total = wgt.sum()
        box = (boxes[merged] * wgt).sum(0) / total
        kps = (keypoints[merged] * wgt[:, :, None]).sum(0) / total
        out.append((box, float(scores[top]), kps))
        order = order[~np.isin(order, merged)]
    return out


class TiledDetector:
    """A detector run on the whole image and on ``tiles`` x ``tiles`` overlapping tiles, detections merged.

    A tile detection that touches a tile edge inside the image is a cut face, which the whole image or the
    neighbouring tile (tiles overlap by ``overlap`` of their side) sees whole, so it is dropped; the rest merge by
    weighted non-maximum suppression. Costs tiles**2 + 1 detector calls."""

    def __init__(self, detector, tiles: int, overlap: float = 0.25, min_suppression: float = 0.3):
        self.detector, self.tiles, self.overlap, self.min_suppression = detector, int(tiles), overlap, min_suppression
        self.name = f"{detector.name}, {self.tiles}x{self.tiles} tiles"
        self.last_ms = float("nan")

    def detect(self, image: np.ndarray) -> list[Detection]:
        t0 = time.perf_counter()
        h, w = image.shape[:2]
        found = list(self.detector.detect(image))
        for x0, y0, x1, y1 in self._tiles(w, h):
            for d in self.detector.detect(np.ascontiguousarray(image[y0:y1, x0:x1])):
                x, y, bw, bh = d.box
                cut = (x <= 1 and x0 > 0) or (y <= 1 and y0 > 0) or (x + bw >= x1 - x0 - 1 and x1 < w) or \
                      (y + bh >= y1 - y0 - 1 and y1 < h)
                if not cut:
                    found.append(Detection((x + x0, y + y0, bw, bh), d.score, d.keypoints + np.float32((x0, y0))))
        out = []
        if found:
            boxes = np.array([(x, y, x + bw, y + bh) for x, y, bw, bh in (d.box for d in found)], np.float64)
            merged = weighted_nms(boxes, np.array([d.score for d in found]),
                                  np.stack([d.keypoints for d in found]).astype(np.float64), self.min_suppression)
            out = [Detection((b[0], b[1], b[2] - b[0], b[3] - b[1]), s, k.astype(np.float32)) for b, s, k in merged]
        self.last_ms = (time.perf_counter() - t0) * 1e3
        return out

    def _tiles(self, w: int, h: int):
        n, keep = self.tiles, 1.0 - self.overlap
        tw, th = w / (1 + (n - 1) * keep), h / (1 + (n - 1) * keep)
        for j in range(n):
            for i in range(n):
                x0, y0 = int(round(i * tw * keep)), int(round(j * th * keep))
                yield x0, y0, min(w, int(round(x0 + tw))), min(h, int(round(y0 + th)))

    def close(self) -> None:
        self.detector.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_detector(detector: str = "short-range", min_score: float = 0.5, backend: str = "auto", tiles: int = 1,
                  num_threads: int = 1):
    """The face detector `predict` and the tracker use.

    ``backend``: 'litert' (BlazeFace above; 'auto' picks it: the same boxes as Tasks, 0.45 ms less per image on a
    512 px photo and 1.2 ms on a 1536 px one, and no per-tensor warnings from the sparse full-range model) or
    'tasks' (MediaPipe Tasks, what the Android app runs). ``tiles`` > 1 adds overlapping tiles for
    small faces (TiledDetector)."""
    if detector not in RANGES:
        raise ModelError(f"detector {detector!r}: expected one of {', '.join(RANGES)}")
    if backend not in BACKENDS:
        raise ModelError(f"detector backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if not 0.0 <= min_score <= 1.0:
        raise ModelError(f"detector score threshold {min_score}: expected a value from 0 to 1")
    if not 1 <= tiles <= 8:
        raise ModelError(f"detector tiles {tiles}: expected 1 (whole image only) to 8")
    if backend == "tasks":
        det = FaceDetector(SPECS[detector].path, min_score=min_score)
    else:
        det = BlazeFace(detector, min_score=min_score, num_threads=num_threads)
    return TiledDetector(det, tiles) if tiles > 1 else det
