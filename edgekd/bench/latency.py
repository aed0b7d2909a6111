"""Latency: model-only (median and p90 after warm-up) per thread count, and end-to-end per face.

Times are wall-clock on a possibly shared machine; medians are robust to the odd slow call, p90 shows the spread.
Each number is written with the runtime, its version, the CPU and the thread count it was measured with.
"""
from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np

from edgekd.runtime.model import cpu_name


def machine() -> dict:
    """Where the numbers were taken; the load average flags timings taken on a busy (shared) machine."""
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": sys.version.split()[0],
            "platform": platform.platform(terse=True), "load_average_1m": load}


def stats(values_ms) -> dict:
    v = np.asarray([x for x in values_ms if np.isfinite(x)], np.float64)
    if not v.size:
        return {"median": None, "p90": None, "n": 0}
    return {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)), "n": int(v.size)}


def time_calls(fn, warmup: int = 10, runs: int = 50) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def model_latency(model, crop: np.ndarray, threads, warmup: int = 10, runs: int = 50) -> dict[str, dict]:
    """{threads: {median, p90, n, runtime}} for a LandmarkModel on one real crop, a fresh interpreter per count."""
    out = {}
    for t in threads:
        m = model.with_threads(t) if hasattr(model, "with_threads") else model
        try:
            out[str(t)] = {**stats(time_calls(lambda: m.predict(crop), warmup, runs)), "runtime": m.runtime}
        finally:
            if m is not model and hasattr(m, "close"):
                m.close()
    return out


def end_to_end_latency(model, detector, images, threads, repeats: int = 3) -> dict[str, dict]:
    """Per face, as an app tracking one face sees it: detector on the whole image + crop + model + inverse crop
    of its best face, for each thread count. Images where nothing is detected are not timed."""
    from edgekd.runtime.predictor import Predictor

    out = {}
    for t in threads:
        m = model.with_threads(t) if hasattr(model, "with_threads") else model
        try:
            pred = Predictor(m, detector)

            def one(img):
                dets = detector.detect(img)
                if dets:
                    pred.predict_detection(img, dets[0])
                return bool(dets)

            for img in images[:2]:  # warm-up
                one(img)
            times = []
            for _ in range(repeats):
                for img in images:
                    t0 = time.perf_counter()
                    found = one(img)
                    if found:
                        times.append((time.perf_counter() - t0) * 1e3)
            out[str(t)] = stats(times)
        finally:
            if m is not model and hasattr(m, "close"):
                m.close()
    return out
