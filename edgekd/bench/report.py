"""Benchmark outputs: results.json (the numbers), report.md (tables), ced.png, worst-case sheets, a console table."""
from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import numpy as np

from edgekd.core.crop import CropSpec, transform_points
from edgekd.core.errors import DataError
from edgekd.core.fileio import mark_output_dir, write_bytes
from edgekd.core.imageio import load_image
from edgekd.core.metrics import auc, ced

DLIB_NOTE = ("dlib's released 68-point model was trained on iBUG 300-W data that very likely includes these test "
             "images (its error is the same on the 300-W training and test images), so its NME here is a reference, "
             "not a fair bar.")

MEDIAPIPE_NOTE = ("MediaPipe Face Mesh (`face_landmark_with_attention.tflite` from the mediapipe 0.10.21 wheel: "
                  "468 mesh points with lips and eyes refined; it scored better on the 300-W validation faces than "
                  "the plain `face_landmark.tflite`) runs as MediaPipe's face_landmark_front graph does, on LiteRT: "
                  "its ROI from the same BlazeFace detection (box centre, rotated by the eye keypoints, long side "
                  "x 1.5), a 192x192 crop, its face-presence gate (below 0.5 counts as a miss under detector crops); "
                  "in the `gt` protocol the ROI comes from the annotated points (rotated by the outer eye corners) "
                  "moved into the detector ROI's convention. Its three MediaPipe custom ops run in numpy between "
                  "LiteRT segments (about 0.4-0.6 ms of its model time; MediaPipe runs them in C++). Its points "
                  "become the 68 300-W points through a linear map fitted on the 300-W training faces "
                  "(`edgekd/assets/face_landmark_to_300w.npz`, `benchmarks/fit_facemesh_map.py`), so its error "
                  "includes that map's; size counts the network and the map. What MediaPipe trained its network on "
                  "is not known here.")


