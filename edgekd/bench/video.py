"""The bench's video row: every test face as a short pan-and-zoom clip, run through the FaceTracker and, on the
very same frames, through detector crops on every frame (and ground-truth crops), so the cost or gain of tracking
in time and in NME is measured, not assumed.

300-W has no video, but a clip rendered from a test image keeps its ground truth (moved by the same transform),
so tracking is scored with the same NME as every other row. The camera moves slowly, as a hand-held phone drifts:
a few percent of zoom and of the face's size of pan per frame, zooming in on small faces and out of large ones
and keeping the face inside the frame, so that a lost track is the tracker's doing, not the clip's.

Both pipelines see the annotated face only: the detector's answer is narrowed to the detection the still-image
``detector`` protocol scores (protocols.select_detection), so on an image with several people both pipelines
follow the same face, and the tracker keeps one face, as the Android demo does. Every frame is timed, frames that
lost the face included (they cost a detector run): per-frame time is what a video app pays per frame.

Smoothing trades lag for steadiness, so the row reports both: lag as the tracked NME of the smoothed points minus
that of the raw ones on the moving clips, and jitter on still clips (the face held still, Gaussian camera noise of
``STILL["noise"]`` grey levels drawn anew every frame): the mean frame-to-frame motion of the points, raw and
smoothed, in % of the inter-ocular distance. On a still face every motion of the points is noise, which a user sees
as shimmering landmarks.

A rigid picture never changes shape, and a real face does (it talks, smiles, raises its brows), which is what the
tracker's drift check and its shape smoothing meet on video. For 300-W faces each clip is therefore run a second
time as a talking clip (``render_talking_clip``): the same pan and zoom with the landmarks moved by a changing
expression and the picture morphed to follow them, scored and timed like the pan-and-zoom clip.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field, fields

import numpy as np

from edgekd.bench.latency import on_threads
from edgekd.bench.protocols import crop_box, select_detection
from edgekd.core.crop import CropSpec, transform_points
from edgekd.core.detector import match_box, points_box
from edgekd.core.imageio import load_image
from edgekd.core.metrics import nme, summarize
from edgekd.core.timing import machine, stats, time_calls
from edgekd.runtime.predictor import Predictor
from edgekd.runtime.tracker import MAX_DRIFT, FaceTracker

# The camera: frames per clip (2/3 s at 30 fps), zoom per frame (geometric), pan per frame in face sides; faces
# larger than LARGE_FACE of the image's shorter side are zoomed out of, the others into.
CLIP = {"frames": 20, "fps": 30.0, "zoom": 0.02, "pan": 0.03, "large_face": 0.4}
# FaceTracker as an app runs it: its default re-detection interval (frames 0 and 10 of a 20-frame clip, 1 in 10),
# one face (the Android demo's setting), smoothing on (the points a user sees).
TRACKING = {"redetect_every": 10, "max_faces": 1, "smoothing": True}
PIPELINES = ("tracking", "tracking_raw", "detector", "gt")
TALKING_PIPELINES = ("tracking", "tracking_raw", "detector")
WARMUP_FRAMES = 3
# Still clips for jitter: the test image itself every frame, plus Gaussian noise of this sigma (grey levels), a
# seed per face (its index) so that every bench draws the same noise
STILL = {"noise": 4.0}
# Talking clips (300-W faces): the pan-and-zoom clip of a face whose expression changes every frame, as a
# face's does on real video, which the rigid clips never show the tracker. Peak offsets in inter-ocular distances,
# along the face's own axes: the jaw's drop at the chin with the mouth open (the lower lip goes with it), the mouth
# corners' widening and rise in a smile, the brows' rise; the mouth opens and closes about TALK["hz"] times a second.
TALK = {"open": 0.30, "smile_out": 0.10, "smile_up": 0.06, "brows": 0.10, "hz": 4.0}
JAW = (4, 5, 6, 7, 8, 9, 10, 11, 12, 55, 56, 57, 58, 59, 65, 66, 67)  # the chin and the lower lip (68-point indices)
JAW_ANGLES = (3, 13)  # where the jaw's drop ends, on either side
# The smile's share per point: the mouth's outer and inner corners, and the lips beside them (so that they move
# together and the morph's thin triangles there do not fold), by side of the mouth; the corners also take half the
# jaw's drop.
SMILE = {"right": {48: 1.0, 60: 0.8, 49: 0.5, 59: 0.5, 61: 0.4, 67: 0.4},
         "left": {54: 1.0, 64: 0.8, 53: 0.5, 55: 0.5, 63: 0.4, 65: 0.4}}
CORNERS = (48, 54, 60, 64)
BROWS = {17: 0.5, 18: 0.8, 19: 1.0, 20: 1.0, 21: 1.0, 22: 1.0, 23: 1.0, 24: 1.0, 25: 0.8, 26: 0.5}  # tapered ends
MORPH_RING = {"points": 24, "radius": 0.9}  # the fixed ring around the face, in landmark-box sides from its centre
MORPH_GAP = 0.01  # inter-ocular distances between points the morph's mesh keeps apart (morph_mesh)


def pan_zoom(shape, points, frames: int = CLIP["frames"], zoom: float = CLIP["zoom"],
             pan: float = CLIP["pan"]) -> list[np.ndarray]:
    """2x3 image -> frame matrices of one clip over an image of ``shape`` with the face at ``points``.

    Frames keep the image's size. The face scales by (1 + zoom) per frame about its centre (its inverse for a large
    face) while its centre drifts ``pan`` face sides per frame towards the side of the image with more room (half
    as fast vertically), clamped so the face box and a margin stay inside the frame; the clamp is continuous in
    the frame number, so the motion never jumps."""
    h, w = shape[:2]
    cx, cy, side = CropSpec.box_from_points(points)
    sign = 1.0 if side < CLIP["large_face"] * min(h, w) else -1.0
    centre = np.array([cx, cy])
    step = pan * side * np.array([1.0 if cx <= w / 2.0 else -1.0, 0.5 if cy <= h / 2.0 else -0.5])
    out = []
    for k in range(frames):
        s = (1.0 + zoom) ** (sign * k)
        half = 0.6 * s * side
        p = np.minimum(np.maximum(centre + k * step, half), np.array([w, h]) - half)
        out.append(np.array([[s, 0.0, p[0] - s * cx], [0.0, s, p[1] - s * cy]]))
    return out


def render_clip(image: np.ndarray, points, frames: int = CLIP["frames"]) -> tuple[list, list]:
    """(frames, ground truth per frame) of one face's clip, rendered in memory with cv2.warpAffine; where zooming
    out uncovers the frame's edge, the image's border pixels are repeated (a mirrored border could show a mirrored
    face to the detector)."""
    import cv2

    h, w = image.shape[:2]
    matrices = pan_zoom(image.shape, points, frames)
    rendered = [cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                for m in matrices]
    return rendered, [transform_points(points, m) for m in matrices]


def render_still(image: np.ndarray, frames: int = CLIP["frames"], seed: int = 0,
                 noise: float = STILL["noise"]) -> list[np.ndarray]:
    """Frames of one still clip: ``image`` with Gaussian noise of sigma ``noise`` grey levels drawn anew every
    frame (a phone camera's sensor noise), rounded and clipped to uint8."""
    rng = np.random.default_rng(seed)
    base = np.asarray(image, np.float32)
    return [np.clip(np.rint(base + rng.standard_normal(base.shape, np.float32) * noise), 0, 255).astype(np.uint8)
            for _ in range(frames)]


def talking_offsets(points, open_: float, smile: float, brows: float) -> np.ndarray:
    """(68, 2) offsets of a 68-point face's landmarks for an expression: ``open_``, ``smile``, ``brows`` in [0, 1]
    of TALK's peaks, along the face's axes (u: from its right eye to its left, v: down the face)."""
    p = np.asarray(points, np.float64)
    u, v, iod = face_axes(p)
    off = np.zeros_like(p)
    drop = open_ * TALK["open"] * iod * jaw_drop(p, u)
    off[list(JAW)] += drop[list(JAW), None] * v
    off[list(CORNERS)] += 0.5 * drop[list(CORNERS), None] * v
    for side, outwards in (("right", -u), ("left", u)):
        for i, share in SMILE[side].items():
            off[i] += share * smile * iod * (TALK["smile_out"] * outwards - TALK["smile_up"] * v)
    for i, share in BROWS.items():
        off[i] -= share * brows * TALK["brows"] * iod * v
    return off


def face_axes(points) -> tuple[np.ndarray, np.ndarray, float]:
    """(u: the unit vector from a 68-point face's right eye to its left, v: down the face, the inter-ocular
    distance)."""
    u = points[42:48].mean(0) - points[36:42].mean(0)
    u = u / np.linalg.norm(u)
    return u, np.array([-u[1], u[0]]), float(np.linalg.norm(points[36] - points[45]))


def jaw_drop(points, u) -> np.ndarray:
    """Per point, its share of the jaw's drop at the chin when the mouth opens: 1 across from the chin, falling
    as 1 - (x / x_angle)^2 to 0 across from either jaw angle, x measured along the face's axis ``u``.

    The jaw is one bone hinged near the ears: the lower lip drops as far as the chin at the same place across the
    face, less towards the jaw's angles. A drop that depends only on the position across the face is a shear, which
    keeps the lower lip from crossing the chin (an earlier model dropped the lip further than the jaw beside it and
    folded 3.6 % of the frames); over a thin triangle the curve's slope can still fold it, and ``fold_free_share``
    catches those. A jaw angle on the chin's own side (no 300-W face has one) drops that side by the nearer angle."""
    x = (points - points[8]) @ u
    sides = [(points[i] - points[8]) @ u for i in JAW_ANGLES]
    reach = np.where(x < 0.0, min(sides), max(sides))
    reach = np.where(np.abs(reach) > 1e-9, reach, 1e-9)
    return np.clip(1.0 - (x / reach) ** 2, 0.0, 1.0)


def talking_levels(frames: int, seed: int, fps: float = CLIP["fps"]) -> np.ndarray:
    """(frames, 3) open / smile / brows levels in [0, 1] of one clip: the mouth opening and closing at about
    TALK["hz"], a slower smile and brow raise, each with an amplitude and phase drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / fps

    def wave(amplitude, hz):
        return amplitude * 0.5 * (1.0 - np.cos(2.0 * np.pi * hz * t + rng.uniform(0.0, 2.0 * np.pi)))

    talk = wave(rng.uniform(0.4, 1.0), TALK["hz"] * rng.uniform(0.8, 1.2))
    smile = wave(rng.uniform(0.0, 1.0), rng.uniform(0.5, 1.5))
    return np.stack([talk, smile, wave(rng.uniform(0.0, 1.0), rng.uniform(0.5, 1.5))], 1)


def morph(image: np.ndarray, points, offsets) -> np.ndarray:
    """``image`` with its face warped so that ``points`` move by ``offsets``: piecewise affine over the Delaunay
    triangles of the points and a fixed ring around the face (face morphing's warp), read backwards by cv2.remap.
    Only the ring's square is touched."""
    import cv2

    p = np.asarray(points, np.float64)
    src, triangles, (centre, side) = morph_mesh(p)
    dst = np.concatenate([src[:len(p)] + offsets, src[len(p):]])
    h, w = image.shape[:2]
    reach = MORPH_RING["radius"] * side
    x0, y0 = (max(0, int(c - reach)) for c in centre)
    x1, y1 = (min(n, int(c + reach) + 1) for n, c in zip((w, h), centre))
    if x1 <= x0 or y1 <= y0:
        return image.copy()
    ids = np.full((y1 - y0, x1 - x0), -1, np.int32)
    maps = np.empty((len(triangles), 2, 3))
    for k, t in enumerate(triangles):  # each output triangle: its affine back to the source and its pixels
        maps[k] = cv2.getAffineTransform(dst[t].astype(np.float32), src[t].astype(np.float32))
        cv2.fillConvexPoly(ids, np.round(dst[t] - (x0, y0)).astype(np.int32), k)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    inside = ids >= 0
    m = maps[ids[inside]]
    mx, my = xs.copy(), ys.copy()
    mx[inside] = m[:, 0, 0] * xs[inside] + m[:, 0, 1] * ys[inside] + m[:, 0, 2]
    my[inside] = m[:, 1, 0] * xs[inside] + m[:, 1, 1] * ys[inside] + m[:, 1, 2]
    out = image.copy()
    out[y0:y1, x0:x1] = cv2.remap(image, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
    return out


def morph_mesh(points) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(a 68-point face's points, each that lies within MORPH_GAP inter-ocular distances of an earlier one moved that
    gap down the face, and again while it lands on another, followed by a fixed ring around the face; the Delaunay
    triangles over them; (the landmark box's centre, its side)): the mesh ``morph`` warps and ``fold_free_share``
    checks.

    A closed mouth is often annotated with the inner lips on one another (half of 300-W's training faces, a few with
    three points at one place): the triangulation would keep one point of each pile, and the lower lip's inner edge
    would stay in the picture while its ground truth drops. Moved apart, every point is a vertex of its own, and the
    picture follows it to within MORPH_GAP times the number of points piled on it before."""
    from scipy.spatial import Delaunay

    p = np.array(points, np.float64)
    _, v, iod = face_axes(p)
    gap = MORPH_GAP * iod
    for j in range(1, len(p)):
        near = gap
        for _ in range(j):  # "lands on": within 1 % of a gap (a pile of three or more points)
            if np.linalg.norm(p[:j] - p[j], axis=1).min() >= near:
                break
            p[j] += gap * v
            near = gap / 100.0
    lo, hi = p.min(0), p.max(0)
    centre, side = (lo + hi) / 2.0, float(max(hi - lo))
    angles = np.linspace(0.0, 2.0 * np.pi, MORPH_RING["points"], endpoint=False)
    src = np.concatenate([p, centre + MORPH_RING["radius"] * side * np.stack([np.cos(angles), np.sin(angles)], 1)])
    return src, Delaunay(src).simplices, (centre, side)


def signed_areas(points, triangles) -> np.ndarray:
    """Twice each triangle's signed area: its sign is its orientation, which a fold turns over."""
    a, b, c = (points[triangles[:, k]] for k in range(3))
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def fold_free_share(points, offsets, steps: int = 10) -> float:
    """The largest share, in steps of 1/``steps``, of a clip's expression (``offsets``: one (68, 2) array per frame)
    under which no triangle of the morph's mesh folds over (turns its orientation) in any frame: a folded triangle
    draws a sliver of the picture twice, where the ground truth no longer says what the picture shows. One share per
    clip, so that the expression stays smooth from frame to frame. What folds: thin triangles beside the mouth's
    corners (those that reach them from the nose or the jaw), a few along the jaw's curve, and lips annotated across
    one another when the mouth opens. A near-flat triangle turns over at the least motion, a fold of no area that
    this check counts all the same: on 2 of the 722 validation and test faces the clip then takes none of its
    expression."""
    src, triangles, _ = morph_mesh(points)
    before = signed_areas(src, triangles)
    n = len(points)
    for k in range(steps, 0, -1):
        if all(np.all((signed_areas(np.concatenate([src[:n] + off * (k / steps), src[n:]]), triangles) * before > 0.0)
                      | (before == 0.0)) for off in offsets):
            return k / steps
    return 0.0


def render_talking_clip(image: np.ndarray, points, frames: int = CLIP["frames"], seed: int = 0) -> tuple[list, list]:
    """(frames, ground truth per frame) of one 300-W face's talking clip: the pan-and-zoom clip of ``render_clip``
    with the face's expression changing every frame (``talking_levels``, ``morph``; scaled down where it would
    fold the morph, ``fold_free_share``). A morphed picture is no real expression (an open mouth is stretched lips, no
    teeth): the clips measure what a changing shape costs the tracker (the crops, the drift check, the smoothing's
    lag), not how well a model reads faces."""
    import cv2

    p = np.asarray(points, np.float64)
    h, w = image.shape[:2]
    out, truth = [], []
    offsets = [talking_offsets(p, *levels) for levels in talking_levels(frames, seed)]
    share = fold_free_share(p, offsets)
    for m, off in zip(pan_zoom(image.shape, p, frames), offsets):
        off = share * off
        out.append(cv2.warpAffine(morph(image, p, off), m, (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE))
        truth.append(transform_points(p + off, m))
    return out, truth


def frame_motion(points, truth, scheme) -> list[float]:
    """Per pair of consecutive frames where both have points: the points' mean motion as a fraction of the
    inter-ocular distance of the ground truth (of the later frame); ``points``: per frame an (N, 2) array or None."""
    out = []
    for a, b, gt in zip(points, points[1:], truth[1:]):
        if a is not None and b is not None:
            step = np.linalg.norm(np.asarray(b, np.float64) - np.asarray(a, np.float64), axis=-1).mean()
            out.append(float(step / scheme.interocular(np.asarray(gt, np.float64))))
    return out


class AnnotatedFace:
    """A face detector that reports only the annotated face's detection (the one the ``detector`` protocol
    scores), so the tracker starts on and is confirmed by the same face; ``points``: this frame's ground truth."""

    def __init__(self, detector):
        self.detector, self.points = detector, None
        self.name = getattr(detector, "name", "")

    def detect(self, image: np.ndarray) -> list:
        found = select_detection(self.detector.detect(image), self.points)
        return [] if found is None else [found]


@dataclass
class VideoTally:
    """One model's clips: per-frame errors by pipeline (fractions; inf where the face was lost or missed), the
    still clips' frame-to-frame motion of the smoothed and raw points (fractions of the inter-ocular distance),
    per-frame ms by thread count and pipeline, and what the tracker did on the moving, the still and the talking clips
    (summed over each: on a still face every detector run the tracker adds is a cost, as its drift check can add);
    the talking clips' errors by pipeline and tracking ms per frame."""

    errors: dict = field(default_factory=lambda: {p: [] for p in PIPELINES})
    jitter: dict = field(default_factory=lambda: {"tracking": [], "tracking_raw": []})
    ms: dict = field(default_factory=dict)
    tracker: dict = field(default_factory=dict)
    still_tracker: dict = field(default_factory=dict)
    talking: dict = field(default_factory=lambda: {p: [] for p in TALKING_PIPELINES})
    talking_ms: list = field(default_factory=list)
    talking_tracker: dict = field(default_factory=dict)

    def add_stats(self, tracker_stats, clips: str = "moving") -> None:
        counts = {"moving": self.tracker, "still": self.still_tracker, "talking": self.talking_tracker}[clips]
        for f in fields(tracker_stats):
            counts[f.name] = counts.get(f.name, 0) + getattr(tracker_stats, f.name)


def track_clip(tracker, frames, truth) -> tuple[list, list[float]]:
    """(the tracked face on the annotated face or None, ms) per frame of one clip, one ``tracker.update`` each."""
    annotated, fps, out = tracker.predictor.detector, CLIP["fps"], []
    clock = iter(enumerate(zip(frames, truth)))

    def one():
        k, (frame, points) = next(clock)
        annotated.points = points
        out.append(tracker.update(frame, k / fps))

    ms = time_calls(one, 0, len(frames))
    return [on_face(faces, points) for faces, points in zip(out, truth)], ms


def on_face(faces, points):
    """The face whose landmarks overlap the annotated face's, or None (the track lost it)."""
    k = match_box([points_box(f.raw_points if f.raw_points is not None else f.points) for f in faces], points)
    return None if k is None else faces[k]


def detect_clip(predictor, frames, truth) -> tuple[list, list[float]]:
    """(the face cut from the detector's box or None, ms) per frame: the detector on every frame, then the model."""
    pairs, out = iter(zip(frames, truth)), []

    def one():
        frame, points = next(pairs)
        predictor.detector.points = points
        found = predictor.detector.detect(frame)
        box = crop_box("detector", predictor.crop, points, found[0] if found else None)
        out.append(None if box is None else predictor.predict_box(frame, box))

    return out, time_calls(one, 0, len(frames))


def run_clip(predictor, frames, truth, tally: VideoTally, threads: str, scheme, score: bool) -> None:
    """One clip through a fresh tracker and through detector crops (timed); with ``score`` also ground-truth crops
    (untimed, afterwards, so they do not warm the detector pipeline's caches) and every pipeline's errors."""
    tracker = FaceTracker(predictor, **TRACKING)
    tracked, track_ms = track_clip(tracker, frames, truth)
    detected, detect_ms = detect_clip(predictor, frames, truth)
    ms = tally.ms.setdefault(threads, {"tracking": [], "detector": []})
    ms["tracking"] += track_ms
    ms["detector"] += detect_ms
    if not score:
        return
    tally.add_stats(tracker.stats)
    gt = [predictor.predict_box(f, crop_box("gt", predictor.crop, p)) for f, p in zip(frames, truth)]
    add_errors(tally.errors, tracked, detected, truth, scheme, gt)


def add_errors(errors: dict, tracked, detected, truth, scheme, gt=None) -> None:
    """Each frame's NME (inf where the face was lost) appended per pipeline: the tracked points shown and raw, the
    detector crops' and, when given, the ground-truth crops'."""
    scored = [("tracking", tracked, "points"), ("tracking_raw", tracked, "raw_points"),
              ("detector", detected, "points")] + ([("gt", gt, "points")] if gt is not None else [])
    for pipeline, faces, attr in scored:
        errors[pipeline] += [nme(None if f is None else getattr(f, attr), p, scheme) for f, p in zip(faces, truth)]


def still_clip(predictor, image, points, tally: VideoTally, scheme, frames: int, seed: int) -> None:
    """One still clip (``render_still``) through a fresh tracker, untimed: the points' frame-to-frame motion."""
    clip, truth = render_still(image, frames, seed), [points] * frames
    tracker = FaceTracker(predictor, **TRACKING)
    tracked, _ = track_clip(tracker, clip, truth)
    tally.add_stats(tracker.stats, "still")
    for pipeline, attr in (("tracking", "points"), ("tracking_raw", "raw_points")):
        tally.jitter[pipeline] += frame_motion([None if f is None else getattr(f, attr) for f in tracked], truth,
                                               scheme)


def talking_clip(predictor, image, points, tally: VideoTally, scheme, frames: int, seed: int) -> None:
    """One talking clip (``render_talking_clip``) through a fresh tracker (timed) and through detector crops
    (untimed: the same cost as on the other clips): errors per pipeline, tracker counts, tracking ms per frame."""
    clip, truth = render_talking_clip(image, points, frames, seed)
    tracker = FaceTracker(predictor, **TRACKING)
    tracked, ms = track_clip(tracker, clip, truth)
    detected, _ = detect_clip(predictor, clip, truth)
    tally.add_stats(tracker.stats, "talking")
    tally.talking_ms += ms
    add_errors(tally.talking, tracked, detected, truth, scheme)


def video_row(model, name: str, detector, samples, threads, scheme, frames: int = CLIP["frames"],
              progress=iter) -> dict:
    """One model's video row: every sample's clip on a fresh interpreter per thread count (the detector shared);
    errors and the still clips' jitter from the first thread count, per-frame times from each. ``progress`` wraps
    the sample iterable."""
    annotated, tally = AnnotatedFace(detector), VideoTally()
    with ExitStack() as stack:
        predictors = {str(t): Predictor(stack.enter_context(on_threads(model, t)), annotated) for t in threads}
        for k, s in enumerate(progress(samples)):
            image = load_image(s)
            clip, truth = render_clip(image, s.points, frames)
            if k == 0:  # first invokes and caches: untimed
                for p in predictors.values():
                    run_clip(p, clip[:WARMUP_FRAMES], truth[:WARMUP_FRAMES], VideoTally(), "warm-up", scheme, False)
            for i, (t, p) in enumerate(predictors.items()):
                run_clip(p, clip, truth, tally, t, scheme, score=i == 0)
            first = next(iter(predictors.values()))
            still_clip(first, image, s.points, tally, scheme, frames, k)
            if talks(scheme):
                talking_clip(first, image, s.points, tally, scheme, frames, k)
    return summarize_row(name, getattr(model, "runtime", "custom"), tally)


def talks(scheme) -> bool:
    """Whether the bench renders talking clips for a scheme: their offsets name the 300-W points (lips, chin, brows),
    so only the 300-W scheme talks; another 68-point scheme may order its points otherwise."""
    return scheme.name == "300w"


def summarize_row(name: str, runtime: str, tally: VideoTally) -> dict:
    """results.json's row of one model: accuracy per pipeline, the same-frames comparison (with smoothing's lag:
    smoothed minus raw tracked NME there), the still clips' jitter (% of the inter-ocular distance), lost frames,
    tracker counts and per-frame times (median, p90) per thread count; ``talking`` (where the scheme talks): the
    talking clips' accuracy, same-frames comparison, tracker counts and tracking ms per frame."""
    accuracy = {p: summarize(e) for p, e in tally.errors.items()}
    same = same_frames(tally.errors)
    track = tally.errors["tracking"]
    motion = {p: np.asarray(v, np.float64) for p, v in tally.jitter.items()}
    jitter = {"frame_pairs": int(motion["tracking"].size), "noise": STILL["noise"],
              **{key: float(100 * motion[p].mean()) if motion[p].size else None
                 for key, p in (("raw", "tracking_raw"), ("smoothed", "tracking"))}}
    return {"model": name, "runtime": runtime, "frames": len(track), "accuracy": accuracy,
            "same_frames": same, "jitter": jitter, "lost_frames": accuracy["tracking"]["detector_failures"],
            "detector_misses": accuracy["detector"]["detector_failures"], "tracker": dict(tally.tracker),
            "still_tracker": dict(tally.still_tracker),
            "frame_ms": {t: {p: stats(v) for p, v in ms.items()} for t, ms in tally.ms.items()},
            **({"talking": {"frames": len(tally.talking["tracking"]),
                            "accuracy": {p: summarize(e) for p, e in tally.talking.items()},
                            "same_frames": same_frames(tally.talking), "tracker": dict(tally.talking_tracker),
                            "tracking_ms": stats(tally.talking_ms)}} if tally.talking["tracking"] else {})}


def same_frames(errors: dict) -> dict:
    """Mean NME (%) of the tracked (smoothed and raw) and detector-crop points over the frames where tracking and
    detector crops both found the face, and smoothing's lag there (smoothed minus raw)."""
    track, raw, det = (np.asarray(errors[p], np.float64) for p in ("tracking", "tracking_raw", "detector"))
    both = np.isfinite(track) & np.isfinite(det)
    mean = lambda e: float(100 * e[both].mean()) if both.any() else None  # noqa: E731
    same = {"frames": int(both.sum()), "tracking_nme": mean(track), "tracking_raw_nme": mean(raw),
            "detector_nme": mean(det)}
    same["lag_nme"] = None if not both.any() else same["tracking_nme"] - same["tracking_raw_nme"]
    return same


def video_bench(models, detector, samples, threads, scheme, frames: int = CLIP["frames"], progress=iter) -> dict:
    """results.json's "video": how the clips were made, the CPU the frames were timed on, a row per model.
    ``models``: (name, LandmarkModel-like) pairs."""
    clip = {"sequences": len(samples), "frames_per_sequence": frames, "frames": len(samples) * frames,
            "fps": CLIP["fps"], "zoom_per_frame": CLIP["zoom"], "pan_per_frame_face_sides": CLIP["pan"],
            "zoom_out_above_face_fraction": CLIP["large_face"], "max_drift": MAX_DRIFT, **TRACKING,
            **({"talking": dict(TALK)} if talks(scheme) else {}),
            "still_noise": STILL["noise"],
            "smoothing": ("pose and shape apart (tracker.PoseShapeFilter), the Android demo's constants"
                          if TRACKING["smoothing"] else "off")}
    rows = [video_row(m, name, detector, samples, threads, scheme, frames, progress) for name, m in models]
    return {"clip": clip, "cpu": machine()["cpu"], "threads": [str(t) for t in threads], "models": rows}
