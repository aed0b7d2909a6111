"""What a bench run gives back: one ``Entry`` per model and protocol, results.json's document built from them by
the one metric code (edgekd.core.metrics), and the report files; the desktop and the phone runs end here alike."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import edgekd
from edgekd.bench import latency as lat
from edgekd.bench import report
from edgekd.bench.config import BenchConfig
from edgekd.core.metrics import nme, summarize, summarize_subsets

METRICS = {"nme": "% of outer-eye-corner distance, mean over detected faces, original image",
           "fr": "% of faces with NME > 0.1, detector failures included",
           "auc": "standard AUC@0.1 of the CED (0..1), detector failures included",
           "auc_paper": "KD-Loss paper's AUC variant (max 0.95), for comparison with its tables only"}


@dataclass
class Entry:
    """One model under one protocol: its predictions and where they came from."""

    name: str
    protocol: str
    kind: str  # "edgekd" | "peer" | "device"
    path: str = ""
    runtime: str = ""
    quantization: str = ""
    size_mb: float | None = None
    predictions: dict = field(default_factory=dict)  # sample id -> (N, 2) points or None (detector failure)
    timings: dict = field(default_factory=dict)  # stage -> list of ms
    latency_ms: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.name} [{self.protocol}]"


@dataclass
class BenchResult:
    results: dict
    entries: list
    out: Path | None
    table: str


# ----------------------------------------------------------------------------------------------------------
def finish(cfg: BenchConfig, entries, scored, skipped, detector_name, video=None) -> BenchResult:
    """results.json's document, the console table, and (given ``out``) the files of the report."""
    results = results_document(cfg, entries, scored, skipped, detector_name)
    if video is not None:
        results["video"] = video
    out = Path(cfg.out) if cfg.out is not None else None
    if out is not None:
        report.write(results, entries, scored, out, cfg.scheme, worst=cfg.worst)
    return BenchResult(results, entries, out, report.table(results))


def results_document(cfg: BenchConfig, entries, scored, skipped, detector_name) -> dict:
    return {
        "edgekd_version": edgekd.__version__,
        "dataset": cfg.dataset,
        "split": cfg.split,
        "data": str(cfg.data) if cfg.data is not None else None,
        "faces": len(scored),
        "skipped_images": list(skipped),
        "protocols": list(cfg.protocols),
        "threads": list(cfg.threads),
        "detector": detector_name,
        "device": cfg.device,
        "machine": lat.machine(),
        "metrics": dict(METRICS),
        "config": cfg.to_json(),
        "entries": [entry_row(e, scored, skipped, cfg.scheme) for e in entries],
    }


def entry_row(e: Entry, scored, skipped, scheme) -> dict:
    row = {"model": e.name, "protocol": e.protocol, "kind": e.kind, "path": e.path, "runtime": e.runtime,
           "quantization": e.quantization, "size_mb": None if e.size_mb is None else round(e.size_mb, 3)}
    if scored:
        errors = [nme(e.predictions.get(s.id), s.points, scheme) for s in scored]
        row.update(summarize(errors))
        row["subsets"] = summarize_subsets(errors, [s.tags for s in scored], scheme)
        e.extra["errors"] = errors
    row["skipped_images"] = len(skipped)
    row["latency_ms"] = e.latency_ms
    row.update({k: v for k, v in e.extra.items() if k != "errors"})
    return row