def _clean(o):
    """JSON-safe: NaN/inf become null, numpy scalars plain numbers."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return None if not math.isfinite(float(o)) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    return o


def _fmt(v, digits=2, suffix=""):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}{suffix}"


def _lat(e, key, t):
    d = (e.get("latency_ms") or {}).get(key)
    if isinstance(d, dict):
        return d.get(str(t))
    return d


# --- console table (as Ultralytics' benchmark prints) -------------------------------------------------------------
COLUMNS = ["Model", "Protocol", "Runtime", "Size (MB)", "NME %", "FR@0.1 %", "AUC@0.1", "Misses"]


def _rows(results) -> tuple[list[str], list[list[str]]]:
    threads = [str(t) for t in results.get("threads", [1])]
    cols = COLUMNS + [f"Model ms ({t}t)" for t in threads] + ["Detector ms"] + [f"E2E ms ({t}t)" for t in threads]
    rows = []
    for e in results["entries"]:
        misses = e.get("detector_failures")
        rows.append([e["model"], e["protocol"], e.get("runtime", ""), _fmt(e.get("size_mb"), 2),
                     _fmt(e.get("nme")), _fmt(e.get("fr")), _fmt(e.get("auc"), 4),
                     "–" if misses is None or e["protocol"] == "gt" else f"{misses}/{e.get('count')}"]
                    + [_fmt(_lat(e, "model", t)) for t in threads]
                    + [_fmt(_lat(e, "detector", None))]
                    + [_fmt(_lat(e, "end_to_end", t)) for t in threads])
    return cols, rows


def table(results) -> str:
    cols, rows = _rows(results)
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    line = lambda cells: "  ".join(c.rjust(w) if i > 2 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    m = results.get("machine", {})
    head = (f"Benchmarks complete for {results['dataset']} {results['split']} ({results['faces']} faces) on "
            f"{m.get('cpu', '?')}" if results.get("faces") else
            f"Latency benchmark on a sample face (accuracy needs --root) on {m.get('cpu', '?')}")
    out = [head, line(cols), line(["-" * w for w in widths])] + [line(r) for r in rows]
    if results.get("skipped_images"):
        out.append(f"{len(results['skipped_images'])} faces skipped: image file not found")
    return "\n".join(out + video_lines(results))


# --- report.md ----------------------------------------------------------------------------------------------------
def _md_table(cols, rows) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(results) -> str:
    """report.md: what ran where, the summary table, then per-subset accuracy, latency and its stages, peers."""
    parts = _intro(results)
    cols, rows = _rows(results)
    parts += ["## Summary", "", _md_table(cols, rows), ""]
    parts += ["NME: " + results["metrics"]["nme"] + ". FR: " + results["metrics"]["fr"] + ". AUC: "
              + results["metrics"]["auc"] + ". Misses: faces the protocol's detector did not find (counted as "
              "failures in FR and AUC). Model ms: one crop through the model (median after warm-up). "
              "E2E ms: detector on the whole image + crop + model + inverse crop for one face (median). "
              "Latency is the same for both protocols of a model.", ""]
    parts += _subset_section(results) + _latency_section(results) + _stage_section(results) + _video_section(results)
    peers = {e["model"] for e in results["entries"] if e["kind"] == "peer"}
    if peers:
        parts += ["## Peers", ""]
    if any(p.startswith("dlib") for p in peers):
        parts += [DLIB_NOTE + " dlib runs in its own pipeline: HOG detector in the `detector` "
                  "protocol; in the `gt` protocol the ground-truth landmark box moved into the HOG box convention "
                  "(fitted on the 300-W training faces). dlib runs single-threaded.", ""]
    if any(p.startswith("MediaPipe") for p in peers):
        parts += [MEDIAPIPE_NOTE, ""]
    if results.get("skipped_images"):
        parts += [f"Skipped (image file not found): {', '.join(results['skipped_images'])}", ""]
    if results.get("faces"):
        parts += ["## Plots", "", "![CED](ced.png)", ""]
    parts += [f"- worst predictions, {e['model']} [{e['protocol']}]: `{e['worst_sheet']}`"
              for e in results["entries"] if e.get("worst_sheet")]
    return "\n".join(parts) + "\n"


def _intro(results) -> list[str]:
    """Title, data, and the machine every desktop number was measured on (with its load: a shared machine's
    latencies are upper bounds)."""
    m = results["machine"]
    parts = [f"# edgekd benchmark: {results['dataset']} {results['split']}", ""]
    if results.get("faces"):
        parts.append(f"{results['faces']} faces from `{results['data']}`; protocols: {', '.join(results['protocols'])}"
                     f"; face detector: {results.get('detector') or '–'}.")
    else:
        parts.append("Latency only, on a sample face (scikit-image's astronaut): accuracy needs `--root` (a dataset "
                     "root as downloaded).")
    load = m.get("load_average_1m")
    busy = (f" Load average {load} when the run ended" + (": other work shared the CPU, so read latencies as upper "
            "bounds." if load and m.get("cores") and load > 0.75 * m["cores"] else ".")) if load is not None else ""
    parts += ["", f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['platform']}.{busy}", ""]
    if results.get("device", "desktop") != "desktop":
        parts += [f"Landmarks and latency measured on the phone (--device {results['device']}); each row's runtime "
                  "names it. Scoring ran on the machine above.", ""]
    return parts


def _subset_section(results) -> list[str]:
    names = list(dict.fromkeys(s for e in results["entries"] for s in (e.get("subsets") or {})))
    if not results.get("faces") or not names:
        return []
    cols = ["Model", "Protocol"] + [f"{n} NME / FR / AUC" for n in names] + ["AUC (paper variant)"]
    rows = []
    for e in results["entries"]:
        cells = [e["model"], e["protocol"]]
        for n in names:
            s = (e.get("subsets") or {}).get(n)
            cells.append("–" if not s else f"{_fmt(s['nme'])} / {_fmt(s['fr'])} / {_fmt(s['auc'], 4)}")
        cells.append(_fmt(e.get("auc_paper"), 4))
        rows.append(cells)
    return ["## Per subset", "", _md_table(cols, rows), "",
            "AUC (paper variant) is the KD-Loss code's formula (max 0.95), only for "
            "comparison with the paper's tables.", ""]


def _latency_rows(results):
    """(entry, its latency_ms) once per model: both protocols of a model share their latencies."""
    seen = set()
    for e in results["entries"]:
        if e["model"] not in seen:
            seen.add(e["model"])
            yield e, e.get("latency_ms") or {}


def _latency_section(results) -> list[str]:
    rows = [[e["model"], str(t), L.get("runtime", ""), _fmt(_lat(e, "model", t)), _fmt(_lat(e, "model_p90", t)),
             _fmt(L.get("detector")), _fmt(L.get("crop"), 3), _fmt(_lat(e, "end_to_end", t)),
             _fmt(_lat(e, "end_to_end_p90", t)), L.get("detector_runtime", "")]
            for e, L in _latency_rows(results) for t in L.get("threads", [])]
    if not rows:
        return []
    cols = ["Model", "Threads", "Runtime", "Model median", "Model p90", "Detector", "Crop", "E2E median", "E2E p90",
            "Detector runtime"]
    return [f"## Latency (ms) on {results['machine']['cpu']}", "", _md_table(cols, rows), ""]


STAGE_NOTE = ("Measured inside the end-to-end loop, one face per image: detector = the face detector on the whole "
              "image; crop = the CropSpec warp; model = the crop into the model's input and the invoke; post = the "
              "model's output to image points (dequantise, denormalise, inverse crop); each as the Predictor times "
              "it; other = the rest of each face's time (box mapping, bookkeeping). The stages' medians add up to "
              "about the E2E median. The model stage is often "
              "slower than the model-only median above: there the model runs in a tight loop with its weights in "
              "cache, here it takes turns with the detector, as in an app.")


def _stage_section(results) -> list[str]:
    """Where each model's end-to-end time goes, with the CPU (or phone) it was measured on."""
    rows = []
    for e, L in _latency_rows(results):
        for t, st in (L.get("end_to_end_stages") or {}).items():
            known = [st.get(k) for k in ("detector", "crop", "model", "post", "other")]
            total = sum(v for v in known if v is not None)
            rows.append([e["model"], str(t)] + [_fmt(v, 3) for v in known]
                        + [_fmt(total, 3), _fmt(_lat(e, "end_to_end", t), 3), L.get("cpu", "")])
    if not rows:
        return []
    cols = ["Model", "Threads", "Detector", "Crop", "Model", "Post", "Other", "Sum", "E2E median", "Measured on"]
    return ["## Where the end-to-end time goes (ms, medians)", "", _md_table(cols, rows), "", STAGE_NOTE, ""]


