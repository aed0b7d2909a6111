"""`edgekd predict` on a video file or a camera: track faces frame by frame (FaceTracker), write the annotated
video and the points of every frame (CSV or JSON).

Frame times come from the file's frame rate (frame / fps), so smoothing does not depend on how fast this machine
decodes; a camera's frames are stamped with the wall clock. The annotated video is written under a temporary name
beside its target and renamed into place when complete (as fileio does for every other output), and Ctrl-C on a
camera stops the capture and still writes what was recorded.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgekd.core.errors import DataError, OptionError, OutputError
from edgekd.core.fileio import remove_stale_temps, write_json, write_text
from edgekd.runtime.blazeface import open_detector
from edgekd.runtime.predictor import Predictor, draw_faces, load_model
from edgekd.runtime.tracker import FaceTracker

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")
POINTS_SUFFIXES = (".csv", ".json")


def is_video(source) -> bool:
    """A video file (by its extension) or a camera index such as ``0``."""
    return source is not None and (str(source).isdigit() or Path(str(source)).suffix.lower() in VIDEO_SUFFIXES)


def check_points_path(path, video: bool, option: str = "--pts") -> None:
    """Fail before any work when the points file's format does not fit the input."""
    if path is None:
        return
    suffix = Path(path).suffix.lower()
    allowed = POINTS_SUFFIXES if video else (".pts", ".json")
    if suffix not in allowed:
        what = "a video's per-frame points" if video else "a still image's faces"
        raise OptionError(f"{option} {path}: {what} go to a {' or '.join(allowed)} file")


@dataclass
class VideoResult:
    source: str
    frames: int
    fps: float
    size: tuple[int, int]  # width, height
    faces_per_frame: list[int] = field(default_factory=list)
    frame_ms: list[float] = field(default_factory=list)  # tracker.update per frame (detector, crops, models)
    written: list[Path] = field(default_factory=list)
    stats: object = None  # TrackerStats


def open_capture(source):
    """(cv2.VideoCapture, label, is_camera) for a file path or a camera index."""
    camera = str(source).isdigit() and not Path(str(source)).exists()
    if not camera and not Path(str(source)).is_file():
        raise DataError(f"{source}: video file not found")
    cap = cv2.VideoCapture(int(source)) if camera else cv2.VideoCapture(str(source))
    if not cap.isOpened():
        cap.release()
        what = f"camera {source}: cannot open it (is a camera attached?)" if camera else \
            f"{source}: not a readable video (corrupt, or a codec OpenCV lacks)"
        raise DataError(what)
    return cap, (f"camera {source}" if camera else str(source)), camera


class Frames:
    """The frames of a video file or a camera, as ``(rgb, t)`` pairs: a file's times come from its frame rate
    (frame / fps, so smoothing does not depend on how fast this machine decodes), a camera's from the wall clock.
    One reader for `predict` (track_video) and ``Landmarker.track``; ``close()`` releases the capture."""

    def __init__(self, source, max_frames: int | None = None):
        self.cap, self.label, self.camera = open_capture(source)
        fps = self.cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.fps = fps if 1.0 <= fps <= 1000.0 else 30.0
        self.max_frames = max_frames
        self.count = 0

    def __iter__(self):
        t_start = time.perf_counter()
        while self.max_frames is None or self.count < self.max_frames:
            ok, bgr = self.cap.read()
            if not ok:
                return
            t = time.perf_counter() - t_start if self.camera else self.count / self.fps
            self.count += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), t

    def close(self) -> None:
        self.cap.release()


def track_video(tracker, source, out=None, points=None, max_frames: int | None = None,
                on_frame=None) -> VideoResult:
    """Run ``tracker`` (a FaceTracker) over every frame of ``source``; write the annotated video to ``out``
    (.mp4 etc.) and the per-frame points to ``points`` (.csv or .json). Returns what was done.

    ``on_frame(drawn_rgb, faces, frame_ms)``, when given, sees every annotated frame (the live preview); its
    returning False ends the run early, which then writes what was recorded, as Ctrl-C on a camera does."""
    check_points_path(points, video=True)
    frames = Frames(source, max_frames)
    result, rows, writer, tmp = VideoResult(frames.label, 0, frames.fps, (0, 0)), [], None, None
    try:
        for rgb, t in frames:
            t0 = time.perf_counter()
            faces = tracker.update(rgb, t)
            frame_ms = (time.perf_counter() - t0) * 1e3
            result.frame_ms.append(frame_ms)
            rows.append({"frame": result.frames, "time_s": round(t, 6), "faces": [f.to_dict() for f in faces]})
            result.faces_per_frame.append(len(faces))
            drawn = draw_faces(rgb, faces, inplace=True) if out is not None or on_frame is not None else rgb
            if out is not None:
                if writer is None:
                    writer, tmp = _open_writer(out, frames.fps, rgb.shape[1::-1])
                writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            result.size = rgb.shape[1::-1]
            result.frames += 1
            if on_frame is not None and on_frame(drawn, faces, frame_ms) is False:
                break
    except KeyboardInterrupt:
        if not frames.camera:
            _discard(tmp)
            raise
    except BaseException:
        _discard(tmp)  # a failed run leaves no half-written video behind
        raise
    finally:
        frames.close()
        if writer is not None:
            writer.release()
    if tmp is not None:
        try:  # frames OpenCV could not write are dropped without a word: a full disk is an error, not a short video
            _check_disk(out)
        except OSError:
            _discard(tmp)
            raise
    if result.frames == 0:
        _discard(tmp)
        raise DataError(f"{frames.label}: no frames could be read")
    try:  # the points first: a video is only put in place with its points (e.g. --pts in a read-only folder)
        points_written = [write_points(points, rows, result)] if points is not None else []
    except BaseException:
        _discard(tmp)
        raise
    if tmp is not None:
        os.replace(tmp, out)
        result.written.append(Path(out))
    result.written += points_written
    result.stats = tracker.stats
    return result


