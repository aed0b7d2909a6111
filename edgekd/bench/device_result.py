"""What comes back from the phone, turned into what the bench scores: result.json -> ``DeviceRun``, and TFLite
``benchmark_model``'s printout -> latencies.

The phone returns points in the original image, so the desktop metric code scores them unchanged; its timings are
reported in the bench's ``latency_ms`` layout so phone and desktop rows read alike.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.bench.device_schema import FORMAT, schema_errors
from edgekd.bench.latency import stage_breakdown
from edgekd.core.errors import DataError, EdgekdError
from edgekd.core.timing import stats

STAGES = ("decode", "detector", "crop", "inference", "landmarks", "total")  # the app's timings_ms keys
DETAIL_KEYS = ("file", "width", "height", "faces", "score", "detector_box", "box", "error")


@dataclass
class DeviceRun:
    """What the phone measured, keyed by sample id, ready for the desktop metric code.

    predictions: (N, 2) float32 0-based image points, or None where no face was found or the image failed.
    timings: stage ("detector", "crop", "inference", "landmarks", "total", "decode") -> milliseconds, one value per
        image where that stage ran, in sample order (``landmarks`` = crop + inference + output decoding; ``total`` =
        detector + landmarks, end to end from the decoded image); ``end_to_end`` is ``total`` of the images where
        landmarks were predicted (the desktop's end-to-end latency leaves detector misses out too).
    device: the app's Build fields (model, android_release, soc_model, abis, ...) plus the adb serial.
    runtime: the app's runtime fields (threads, delegate actually used, input type, init times, ...), the app
        version, and ``benchmark_model`` latencies (microseconds) when that binary was given.
    details: per sample id, the file name on the phone, image size, face count, detector score and box, the crop
        box, and any per-image error.
    stages: per image with landmarks, its end-to-end time by pipeline stage (edgekd.bench.latency.PIPELINE_STAGES:
        model = inference, post = output decoding = landmarks - crop - inference) and its total.
    """

    predictions: dict[str, np.ndarray | None]
    timings: dict[str, list[float]]
    device: dict
    runtime: dict
    details: dict[str, dict] = field(default_factory=dict)
    stages: list[dict] = field(default_factory=list)

    def device_name(self) -> str:
        d = self.device
        soc = d.get("soc_model") or d.get("board_platform") or d.get("hardware") or "unknown SoC"
        abi = (d.get("abis") or ["?"])[0]
        name = f"{d.get('manufacturer') or ''} {d.get('model') or '?'}".strip()
        return f"{name} (Android {d.get('android_release')}, {soc}, {abi})"

    def runtime_name(self) -> str:
        r = self.runtime
        engine = "GPU delegate" if r.get("delegate") == "gpu" else "XNNPACK"
        return (f"LiteRT {r.get('litert_version') or ''} {engine}, {r.get('threads')} threads, "
                f"{r.get('input_type')} input, on {self.device_name()}").replace("  ", " ")

    def latency_ms(self) -> dict:
        """Medians and p90s in the bench report's ``latency_ms`` layout (edgekd.bench.runner), under this thread
        count: model = interpreter call, crop = warp + input encoding, end_to_end = detector + crop + model +
        inverse crop (faces found only), end_to_end_stages = where that time went, cpu = the phone."""
        t = str(self.runtime.get("threads"))
        model, e2e, det, crop = (stats(self.timings.get(k, []))
                                 for k in ("inference", "end_to_end", "detector", "crop"))
        return {"model": {t: model["median"]}, "model_p90": {t: model["p90"]},
                "detector": det["median"], "detector_p90": det["p90"], "crop": crop["median"],
                "end_to_end": {t: e2e["median"]}, "end_to_end_p90": {t: e2e["p90"]},
                "end_to_end_stages": {t: stage_breakdown(self.stages)},
                "runtime": self.runtime_name(),
                "detector_runtime": f"MediaPipe BlazeFace short-range (tasks-vision, CPU) on {self.device_name()}",
                "cpu": self.device_name(), "threads": [t]}


def read_result(path: str | os.PathLike) -> dict:
    """A result.json checked against the schema; one-line DataError naming the first problem."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not JSON ({e})") from None
    problems = schema_errors(doc)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(f"{path}: not an {FORMAT} result: {problems[0]}{more}")
    return doc


