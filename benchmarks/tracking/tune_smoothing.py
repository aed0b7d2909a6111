"""Choose the tracker's smoothing on validation clips: record once, search offline.

Smoothing never changes the crops (the next crop comes from the unsmoothed points), so the raw tracked points of
every clip frame are recorded once, with the ground truth and the detector-crop NME of the same frames, and every
smoothing design is then scored offline in numpy on exactly what the tracker would have shown.

Clips: the validation faces of a prepared folder (never the test split), each as the bench's pan-and-zoom clip
(edgekd.bench.video.render_clip), as its talking clip (render_talking_clip: the same motion, the face's expression
changing every frame) and as its still clip with camera noise (render_still), tracked as the bench tracks them
(edgekd.bench.video.TRACKING, one thread). Designs: One Euro over all points, and the pose and the shape apart
(tracker.PoseShapeFilter) over a grid of both filters' constants. Criterion: the lowest still-clip jitter (mean
frame-to-frame motion of the shown points, % of the inter-ocular distance) among the designs whose smoothed NME on
the pan-and-zoom clips is at most the detector crops' NME on the same frames (where no design reaches that, at most
the raw tracked points' NME) and, on the talking clips, at most the raw tracked points' NME: the points shown never
lag an expression. (Recordings made before the talking clips have none; their search keeps the shape filter at
0.11.0's constants and drops the talking condition.)

    .venv/bin/python benchmarks/tracking/tune_smoothing.py models/300w/kd_student_int8.tflite \\
        --root /work/shared/data/300w --prepared /work/runs/data/300w-128 --record /tmp/tracking/record.npz

`--reanchor-iou 1.0` records the tracker with its anchor renewed at every confirming detection, `--max-drift X` or
`--no-drift-check` with another shape-drift check (other crop designs; give each its own --record and --out). The
reference figures include raw tracked minus detector-crop NME per clip with its standard error: what the clips can
resolve; `--versus OTHER_RECORD` adds this recording's raw NME minus another's, clip by clip (two crop designs on
the same clips).
"""
from __future__ import annotations

import argparse
import itertools
import math
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FPS = 30.0


