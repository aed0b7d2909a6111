"""Benchmarks: accuracy (NME/FR/AUC, two crop protocols), latency, peers (dlib) and reports."""
from edgekd.bench.runner import BenchResult, benchmark

__all__ = ["BenchResult", "benchmark"]