def to_device_run(doc: dict, files: dict[str, str] | None = None) -> DeviceRun:
    """DeviceRun of a checked result document; ``files`` maps phone file names to sample ids (default: the names)."""
    run = DeviceRun(predictions={}, timings={stage: [] for stage in STAGES + ("end_to_end",)},
                    device=dict(doc["device"]), runtime=dict(doc["runtime"]))
    seen = set()
    for image in doc["images"]:
        sid = files.get(image["file"]) if files is not None else image["file"]
        if sid is None:
            raise DataError(f"result lists image {image['file']!r}, which was not sent")
        seen.add(image["file"])
        _add_image(run, sid, image)
    for name, sid in (files or {}).items():
        if name not in seen:
            run.predictions[sid] = None
            run.details[sid] = {"file": name, "error": "missing from the app's result"}
    run.runtime["app"] = dict(doc["app"])
    run.runtime["run_id"] = doc["run_id"]
    return run


def _add_image(run: DeviceRun, sid: str, image: dict) -> None:
    points, t = image["points"], image["timings_ms"]
    run.predictions[sid] = None if points is None else np.asarray(points, dtype=np.float32).reshape(-1, 2)
    for stage in STAGES:
        if t[stage] is not None:
            run.timings[stage].append(float(t[stage]))
    if points is not None and t["total"] is not None:
        run.timings["end_to_end"].append(float(t["total"]))
        run.stages.append(_stage_record(t))
    run.details[sid] = {k: image[k] for k in DETAIL_KEYS}


def _stage_record(t: dict) -> dict:
    """One image's timings_ms by pipeline stage (None where the app did not time it)."""
    parts = (t["landmarks"], t["crop"], t["inference"])
    post = None if None in parts else max(0.0, parts[0] - parts[1] - parts[2])
    return {"detector": t["detector"], "crop": t["crop"], "model": t["inference"], "post": post,
            "total": float(t["total"])}


# --- benchmark_model ------------------------------------------------------------------------------------------------
_TIMINGS = re.compile(
    r"Inference timings in us:\s*Init:\s*([\d.]+),\s*First inference:\s*([\d.]+),\s*"
    r"Warmup \(avg\):\s*([\d.eE+-]+),\s*Inference \(avg\):\s*([\d.eE+-]+)")
_RUN = re.compile(r"count=(\d+)\s+first=(\d+)\s+curr=(\d+)\s+min=(\d+)\s+max=(\d+)\s+avg=([\d.eE+-]+)\s+std=(\d+)")
_MEMORY = re.compile(r"Memory footprint delta from the start of the tool \(MB\):\s*init=([\d.]+)\s+overall=([\d.]+)")


def parse_benchmark_output(text: str) -> dict:
    """Latencies (microseconds) from TFLite benchmark_model's output."""
    m = _TIMINGS.search(text)
    if not m:
        last = next((line for line in reversed(text.strip().splitlines()) if line.strip()), "no output")
        raise EdgekdError(f"benchmark_model printed no 'Inference timings in us' line; it ended with: {last.strip()}")
    out = {"init_us": float(m.group(1)), "first_inference_us": float(m.group(2)),
           "warmup_avg_us": float(m.group(3)), "inference_avg_us": float(m.group(4))}
    runs = _RUN.findall(text)
    if runs:  # the last count= line is the measured run (the one before it is the warm-up)
        count, _, _, lo, hi, _, std = runs[-1]
        out.update(inference_count=int(count), inference_min_us=float(lo), inference_max_us=float(hi),
                   inference_std_us=float(std))
    mem = _MEMORY.search(text)
    if mem:
        out.update(memory_init_mb=float(mem.group(1)), memory_overall_mb=float(mem.group(2)))
    return out
