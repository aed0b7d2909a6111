"""The two crop protocols, reported separately (the paper measures from ground-truth crops).

``gt``: the crop box comes from the ground-truth landmarks (CropSpec.box_from_points), as the paper evaluates.
``detector``: the crop box comes from the MediaPipe detector's box mapped by the CropSpec, as an app runs; on an
image with several faces the detection overlapping the annotated face's landmark box most is scored, and a face
no detection overlaps is a detector failure.
"""
from __future__ import annotations

from edgekd.core.crop import CropSpec
from edgekd.core.detector import match_box
from edgekd.core.errors import OptionError

PROTOCOLS = ("detector", "gt")


def parse_protocols(crop: str) -> tuple[str, ...]:
    if crop == "both":
        return PROTOCOLS
    if crop not in PROTOCOLS:
        raise OptionError(f"--crop {crop!r}: expected detector, gt or both")
    return (crop,)


def select_detection(detections, points):
    """The detection that belongs to the annotated face, or None (a detector failure)."""
    k = match_box([d.box for d in detections], points)
    return None if k is None else detections[k]


def crop_box(protocol: str, crop: CropSpec, points, detection=None) -> tuple[float, float, float] | None:
    """(cx, cy, side) to cut for one annotated face under ``protocol``; None when the detector missed it."""
    if protocol == "gt":
        return crop.box_from_points(points)
    if protocol == "detector":
        return None if detection is None else crop.box_from_detector(detection.box, detection.keypoints)
    raise ValueError(f"unknown protocol {protocol!r}")
