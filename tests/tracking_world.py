"""A scripted camera for the face tracker: where the face is in each frame, what the detector reports, and what
a landmark model returns for a crop. The Python test drives edgekd.runtime.tracker with it; the Android test feeds
the same frames to FaceTracker.kt (tests/java/FaceTrackerMain.kt computes the same stub landmarks) and compares.

The stub model: a crop overlapping the face (square IoU > 0.2) gives the face's shape, pulled a tenth of the way
towards the crop's centre (a crop-dependent bias, as a real model has); a crop that misses gives the same shape
at 0.94 of the crop's size (what a real regressor does on background: a face-like shape, slightly smaller).
"""
from __future__ import annotations

import numpy as np

from edgekd.core.crop import CropSpec
from edgekd.core.detector import Detection
from edgekd.runtime.predictor import Face
from edgekd.runtime.tracker import square_iou

SHAPE = np.array([[-0.5, -0.5], [0.5, -0.5], [0.0, 0.0], [-0.3, 0.5], [0.3, 0.5]])  # extent 1, centred
WIDTH, HEIGHT, FPS = 640, 480, 30.0


def stub_landmarks(box, face, slide: float = 0.0, mouth: float = 0.0) -> np.ndarray:
    """``slide``: the model also draws the face this many crop sides to the right (an error a track can follow
    off the face, which a confirming detection must correct). ``mouth``: the mouth (the last two points) opens by
    this many face sides per 100 px the face has moved right of x = 200 (an expression: the shape changes)."""
    box = np.asarray(box, np.float64)
    shape = SHAPE.copy()
    if face is not None and square_iou(tuple(box), tuple(face)) > 0.2:
        face = np.asarray(face, np.float64)
        centre, side = face[:2] + 0.1 * (box[:2] - face[:2]), face[2]
        centre[0] += slide * box[2]
        shape[3:, 1] += mouth * (face[0] - 200.0) / 100.0
    else:
        centre, side = box[:2], 0.94 * box[2]
    return (shape * side + centre).astype(np.float32)


def script(frames: int = 100):
    """[(t, faces [(cx, cy, side)], detector boxes [(x, y, w, h)])] for each frame: a face drifting right,
    jumping away (frame 33: the crop loses it, the next detection re-finds it), a zoom cut (frame 50: the
    landmarks jump in scale), detector misses (frames 60-69), the face back (70), a second face (85)."""
    out = []
    for k in range(frames):
        faces = []
        if k < 33:
            faces.append((200.0 + 2 * k, 240.0, 100.0))
        elif k < 50:
            faces.append((450.0, 200.0 + k, 90.0))
        elif k < 70:
            faces.append((450.0, 250.0, 200.0))
        else:
            faces.append((300.0 + k, 300.0, 120.0))
        if k >= 85:
            faces.append((100.0, 100.0, 80.0))
        seen = [] if 60 <= k < 70 else faces
        detections = [(cx + 3 - s * 0.525, cy - 2 - s * 0.525, s * 1.05, s * 1.05) for cx, cy, s in seen]
        out.append((k / FPS, faces, detections))
    return out


class StubPredictor:
    """What FaceTracker needs of a Predictor, answering from the script's current frame."""

    crop = CropSpec()

    def __init__(self, slide: float = 0.0, mouth: float = 0.0):
        self.detector = self
        self.faces, self.detections, self.slide, self.mouth = [], [], slide, mouth

    def detect(self, image):
        return [Detection(box, 0.9, np.zeros((6, 2), np.float32)) for box in self.detections]

    def predict_box(self, image, box):
        face = max(self.faces, key=lambda f: square_iou(tuple(box), f), default=None)
        return Face(stub_landmarks(box, face, self.slide, self.mouth), tuple(box))

    def predict_detection(self, image, detection):
        face = self.predict_box(image, self.crop.box_from_detector(detection.box, detection.keypoints))
        face.detection = detection
        return face


def run_python(tracker_kwargs: dict, frames: int = 100, slide: float = 0.0, mouth: float = 0.0):
    """Per frame: [(track id, detected, crop box, points)] from edgekd.runtime.tracker on the script."""
    from edgekd.runtime.tracker import FaceTracker

    stub = StubPredictor(slide, mouth)
    tracker = FaceTracker(stub, **tracker_kwargs)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    out = []
    for t, faces, detections in script(frames):
        stub.faces, stub.detections = faces, detections
        out.append([(f.track_id, f.detection is not None, f.box, f.points) for f in tracker.update(image, t)])
    return out, tracker