# --- recording ------------------------------------------------------------------------------------------------------
def record(model_path: Path, root: Path, prepared: Path, out: Path, limit: int | None = None,
           settings: dict | None = None) -> None:
    """Per validation face: the pan-and-zoom clip's raw and (current) smoothed tracked points, landmark-box side,
    truth and detector-crop NME per frame, the same for its talking clip (keys talk_*); the still clip's raw points,
    side and truth. NaN where the track lost the face.
    ``settings``: FaceTracker's reanchor_iou and max_drift (tracker_settings: its defaults), to record another crop
    design."""
    from edgekd.bench.config import BenchConfig
    from edgekd.bench.latency import on_threads
    from edgekd.bench.runner import _read_samples
    from edgekd.bench.video import (CLIP, TRACKING, AnnotatedFace, detect_clip, render_clip, render_still,
                                    render_talking_clip, track_clip)
    from edgekd.core.crop import CropSpec
    from edgekd.core.imageio import load_image
    from edgekd.core.metrics import nme
    from edgekd.runtime.blazeface import open_detector
    from edgekd.runtime.model import LandmarkModel
    from edgekd.runtime.predictor import Predictor
    from edgekd.runtime.tracker import POSE_EURO, SHAPE_EURO, FaceTracker

    cfg = BenchConfig(models=[str(model_path)], data=str(root), prepared=str(prepared), split="val", limit=limit,
                      progress=False)
    samples, _ = _read_samples(cfg)
    frames = CLIP["frames"]
    rec = {k: [] for k in ("raw", "smoothed", "side", "truth", "det_nme", "still_raw", "still_side", "still_truth",
                           "raw_landmark_box", "talk_raw", "talk_smoothed", "talk_side", "talk_truth",
                           "talk_det_nme")}
    nan = np.full((cfg.scheme.num_points, 2), np.nan)
    tracking = {**TRACKING, **(settings or tracker_settings())}

    def points(faces, attr):
        return np.stack([nan if f is None else np.asarray(getattr(f, attr), np.float64) for f in faces])

    def sides(faces):
        return np.array([np.nan if f is None else CropSpec.box_from_points(f.raw_points)[2] for f in faces])

    def moving(clips, frames_, truth):
        """One moving clip tracked and cut from detector crops, recorded under the keys ``clips`` + name."""
        tracked, _ = track_clip(FaceTracker(predictor, **tracking), frames_, truth)
        detected, _ = detect_clip(predictor, frames_, truth)
        rec[clips + "raw"].append(points(tracked, "raw_points"))
        rec[clips + "smoothed"].append(points(tracked, "points"))
        rec[clips + "side"].append(sides(tracked))
        rec[clips + "truth"].append(np.stack(truth))
        rec[clips + "det_nme"].append([nme(None if f is None else f.points, p, cfg.scheme)
                                       for f, p in zip(detected, truth)])

    t0 = time.time()
    with LandmarkModel(model_path) as base, open_detector() as detector, on_threads(base, 1) as model:
        predictor = Predictor(model, AnnotatedFace(detector))
        for k, s in enumerate(samples):
            image = load_image(s)
            clip, truth = render_clip(image, s.points, frames)
            moving("", clip, truth)
            before, _ = track_clip(FaceTracker(predictor, **TRACKING, anchor=False), clip, truth)  # 0.14.0's crops
            rec["raw_landmark_box"].append(points(before, "raw_points"))
            moving("talk_", *render_talking_clip(image, s.points, frames, k))
            still = render_still(image, frames, k)
            tracked, _ = track_clip(FaceTracker(predictor, **tracking), still, [s.points] * frames)
            rec["still_raw"].append(points(tracked, "raw_points"))
            rec["still_side"].append(sides(tracked))
            rec["still_truth"].append(np.asarray(s.points, np.float64))
            if k % 20 == 0:
                print(f"{k + 1}/{len(samples)} faces, {time.time() - t0:.0f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, ids=np.array([s.id for s in samples]), nme_pair=np.array(cfg.scheme.nme_pair),
             reanchor_iou=tracking["reanchor_iou"], max_drift=np.nan if tracking["max_drift"] is None
             else tracking["max_drift"], pose_euro=np.array(list(POSE_EURO.values()), np.float64),
             shape_euro=np.array(list(SHAPE_EURO.values()), np.float64),
             **{k: np.asarray(v, np.float64) for k, v in rec.items()})


def tracker_settings(reanchor_iou: float | None = None, max_drift: float | None | str = "default") -> dict:
    """The crop design a recording is made with: FaceTracker's reanchor_iou and max_drift (None: no drift check),
    its own defaults where not given."""
    import inspect

    from edgekd.runtime.tracker import FaceTracker

    defaults = inspect.signature(FaceTracker).parameters
    return {"reanchor_iou": float(defaults["reanchor_iou"].default if reanchor_iou is None else reanchor_iou),
            "max_drift": defaults["max_drift"].default if max_drift == "default" else max_drift}


def recorded_settings(rec: dict) -> dict:
    """What a recording was made with (a recording from before the drift check has none: max_drift None)."""
    drift = float(rec.get("max_drift", np.nan))
    return {"reanchor_iou": float(rec["reanchor_iou"]), "max_drift": None if math.isnan(drift) else drift}


def described(settings: dict) -> str:
    """A crop design's settings in words, for error lines."""
    drift = settings["max_drift"]
    return f"reanchor_iou {settings['reanchor_iou']:g}, " + ("no drift check" if drift is None
                                                            else f"max_drift {drift:g}")


