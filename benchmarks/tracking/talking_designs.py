"""The tracker's crop designs on faces that change shape: the bench's talking clips beside its pan-and-zoom clips.

The pan-and-zoom clips move a rigid picture, so a track's points keep the shape they had at the track's start and the
drift check (tracker.Track.drift, MAX_DRIFT 0.06) never meets an expression. Real video does: between two annotated
300-VW frames of talking faces (../shared/data/mmpose_testdata/300vw: 001/000006 and 000009, three frames apart;
401/000731 and 000732, consecutive) Track.drift's residual reads 0.059 and 0.077 on the ground truth, 0.058 and 0.034 on
the shipped int8 model's points from ground-truth crops. The talking clips (edgekd.bench.video.render_talking_clip) give
every validation face (never the test split) the same pan and zoom with a mouth that opens and closes about 4 times a
second, a smile and a brow raise.

Each design runs both kinds of clips through a fresh FaceTracker (the bench's settings, with its own crop rule)
and reads, on the same frames, detector crops: detector runs and drift checks fired per 1,000 frames, NME of the
shown, raw and detector-crop points, the raw-minus-detector NME per clip (mean, standard error, the worst clip), and
for the designs that read the drift without acting on it, the largest drift each clip's track read (and each frame's
for the clip that read the most). A design: the points the crop moves with (all 68, the nose and eye corners, or the
nose, eyes and the jaw's top; shape: all 68 and their box's change, shape_square; or none: crops from the last
landmark box), the points the drift is read on, the drift threshold (none: no check; inf: read, never fired), the
confirming detection's reanchor_iou, and whether the crop is carried ahead by the face's motion. `--only NAME` runs
the named designs alone.

    .venv/bin/python benchmarks/tracking/talking_designs.py models/300w/kd_student_int8.tflite \\
        --root ../shared/data/300w --prepared runs/data/300w-128 --out benchmarks/tracking/talking/designs.json
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

RIGID = [27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45]  # 68-point indices: the nose and the eye corners
SUBSETS = {"all": None, "box": None, "shape": None, "rigid": RIGID,
           "steady": list(range(27, 48)) + [0, 1, 2, 14, 15, 16]}  # the nose, both eyes, the jaw's top


def shape_square(square, ref, points):
    """The anchored square (``move_square``) moved and scaled further by how this frame's landmark box differs
    from the box of the anchor's points carried by the same similarity: the part of the box's change that the
    similarity leaves, an expression's. An error the model makes on this face in every crop is in both boxes and
    cancels."""
    from edgekd.core.crop import CropSpec
    from edgekd.runtime.tracker import move_square, similarity

    moved = move_square(square, ref, points)
    c0, c1 = ref.mean(0), points.mean(0)
    fit = similarity(ref - c0, points - c1)
    if fit is None:
        return moved
    a, b = fit
    carried = c1 + (ref - c0) @ np.array([[a, b], [-b, a]])
    (bx, by, bs), (fx, fy, fs) = CropSpec.box_from_points(points), CropSpec.box_from_points(carried)
    return (moved[0] + bx - fx, moved[1] + by - fy, moved[2] * bs / fs)


def subset_methods(motion: str, drift: str):
    """Track.anchored and Track.drift reading only the points of SUBSETS[motion] and SUBSETS[drift]."""
    from edgekd.runtime.tracker import Track, move_square

    base_drift = Track.drift
    m_idx, d_idx = SUBSETS[motion], SUBSETS[drift]

    def anchored(self, points):
        if self.anchor is None:
            self.anchor = (self.box, np.asarray(points, np.float64).reshape(-1, 2))
        square, ref = self.anchor
        p = np.asarray(points, np.float64).reshape(-1, 2)
        if motion == "shape":
            return shape_square(square, ref, p)
        return move_square(square, ref, p) if m_idx is None else move_square(square, ref[m_idx], p[m_idx])

    def drift_(self, points):
        if self.anchor is None or d_idx is None:
            return base_drift(self, points)
        keep = self.anchor
        self.anchor = (keep[0], keep[1][d_idx])
        try:
            return base_drift(self, np.asarray(points, np.float64).reshape(-1, 2)[d_idx])
        finally:
            self.anchor = keep

    return anchored, drift_


def run(model_path: Path, root: Path, prepared: Path, designs: dict, limit: int | None, kinds: list) -> dict:
    from edgekd.bench.config import BenchConfig
    from edgekd.bench.latency import on_threads
    from edgekd.bench.runner import _read_samples
    from edgekd.bench.video import (CLIP, TRACKING, AnnotatedFace, detect_clip, render_clip, render_talking_clip,
                                    track_clip)
    from edgekd.core.imageio import load_image
    from edgekd.core.metrics import nme
    from edgekd.runtime.blazeface import open_detector
    from edgekd.runtime.model import LandmarkModel
    from edgekd.runtime.predictor import Predictor
    from edgekd.runtime.tracker import FaceTracker, Track

    cfg = BenchConfig(models=[str(model_path)], data=str(root), prepared=str(prepared), split="val", limit=limit,
                      progress=False)
    samples, _ = _read_samples(cfg)
    frames = CLIP["frames"]
    all_points, all_anchored = Track.drift, Track.anchored
    tally = {(kind, name): {"frames": 0, "detector_runs": 0, "drifted": 0, "shown": [], "raw": [], "detector": [],
                            "drift_values": []}
             for kind in kinds for name in designs}
    t0 = time.time()
    with LandmarkModel(model_path) as base, open_detector() as detector, on_threads(base, 1) as model:
        predictor = Predictor(model, AnnotatedFace(detector))
        for k, s in enumerate(samples):
            image = load_image(s)
            clips = {"pan_zoom": lambda: render_clip(image, s.points, frames),
                     "talking": lambda: render_talking_clip(image, s.points, frames, k)}
            for kind in kinds:
                clip, truth = clips[kind]()
                detected, _ = detect_clip(predictor, clip, truth)
                det = [nme(None if f is None else f.points, p, cfg.scheme) for f, p in zip(detected, truth)]
                for name, (motion, measure, max_drift, reanchor, ahead) in designs.items():
                    Track.anchored, measured = subset_methods(motion, measure)
                    tracker = FaceTracker(predictor, **TRACKING, max_drift=max_drift, reanchor_iou=reanchor,
                                          anchor=motion != "box", predict_motion=ahead)
                    values = []

                    def logged(track, points, measured=measured, values=values):
                        d = measured(track, points)
                        values.append(d)
                        return d
                    Track.drift = logged
                    try:
                        tracked, _ = track_clip(tracker, clip, truth)
                    finally:
                        Track.drift, Track.anchored = all_points, all_anchored
                    t = tally[(kind, name)]
                    t["frames"] += frames
                    t["detector_runs"] += tracker.stats.detector_runs
                    t["drifted"] += tracker.stats.drifted
                    t["drift_values"].append(max(values, default=0.0))
                    t.setdefault("drift_trace", []).append([round(v, 4) for v in values])
                    for key, attr in (("shown", "points"), ("raw", "raw_points")):
                        t[key].append([nme(None if f is None else getattr(f, attr), p, cfg.scheme)
                                       for f, p in zip(tracked, truth)])
                    t["detector"].append(det)
            if k % 20 == 0:
                print(f"{k + 1}/{len(samples)} faces, {time.time() - t0:.0f} s", flush=True)
    return summarize(tally, designs, [s.id for s in samples])


def summarize(tally: dict, designs: dict, ids: list) -> dict:
    """Per clip kind and design: detector runs and drift firings per 1,000 frames, NME (%) of the shown, raw and
    detector-crop points over the frames where tracking and detector crops both found the face, the raw-minus-detector
    NME per clip with its standard error, and the largest drift each clip's track read."""
    out = {}
    for (kind, name), t in tally.items():
        shown, raw, det = (np.asarray(t[key], np.float64) for key in ("shown", "raw", "detector"))
        both = np.isfinite(shown) & np.isfinite(det)
        per_clip = np.array([(100 * (r[b].mean() - d[b].mean())) if b.any() else np.nan
                             for r, d, b in zip(raw, det, both)])
        all_clips, per_clip = per_clip, per_clip[np.isfinite(per_clip)]
        motion, measure, max_drift, reanchor, ahead = designs[name]
        out.setdefault(kind, {})[name] = {
            "motion_points": motion, "drift_points": measure,
            "max_drift": "read, never fired" if max_drift == math.inf else max_drift, "reanchor_iou": reanchor,
            "predict_motion": ahead, "faces": len(ids), "frames": t["frames"],
            "detector_runs_per_1000": 1000 * t["detector_runs"] / t["frames"],
            "drift_fired_per_1000": 1000 * t["drifted"] / t["frames"],
            "nme_shown": float(100 * shown[both].mean()), "nme_raw": float(100 * raw[both].mean()),
            "nme_detector": float(100 * det[both].mean()), "frames_both": int(both.sum()),
            "lost_frames": int((~np.isfinite(shown)).sum()),
            "raw_minus_detector_per_clip": {"mean": float(per_clip.mean()),
                                            "standard_error": float(per_clip.std(ddof=1) / math.sqrt(len(per_clip)))},
            "largest_drift_per_clip": None if max_drift is None else  # no check: no drift read
            {q: float(np.percentile(t["drift_values"], p)) for q, p in (("median", 50), ("p90", 90), ("max", 100))}}
        worst = int(np.nanargmax(all_clips))
        out[kind][name]["worst_clip"] = {"id": ids[worst], "raw_minus_detector": float(all_clips[worst])}
        if max_drift == math.inf:  # the drift each clip's track read, never acted on: what a threshold would meet
            top = int(np.argmax(t["drift_values"]))
            out[kind][name]["largest_drift"] = {i: round(float(v), 4) for i, v in zip(ids, t["drift_values"])}
            out[kind][name]["drift_trace_of_the_largest"] = {"id": ids[top], "per_frame": t["drift_trace"][top]}
    return out


