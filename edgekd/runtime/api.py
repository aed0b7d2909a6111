"""``Landmarker``: the Python face of `edgekd predict`, with its verbs and option names, as Ultralytics
(``YOLO("m.pt").predict(src)``) and MediaPipe Tasks users expect one.

    lm = edgekd.Landmarker("models/300w/kd_student_int8.tflite")
    for result in lm.predict("photos/"):          # an image, an array, a list, a folder or "photos/*.jpg"
        print(result.source, [face.score for face in result.faces])
    for result in lm.track("clip.mp4"):           # video frames (a file, a camera index, or any arrays)
        ...

It owns nothing new: the model is a LandmarkModel, the detector ``open_detector``'s, the pipeline a Predictor
(a FaceTracker for video), the frames a ``Frames`` reader. What it adds is the shape a user meets: one ``Result``
per image or frame, holding typed faces (``FaceLandmarks``: box, score, points, crop) that name things as the
JSON of `edgekd predict --pts faces.json` does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.core.errors import DataError, OptionError, describe_os_error
from edgekd.core.fileio import check_outside_inputs, write_image
from edgekd.core.imageio import as_rgb, load_image
from edgekd.runtime import sources
from edgekd.runtime.blazeface import open_detector
from edgekd.runtime.predictor import TTA, Face, Predictor, draw_faces, load_model, sample_face, stage_ms
from edgekd.runtime.tracker import FaceTracker
from edgekd.runtime.video import Frames, is_video


@dataclass(frozen=True)
class FaceLandmarks:
    """One face: ``points`` (N, 2) image pixels; ``box`` the detector's (x, y, w, h) (None on a tracked video frame
    where the detector did not run); ``score`` its score (None likewise); ``crop`` the (cx, cy, side) square the
    model's crop was cut from; ``track_id`` the face's track in a video. ``face`` is the runtime's own record."""

    points: np.ndarray
    box: tuple[float, float, float, float] | None
    score: float | None
    crop: tuple[float, float, float]
    track_id: int | None = None
    face: Face = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, face: Face) -> "FaceLandmarks":
        box = None if face.detection is None else tuple(float(v) for v in face.detection.box)
        return cls(face.points, box, face.score, tuple(float(v) for v in face.box), face.track_id, face)

    def to_dict(self) -> dict:
        """The JSON form `edgekd predict` writes (Face.to_dict)."""
        return self.face.to_dict()


@dataclass
class Result:
    """One image or video frame: where it came from, its pixels (RGB), its faces, best detector score first, and
    the milliseconds of each stage. ``error`` says why an input was skipped (``predict(..., skip_unreadable=True)``);
    such a result has no image and no face. ``path``: the file it was read from, if any."""

    source: str
    image: np.ndarray | None
    faces: list[FaceLandmarks] = field(default_factory=list)
    error: str | None = None
    path: Path | None = None  # the file it was read from

    @property
    def timings_ms(self) -> dict:
        """Stage -> ms: the detector once, crop/model/inverse summed over the faces (predictor.stage_ms)."""
        return stage_ms([f.face for f in self.faces])

    def plot(self) -> np.ndarray:
        """A copy of the image with the boxes and landmarks drawn (what `edgekd predict` writes)."""
        if self.image is None:
            raise DataError(f"{self.source}: nothing to draw ({self.error})")
        return draw_faces(self.image, [f.face for f in self.faces])

    def save(self, path) -> Path:
        """Write ``plot()`` to ``path`` (.png or .jpg), atomically, never over the image it came from."""
        check_outside_inputs(path, "path", {"source": self.path})
        return write_image(path, self.plot())

    def to_dict(self) -> dict:
        d = {"source": self.source, "faces": [f.to_dict() for f in self.faces]}
        if self.error is not None:
            d["error"] = self.error
        return d