def frame_nme(rec, points: np.ndarray, clips: str = "") -> np.ndarray:
    """NME (%) of each moving-clip frame's ``points`` (C, F, N, 2) against the recorded truth; NaN where lost.
    ``clips``: "" the pan-and-zoom clips, "talk_" the talking ones."""
    a, b = rec["nme_pair"]
    truth = rec[clips + "truth"]
    iod = np.linalg.norm(truth[..., a, :] - truth[..., b, :], axis=-1)
    return 100 * np.linalg.norm(points - truth, axis=-1).mean(-1) / iod


def found_both(rec, clips: str = "") -> np.ndarray:
    """The moving-clip frames where tracking and detector crops both found the face: every NME is taken over them."""
    return np.isfinite(rec[clips + "det_nme"]) & np.isfinite(rec[clips + "raw"][..., 0, 0])


def raw_nme_per_clip(rec, clips: str = "") -> np.ndarray:
    """Raw tracked NME per clip (%), over the frames where tracking and detector crops both found the face."""
    return np.nanmean(np.where(found_both(rec, clips), frame_nme(rec, rec[clips + "raw"], clips), np.nan), axis=1)


def paired(diff: np.ndarray) -> dict:
    """Mean and standard error of per-clip differences (a clip's 20 frames are one face: clips are the samples)."""
    diff = diff[np.isfinite(diff)]
    return {"mean": float(diff.mean()), "standard_error": float(diff.std(ddof=1) / math.sqrt(len(diff))),
            "clips": int(len(diff))}


# --- the filters, offline: arrays of clips (C, F, N, 2), one filter per clip, frames 1 / FPS apart ------------------
def _alpha(cutoff, dt: float = 1.0 / FPS):
    return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * cutoff) / dt)