def _open_writer(out, fps: float, size):
    """A cv2.VideoWriter on a temporary name beside ``out`` (same extension, so OpenCV picks the container)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")
    try:  # a read-only folder or a full disk fails here with its reason, not as an unwritable "format" below
        open(tmp, "wb").close()
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(out)) from None
    fourcc = cv2.VideoWriter_fourcc(*("XVID" if out.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(tmp), fourcc, fps, tuple(int(v) for v in size))
    if not writer.isOpened():
        _discard(tmp)
        _check_disk(out)  # OpenCV says nothing of why: a full disk is named as such, not blamed on the format
        raise OutputError(f"{out}: OpenCV cannot write this video format here (try .mp4 or .avi)")
    return writer, tmp


# OpenCV's video writer reports no write error: a disk this full after writing means frames may be missing
FULL_DISK_BYTES = 256 << 10


def _free_bytes(folder: Path) -> int:
    import shutil

    return shutil.disk_usage(folder).free


def _check_disk(out) -> None:
    """An OSError (no space left, naming ``out``) when the disk that holds ``out`` is full."""
    import errno

    try:
        free = _free_bytes(Path(out).parent)
    except OSError:
        return
    if free < FULL_DISK_BYTES:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out))


def _discard(tmp) -> None:
    if tmp is not None:
        Path(tmp).unlink(missing_ok=True)


def write_points(path, rows: list[dict], result: VideoResult) -> Path:
    """Per-frame points: JSON (every frame, faces with track id, box, detection, points) or CSV (one row per face
    and frame: frame, time_s, track_id, score, x0, y0, x1, y1, ...; frames without a face have no row)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return write_json(path, {"source": result.source, "fps": result.fps, "size": list(result.size),
                                 "frames": rows})
    n = max((len(f["points"]) for r in rows for f in r["faces"]), default=0)
    lines = [",".join(["frame", "time_s", "track_id", "score"] + [f"{a}{i}" for i in range(n) for a in "xy"])]
    for r in rows:
        for f in r["faces"]:
            score = f.get("score")
            values = np.asarray(f["points"], np.float64).ravel()
            lines.append(",".join([str(r["frame"]), f"{r['time_s']:.6f}", str(f.get("track_id", "")),
                                   "" if score is None else f"{score:.4f}"] + [f"{v:.3f}" for v in values]))
    return write_text(path, "\n".join(lines) + "\n")


def predict_video(model, source, out=None, points=None, detector=None, tracking: dict | None = None,
                  max_frames: int | None = None, num_threads: int = 1, flip: bool = False,
                  on_frame=None) -> VideoResult:
    """`edgekd predict` on a video file or camera: ``detector`` as for predict_file (options for open_detector),
    ``tracking`` keyword arguments for FaceTracker (redetect_every, max_faces, smoothing), ``flip`` mirror
    averaging (Predictor), ``on_frame`` the live preview's hook (track_video). Ten parameters: the `predict`
    options a video run uses, passed straight through, as predict_file takes its own."""
    check_points_path(points, video=True)
    if out is not None and Path(out).suffix.lower() not in VIDEO_SUFFIXES:
        raise OptionError(f"--out {out}: a video's annotated copy goes to a video file ({', '.join(VIDEO_SUFFIXES)})")
    m = load_model(model, num_threads)
    det = detector if hasattr(detector, "detect") else open_detector(**(detector or {}), num_threads=num_threads)
    try:
        tracker = FaceTracker(Predictor(m, det, flip=flip), **(tracking or {}))
        return track_video(tracker, source, out, points, max_frames, on_frame)
    finally:
        if det is not detector:
            det.close()