class Landmarker:
    """A landmark model with its face detector, ready for images and video; the options are `edgekd predict`'s.

    ``model``: a .tflite (or a Keras checkpoint, or a LandmarkModel). ``detector``: 'short-range' or 'full-range'
    (or a detector object, kept open), ``min_score``, ``detector_backend`` ('auto', 'litert', 'tasks') and ``tiles``
    as `predict --detector ...`; ``threads`` interpreter threads; ``tta`` 'none' or 'flip' (flip averaging);
    ``refine`` re-crops from the predicted points (still images). Close it (or use ``with``) to free the detector.
    """

    def __init__(self, model, detector="short-range", min_score: float = 0.5, detector_backend: str = "auto",
                 tiles: int = 1, threads: int = 1, tta: str = "none", refine: int = 0):
        if tta not in TTA:
            raise OptionError(f"tta {tta!r}: expected one of {', '.join(TTA)}")
        self.model = load_model(model, threads)
        self._own_detector = not hasattr(detector, "detect")
        self.detector = open_detector(detector, min_score=min_score, backend=detector_backend, tiles=tiles,
                                      num_threads=threads) if self._own_detector else detector
        self.flip = tta == "flip"
        self.predictor = Predictor(self.model, self.detector, flip=self.flip, refine=refine)

    def predict(self, source=None, stream: bool = False, skip_unreadable: bool = False):
        """Every face of every image in ``source``: an RGB array, a path, a folder (its images), a glob pattern
        (``"photos/*.jpg"``) or a list of these; nothing: the astronaut sample. Returns a list of ``Result``, one
        per image in order (``stream=True``: a generator, for long lists). An unreadable file is a DataError naming
        it, or with ``skip_unreadable`` a Result whose ``error`` says why."""
        items = [None] if source is None else sources.expand(source)
        for item in items:
            if not isinstance(item, np.ndarray) and item is not None and is_video(item):
                raise OptionError(f"{item}: a video or camera; use Landmarker.track({str(item)!r}) for its frames")
        results = (self._predict_one(item, k, skip_unreadable) for k, item in enumerate(items))
        return results if stream else list(results)

    def _predict_one(self, item, index: int, skip_unreadable: bool) -> Result:
        name = "the astronaut sample" if item is None else sources.label(item, index)
        path = None if item is None or isinstance(item, np.ndarray) else Path(item)
        try:
            image = sample_face() if item is None else _rgb(item, name) if path is None else load_image(path)
        except (DataError, OSError) as e:
            if not skip_unreadable:
                raise
            return Result(name, None, [], describe_os_error(e) if isinstance(e, OSError) else str(e), path)
        return Result(name, image, [FaceLandmarks.of(f) for f in self.predictor.predict(image)], path=path)

    def track(self, frames, fps: float = 30.0, redetect_every: int = 10, smooth: bool = True,
              max_faces: int | None = None, max_frames: int | None = None):
        """A generator of one ``Result`` per video frame, faces tracked from frame to frame (FaceTracker: the
        detector every ``redetect_every`` frames or when a face is lost, One Euro smoothing with ``smooth``).
        ``frames``: a video file, a camera index, or any iterable of RGB arrays (times then come from ``fps``)."""
        tracker = FaceTracker(Predictor(self.model, self.detector, flip=self.flip), redetect_every=redetect_every,
                              max_faces=max_faces, smoothing=smooth)
        reader = Frames(frames, max_frames) if isinstance(frames, (str, Path, int)) else None
        timed = reader if reader is not None else ((rgb, k / fps) for k, rgb in enumerate(frames))
        try:
            for k, (rgb, t) in enumerate(timed):
                if max_frames is not None and k >= max_frames:
                    return
                image = _rgb(rgb, f"frame {k}")
                yield Result(f"frame {k}", image, [FaceLandmarks.of(f) for f in tracker.update(image, t)])
        finally:
            if reader is not None:
                reader.close()

    def close(self) -> None:
        if self._own_detector:
            self.detector.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"Landmarker({self.model!r}, detector={type(self.detector).__name__})"


def _rgb(image, name: str) -> np.ndarray:
    """An (H, W, 3) uint8 array as it is (no copy per video frame); anything else through imageio.as_rgb."""
    a = np.asarray(image)
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and a.flags.c_contiguous:
        return a
    return as_rgb(a, name)
