"""The live preview of `edgekd predict --show`: an OpenCV window with the landmarks, the milliseconds of each stage
and the frame rate, so a user sees what the phone pipeline costs on their camera while they move.

The window is opened before any work (``Preview()``), because without a display the run would otherwise load the
model, read a camera and only then fail: on Linux no ``$DISPLAY``/``$WAYLAND_DISPLAY`` is refused at once (OpenCV's
Qt backend aborts the whole process instead of raising), and a ``cv2.namedWindow`` that raises (a headless OpenCV
build) becomes the same one-line error.
"""
from __future__ import annotations

import os
import sys
import time

import cv2
import numpy as np

from edgekd.core.errors import OptionError
from edgekd.runtime.predictor import stage_ms

TITLE = "edgekd predict (q quits)"
STAGES = ("detector", "crop", "model", "inverse", "flip", "refine")  # the order a face goes through them
FPS_EMA = 0.2  # weight of the newest frame in the shown frame rate: steady digits, yet it follows a change in ~5 frames


def check_display(option: str = "--show") -> None:
    """An OptionError, before any work, when no window can be shown: Linux without a display server."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise OptionError(f"{option}: no display to open a window on ($DISPLAY is not set); run without {option} "
                          f"(the annotated pictures and video are written all the same)")


def stage_line(faces, frame_ms: float | None = None) -> str:
    """``detector 1.31 ms | crop 0.08 | model 0.92 | inverse 0.01``: the stages of one image or frame."""
    ms = stage_ms(faces)
    parts = [f"{stage} {ms[stage]:.2f}" for stage in STAGES if stage in ms]
    if parts:
        parts[0] += " ms"
    if frame_ms is not None:
        parts.append(f"frame {frame_ms:.2f} ms")
    return " | ".join(parts) if parts else "no face"


class Preview:
    """``show(rgb, faces, frame_ms, wait_ms) -> bool``: draw the stage times and frame rate on an annotated image
    and show it; False once the user pressed q (or Esc) or closed the window."""

    def __init__(self, title: str = TITLE, option: str = "--show"):
        check_display(option)
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            reason = (str(e).strip().splitlines() or ["cv2.error"])[-1].strip()
            raise OptionError(f"{option}: OpenCV cannot open a window here ({reason}); run without {option}") from None
        self._last = None
        self.fps = None

    def show(self, rgb: np.ndarray, faces, frame_ms: float | None = None, wait_ms: int = 1) -> bool:
        now = time.perf_counter()
        if self._last is not None and now > self._last:
            rate = 1.0 / (now - self._last)
            self.fps = rate if self.fps is None else FPS_EMA * rate + (1.0 - FPS_EMA) * self.fps
        self._last = now
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        lines = [stage_line(faces, frame_ms), f"{len(faces)} face{'' if len(faces) == 1 else 's'}"
                 + (f" | {self.fps:.1f} fps" if self.fps is not None else "")]
        scale = max(0.5, max(bgr.shape[:2]) / 1000)
        for k, text in enumerate(lines):
            at = (10, int(30 * scale * (k + 1)))
            cv2.putText(bgr, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (0, 0, 0), int(4 * scale), cv2.LINE_AA)
            cv2.putText(bgr, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (255, 255, 255), max(1, int(scale)),
                        cv2.LINE_AA)
        cv2.imshow(self.title, bgr)
        key = cv2.waitKey(wait_ms) & 0xFF
        closed = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        return key not in (ord("q"), ord("Q"), 27) and not closed

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:  # already closed by the user
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
