"""Timing: the one timer, the statistics every latency number is reported with, and the machine it ran on.

Times are wall-clock on a possibly shared machine; medians are robust to the odd slow call, p90 shows the spread.
Machines differ (edgekd has been measured on an Intel Xeon and on an AMD EPYC with AVX-512 VNNI, with
int8/float32 ratios of 0.61-0.75 and 0.47): every timing is written with ``machine()``, and only ratios measured in
one run are comparable.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()



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
    """Milliseconds of ``runs`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out