class OneEuro:
    """tracker.OneEuroFilter over a batch of clips at once (values (C, D), size (C,)); min_cutoff inf: no smoothing."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.last = self.speed = None

    def __call__(self, x: np.ndarray, size) -> np.ndarray:
        if math.isinf(self.min_cutoff):
            return x
        if self.last is None:
            self.last, self.speed = x.copy(), np.zeros_like(x)
            return x
        dt = 1.0 / FPS
        a_d = _alpha(self.d_cutoff)
        self.speed = a_d * (x - self.last) / dt + (1.0 - a_d) * self.speed
        a = _alpha(self.min_cutoff + self.beta * np.abs(self.speed) / np.asarray(size)[:, None], dt)
        self.last = a * x + (1.0 - a) * self.last
        return self.last


def one_euro(points: np.ndarray, sides: np.ndarray, min_cutoff, beta, d_cutoff) -> np.ndarray:
    """The plain design: every coordinate through one One Euro filter, speeds per landmark-box side."""
    c, f = points.shape[:2]
    flt, out = OneEuro(min_cutoff, beta, d_cutoff), np.empty_like(points)
    for k in range(f):
        out[:, k] = flt(points[:, k].reshape(c, -1), sides[:, k]).reshape(points[:, k].shape)
    return out


def pose_shape(points: np.ndarray, sides: np.ndarray, pose: tuple, shape: tuple) -> np.ndarray:
    """The decomposed design (tracker.PoseShapeFilter): each frame's points = centre + similarity (a, b) applied to
    a shape in the face's own frame, fitted to the previous smoothed shape (on the first frame the shape is the
    points less their centre over the box side, a = side, b = 0). The pose (cx, cy, a, b: pixels, speeds per box side)
    and the shape (box sides) go through their own One Euro filters."""
    c, f, n = points.shape[:3]
    fp, fs, out = OneEuro(*pose), OneEuro(*shape), np.empty_like(points)
    ref = None
    for k in range(f):
        p = points[:, k]
        centre = p.mean(1)
        q = p - centre[:, None]
        if ref is None:
            a, b = sides[:, k].copy(), np.zeros(c)
            ref = q / a[:, None, None]
        else:
            norm = (ref ** 2).sum((1, 2))
            a = (ref * q).sum((1, 2)) / norm
            b = (ref[..., 0] * q[..., 1] - ref[..., 1] * q[..., 0]).sum(1) / norm
        det = a ** 2 + b ** 2
        # the shape: q through the inverse similarity [[a, b], [-b, a]] / (a^2 + b^2)
        s = np.stack([a[:, None] * q[..., 0] + b[:, None] * q[..., 1],
                      -b[:, None] * q[..., 0] + a[:, None] * q[..., 1]], -1) / det[:, None, None]
        cx, cy, a, b = fp(np.stack([centre[:, 0], centre[:, 1], a, b], 1), sides[:, k]).T
        ref = fs(s.reshape(c, -1), np.ones(c)).reshape(c, n, 2)
        out[:, k] = np.stack([cx[:, None] + a[:, None] * ref[..., 0] - b[:, None] * ref[..., 1],
                              cy[:, None] + b[:, None] * ref[..., 0] + a[:, None] * ref[..., 1]], -1)
    return out


# --- the search -----------------------------------------------------------------------------------------------------
OLD = (0.5, 30.0, 2.0)  # the One Euro constants of 0.11.0, over all points; the shape filter's until talking clips
PLAIN_GRID = {"min_cutoff": (0.25, 0.5, 1.0, 2.0, 4.0), "beta": (10.0, 30.0, 100.0, 300.0, 1000.0),
              "d_cutoff": (1.0, 2.0, 4.0)}
POSE_GRID = {"min_cutoff": (0.25, 0.5, 1.0, 2.0), "beta": (100.0, 200.0, 300.0, 500.0, 700.0, 1000.0, 2000.0, 3000.0),
             "d_cutoff": (1.0, 2.0, 4.0)}
# the shape filter's constants, searched with every pose filter where talking clips were recorded
SHAPE_GRID = {"min_cutoff": (0.25, 0.5, 1.0, 2.0), "beta": (30.0, 100.0, 300.0, 1000.0),
              "d_cutoff": (2.0, 4.0, 8.0, 16.0)}


def evaluate(rec) -> tuple[dict, callable]:
    """The recorded clips' reference figures and a scorer: design -> (smoothed NME %, still jitter %, smoothed NME %
    on the talking clips or None), where NME is the mean over the clips' frames where tracking and detector
    crops both found the face."""
    a, b = rec["nme_pair"]
    still_truth = rec["still_truth"]
    still_iod = np.linalg.norm(still_truth[:, a] - still_truth[:, b], axis=-1)
    talking = "talk_raw" in rec

    def nme(p, clips=""):
        return float(frame_nme(rec, p, clips)[found_both(rec, clips)].mean())

    def jitter(p):
        step = np.linalg.norm(np.diff(p, axis=1), axis=-1).mean(-1) / still_iod[:, None]
        return float(100 * np.nanmean(step))

    def score(design):
        talk = nme(design(rec["talk_raw"], rec["talk_side"]), "talk_") if talking else None
        return nme(design(rec["raw"], rec["side"])), jitter(design(rec["still_raw"], rec["still_side"])), talk

    def moving(clips=""):
        """One kind of moving clip's figures: frames, detector-crop, raw and recorded smoothed NME, and raw tracked
        minus detector crops per clip with its standard error (what the clips can resolve)."""
        both = found_both(rec, clips)
        detector = np.nanmean(np.where(both, 100 * rec[clips + "det_nme"], np.nan), axis=1)
        return {"frames": int(both.sum()), "detector_nme": float(100 * rec[clips + "det_nme"][both].mean()),
                "raw_nme": nme(rec[clips + "raw"], clips), "recorded_smoothed_nme": nme(rec[clips + "smoothed"], clips),
                "raw_minus_detector_per_clip": paired(raw_nme_per_clip(rec, clips) - detector)}

    both = found_both(rec)
    pairs = np.isfinite(np.diff(rec["still_raw"][..., 0, 0], axis=1))
    ref = {**moving(), "still_frame_pairs": int(pairs.sum()), "raw_jitter": jitter(rec["still_raw"])}
    if talking:
        ref["talking"] = moving("talk_")
    if "raw_landmark_box" in rec:  # the crops cut from the last landmark box (anchor off), on the same frames
        lb = np.isfinite(rec["raw_landmark_box"][..., 0, 0])
        ref["landmark_box_frames_lost"] = int((both & ~lb).sum())
        ref["landmark_box_raw_nme"] = float(frame_nme(rec, rec["raw_landmark_box"])[both & lb].mean())
    return ref, score


def search(rec) -> dict:
    """Every design of the grids scored; the rule picks the lowest still-clip jitter among the designs whose smoothed
    NME is at most the detector crops' on the pan-and-zoom clips (fallback: at most the raw points') and, where talking
    clips were recorded, at most the raw points' there (smoothing must not lag an expression)."""
    ref, score = evaluate(rec)
    rows = []

    def add(row, design):
        row["nme"], row["jitter"], talk = score(design)
        if talk is not None:
            row["talking_nme"] = talk
        rows.append(row)

    for mc, beta, dc in itertools.product(*PLAIN_GRID.values()):
        add({"design": "one_euro", "constants": [mc, beta, dc]}, lambda p, s: one_euro(p, s, mc, beta, dc))
    shapes = [OLD] + [c for c in itertools.product(*SHAPE_GRID.values()) if c != OLD] if "talk_raw" in rec else [OLD]
    for shape in shapes:
        for mc, beta, dc in itertools.product(*POSE_GRID.values()):
            add({"design": "pose_shape", "pose": [mc, beta, dc], "shape": list(shape)},
                lambda p, s: pose_shape(p, s, (mc, beta, dc), shape))
    old = next(r for r in rows if r["design"] == "one_euro" and r["constants"] == list(OLD))
    for r in rows:
        r["lag"] = r["nme"] - ref["raw_nme"]
        if "talking_nme" in r:
            r["talking_lag"] = r["talking_nme"] - ref["talking"]["raw_nme"]
    no_talking_lag = [r for r in rows if r.get("talking_lag", 0.0) <= 0.0]
    feasible = [r for r in no_talking_lag if r["nme"] <= ref["detector_nme"]]
    rule = "smoothed NME <= detector NME"
    if not feasible:  # smoothing cannot undo the tracked crops' own error: at least smoothing must cost nothing
        feasible, rule = ([r for r in no_talking_lag if r["nme"] <= ref["raw_nme"]],
                          "smoothed NME <= raw tracked NME (fallback)")
    if "talking" in ref:
        rule += "; on the talking clips smoothed NME <= raw tracked NME"
    if not feasible:
        raise SystemExit(f"error: no design searched meets the rule ({rule}); widen the grids")
    chosen = min(feasible, key=lambda r: r["jitter"])
    return {"reference": ref, "old": old, "rule": rule, "chosen": chosen, "feasible": len(feasible),
            "searched": len(rows), "grid": kept_rows(rows, ref)}


