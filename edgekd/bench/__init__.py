"""Benchmarks: accuracy (NME/FR/AUC, two crop protocols), latency and its stages, a video row (tracking vs detector
crops), peers (dlib), phones and reports."""
from edgekd.bench.config import BenchConfig
from edgekd.bench.results import BenchResult
from edgekd.bench.runner import benchmark

__all__ = ["BenchConfig", "BenchResult", "benchmark"]
