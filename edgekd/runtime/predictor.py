"""Predictor: image -> face detector -> CropSpec crop -> landmark model -> inverse crop -> points in the image.

This is the phone pipeline on the desktop: the same CropSpec (read from the model's metadata) cuts the crop the
model was trained on, and the inverse of the same similarity transform puts the points back. The crop is warped
into one reused buffer, and a LandmarkModel folds dequantization, denormalisation and the inverse crop into one
affine map of its raw output, so a face costs the warp, the invoke and one small matrix product.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.core.crop import CropSpec, invert, transform_points, warp
from edgekd.core.errors import check_range
from edgekd.core.fileio import write_image, write_json
from edgekd.core.imageio import load_image, write_pts
from edgekd.core.schemes import get_scheme
from edgekd.runtime.blazeface import open_detector
from edgekd.runtime.model import LandmarkModel

TTA = ("none", "flip")  # test-time augmentation: flip averages each face with its mirror (Predictor(flip=True))
MAX_REFINE = 3  # re-crops from the predicted points (Predictor(refine=N)); validation: 1 pass -0.07, 2 passes -0.12


@dataclass
class Face:
    points: np.ndarray  # (N, 2) image pixels (smoothed, for a tracked face)
    box: tuple[float, float, float]  # (cx, cy, side) landmark box the crop was cut from
    detection: object | None = None  # the detector's Detection, when the box came from a detector
    timings_ms: dict = field(default_factory=dict)  # detector (whole image), crop, model, inverse
    track_id: int | None = None  # video: the track this face belongs to
    raw_points: np.ndarray | None = None  # video: the model's points before smoothing

    @property
    def score(self) -> float | None:
        """The detector's score, when the crop came from a detection."""
        return None if self.detection is None else float(self.detection.score)

    def to_dict(self) -> dict:
        """JSON form: detector box (x, y, w, h) and score when a detection came with the face, the crop square
        (cx, cy, side) it was cut from, the points, and the track id of a tracked face."""
        d = {}
        if self.detection is not None:
            d["box"] = [round(float(v), 2) for v in self.detection.box]
            d["score"] = round(self.score, 4)
        d["crop_box"] = [round(float(v), 2) for v in self.box]
        if self.track_id is not None:
            d["track_id"] = self.track_id
        d["points"] = np.asarray(self.points, np.float64).round(3).tolist()
        return d


class Predictor:
    """``predict(image)`` finds every face; ``predict_box(image, box)`` runs one known (cx, cy, side) box.

    ``model`` is a LandmarkModel or anything with ``crop`` and ``predict(crop_uint8) -> (N, 2) crop px``;
    ``crop`` overrides the model's CropSpec (e.g. with a freshly fitted detector mapping).
    ``flip``: test-time flip averaging: each face also runs on its mirrored crop, and the two predictions (the
    second mirrored back, left/right points relabelled by the scheme) are averaged. Two model runs per face, for a
    smaller error where a few tenths of a millisecond are affordable (benchmarks/README.md has both rows).
    ``refine``: after the first crop, cut the face again this many times from the box of the points just predicted
    (the box the model was trained on) and predict again: the detector's box differs from that box by more than a
    first prediction does, so detector crops get closer to ground-truth ones, one more model run each time.
    """

    def __init__(self, model, detector=None, crop: CropSpec | None = None, flip: bool = False, refine: int = 0):
        check_range("refine", refine, 0, MAX_REFINE, integer=True)
        self.model = model
        self.detector = detector
        self.refine = int(refine)
        self.crop = crop or model.crop
        self._patch = np.empty((self.crop.input_size, self.crop.input_size, 3), np.uint8)  # reused by every face
        self._mirror = np.empty_like(self._patch)
        self._inverse_ms = 0.0
        self._staged = all(hasattr(model, k) for k in ("set_input", "invoke", "points"))
        self.flip_permutation = None
        if flip:
            info = getattr(model, "info", None)
            perm = getattr(info, "flip_permutation", None) or get_scheme(model.scheme).flip_permutation
            self.flip_permutation = list(perm)

    def predict_box(self, image: np.ndarray, box: tuple[float, float, float]) -> Face:
        """One face from a known (cx, cy, side) box, then ``refine`` re-crops from its own points; timings: crop
        (warp), model (input + invoke), inverse (the model's output to image pixels), flip (the mirrored runs),
        refine (every pass after the first, all its stages)."""
        face = self._predict_once(image, box)
        if self.refine:
            t0 = time.perf_counter()
            for _ in range(self.refine):
                again = self._predict_once(image, self.crop.box_from_points(face.points))
                face.points, face.box = again.points, again.box
            face.timings_ms["refine"] = (time.perf_counter() - t0) * 1e3
        return face

    def _predict_once(self, image: np.ndarray, box: tuple[float, float, float]) -> Face:
        t0 = time.perf_counter()
        m = self.crop.matrix(box)
        patch = warp(image, m, self.crop.input_size, self._patch)
        t1 = time.perf_counter()
        points = self._run(patch, invert(m))
        t2 = time.perf_counter()
        inverse_ms = self._inverse_ms  # of this run; the mirrored run below times its own into "flip"
        timings = {"crop": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3 - inverse_ms, "inverse": inverse_ms}
        if self.flip_permutation is not None:  # the mirrored run, timed apart: "flip"
            np.copyto(self._mirror, patch[:, ::-1])
            mirrored = self._run(self._mirror, _compose(invert(m), _mirror_matrix(self.crop.input_size)))
            points = 0.5 * (points + mirrored[self.flip_permutation])
            timings["flip"] = (time.perf_counter() - t2) * 1e3
        return Face(points, tuple(box), None, timings)

    def _run(self, patch: np.ndarray, to_image: np.ndarray) -> np.ndarray:
        """The model on one crop; its points mapped to the image by the 2x3 affine ``to_image`` (that mapping's
        time is kept in ``_inverse_ms``: the post-processing stage)."""
        if self._staged:
            self.model.set_input(patch)
            self.model.invoke()
            t = time.perf_counter()
            points = self.model.points(to_image)
        else:  # a stand-in with predict(crop) -> crop pixels only
            crop_points = self.model.predict(patch)
            t = time.perf_counter()
            points = transform_points(crop_points, to_image)
        self._inverse_ms = (time.perf_counter() - t) * 1e3
        return points

    def predict_detection(self, image: np.ndarray, detection) -> Face:
        face = self.predict_box(image, self.crop.box_from_detector(detection.box, detection.keypoints))
        face.detection = detection
        return face

    def predict(self, image: np.ndarray) -> list[Face]:
        if self.detector is None:
            raise ValueError("Predictor.predict needs a detector; use predict_box with a known box")
        t0 = time.perf_counter()
        detections = self.detector.detect(image)
        det_ms = (time.perf_counter() - t0) * 1e3
        faces = []
        for d in detections:
            face = self.predict_detection(image, d)
            face.timings_ms["detector"] = det_ms
            faces.append(face)
        return faces


