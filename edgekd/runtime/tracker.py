"""Tracking faces through video: crop where the previous frame's landmarks put the face, re-detect every N frames,
when a track is lost or when its shape drifts, smooth the shown points (pose and shape apart, One Euro filters).
android_demo/.../FaceTracker.kt is the same logic in Kotlin.

A video frame rarely needs the face detector: the previous frame's landmarks say where the face went and the next
crop follows it (as MediaPipe's face landmarker does; how, below), so a tracked face costs a crop and one model
call. The detector runs

- every ``redetect_every`` frames, to find new faces and to confirm the tracked ones: a track that no detection
  overlaps (IoU of the crop squares below ``min_iou``) is dropped. This is the test that catches a face that left
  or got covered: a landmark regressor keeps drawing a face on whatever it is shown (on 300-W background crops
  the shipped model's landmark box keeps 0.94 of the crop's size, median, against 1.01 on faces, and its shape is
  as face-like: Procrustes residual to the mean face 0.135 against 0.115, 95th percentiles 0.21 and 0.24), so no
  shape statistic of one frame separates faces from non-faces;
- at once when a track fails the per-frame plausibility test, which catches a crop that lost its face (fast
  motion, blur, a face half out of the crop): between frames a face moves and scales little, so the new landmark
  box must keep its side within ``max_scale_change`` of the crop box's and its centre within ``max_shift`` crop
  sides, and keep its centre inside the image. On real faces cropped with 5 % / 7 % jitter the model's box stays
  within 0.91-1.13 of the crop (5-95 %) and 0.12 sides; the limits 1.3 and 0.3 leave that margin to motion;
- at once when a track's points leave the shape they had at the track's start (``max_drift``, below), which
  catches a crop sliding along a face the model reads poorly; the detection then restarts the track.

The next crop is the detector's square that started the track, moved with the face (``anchor``): the similarity
(shift, zoom, roll) that takes the points drawn in that square to this frame's points carries the square along. A
model's error on a face is much the same in every crop of it (the drift check below catches a face where it is not),
so the points' motion is the face's, and the crop stays where the detector would cut it; a crop cut from the model's
own landmark box instead keeps whatever the model got wrong and loses the detector's place on the face. The anchor
is renewed when a detection restarts the track (a new track, a lost one found again, a drifted one below, or a
confirming detection overlapping less than ``reanchor_iou``), not at every confirming detection. The bench's
pan-and-zoom clips move a rigid picture and its talking clips add a changing expression (below); how an anchor held
through a head turn fares on real video is not measured here. Renewed at every confirming detection
(``reanchor_iou=1.0``, one more model run every ``redetect_every`` frames) it was level within the spread of the
validation clips and worse on the test clips with 0.15.0's model (benchmarks/tracking/README.md), so it stays held.
Measured on the 168 validation faces rendered as the bench's pan-and-zoom clips (3,360 frames, 0.15.0's int8 model,
raw points, benchmarks/tracking/smoothing.json): 4.177 % NME anchored (with the drift check below), 4.280 % from the
landmark box, against 4.171 % for detector crops on the same frames.

The crop is also carried one frame ahead: the box's motion between the last two frames (centre in box sides, scale
as a log ratio), averaged over frames (``MOTION_EMA``), as a camera drifting or zooming moves the face a little
every frame. Measured with crops from the landmark box (an earlier model): 5.21 % with the crop at the last
landmark box, 4.95 % with the motion carried ahead, against 4.99 % for detector crops on the same frames.

Two guards came from the test clips where tracking failed (read after the choices above; validation clips have
no such failure and score the same with or without them): a model shown part of a face draws it smaller, and
carried ahead that shrink collapsed one crop to 2 px in nine frames, so the motion carried ahead is clipped to
``MAX_MOTION`` per frame; and on an image with two faces a track slid towards the other one while still
overlapping its own face's detection, so a confirming detection whose crop overlaps the track's by less than
``reanchor_iou`` restarts the track from the detection's crop.

The drift check calls the detector between its scheduled runs: when a track's points leave the anchor's shape by more
than ``max_drift`` (``Track.drift``: what the least-squares similarity from the anchor's points leaves, over the points'
spread), and the detection restarts the track. On a face the model reads poorly its points change with the crop, so the
similarity moves the next crop by the model's error as well as by the face, and a crop can slide along the face frame
after frame with every box test passed: on the 168 validation clips (0.15.0's int8 model) one track did, to 25 % NME
while detector crops stayed at 8.6-12.8 %, and that clip made half the tracker's gap to detector crops (4.203 % raw
against 4.171 %: 0.017 of 0.032 per clip; the other 167 clips +0.016, standard error 0.018). With the check (0.06: the
other pan-and-zoom clips stay below 0.057 in every frame; that track reached 0.067 at its clip's frame 13, as it began
to slide) the detector ran once more in the 3,360 frames, that clip's track stayed at 8.2-10.7 %, and raw points score
4.177 %. An expression also changes the shape: on the bench's talking clips (the same faces and motion, the mouth
opening and closing about 4 times a second; benchmarks/tracking/talking) the check fires on 7 % of the frames (158
detector runs per 1,000 frames against 100), each a detector and a model run that renews the anchor with the new shape,
and without it that clip's track slides there too. Neither subset of the points tried (the nose and eye corners; the
nose, eyes and the jaw's top) tells the two apart: read on the nose and eye corners, the drift of the other
pan-and-zoom clips reaches 0.065 and that of the talking clips 0.117, against the sliding track's 0.067. Reading the
crop's motion from the eyes and nose only also kept that track on the face, with 37 % more smoothed jitter on still
clips (with the earlier smoothing); not kept.

Smoothing (``PoseShapeFilter``) is applied to the points a user sees; the next crop comes from the unsmoothed
points, so smoothing never makes the crop lag. It splits each frame's points into the face's pose (centre, scale and
roll: a similarity) and its shape in the face's own frame, and smooths each with its own One Euro filter: the pose
lightly and adaptively (``POSE_EURO``: a high beta opens the filter as soon as the face moves), the shape
(``SHAPE_EURO``) with a speed estimate fast enough (8 Hz) to open it as soon as the shape changes, so an expression
is followed without lag. A camera or head moving carries the whole face, which the pose follows almost unfiltered,
while most of a model's frame-to-frame noise is in the shape, which does not move with the face.

Measured on the 168 validation faces (benchmarks/tracking, 0.15.0's int8 model, anchored crops, the drift check):
on the bench's pan-and-zoom clips (3,360 frames) detector crops 4.171 % NME, tracked raw 4.177 %, shown 4.169 %; on
its talking clips detector crops 5.073 %, raw 5.122 %, shown 5.122 % (no lag); still-clip jitter (frame-to-frame
motion of the points on still clips of the same faces with camera noise, Gaussian sigma 4 grey levels, 3,192 frame
pairs) 0.429 % of the inter-ocular distance against 0.702 % raw. Both filters' constants are the lowest jitter among
the 6,144 pairs searched whose shown NME is at most the detector crops' on the pan-and-zoom clips and at most the raw
points' on the talking ones. The shape constants kept before the talking clips existed (0.5 Hz / 30 / 2 Hz, with a
pose beta of 700) showed 0.273 % jitter but lagged expressions: 5.199 % shown on the talking clips, 0.077 above raw.
The earlier One Euro filter over all points (min cutoff 0.5 Hz, beta 30 per face size per second, derivative cutoff
2 Hz) shows 4.499 % on the pan-and-zoom clips (0.32 % of lag) with 0.143 % jitter.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from edgekd.core.crop import CropSpec
from edgekd.core.detector import iou

# OneEuroFilter.kt's defaults: a One Euro filter over all of a face's points (OneEuroFilter alone)
ONE_EURO = {"min_cutoff": 0.5, "beta": 30.0, "d_cutoff": 2.0, "max_gap": 0.5}
# PoseShapeFilter's two filters (OneEuroFilter.kt PoseShapeFilter.POSE_* and SHAPE_*), chosen together on validation
# clips (benchmarks/tracking): the lowest still-clip jitter whose smoothed NME is at most the detector crops' on the
# pan-and-zoom clips and at most the raw points' on the talking clips (no lag behind an expression)
POSE_EURO = {"min_cutoff": 2.0, "beta": 2000.0, "d_cutoff": 1.0, "max_gap": 0.5}
SHAPE_EURO = {"min_cutoff": 0.5, "beta": 100.0, "d_cutoff": 8.0, "max_gap": 0.5}
# Weight of the newest frame's box motion in the running average that moves the next crop (FaceTracker.kt MOTION_EMA)
MOTION_EMA = 0.5
# The most the crop is carried ahead per frame: 0.1 box sides of shift, a factor e^0.1 of scale (a hand-held camera
# at 30 fps moves a face a few percent a frame). Beyond it the motion is the model's error, not the face's: a model
# shown part of a face draws it smaller, and carrying that shrink ahead would collapse the crop within frames.
MAX_MOTION = 0.1
# The most a track's points may leave the anchor's shape (Track.drift) before the detector runs on that frame and
# restarts the track from its detection (FaceTracker.kt MAX_DRIFT). On the validation clips (benchmarks/tracking) the
# other pan-and-zoom clips stay below 0.057 in every frame; the one track that slid along a face the model reads poorly
# reached 0.067 at its clip's frame 13, as it began to slide.
MAX_DRIFT = 0.06


class OneEuroFilter:
    """One Euro filter (Casiez, Roussel and Vogel, CHI 2012) over all values of a face at once; speeds are divided
    by the face size, so ``beta`` is per face size per second. A line-by-line port of OneEuroFilter.kt."""

    def __init__(self, min_cutoff: float = ONE_EURO["min_cutoff"], beta: float = ONE_EURO["beta"],
                 d_cutoff: float = ONE_EURO["d_cutoff"], max_gap: float = ONE_EURO["max_gap"]):
        self.min_cutoff, self.beta, self.d_cutoff, self.max_gap = min_cutoff, beta, d_cutoff, max_gap
        self._last = self._speed = None
        self._time = 0.0

    def reset(self) -> None:
        self._last = self._speed = None

    def filter(self, values: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Smoothed float32 copy of ``values`` observed at ``t`` seconds; ``scale``: the face size in their unit."""
        x = np.asarray(values, np.float32).astype(np.float64)
        dt = t - self._time
        if self._last is None or self._last.shape != x.shape or dt <= 0.0 or dt > self.max_gap:
            self._last, self._speed, self._time = x.copy(), np.zeros_like(x), t
            return x.astype(np.float32)
        size = scale if scale > 0.0 else 1.0
        a_speed = _alpha(self.d_cutoff, dt)
        self._speed = a_speed * (x - self._last) / dt + (1.0 - a_speed) * self._speed
        a = _alpha(self.min_cutoff + self.beta * np.abs(self._speed) / size, dt)
        self._last = a * x + (1.0 - a) * self._last
        self._time = t
        return self._last.astype(np.float32)