def kept_rows(rows: list, ref: dict) -> list:
    """The rows smoothing.json keeps of a search (thousands once the shape filter is searched too): every design over
    all points, every pose filter with 0.11.0's constants as the shape filter, and the frontier of the rest: the
    designs at most the detector crops' NME on the pan-and-zoom clips that no other such design beats on both jitter
    and talking lag."""
    plain = [r for r in rows if r["design"] == "one_euro" or r.get("shape") == list(OLD)]
    level = [r for r in rows if r not in plain and r["nme"] <= ref["detector_nme"] and "talking_lag" in r]
    frontier = [r for r in level if not any(o["jitter"] <= r["jitter"] and o["talking_lag"] <= r["talking_lag"]
                                            and (o["jitter"], o["talking_lag"]) != (r["jitter"], r["talking_lag"])
                                            for o in level)]
    return plain + sorted(frontier, key=lambda r: r["jitter"])


def main(argv=None) -> None:
    from edgekd.core.fileio import write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--root", type=Path, required=True, help="the 300-W dataset as downloaded (read only)")
    ap.add_argument("--prepared", type=Path, required=True, help="the prepared folder whose val/faces.json to use")
    ap.add_argument("--record", type=Path, default=Path("/tmp/tracking/record.npz"),
                    help="the recording (made when missing; never commit it)")
    ap.add_argument("--out", type=Path, default=HERE / "smoothing.json")
    ap.add_argument("--reanchor-iou", type=float, help="record the tracker with this reanchor_iou (default: "
                    "FaceTracker's); needs its own --out")
    drift = ap.add_mutually_exclusive_group()
    drift.add_argument("--max-drift", type=float, help="record the tracker with this max_drift (default: "
                       "FaceTracker's); needs its own --out")
    drift.add_argument("--no-drift-check", action="store_true", help="record the tracker without its shape-drift "
                       "check (max_drift None); needs its own --out")
    ap.add_argument("--versus", type=Path, help="another recording of the same clips: the raw NME per clip of this "
                    "one minus that one's, with its standard error (two crop designs compared clip by clip)")
    args = ap.parse_args(argv)
    other_design = args.reanchor_iou is not None or args.max_drift is not None or args.no_drift_check
    if other_design and args.out == HERE / "smoothing.json":
        raise SystemExit("error: --reanchor-iou/--max-drift/--no-drift-check: give --out too (smoothing.json is the "
                         "tracker's own search)")
    settings = tracker_settings(args.reanchor_iou, None if args.no_drift_check else
                                "default" if args.max_drift is None else args.max_drift)
    if not args.record.is_file():
        record(args.model, args.root, args.prepared, args.record, settings=settings)
    rec = dict(np.load(args.record))
    if "reanchor_iou" not in rec:
        raise SystemExit(f"error: {args.record}: made by an older tune_smoothing.py (no reanchor_iou); delete it to "
                         "record again")
    recorded = recorded_settings(rec)
    for key in ("reanchor_iou", "max_drift"):
        rec.pop(key, None)
    pose = rec.pop("pose_euro").tolist()
    shape = rec.pop("shape_euro").tolist() if "shape_euro" in rec else None
    if recorded != settings:
        raise SystemExit(f"error: {args.record}: recorded with {described(recorded)}, not {described(settings)}; give "
                         "another --record, or the options it was recorded with (--reanchor-iou, --max-drift, "
                         "--no-drift-check)")
    result = search(rec)
    if args.versus is not None:
        other = dict(np.load(args.versus))
        if not np.array_equal(other["ids"], rec["ids"]):
            raise SystemExit(f"error: --versus {args.versus}: recorded on other clips")
        result["versus"] = {"record": str(args.versus), **recorded_settings(other),
                            "raw_minus_versus_per_clip": paired(raw_nme_per_clip(rec) - raw_nme_per_clip(other))}
    talking = ("as its talking clip (the face's expression changing every frame), "
               if "talking" in result["reference"] else "")
    result = {"model": str(args.model), **settings, "recorded_pose_filter": pose, "recorded_shape_filter": shape,
              "clips": f"{len(rec['ids'])} validation faces of {args.prepared}, each as the bench's pan-and-zoom "
                       f"clip, {talking}and as a still clip with camera noise",
              "units": "NME: % of the inter-ocular distance, mean over moving-clip frames; jitter: mean "
                       "frame-to-frame motion of the points on the still clips, % of the inter-ocular distance; "
                       "lag: smoothed minus raw tracked NME; constants: [min_cutoff Hz, beta, d_cutoff Hz]",
              **result}
    write_json(args.out, result)
    ref, c, old = result["reference"], result["chosen"], result["old"]
    print(f"detector {ref['detector_nme']:.3f} %, raw tracked {ref['raw_nme']:.3f} % (jitter "
          f"{ref['raw_jitter']:.3f} %); old filter {old['nme']:.3f} % (jitter {old['jitter']:.3f} %); "
          f"chosen by {result['rule']}: {c}")


if __name__ == "__main__":
    main()
