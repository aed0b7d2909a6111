"""Latency of landmark models: model-only per thread count, and end-to-end per face behind the detector, broken
into the stages it spends its time in.

The timer, the statistics and the machine description are ``edgekd.core.timing``'s. The stage breakdown is measured
inside the end-to-end loop itself (the detector call here, crop / model / inverse crop by the Predictor's own
timers), not in separate tight loops: a tight model-only loop keeps the model's weights in cache and hides the cost
of detector and model taking turns, which is what an app pays.
"""
from __future__ import annotations

import itertools
import time
from contextlib import contextmanager

import numpy as np

from edgekd.core.timing import machine, stats, time_calls  # noqa: F401  (machine: re-exported for the bench)
from edgekd.runtime.predictor import Predictor

# Where one face's end-to-end time goes. "model" is the Predictor's model timer (the crop into the input tensor and
# the invoke); "post" is everything it times after the model (its output to image points: dequantise, denormalise,
# inverse crop); "other" is the rest of the end-to-end time per face (detection -> crop box mapping, bookkeeping),
# so the stages add up to the end-to-end time of each face.
PIPELINE_STAGES = ("detector", "crop", "model", "post", "other")
_MEASURED = PIPELINE_STAGES[:-1]


@contextmanager
def on_threads(model, threads: int):
    """``model`` on a fresh interpreter with ``threads`` (closed afterwards); stand-ins without one as they are."""
    m = model.with_threads(threads) if hasattr(model, "with_threads") else model
    try:
        yield m
    finally:
        if m is not model and hasattr(m, "close"):
            m.close()


def model_latency(model, crop: np.ndarray, threads, warmup: int = 10, runs: int = 50, flip: bool = False,
                  refine: int = 0) -> dict[str, dict]:
    """{threads: {median, p90, n, runtime}} for a LandmarkModel on one real crop, a fresh interpreter per count;
    ``flip``: the crop and its mirror image, as flip averaging runs them; ``refine``: that many more passes."""
    crops = [crop, np.ascontiguousarray(crop[:, ::-1])] if flip else [crop]
    out = {}
    for t in threads:
        with on_threads(model, t) as m:
            def call():
                for _ in range(1 + refine):
                    for c in crops:
                        m.predict(c)
            out[str(t)] = {**stats(time_calls(call, warmup, runs)), "runtime": m.runtime}
    return out


def end_to_end_latency(model, detector, images, threads, repeats: int = 3, flip: bool = False, refine: int = 0
                       ) -> dict[str, dict]:
    """Per face, as an app tracking one face sees it: detector on the whole image + crop + model + inverse crop
    of its best face, for each thread count: {threads: {median, p90, n, stages: {stage: median ms}}}. Images where
    nothing is detected are not timed."""
    out = {}
    for t in threads:
        with on_threads(model, t) as m:
            out[str(t)] = pipeline_times(Predictor(m, detector, flip=flip, refine=refine), detector, images, repeats)
    return out


def pipeline_times(predictor, detector, images, repeats: int = 3, warmup: int = 2) -> dict:
    """End-to-end times of ``repeats`` passes over ``images`` (after ``warmup`` untimed faces) with the stages
    each face spent them in; see ``end_to_end_latency``."""
    records: list[dict | None] = []
    if not images:
        return {**stats([]), "stages": stage_breakdown([])}
    order = itertools.cycle(images)

    def one():
        image = next(order)
        t0 = time.perf_counter()
        dets = detector.detect(image)
        detector_ms = (time.perf_counter() - t0) * 1e3
        if not dets:
            records.append(None)
            return
        face = predictor.predict_detection(image, dets[0])
        records.append({"detector": detector_ms, **_stages_of(face.timings_ms)})

    runs = repeats * len(images)
    totals = time_calls(one, warmup, runs)
    timed = [dict(r, total=ms) for r, ms in zip(records[-runs:], totals) if r is not None]
    return {**stats([r["total"] for r in timed]), "stages": stage_breakdown(timed)}


def _stages_of(predictor_timings: dict) -> dict:
    """The Predictor's timers by pipeline stage: crop as it is; model with the mirrored run of flip averaging
    ("flip") and the passes after the first ("refine", their crops included); anything else it times (the output
    to image points, "inverse") as post-processing."""
    t = predictor_timings
    extra = ("flip", "refine")
    out = {"crop": t.get("crop", float("nan")),
           "model": t.get("model", float("nan")) + sum(t.get(k, 0.0) for k in extra)}
    out["post"] = sum(v for k, v in t.items() if k not in ("crop", "model", "detector", *extra))
    return out


def stage_breakdown(records) -> dict:
    """{stage: median ms} over faces given as {stage: ms, ..., "total": ms}; "other" is each face's total minus
    its measured stages, so the medians add up to about the end-to-end median (exactly, for the means). A stage
    that did not run (the detector under ground-truth crops) is None."""
    out = {s: stats([r.get(s) if r.get(s) is not None else float("nan") for r in records])["median"]
           for s in _MEASURED}
    rest = [r["total"] - sum(r.get(s) or 0.0 for s in _MEASURED) for r in records]
    out["other"] = stats(rest)["median"]
    return out