class PoseShapeFilter:
    """Smooths a face's points as a pose (centre cx, cy and similarity a, b: the points are centre + [[a, -b],
    [b, a]] @ shape) and a shape in the face's own frame, each with its own ``OneEuroFilter``. The shape is fitted to
    the previous smoothed shape (least squares over a similarity), so a face's translation, zoom and roll go to the
    pose, whose filter follows them closely, and what is left is the shape's noise and expression. Shape units are
    face sizes (on a restart the shape is the points less their centre over ``scale``, a = scale, b = 0), so both
    filters' beta is per face size per second. A gap, or a previous shape with every point at one place (no
    similarity to fit), restarts both filters. A line-by-line port of OneEuroFilter.kt's PoseShapeFilter."""

    def __init__(self, pose: dict | None = None, shape: dict | None = None):
        pose, shape = pose or POSE_EURO, shape or SHAPE_EURO
        self.pose, self.shape = OneEuroFilter(**pose), OneEuroFilter(**shape)
        self.max_gap = shape["max_gap"]
        self._shape = None
        self._time = 0.0

    def reset(self) -> None:
        self._shape = None

    def filter(self, values: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Smoothed float32 copy of ``values`` (x0, y0, x1, ... or (N, 2)) at ``t`` seconds; ``scale``: the face
        size in their unit."""
        p = np.asarray(values, np.float32).astype(np.float64).reshape(-1, 2)
        size = scale if scale > 0.0 else 1.0
        centre = p.mean(0)
        q = p - centre
        ref, dt = self._shape, t - self._time
        fit = None
        if ref is not None and ref.shape == q.shape and 0.0 < dt <= self.max_gap:
            fit = similarity(ref, q)
        if fit is None:
            self.pose.reset()
            self.shape.reset()
            fit = size, 0.0
        a, b = fit
        det = a * a + b * b
        shape = np.stack([a * q[:, 0] + b * q[:, 1], a * q[:, 1] - b * q[:, 0]], 1) / det  # q through the inverse
        cx, cy, a, b = self.pose.filter(np.array([centre[0], centre[1], a, b]), t, size).astype(np.float64)
        self._shape = self.shape.filter(shape.ravel(), t, 1.0).astype(np.float64).reshape(-1, 2)
        self._time = t
        s = self._shape
        out = np.stack([cx + a * s[:, 0] - b * s[:, 1], cy + b * s[:, 0] + a * s[:, 1]], 1)
        return out.astype(np.float32).reshape(np.shape(values))


def similarity(ref: np.ndarray, q: np.ndarray) -> tuple[float, float] | None:
    """The least-squares similarity (a, b: q ~ [[a, -b], [b, a]] @ ref) between two centred (N, 2) point sets: the
    zoom and roll from one to the other, the one fit behind both the pose filter and the anchored crop. None when
    ``ref``'s points all lie at one place, where no motion can be read."""
    norm = float((ref * ref).sum())
    if not norm > 0.0:
        return None
    return (float((ref * q).sum()) / norm, float((ref[:, 0] * q[:, 1] - ref[:, 1] * q[:, 0]).sum()) / norm)


def _alpha(cutoff, dt: float):
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


@dataclass
class Track:
    id: int
    box: tuple[float, float, float]  # (cx, cy, side): where the next frame's crop is cut
    filter: PoseShapeFilter
    landmark_box: tuple[float, float, float] | None = None  # the last frame's box for the next crop
    motion: tuple[float, float, float] | None = None  # averaged box motion per frame: (dx, dy) in sides, log scale
    anchor: tuple | None = None  # (the detector's crop square that (re)started the track, the points drawn in it)
    drifted: bool = False  # this frame's points left the anchor's shape: the next detection restarts the track

    def anchored(self, points) -> tuple[float, float, float]:
        """The anchor's square moved with the face: by the similarity (shift, zoom, roll) that takes the anchor's
        points to ``points``. On the track's first frame (no anchor yet) the anchor is set: this frame's crop,
        a detector's square, and ``points``."""
        if self.anchor is None:
            self.anchor = (self.box, np.asarray(points, np.float64).reshape(-1, 2))
        square, ref = self.anchor
        return move_square(square, ref, points)

    def drift(self, points) -> float:
        """How far ``points`` left the anchor's shape: the RMS residual of the least-squares similarity from the
        anchor's points to them, over their RMS distance from their centre (0: the same shape, moved). Raised by an
        expression, or by a crop sliding along a face the model reads poorly, where each crop's points move the
        next one; 0 before the anchor is set."""
        if self.anchor is None:
            return 0.0
        p0, p1 = self.anchor[1], np.asarray(points, np.float64).reshape(-1, 2)
        p0, p1 = p0 - p0.mean(0), p1 - p1.mean(0)
        fit, size = similarity(p0, p1), float((p1 * p1).sum())
        if fit is None or not size > 0.0:
            return 0.0
        a, b = fit  # a least-squares fit: what it leaves is the points' spread less the fitted copy's
        return math.sqrt(max(0.0, size - (a * a + b * b) * float((p0 * p0).sum())) / size)

    def follow(self, box, predict: bool) -> None:
        """Move the next crop to ``box``, carried one frame ahead by the averaged motion."""
        if predict and self.landmark_box is not None:
            (px, py, ps), (cx, cy, s) = self.landmark_box, box
            new = ((cx - px) / s, (cy - py) / s, math.log(s / ps))
            old = new if self.motion is None else self.motion
            self.motion = tuple(min(MAX_MOTION, max(-MAX_MOTION, MOTION_EMA * n + (1.0 - MOTION_EMA) * o))
                                for n, o in zip(new, old))
            dx, dy, ds = self.motion
            self.box = (cx + dx * s, cy + dy * s, s * math.exp(ds))
        else:
            self.box = box
        self.landmark_box = box

    def restart(self, square) -> None:
        """A detection (re)starts the track: the next crop comes from its square, with no motion known."""
        self.box, self.landmark_box, self.motion, self.anchor, self.drifted = square, None, None, None, False


def move_square(square, ref, points) -> tuple[float, float, float]:
    """``square`` (cx, cy, side) moved by the least-squares similarity from the points ``ref`` to ``points``: its
    centre keeps its place relative to the points (turned and scaled with them), its side scales with them."""
    p0, p1 = np.asarray(ref, np.float64).reshape(-1, 2), np.asarray(points, np.float64).reshape(-1, 2)
    c0, c1 = p0.mean(0), p1.mean(0)
    fit = similarity(p0 - c0, p1 - c1)
    if fit is None:  # reference points all at one place (a degenerate prediction): no motion to read from them
        return tuple(float(v) for v in square)
    a, b = fit
    dx, dy = square[0] - c0[0], square[1] - c0[1]
    return (float(c1[0] + a * dx - b * dy), float(c1[1] + b * dx + a * dy), float(square[2] * math.hypot(a, b)))


@dataclass
class TrackerStats:
    """What the tracker did, for reports: frames, detector runs, and tracks lost by each test."""

    frames: int = 0
    detector_runs: int = 0
    lost_implausible: int = 0
    lost_unconfirmed: int = 0
    drifted: int = 0  # frames where a track's shape drift called the detector


class FaceTracker:
    """``update(image, t) -> list[Face]``, one per tracked face (``track_id`` set, ``points`` smoothed,
    ``raw_points`` as the model gave them, ``detection`` on frames where a detection confirmed or started it).

    ``predictor`` is a Predictor with a detector; ``max_faces`` caps the tracks (the Android demo tracks 1);
    ``anchor`` cuts each crop from the detector's square that started the track, moved with the points (off: from
    the landmark box of the last points); ``predict_motion`` carries the crop one frame ahead by the face's recent
    motion;
    a detection that confirms a track with a crop-square IoU below ``reanchor_iou`` restarts it from the detection's
    crop (one more model run), so a track that slid towards the face's edge or a neighbour is put back; a track
    whose points leave the anchor's shape by more than ``max_drift`` (None, or ``anchor`` off: never) calls the
    detector on that frame and restarts from its detection."""

    def __init__(self, predictor, redetect_every: int = 10, max_faces: int | None = None, smoothing: bool = True,
                 min_iou: float = 0.3, max_scale_change: float = 1.3, max_shift: float = 0.3,
                 predict_motion: bool = True, reanchor_iou: float = 0.5, anchor: bool = True,
                 max_drift: float | None = MAX_DRIFT):
        if predictor.detector is None:
            raise ValueError("FaceTracker needs a Predictor with a face detector")
        self.predictor = predictor
        self.redetect_every = max(1, int(redetect_every))
        self.max_faces = max_faces
        self.smoothing, self.predict_motion, self.reanchor_iou = smoothing, predict_motion, reanchor_iou
        self.anchor, self.max_drift = anchor, max_drift
        self.min_iou, self.max_scale_change, self.max_shift = min_iou, max_scale_change, max_shift
        self.tracks: list[Track] = []
        self.stats = TrackerStats()
        self._next_id = 0
        self._since_detect = 0

    def reset(self) -> None:
        self.tracks, self._since_detect = [], 0

    def update(self, image: np.ndarray, t: float) -> list:
        self.stats.frames += 1
        self._since_detect += 1
        detect = not self.tracks or self._since_detect >= self.redetect_every
        kept, lost = [], []
        for track in self.tracks:
            face = self.predictor.predict_box(image, track.box)
            box = CropSpec.box_from_points(face.points)
            if plausible(track.box, box, image.shape, self.max_scale_change, self.max_shift):
                kept.append((track, face, box))
                if self.anchor and self.max_drift is not None and track.drift(face.points) > self.max_drift:
                    track.drifted = detect = True
                    self.stats.drifted += 1
            else:
                lost.append(track)
                self.stats.lost_implausible += 1
                detect = True
        det_ms = None
        if detect:
            t0 = time.perf_counter()
            detections = self.predictor.detector.detect(image)
            det_ms = (time.perf_counter() - t0) * 1e3
            self.stats.detector_runs += 1
            self._since_detect = 0
            kept = self._confirm(image, kept, lost, detections)
        self.tracks = [track for track, _, _ in kept]
        faces = []
        for track, face, box in kept:
            track.follow(track.anchored(face.points) if self.anchor else box, self.predict_motion)
            face.track_id = track.id
            face.raw_points = face.points
            if self.smoothing:
                face.points = track.filter.filter(face.points, t, box[2])
            if det_ms is not None:
                face.timings_ms["detector"] = det_ms
            faces.append(face)
        return faces

    def _confirm(self, image, kept, lost, detections):
        """Match detections to tracks (greedy by IoU of the crop squares): tracks without one are dropped,
        detections without one start tracks (lost tracks overlapping them keep their id and filter)."""
        crop = self.predictor.crop
        squares = [crop.box_from_detector(d.box, d.keypoints) for d in detections]
        pairs = sorted((-square_iou(track.box, sq), i, j) for i, (track, _, _) in enumerate(kept)
                       for j, sq in enumerate(squares))  # best overlap first, then track and detection order
        used_tracks, used_dets = set(), set()
        for overlap, i, j in pairs:
            if -overlap >= self.min_iou and i not in used_tracks and j not in used_dets:
                used_tracks.add(i)
                used_dets.add(j)
                if -overlap < self.reanchor_iou or kept[i][0].drifted:
                    track, face = kept[i][0], self.predictor.predict_detection(image, detections[j])
                    track.restart(squares[j])
                    kept[i] = (track, face, CropSpec.box_from_points(face.points))
                kept[i][1].detection = detections[j]
        self.stats.lost_unconfirmed += len(kept) - len(used_tracks)
        out = [kept[i] for i in sorted(used_tracks)]
        for j, d in enumerate(detections):
            if j in used_dets or (self.max_faces is not None and len(out) >= self.max_faces):
                continue
            face = self.predictor.predict_detection(image, d)
            previous = max(lost, key=lambda tr: square_iou(tr.box, squares[j]), default=None)
            if previous is not None and square_iou(previous.box, squares[j]) >= self.min_iou:
                lost.remove(previous)
                track = previous
                track.restart(squares[j])
            else:
                track = Track(self._next_id, squares[j], PoseShapeFilter())
                self._next_id += 1
            out.append((track, face, CropSpec.box_from_points(face.points)))
        return out


def plausible(crop_box, landmark_box, shape, max_scale_change: float = 1.3, max_shift: float = 0.3) -> bool:
    """Whether the landmarks predicted in ``crop_box`` still describe a face the next crop can follow."""
    cx, cy, side = crop_box
    nx, ny, nside = landmark_box
    if not (np.isfinite(nside) and nside > 4.0 and side > 0):
        return False
    h, w = shape[:2]
    return (1.0 / max_scale_change <= nside / side <= max_scale_change
            and math.hypot(nx - cx, ny - cy) <= max_shift * side and 0 <= nx < w and 0 <= ny < h)


def square_iou(a, b) -> float:
    """IoU of two (cx, cy, side) squares."""
    return iou(*((c - s / 2.0, d - s / 2.0, s, s) for c, d, s in (a, b)))
