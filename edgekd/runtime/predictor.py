"""Predictor: image -> face detector -> CropSpec crop -> landmark model -> inverse crop -> points in the image.

This is the phone pipeline on the desktop: the same CropSpec (read from the model's metadata) cuts the crop the
model was trained on, and the inverse of the same similarity transform puts the points back.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edgekd.data.crop import CropSpec, invert, transform_points


@dataclass
class Face:
    points: np.ndarray  # (N, 2) image pixels
    box: tuple[float, float, float]  # (cx, cy, side) landmark box the crop was cut from
    detection: object | None = None  # the detector's Detection, when the box came from a detector
    timings_ms: dict = field(default_factory=dict)  # detector (whole image), crop, model, inverse


class Predictor:
    """``predict(image)`` finds every face; ``predict_box(image, box)`` runs one known (cx, cy, side) box.

    ``model`` is a LandmarkModel or anything with ``crop`` and ``predict(crop_uint8) -> (N, 2) crop px``;
    ``crop`` overrides the model's CropSpec (e.g. with a freshly fitted detector mapping).
    """

    def __init__(self, model, detector=None, crop: CropSpec | None = None):
        self.model = model
        self.detector = detector
        self.crop = crop or model.crop

    def predict_box(self, image: np.ndarray, box: tuple[float, float, float]) -> Face:
        t0 = time.perf_counter()
        patch, m = self.crop.crop(image, box)
        t1 = time.perf_counter()
        crop_points = self.model.predict(patch)
        t2 = time.perf_counter()
        points = transform_points(crop_points, invert(m))
        t3 = time.perf_counter()
        return Face(points, tuple(box), None,
                    {"crop": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3, "inverse": (t3 - t2) * 1e3})

    def predict_detection(self, image: np.ndarray, detection) -> Face:
        face = self.predict_box(image, self.crop.box_from_detector(detection.box))
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


def draw_faces(image: np.ndarray, faces: list[Face]) -> np.ndarray:
    """RGB copy of ``image`` with each face's detector box (blue) and landmarks (red), scaled to the image size."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    r = max(1, int(round(max(image.shape[:2]) / 400)))
    for f in faces:
        if f.detection is not None:
            x, y, w, h = (int(round(v)) for v in f.detection.box)
            cv2.rectangle(out, (x, y), (x + w, y + h), (60, 120, 255), max(1, r), cv2.LINE_AA)
        for px, py in f.points:
            cv2.circle(out, (int(round(px)), int(round(py))), r + 1, (255, 40, 40), -1, cv2.LINE_AA)
    return out


def sample_face():
    """A face that needs no dataset: scikit-image's astronaut (Eileen Collins, NASA, public domain), 512x512 RGB."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def predict_file(model, image_path=None, out=None, num_threads: int = 1) -> list[Face]:
    """`edgekd predict`: every face in one image file (default: `sample_face()`); with ``out``, a PNG with the
    landmarks drawn."""
    from edgekd.data.readers import load_image
    from edgekd.detector import FaceDetector
    from edgekd.runtime.model import LandmarkModel

    image = load_image(image_path) if image_path is not None else sample_face()
    m = model if hasattr(model, "predict") else LandmarkModel(model, num_threads)
    with FaceDetector() as det:
        faces = Predictor(m, det).predict(image)
    if out is not None:
        from edgekd.fileio import write_image

        write_image(out, draw_faces(image, faces))
    return faces