# --- video (edgekd.bench.video) -------------------------------------------------------------------------------
def _video_ms(row, threads, pipeline, key="median"):
    return ((row.get("frame_ms") or {}).get(str(threads)) or {}).get(pipeline, {}).get(key)


def video_lines(results) -> list[str]:
    """The console's summary of the video row: per-frame time and NME, tracking against detector crops."""
    video = results.get("video")
    if not video:
        return []
    t = video["threads"][0]
    out = []
    for r in video["models"]:
        acc = r["accuracy"]
        out.append(f"video, {r['model']}: {r['frames']} frames, {t} thread(s): tracking "
                   f"{_fmt(_video_ms(r, t, 'tracking'))} ms/frame vs detector + model "
                   f"{_fmt(_video_ms(r, t, 'detector'))} ms; NME tracking {_fmt(acc['tracking']['nme'])} % vs "
                   f"detector crops {_fmt(acc['detector']['nme'])} %; lost frames {r['lost_frames']}"
                   + _jitter_text(r))
        talk = r.get("talking")
        if talk:
            same = talk["same_frames"]
            out.append(f"video, {r['model']}, talking clips: tracking {_fmt(talk['tracking_ms'].get('median'))} "
                       f"ms/frame; NME tracking {_fmt(same['tracking_nme'])} % (raw {_fmt(same['tracking_raw_nme'])}) "
                       f"vs detector crops {_fmt(same['detector_nme'])} %; detector runs "
                       f"{talk['tracker'].get('detector_runs', '–')} in {talk['frames']} frames")
    return out


def _jitter_text(row) -> str:
    """Smoothing's two costs on the console: lag on the moving clips, jitter on the still ones (rows written before
    they were measured have neither)."""
    same, jitter = row.get("same_frames") or {}, row.get("jitter") or {}
    if same.get("lag_nme") is None or jitter.get("smoothed") is None:
        return ""
    return (f"; smoothing lag {same['lag_nme']:+.3f} % NME, still-clip jitter {_fmt(jitter['raw'], 3)} % raw, "
            f"{_fmt(jitter['smoothed'], 3)} % smoothed")


VIDEO_NOTE = ("Tracking: FaceTracker as `edgekd predict` runs it on video (each crop the detector's square that "
              "started the track, moved with the previous frame's landmarks and carried one frame ahead by their "
              "motion, the detector every {redetect_every} frames, when the track fails its plausibility test "
              "or when its points leave the shape they had at the track's start (the drift check), smoothing: "
              "{smoothing}; one face); its NME is of the smoothed "
              "points a user sees, raw is before smoothing. Lag: smoothed minus raw tracking NME on the same frames. "
              "Jitter: each face also held still for a clip with Gaussian camera noise (sigma {still_noise} grey "
              "levels, new every frame), tracked the same way; the mean frame-to-frame motion of the points, in % "
              "of the inter-ocular distance. "
              "Detector crops: the face detector and the model on every frame; GT crops: the ground-truth box, "
              "for reference. Both pipelines follow the annotated face (the detection the detector protocol scores). "
              "Lost frames: frames where no tracked face overlaps the annotated face (NME counted as a failure). "
              "Same frames: mean NME over the frames where both found the face. Per-frame times cover every "
              "frame, lost ones included: for tracking, tracker.update; for detector crops, detector + crop + "
              "model + inverse crop.")