# name: (the points the crop moves with, the points the drift is read on, max_drift, reanchor_iou, carried ahead)
DESIGNS = {
    "drift check (the default)": ("all", "all", 0.06, 0.5, True),
    "no drift check": ("all", "all", None, 0.5, True),
    "drift check, anchor renewed at every detection": ("all", "all", 0.06, 1.0, True),
    "drift check, crop not carried ahead": ("all", "all", 0.06, 0.5, False),
    "crop moved by the nose and eye corners, no drift check": ("rigid", "all", None, 0.5, True),
    "crop moved by the nose, eyes and jaw's top, drift check": ("steady", "all", 0.06, 0.5, True),
    "crops from the last landmark box": ("box", "all", None, 0.5, True),
    "crop moved with the points and their box's change, drift check": ("shape", "all", 0.06, 0.5, True),
    "drift read on all points, never fired": ("all", "all", math.inf, 0.5, True),
    "drift read on the nose and eye corners, never fired": ("all", "rigid", math.inf, 0.5, True),
    "drift read on the nose, eyes and jaw's top, never fired": ("all", "steady", math.inf, 0.5, True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--prepared", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--kinds", default="talking,pan_zoom", help="the clips: talking, pan_zoom or both")
    ap.add_argument("--design", action="append", default=[],
                    help="another design, NAME=MOTION:DRIFT:THRESHOLD[:REANCHOR_IOU[:AHEAD]]: the points the crop "
                         "moves with (all, rigid, steady or shape; box: crops from the last landmark box) and the "
                         "drift is read on (all, rigid or steady), THRESHOLD a number, none (no check) or inf (read, "
                         "never fired); AHEAD 0: the crop not carried ahead by the face's motion")
    ap.add_argument("--only", action="append", default=[], help="run only these designs (by name; repeatable)")
    args = ap.parse_args()
    designs = dict(DESIGNS)
    for d in args.design:
        name, spec = d.split("=", 1)
        motion, measure, value, *rest = spec.split(":")
        designs[name] = (motion, measure, None if value == "none" else float(value),
                         float(rest[0]) if rest else 0.5, rest[1:] != ["0"])
    unknown = [name for name in args.only if name not in designs]
    if unknown:
        ap.error(f"--only {unknown[0]!r}: not a design; expected one of: {'; '.join(designs)}")
    if args.only:
        designs = {name: designs[name] for name in args.only}
    from edgekd.bench.video import TALK
    from edgekd.core.fileio import write_json
    from edgekd.core.timing import machine

    result = {"model": args.model.name, "split": "val", "cpu": machine()["cpu"], "talking": TALK, "subsets": SUBSETS,
              "designs": run(args.model, args.root, args.prepared, designs, args.limit, args.kinds.split(","))}
    write_json(args.out, result)
    for kind, rows in result["designs"].items():
        for name, r in rows.items():
            print(f"{kind}, {name}: detector runs {r['detector_runs_per_1000']:.1f} per 1,000 frames, NME shown "
                  f"{r['nme_shown']:.3f} raw {r['nme_raw']:.3f} detector {r['nme_detector']:.3f} %")


if __name__ == "__main__":
    main()