def _mirror_matrix(size: int) -> np.ndarray:
    """Crop pixels of a horizontally mirrored crop -> pixels of the crop itself: x -> size - 1 - x."""
    return np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0]])


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 affine a(b(p))."""
    return np.hstack([a[:, :2] @ b[:, :2], (a[:, :2] @ b[:, 2] + a[:, 2])[:, None]])


def draw_faces(image: np.ndarray, faces: list[Face], inplace: bool = False) -> np.ndarray:
    """``image`` (a copy unless ``inplace``) with each face's detector box (blue; the tracked crop square, green,
    when no detection came with it) and landmarks (red), scaled to the image size."""
    import cv2

    out = image if inplace else np.ascontiguousarray(image.copy())
    r = max(1, int(round(max(image.shape[:2]) / 400)))
    for f in faces:
        if f.detection is not None:
            x, y, w, h = (int(round(v)) for v in f.detection.box)
            cv2.rectangle(out, (x, y), (x + w, y + h), (60, 120, 255), max(1, r), cv2.LINE_AA)
        elif f.track_id is not None:
            cx, cy, side = f.box
            p0, p1 = (int(round(cx - side / 2)), int(round(cy - side / 2))), (int(round(cx + side / 2)),
                                                                              int(round(cy + side / 2)))
            cv2.rectangle(out, p0, p1, (60, 200, 90), max(1, r // 2), cv2.LINE_AA)
        for px, py in f.points:
            cv2.circle(out, (int(round(px)), int(round(py))), r + 1, (255, 40, 40), -1, cv2.LINE_AA)
    return out


def stage_ms(faces: list[Face]) -> dict:
    """Milliseconds per stage of one image or frame, as a preview shows them: the detector once (it ran on the
    whole image, and every face carries the same time), the other stages summed over the faces (each face has its
    own crop, model run and inverse)."""
    total: dict = {}
    for f in faces:
        for stage, ms in f.timings_ms.items():
            total[stage] = ms if stage == "detector" else total.get(stage, 0.0) + ms
    return total


def sample_face():
    """A face that needs no dataset: scikit-image's astronaut (Eileen Collins, NASA, public domain), 512x512 RGB."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def load_model(model, num_threads: int = 1):
    """A LandmarkModel from a path; a model object passes through."""
    return model if hasattr(model, "predict") else LandmarkModel(model, num_threads)


def predict_file(model, image_path=None, out=None, num_threads: int = 1, detector=None, flip: bool = False,
                 refine: int = 0) -> list[Face]:
    """`edgekd predict` on a still image: every face in one image file (default: `sample_face()`), best detector
    score first; with ``out`` and at least one face, a PNG/JPEG with the landmarks drawn (with none, nothing).
    ``flip``: test-time flip averaging, ``refine``: re-crops from the predicted points (Predictor).

    ``detector``: a detector object (kept open), or keyword arguments for ``open_detector`` (default: MediaPipe
    short-range, score >= 0.5)."""
    image = load_image(image_path) if image_path is not None else sample_face()
    m = load_model(model, num_threads)
    det = detector if hasattr(detector, "detect") else open_detector(**(detector or {}), num_threads=num_threads)
    try:
        faces = Predictor(m, det, flip=flip, refine=refine).predict(image)
    finally:
        if det is not detector:
            det.close()
    if out is not None and faces:
        write_image(out, draw_faces(image, faces))
    return faces


def pts_paths(path, count: int) -> list[Path]:
    """Where ``count`` faces' .pts files go: ``path`` itself for one face, ``<stem>_1.pts`` ... for several."""
    path = Path(path)
    return [path] if count == 1 else [path.with_name(f"{path.stem}_{k}{path.suffix}") for k in range(1, count + 1)]


def write_face_points(path, faces: list[Face], source: str = "") -> list[Path]:
    """Write still-image faces' points: ``.pts`` -> one file per face (pts_paths), ``.json`` -> one file with every
    face's box, detector score and points. Returns the files written (none without a face).

    Nothing else is touched: files beside ``path`` that look like an earlier run's (``faces_3.pts``) may as well be
    a dataset's own annotations (``image_0003.pts``), so they are never removed; the caller names what it wrote.
    """
    path = Path(path)
    if not faces:
        return []
    if path.suffix.lower() == ".json":
        return [write_json(path, {"source": source, "faces": [f.to_dict() for f in faces]})]
    written = pts_paths(path, len(faces))
    for p, face in zip(written, faces):
        write_pts(p, face.points)
    return written