def _video_section(results) -> list[str]:
    """Tracking against detector and ground-truth crops on the same frames: accuracy, then time per frame."""
    video = results.get("video")
    if not video:
        return []
    c = video["clip"]
    intro = (f"{c['sequences']} clips of {c['frames_per_sequence']} frames ({c['frames']} frames), one per test face, "
             f"rendered in memory from the test image with cv2.warpAffine at {c['fps']:g} fps: "
             f"{100 * c['zoom_per_frame']:g} % zoom per frame (in on small faces, out of faces larger than "
             f"{c['zoom_out_above_face_fraction']:g} of the shorter image side) and a pan of "
             f"{100 * c['pan_per_frame_face_sides']:g} % of the face's size per frame; the ground truth moved by "
             "the same transform.")
    cols = ["Model", "Frames", "Tracking NME %", "Tracking raw NME %", "Detector crops NME %", "GT crops NME %",
            "Same frames: tracking / detector", "Lag (smoothed − raw NME)", "Jitter raw / smoothed %",
            "Tracking FR %", "Detector FR %", "Lost frames", "Detector misses", "Detector runs (tracking)",
            "Detector runs (still clips)"]
    rows = []
    for r in video["models"]:
        a, same, jitter = r["accuracy"], r["same_frames"], r.get("jitter") or {}
        rows.append([r["model"], str(r["frames"])] + [_fmt(a[p]["nme"]) for p in ("tracking", "tracking_raw",
                                                                                 "detector", "gt")]
                    + [f"{_fmt(same['tracking_nme'])} / {_fmt(same['detector_nme'])} ({same['frames']})",
                       "–" if same.get("lag_nme") is None else f"{same['lag_nme']:+.3f}",
                       f"{_fmt(jitter.get('raw'), 3)} / {_fmt(jitter.get('smoothed'), 3)}",
                       _fmt(a["tracking"]["fr"]), _fmt(a["detector"]["fr"]), str(r["lost_frames"]),
                       str(r["detector_misses"]), str(r["tracker"].get("detector_runs", "–")),
                       str((r.get("still_tracker") or {}).get("detector_runs", "–"))])
    times = [[r["model"], str(t)] + [_fmt(_video_ms(r, t, p, k), 3) for p in ("tracking", "detector")
                                     for k in ("median", "p90")]
             + [_fmt(_ratio(_video_ms(r, t, "tracking"), _video_ms(r, t, "detector"))), video["cpu"]]
             for r in video["models"] for t in video["threads"]]
    tcols = ["Model", "Threads", "Tracking median", "Tracking p90", "Detector + model median",
             "Detector + model p90", "Tracking / detector", "Measured on"]
    return (["## Video: tracking vs detector crops on the same frames", "", intro, "", _md_table(cols, rows), "",
             f"### Time per frame (ms) on {video['cpu']}", "", _md_table(tcols, times), "",
             VIDEO_NOTE.format(**{"still_noise": "–", **c}), ""] + _talking_section(video))


def _talking_section(video) -> list[str]:
    """The talking clips (rows written before they were measured, or of schemes without them, have none)."""
    rows = []
    for r in video["models"]:
        talk = r.get("talking")
        if not talk:
            continue
        same, counts = talk["same_frames"], talk["tracker"]
        rows.append([r["model"], str(talk["frames"]), _fmt(same["tracking_nme"]), _fmt(same["tracking_raw_nme"]),
                     _fmt(same["detector_nme"]), "–" if same.get("lag_nme") is None else f"{same['lag_nme']:+.3f}",
                     str(talk["accuracy"]["tracking"]["detector_failures"]), str(counts.get("detector_runs", "–")),
                     str(counts.get("drifted", "–")), _fmt(talk["tracking_ms"].get("median"), 3),
                     _fmt(talk["tracking_ms"].get("p90"), 3)])
    if not rows:
        return []
    t = video["clip"].get("talking") or {}
    cols = ["Model", "Frames", "Tracking NME %", "Tracking raw NME %", "Detector crops NME %",
            "Lag (smoothed − raw NME)", "Lost frames", "Detector runs (tracking)", "Drift checks fired",
            "Tracking ms median", "Tracking ms p90"]
    return ["### Talking clips: the same clips with a face that changes shape", "",
            f"Each clip again, the face's expression changing every frame: the mouth opening and closing about "
            f"{_fmt(t.get('hz'), 0)} times a second (the jaw dropping up to {_fmt(t.get('open'), 2)} "
            f"inter-ocular distances at the chin, the lower lip with it), the mouth corners widening and rising, the "
            "brows rising; the picture morphed to follow the points (piecewise affine, no triangle folded over), so "
            "an open mouth is stretched lips. NME over the frames where tracking and detector crops both found the "
            "face; tracking timed on the first thread count.", "", _md_table(cols, rows), ""]


