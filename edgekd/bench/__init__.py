"""Benchmarks: accuracy (NME/FR/AUC, two crop protocols), latency and its stages, peers (dlib), phones and reports."""
from edgekd.bench.config import BenchConfig
from edgekd.bench.runner import BenchResult, benchmark

__all__ = ["BenchConfig", "BenchResult", "benchmark"]
