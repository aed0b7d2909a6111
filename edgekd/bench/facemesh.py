"""MediaPipe Face Mesh as a bench peer (``--compare mediapipe``): the landmark model a mobile developer would pick
instead of edgekd, run here the way MediaPipe runs it and scored by the same metric code on the same faces.

Why reimplement MediaPipe's graph rather than call it: the mediapipe wheels that install beside TensorFlow (1.x) ship
no Face Mesh solution and no models, and the last one that does (0.10.21) cannot share a venv with TF 2.21
(checked with mediapipe 1.2.3). So the network from the 0.10.21 wheel (Apache-2.0, see its NOTICE in
edgekd/assets) runs on LiteRT like edgekd's models, behind the same BlazeFace short-range detector, with the pre-
and post-processing of MediaPipe's ``face_landmark_front_cpu`` graph:

- ROI (``FaceDetectionFrontDetectionToRoi``): the detection's box centre; rotated so the crop's x axis runs along
  the line from keypoint 0 to keypoint 1 (the eyes); side = the box's long side x 1.5 (square_long, scale 1.5).
- Crop (``ImageToTensorCalculator``): that rotated square warped to 192 x 192 with bilinear sampling and replicated
  borders (no anti-aliasing, as MediaPipe's CPU path does), RGB floats in [0, 1].
- Output (``TensorsToFaceLandmarksWithAttention`` + ``LandmarkProjection``): 468 mesh (x, y, z) in 192-pixel units,
  lips and eyes replaced by the attention model's own (LandmarksRefinementCalculator); x / 192 - 0.5 is the crop's
  normalised frame, taken back to the image through the ROI's rotation and side. The face-presence logit goes
  through a sigmoid and MediaPipe drops the landmarks below 0.5: such a face counts as a miss under the detector
  protocol, as an app would get nothing, and is scored anyway under ground-truth crops.

Checked against mediapipe 0.10.21's own FaceMesh solution (in a venv of its own, benchmarks/facemesh_vs_mediapipe.py)
on the 1,675 300-W training faces: the points differ by 0.58 % of the eye-corner distance per point (median; 0.55 %
for the plain model), far below the 3.3 % the 68-point map leaves.

Which network: ``face_landmark_with_attention.tflite`` (478 points, 2.5 MB) rather than ``face_landmark.tflite``
(468, 1.2 MB), because with the map below it scores 3.36 / 3.29 % NME on the 168 validation faces (detector / gt
ROI) against 3.74 / 3.62 % (the same ranking as MediaPipe's own graph gives). It needs three MediaPipe custom ops
that LiteRT lacks, so it runs split around them (edgekd.bench.mediapipe_ops), which costs some of its time.

The ``gt`` protocol has no detector: the ROI comes from the annotated 68 points the way MediaPipe's tracking path
cuts it from the previous frame's landmarks (rotation by the outer eye corners, a box around the points), moved into
the detector ROI's convention by an offset and scale fitted on the 300-W training faces (like dlib's box mapping).

468 mesh vertices are not the 68 300-W points (300-W's jaw follows the visible outline), so the mesh goes through a
linear map fitted on the 300-W *training* faces in the crop's normalised frame (``MAP_FILE``, refitted by
``benchmarks/fit_facemesh_map.py``; the file records how it was fitted and its residual on the validation faces).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from edgekd.bench import latency as lat
from edgekd.bench.mediapipe_ops import SplitModel, uses_xnnpack
from edgekd.bench.meshmap import MAP_FILE, NUM_MESH, MeshMap
from edgekd.core.detector import ASSETS_DIR, match_box
from edgekd.core.errors import DataError, ModelError
from edgekd.core.interpreter import make_interpreter
from edgekd.runtime.blazeface import open_detector

NAME = "MediaPipe Face Mesh"
ASSET = ASSETS_DIR / "face_landmark_with_attention.tflite"  # the variant kept (see the module's docstring)
ASSET_SHA256 = "e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4"
PLAIN_ASSET = ASSETS_DIR / "face_landmark.tflite"  # not shipped: it scored worse (the module's docstring)
# the Face Mesh files of the mediapipe 0.10.21 wheel and their sha256, checked when one is loaded from assets
SHIPPED = {ASSET.resolve(): ASSET_SHA256,
           PLAIN_ASSET.resolve(): "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"}
INPUT_SIZE = 192
ROI_SCALE = 1.5  # RectTransformationCalculator scale_x / scale_y of face_detection_front_detection_to_roi
PRESENCE_THRESHOLD = 0.5  # ThresholdingCalculator on the sigmoid of the face flag (face_landmark_cpu)
EYE_CORNERS_300W = (36, 45)  # outer eye corners: the gt ROI's rotation, as MediaPipe's mesh 33 -> 263


@dataclass(frozen=True)
class Roi:
    """A rotated square in image pixels (pixel centres at integers, as edgekd's points): centre, side, and the angle
    (radians, clockwise on screen as y points down) of the crop's x axis."""

    cx: float
    cy: float
    side: float
    angle: float

    def rotation(self) -> np.ndarray:
        c, s = np.cos(self.angle), np.sin(self.angle)
        return np.array([[c, -s], [s, c]])

    def matrix(self, size: int = INPUT_SIZE) -> np.ndarray:
        """2x3 affine taking image pixels to crop pixels: the square's corners onto the crop's corners, as
        ImageToTensorCalculator maps them (in pixel-centre terms, the centre lands on (size - 1) / 2)."""
        if not (np.isfinite(self.side) and self.side > 0):
            raise DataError(f"degenerate face ROI {self}: the landmarks or detection have no extent")
        k = size / self.side
        a = k * self.rotation().T
        c = (size - 1) / 2.0
        return np.hstack([a, (np.array([c, c]) - a @ (self.cx, self.cy))[:, None]])

    def to_image(self, normalised: np.ndarray) -> np.ndarray:
        """(N, 2) points of the crop's normalised frame (crop x / size - 0.5, with MediaPipe's corner convention)
        -> image pixels (LandmarkProjectionCalculator)."""
        u = np.asarray(normalised, np.float64)
        return (u @ (self.side * self.rotation()).T + (self.cx, self.cy)).astype(np.float32)

    def to_normalised(self, points: np.ndarray) -> np.ndarray:
        """Image pixels -> the crop's normalised frame (the inverse of ``to_image``): where the map is fitted."""
        p = np.asarray(points, np.float64) - (self.cx, self.cy)
        return p @ self.rotation() / self.side


def roi_from_detection(box_xywh, keypoints) -> Roi:
    """MediaPipe's ROI for one BlazeFace detection: DetectionsToRects (box centre, rotation from keypoint 0 to
    keypoint 1, target angle 0) then RectTransformation (square on the long side, x 1.5)."""
    x, y, w, h = (float(v) for v in box_xywh)
    k = np.asarray(keypoints, np.float64)
    angle = float(np.arctan2(k[1, 1] - k[0, 1], k[1, 0] - k[0, 0])) if k.shape[0] >= 2 else 0.0
    return Roi(x + w / 2.0, y + h / 2.0, ROI_SCALE * max(w, h), angle)


def roi_from_points(points: np.ndarray, offset=(0.0, 0.0), scale: float = 1.0) -> Roi:
    """The ROI for annotated 68 points: rotated by the outer eye corners, the square around the points in that
    frame, then centre += offset * side (in the rotated frame) and side *= scale, which move it into the detector
    ROI's convention (``MeshMap.gt_offset`` / ``gt_scale``, fitted on training faces)."""
    p = np.asarray(points, np.float64)
    a, b = p[EYE_CORNERS_300W[0]], p[EYE_CORNERS_300W[1]]
    angle = float(np.arctan2(b[1] - a[1], b[0] - a[0]))
    r = Roi(0.0, 0.0, 1.0, angle)
    q = r.to_normalised(p)  # unit side: plain rotation into the eye-line frame
    lo, hi = q.min(0), q.max(0)
    side = float(max(hi - lo))
    centre = (lo + hi) / 2.0 + np.asarray(offset, np.float64) * side
    cx, cy = r.to_image(centre[None])[0]
    return Roi(float(cx), float(cy), float(scale) * side, angle)


# --- the network ----------------------------------------------------------------------------------------------------
# MediaPipe's LandmarksRefinementCalculator (tensors_to_face_landmarks_with_attention.pbtxt): the attention model's
# lips and eyes replace these mesh vertices' (x, y); its irises (468-477) are not used by the 68-point map.
REFINE_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409, 78, 95, 88,
               178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415, 76, 77, 90, 180, 85, 16,
               315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408, 62, 96, 89, 179, 86, 15, 316, 403,
               319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407)
