"""Latency of landmark models: model-only per thread count, and end-to-end per face behind the detector.

The timer, the statistics and the machine description are ``edgekd.timing``'s.
"""
from __future__ import annotations

import time

import numpy as np

from edgekd.timing import machine, stats, time_calls  # noqa: F401  (machine: re-exported for the bench)


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