def _ratio(a, b):
    return None if a is None or not b else a / b


# --- plots --------------------------------------------------------------------------------------------------------
def ced_plot(entries, path: Path, threshold: float = 0.1) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [e for e in entries if e.extra.get("errors")]
    fig, ax = plt.subplots(figsize=(7, 5 + 0.18 * len(curves)), dpi=110)
    for e in curves:
        errors = e.extra["errors"]
        t, frac = ced(errors, threshold)
        finite = np.isfinite(errors)
        label = (f"{e.name} [{e.protocol}]  NME {100 * np.mean(np.asarray(errors)[finite]):.2f}%  "
                 f"AUC {auc(errors, threshold):.3f}")
        ax.plot(100 * t, frac, ls="-" if e.protocol == "detector" else "--", lw=1.6, label=label)
    ax.set_xlim(0, 100 * threshold)
    ax.set_ylim(0, 1)
    ax.set_xlabel("NME (% of outer-eye-corner distance)")
    ax.set_ylabel("fraction of faces")
    ax.set_title("Cumulative error distribution (solid: detector crops, dashed: ground-truth crops)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def worst_sheet(entry, samples, path: Path, count: int = 12, tile: int = 192) -> bool:
    """Grid of the worst faces: ground truth green, prediction red, NME (or MISSED) written on each."""
    import cv2

    errors = entry.extra.get("errors")
    if not errors:
        return False
    order = np.argsort(-np.nan_to_num(np.asarray(errors), posinf=1e9))[:count]
    tiles = []
    view = CropSpec(input_size=tile, margin=0.35)
    for i in order:
        s = samples[i]
        try:
            image = load_image(s)
        except DataError:
            continue
        box = view.box_from_points(s.points)
        crop, m = view.crop(image, box)
        crop = np.ascontiguousarray(crop[:, :, ::-1])
        for pts, color in ((s.points, (0, 200, 0)), (entry.predictions.get(s.id), (0, 0, 255))):
            if pts is None:
                continue
            for x, y in transform_points(pts, m):
                if 0 <= x < tile and 0 <= y < tile:
                    cv2.circle(crop, (int(round(x)), int(round(y))), 2, color, -1, cv2.LINE_AA)
        e = errors[i]
        text = "MISSED" if not np.isfinite(e) else f"{100 * e:.1f}%"
        for col, th in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(crop, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, col, th, cv2.LINE_AA)
            cv2.putText(crop, s.id[-26:], (4, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.35, col, th, cv2.LINE_AA)
        tiles.append(crop)
    if not tiles:
        return False
    cols = min(6, len(tiles))
    rows = -(-len(tiles) // cols)
    sheet = np.zeros((rows * tile, cols * tile, 3), np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        sheet[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = t
    ok, buf = cv2.imencode(".png", sheet)
    write_bytes(path, buf.tobytes())
    return True


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


# what `write` puts in a run folder: a reused folder (--exist-ok) first loses the earlier run's, so no stale plot
# or worst-case sheet sits beside the new report
OUTPUTS = ("ced.png", "worst_*.png", "per_face_nme.json", "results.json", "report.md")


def write(results, entries, samples, out: Path, scheme, worst: int = 12) -> None:
    out.mkdir(parents=True, exist_ok=True)
    mark_output_dir(out, "bench")  # bench's own folder from now on (fileio.check_output_dir)
    for pattern in OUTPUTS:
        for old in out.glob(pattern):
            old.unlink()
    if results.get("faces"):
        ced_plot(entries, out / "ced.png")
        for e, row in zip(entries, results["entries"]):
            name = f"worst_{slug(e.name)}_{e.protocol}.png"
            if worst and worst_sheet(e, samples, out / name, worst):
                row["worst_sheet"] = name
        per_face = {f"{e.name} [{e.protocol}]": {s.id: e.extra["errors"][i] for i, s in enumerate(samples)}
                    for e in entries if e.extra.get("errors")}
        write_bytes(out / "per_face_nme.json", json.dumps(_clean(per_face), indent=0).encode())
    write_bytes(out / "results.json", json.dumps(_clean(results), indent=1).encode())
    write_bytes(out / "report.md", markdown(results).encode())