REFINE_LEFT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173, 130, 25, 110, 24, 23,
                   22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190, 226, 31, 228, 229, 230, 231, 232, 233, 244, 113,
                   225, 224, 223, 222, 221, 189, 35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245,
                   156, 70, 63, 105, 66, 107, 55, 193)
REFINE_RIGHT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398, 359, 255, 339, 254,
                    253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414, 446, 261, 448, 449, 450, 451, 452, 453,
                    464, 342, 445, 444, 443, 442, 441, 413, 265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349,
                    350, 357, 465, 383, 300, 293, 334, 296, 336, 285, 417)
ATTENTION_OUTPUTS = {"output_lips": REFINE_LIPS, "output_left_eye": REFINE_LEFT_EYE,
                     "output_right_eye": REFINE_RIGHT_EYE}


def check_asset(path: Path = ASSET) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError:
        raise ModelError(f"{path}: MediaPipe Face Mesh model missing, needed by --compare mediapipe (it ships with "
                         f"edgekd; reinstall the package)") from None
    expected = SHIPPED.get(Path(path).resolve())
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ModelError(f"{path}: MediaPipe Face Mesh model has the wrong sha256 (corrupt install?)")
    return data


class FaceMeshModel:
    """A Face Mesh network on LiteRT: ``crop(image, roi)`` -> 192x192 uint8 patch, ``run(patch)`` -> ((468, 3)
    points in the crop's normalised frame, face-presence probability). Buffers are reused.

    ``face_landmark.tflite`` runs as it is. ``face_landmark_with_attention.tflite`` needs three MediaPipe custom ops,
    so it runs split around them (edgekd.bench.mediapipe_ops.SplitModel), and its lips and eyes refine the mesh
    as MediaPipe's LandmarksRefinementCalculator does."""

    def __init__(self, path=None, num_threads: int = 1):
        self.path = Path(path) if path else ASSET
        self.num_threads = int(num_threads)
        content = check_asset(self.path)
        self.attention = b"Landmarks2TransformMatrix" in content
        if self.attention:
            self.net = SplitModel(content, num_threads, str(self.path))
            names = set(self.net.output_names())
            missing = {"output_mesh_identity", "conv_faceflag", *ATTENTION_OUTPUTS} - names
            if missing:
                raise ModelError(f"{self.path}: not Face Mesh's attention model (no {', '.join(sorted(missing))})")
            self.runtime = f"{self.net.runtime} + 3 MediaPipe ops in numpy"
        else:
            self.net = _Plain(content, num_threads, self.path)
            self.runtime = self.net.runtime
        self._patch = np.empty((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
        self._x = np.empty((1, INPUT_SIZE, INPUT_SIZE, 3), np.float32)

    def with_threads(self, num_threads: int) -> "FaceMeshModel":
        return FaceMeshModel(self.path, num_threads)

    def crop(self, image: np.ndarray, roi: Roi) -> np.ndarray:
        cv2.warpAffine(image, roi.matrix(), (INPUT_SIZE, INPUT_SIZE), dst=self._patch, flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
        return self._patch

    def set_input(self, patch: np.ndarray) -> None:
        np.multiply(patch, np.float32(1.0 / 255.0), out=self._x[0])
        self.net.set_input(self._x)

    def invoke(self) -> None:
        self.net.invoke()

    def output(self) -> tuple[np.ndarray, float]:
        if self.attention:
            mesh = self.net.output("output_mesh_identity").reshape(NUM_MESH, 3).astype(np.float64)
            for name, index in ATTENTION_OUTPUTS.items():
                mesh[index, :2] = self.net.output(name).reshape(-1, 2)
            logit = float(self.net.output("conv_faceflag").ravel()[0])
        else:
            mesh, logit = self.net.output()
        mesh[:, :2] = mesh[:, :2] / INPUT_SIZE - 0.5
        mesh[:, 2] /= INPUT_SIZE
        return mesh, float(1.0 / (1.0 + np.exp(-np.clip(logit, -60, 60))))

    def run(self, patch: np.ndarray) -> tuple[np.ndarray, float]:
        self.set_input(patch)
        self.invoke()
        return self.output()

    def predict(self, patch: np.ndarray):  # the model-only latency loop's call
        self.set_input(patch)
        self.invoke()

    def close(self) -> None:
        self.net = None


class _Plain:
    """face_landmark.tflite: one interpreter, outputs found by size (1404 mesh values, 1 face flag)."""

    def __init__(self, content: bytes, num_threads: int, path: Path):
        self.interp, label = make_interpreter(content=content, num_threads=num_threads)
        inp = self.interp.get_input_details()[0]
        if tuple(inp["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 3):
            raise ModelError(f"{path}: input {tuple(inp['shape'])}, expected Face Mesh's (1, 192, 192, 3)")
        outs = {int(np.prod(d["shape"])): d["index"] for d in self.interp.get_output_details()}
        if 3 * NUM_MESH not in outs or 1 not in outs:
            raise ModelError(f"{path}: expected Face Mesh's outputs of {3 * NUM_MESH} and 1 values, got {sorted(outs)}")
        self._in, self._mesh, self._flag = inp["index"], outs[3 * NUM_MESH], outs[1]
        self.runtime = f"{label}{' XNNPACK' if uses_xnnpack(self.interp) else ''}"

    def set_input(self, x: np.ndarray) -> None:
        self.interp.set_tensor(self._in, x)

    def invoke(self) -> None:
        self.interp.invoke()

    def output(self) -> tuple[np.ndarray, float]:
        mesh = self.interp.get_tensor(self._mesh).reshape(NUM_MESH, 3).astype(np.float64)
        return mesh, float(self.interp.get_tensor(self._flag).ravel()[0])


# --- the peer -------------------------------------------------------------------------------------------------------
class FaceMeshPeer:
    """BlazeFace (the bench's own detector, on its own instance) -> Face Mesh ROI -> face_landmark.tflite -> the
    68-point map. ``run`` scores one annotated face under each protocol with per-stage timings; ``latency`` times
    it like edgekd's models (model-only per thread count, end to end on the same images)."""

    def __init__(self, path=None, map_path=None, detector_backend: str = "auto", num_threads: int = 1):
        self.model = FaceMeshModel(path, num_threads)
        self.map = MeshMap.load(map_path)
        self.path = self.model.path
        self.map_path = Path(map_path) if map_path else MAP_FILE
        self.detector = open_detector(backend=detector_backend)
        self.name = NAME
        self.runtime = self.model.runtime
        self.quantization = "float32"
        self.num_points = self.map.num_points
        self.detector_runtime = getattr(self.detector, "name", "")

    @property
    def size_mb(self) -> float:
        """The network and the point map together: both ship for 68 points."""
        return (self.path.stat().st_size + self.map_path.stat().st_size) / 1e6

    def detect(self, image: np.ndarray):
        return self.detector.detect(image)

    def gt_roi(self, points: np.ndarray) -> Roi:
        return roi_from_points(points, self.map.gt_offset, self.map.gt_scale)

    def predict_roi(self, image: np.ndarray, roi: Roi, model: FaceMeshModel | None = None, times=None):
        """(68, 2) image points and the presence probability of one ROI; ``times`` (a dict) gets crop / model /
        post ms."""
        m = model or self.model
        t0 = time.perf_counter()
        m.set_input(m.crop(image, roi))
        t1 = time.perf_counter()
        m.invoke()
        t2 = time.perf_counter()
        mesh, presence = m.output()
        points = roi.to_image(self.map.apply(mesh[:, :2]))
        if times is not None:
            times.update(crop=(t1 - t0) * 1e3, model=(t2 - t1) * 1e3, post=(time.perf_counter() - t2) * 1e3)
        return points, presence

    def run(self, image: np.ndarray, points: np.ndarray, protocols) -> tuple[dict, dict]:
        """One annotated face: ({protocol: (68, 2) points or None}, {stage: ms}); the stages of the detector
        protocol's pass (ground-truth ROIs when it is not run)."""
        out, times = {}, {}
        if "detector" in protocols:
            t0 = time.perf_counter()
            dets = self.detector.detect(image)
            times["detector"] = (time.perf_counter() - t0) * 1e3
            k = match_box([d.box for d in dets], points)
            if k is None:
                out["detector"] = None
            else:
                stages: dict = {}
                pred, presence = self.predict_roi(image, roi_from_detection(dets[k].box, dets[k].keypoints),
                                                  times=stages)
                out["detector"] = pred if presence >= PRESENCE_THRESHOLD else None
                times.update(stages, end_to_end=(time.perf_counter() - t0) * 1e3)
        if "gt" in protocols:
            stages = {}
            out["gt"], _ = self.predict_roi(image, self.gt_roi(points), times=stages)
            for k, v in stages.items():
                times.setdefault(k, v)
        return out, times

    # --- latency, like edgekd's models ------------------------------------------------------------------------------
    def predict_detection(self, image: np.ndarray, detection, model: FaceMeshModel | None = None):
        """The staged pass of one detection, in the form edgekd.bench.latency.pipeline_times reads."""
        times: dict = {}
        t0 = time.perf_counter()
        roi = roi_from_detection(detection.box, detection.keypoints)
        roi_ms = (time.perf_counter() - t0) * 1e3
        pts, _ = self.predict_roi(image, roi, model, times)
        times["crop"] += roi_ms
        return SimpleNamespace(points=pts, timings_ms={"crop": times["crop"], "model": times["model"],
                                                       "inverse": times["post"]})

    def latency(self, images, crop_source, threads, loop_timings: dict) -> dict:
        """latency_ms in the schema of edgekd's rows: model-only (set input + invoke on one real crop, a fresh
        interpreter per thread count) and end to end per face on ``images`` (the images edgekd's rows are timed on)
        with its stages; the detector's own time from the accuracy loop."""
        if crop_source is not None:
            image, points = crop_source
            roi = self.gt_roi(points)
        else:
            image = images[0]
            dets = self.detector.detect(image)
            roi = (roi_from_detection(dets[0].box, dets[0].keypoints) if dets else
                   Roi(image.shape[1] / 2, image.shape[0] / 2, min(image.shape[:2]) / 2, 0.0))
        patch = self.model.crop(image, roi).copy()
        model, e2e = {}, {}
        for t in threads:
            with lat.on_threads(self.model, t) as m:
                model[str(t)] = lat.stats(lat.time_calls(lambda: m.predict(patch), 10, 50))
                runner = SimpleNamespace(predict_detection=lambda img, d: self.predict_detection(img, d, m))
                e2e[str(t)] = lat.pipeline_times(runner, self.detector, images)
        det_ms = loop_timings.get("detector") or lat.time_calls(lambda: self.detector.detect(image), 3, 20)
        crop_ms = loop_timings.get("crop") or lat.time_calls(lambda: self.model.crop(image, roi), 3, 30)
        return {
            "model": {t: v["median"] for t, v in model.items()},
            "model_p90": {t: v["p90"] for t, v in model.items()},
            "detector": lat.stats(det_ms)["median"], "detector_p90": lat.stats(det_ms)["p90"],
            "crop": lat.stats(crop_ms)["median"],
            "end_to_end": {t: v["median"] for t, v in e2e.items()},
            "end_to_end_p90": {t: v["p90"] for t, v in e2e.items()},
            "end_to_end_stages": {t: v["stages"] for t, v in e2e.items()},
            "runtime": self.runtime, "detector_runtime": self.detector_runtime,
            "cpu": lat.machine()["cpu"], "threads": list(model),
        }

    def close(self) -> None:
        self.detector.close()
        self.model.close()
