"""benchmark(): every model x protocol (plus peers) over one test set, scored by the same metric code.

Each image is read once and detected once; every model then cuts its own crop from the shared detection, so
models differ only in what they are. Latency is measured afterwards on real crops and images, with fresh
interpreters per thread count.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.bench import latency as lat
from edgekd.metrics import nme, summarize, summarize_subsets
from edgekd.bench.protocols import crop_box, parse_protocols, select_detection
from edgekd.errors import EdgekdError, ModelError
from edgekd.runtime.predictor import sample_face
from edgekd.schemes import get_scheme

log = logging.getLogger(__name__)

PEERS = ("dlib",)


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


def _open_model(m, threads: int):
    from edgekd.runtime.model import LandmarkModel

    if isinstance(m, (str, Path)):
        return LandmarkModel(m, num_threads=threads)
    return m  # an already-built model (LandmarkModel or a stand-in with .crop/.predict/.num_points)


def _model_name(model, taken: set) -> str:
    """File name, or parent/file name when two models share a file name (runs/a/model.tflite, runs/b/...)."""
    path = getattr(model, "path", None)
    base = getattr(model, "name", None) or (Path(path).name if path else "model")
    if base in taken and path:
        base = f"{Path(path).parent.name}/{Path(path).name}"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}#{k}", k + 1
    taken.add(name)
    return name


def _read_counting_skips(dataset, data, split):
    """read_dataset, plus the annotations it skipped (image missing beside a .pts), so the report can count them
    like faces whose image vanished later."""
    from edgekd.data.readers import read_dataset

    skipped: list[str] = []
    samples = read_dataset(dataset, data, split, skipped)
    return samples, skipped


def _image_missing(sample) -> bool:
    return sample.image is None and not Path(sample.image_path).is_file()


def benchmark(models, data=None, dataset: str = "300w", out=None, crop: str = "detector", threads=(1, 2),
              compare=(), limit: int | None = None, device: str = "desktop", split: str = "test",
              progress: bool = True, worst: int = 12, e2e_images: int = 20, detector=None,
              device_options: dict | None = None) -> BenchResult:
    """Benchmark ``models`` (.tflite paths, Keras checkpoints or LandmarkModel-like objects) on ``data``.

    Without ``data`` only latency is measured, on a sample face. ``device`` other than "desktop" hands the
    predictions to ``edgekd.bench.device.run_on_device`` (given ``device_options``: serial, adb, apk,
    benchmark_binary, ...) and scores them here. Writes results.json, report.md,
    ced.png and worst-case sheets to ``out`` (when given) and returns them with the printed table.
    """
    from edgekd.bench import report

    protocols = parse_protocols(crop)
    threads = tuple(int(t) for t in threads) or (1,)
    compare = tuple(c.lower() for c in compare)
    for c in compare:
        if c not in PEERS:
            raise EdgekdError(f"--compare {c!r}: expected one of {', '.join(PEERS)}")
    if not models and not compare:
        raise EdgekdError("nothing to benchmark: give at least one model (or --compare dlib)")
    scheme = get_scheme(dataset)
    samples, reader_skips = [], []
    if data is not None:
        samples, reader_skips = _read_counting_skips(dataset, data, split)
        if limit:
            samples = samples[: int(limit)]

    if device != "desktop":
        return _benchmark_device(models, samples, scheme, protocols, threads, device, out, data, dataset, split,
                                 worst, device_options or {})

    loaded = [_open_model(m, threads[0]) for m in models]
    names: set = set()
    for m, src in zip(loaded, models):
        n = getattr(m, "num_points", None)
        if n is not None and n != scheme.num_points:
            raise ModelError(f"{getattr(m, 'path', src)}: predicts {n} points but --dataset {dataset} has "
                             f"{scheme.num_points}")
    peers = []
    if "dlib" in compare:
        if scheme.num_points != 68:
            raise EdgekdError(f"--compare dlib predicts 68 points; --dataset {dataset} has {scheme.num_points}")
        from edgekd.bench.peers import DlibPeer

        peers.append(DlibPeer())

    from edgekd.detector import FaceDetector

    own_detector = detector is None and bool(loaded)
    det = FaceDetector() if own_detector else detector
    try:
        entries = []
        model_entries = []
        for m in loaded:
            name = _model_name(m, names)
            row = {}
            for p in protocols:
                row[p] = Entry(name, p, "edgekd", str(getattr(m, "path", "")), getattr(m, "runtime", "custom"),
                               getattr(getattr(m, "info", None), "quantization", ""), _size(m))
                entries.append(row[p])
            model_entries.append((m, row))
        peer_entries = []
        for peer in peers:
            row = {p: Entry(peer.name, p, "peer", str(peer.path), peer.runtime, "float64 (dlib)", peer.size_mb)
                   for p in protocols}
            entries += row.values()
            peer_entries.append((peer, row))

        scored, skipped, det_ms, keep = _accuracy_loop(samples, model_entries, peer_entries, det, protocols,
                                                       progress, e2e_images)
        skipped = reader_skips + skipped
        images = keep["images"] or [sample_face()]
        lat_crop = keep["crop_source"]
        for m, row in model_entries:
            _measure_latency(m, row, det, images, lat_crop, threads, det_ms)
        for peer, row in peer_entries:
            _peer_latency(peer, row, images if not samples else None)
        results = _results(entries, scored, skipped, scheme, dataset, data, split, threads, det, protocols)
        table = report.table(results)
        if out is not None:
            report.write(results, entries, scored, Path(out), scheme, worst=worst)
        return BenchResult(results, entries, Path(out) if out is not None else None, table)
    finally:
        if own_detector and det is not None:
            det.close()


def _size(m):
    try:
        return float(m.size_mb)
    except (AttributeError, OSError, TypeError):
        return None


def _accuracy_loop(samples, model_entries, peer_entries, det, protocols, progress, e2e_images):
    from edgekd.bench.peers import run_peer
    from edgekd.data.readers import load_image
    from edgekd.runtime.predictor import Predictor

    predictors = [(Predictor(m), row) for m, row in model_entries]
    scored, skipped, det_ms = [], [], []
    keep = {"images": [], "crop_source": None}
    it = samples
    if progress and samples:
        from tqdm import tqdm

        it = tqdm(samples, desc="bench", unit="face")
    for s in it:
        if _image_missing(s):
            log.warning("%s: image file not found; face %s skipped", s.image_path, s.id)
            skipped.append(s.id)
            continue
        image = load_image(s)  # an unreadable (corrupt) image is a DataError: the data set needs fixing
        detection = None
        if predictors and "detector" in protocols:
            dets = det.detect(image)
            det_ms.append(det.last_ms)
            detection = select_detection(dets, s.points)
        for pred, row in predictors:
            for p in protocols:
                entry = row[p]
                box = crop_box(p, pred.crop, s.points, detection)
                if box is None:
                    entry.predictions[s.id] = None
                    continue
                face = pred.predict_box(image, box)
                entry.predictions[s.id] = face.points
                for k, v in face.timings_ms.items():
                    entry.timings.setdefault(k, []).append(v)
        for peer, row in peer_entries:
            points, times = run_peer(peer, image, s.points, protocols)
            for p in protocols:
                row[p].predictions[s.id] = points[p]
            timings = row[protocols[0]].timings  # one set of timings per peer
            for k, v in times.items():
                timings.setdefault(k, []).append(v)
            if "detector" in times and points.get("detector") is not None:
                timings.setdefault("end_to_end", []).append(times["detector"] + times["model"])
        scored.append(s)
        if len(keep["images"]) < e2e_images:
            keep["images"].append(image)
        if keep["crop_source"] is None:
            keep["crop_source"] = (image, s.points)
    return scored, skipped, det_ms, keep


def _measure_latency(m, row, det, images, crop_source, threads, det_ms):
    if not hasattr(m, "with_threads"):  # a stand-in model: accuracy only
        return
    first = next(iter(row.values()))
    if crop_source is not None:
        image, points = crop_source
        box = m.crop.box_from_points(points)
    else:  # no data: the sample face, cut from the detector's box
        image = images[0]
        dets = det.detect(image)
        box = (m.crop.box_from_detector(dets[0].box) if dets
               else (image.shape[1] / 2, image.shape[0] / 2, min(image.shape[:2]) / 2))
        det_ms = det_ms or lat.time_calls(lambda: det.detect(image), 3, 20)
    patch, _ = m.crop.crop(image, box)
    crop_ms = first.timings.get("crop") or lat.time_calls(lambda: m.crop.crop(image, box), 3, 30)
    model = lat.model_latency(m, patch, threads)
    e2e = lat.end_to_end_latency(m, det, images, threads)
    latency_ms = {
        "model": {t: v["median"] for t, v in model.items()},
        "model_p90": {t: v["p90"] for t, v in model.items()},
        "detector": lat.stats(det_ms)["median"],
        "detector_p90": lat.stats(det_ms)["p90"],
        "crop": lat.stats(crop_ms)["median"],
        "end_to_end": {t: v["median"] for t, v in e2e.items()},
        "end_to_end_p90": {t: v["p90"] for t, v in e2e.items()},
        "runtime": m.runtime,
        "detector_runtime": getattr(det, "name", ""),
        "threads": list(model),
    }
    for e in row.values():
        e.latency_ms = latency_ms


def _peer_latency(peer, row, images=None):
    """dlib runs single-threaded; its numbers are recorded under thread count 1 only."""
    timings = dict(next(iter(row.values())).timings)
    if images is not None:  # no data: time the HOG detector and predictor on the sample face
        img = images[0]
        boxes = peer.detect(img)
        timings["detector"] = lat.time_calls(lambda: peer.detect(img), 1, 5)
        if boxes:
            timings["model"] = lat.time_calls(lambda: peer.predict_box(img, boxes[0]), 3, 30)
            timings["end_to_end"] = [d + np.median(timings["model"]) for d in timings["detector"]]
    model, detector, e2e = (lat.stats(timings.get(k, [])) for k in ("model", "detector", "end_to_end"))
    latency_ms = {"model": {"1": model["median"]}, "model_p90": {"1": model["p90"]},
                  "detector": detector["median"], "detector_p90": detector["p90"], "crop": None,
                  "end_to_end": {"1": e2e["median"]}, "end_to_end_p90": {"1": e2e["p90"]},
                  "runtime": peer.runtime, "detector_runtime": f"dlib HOG frontal face detector (upsample "
                                                               f"{peer.upsample}), {peer.runtime}",
                  "threads": ["1"]}
    for e in row.values():
        e.latency_ms = latency_ms


def _results(entries, scored, skipped, scheme, dataset, data, split, threads, det, protocols) -> dict:
    import edgekd

    out_entries = []
    for e in entries:
        row = {"model": e.name, "protocol": e.protocol, "kind": e.kind, "path": e.path, "runtime": e.runtime,
               "quantization": e.quantization,
               "size_mb": None if e.size_mb is None else round(e.size_mb, 3)}
        if scored:
            errors = [nme(e.predictions.get(s.id), s.points, scheme) for s in scored]
            row.update(summarize(errors))
            row["subsets"] = summarize_subsets(errors, [s.tags for s in scored], scheme)
            e.extra["errors"] = errors
        row["skipped_images"] = len(skipped)
        row["latency_ms"] = e.latency_ms
        row.update({k: v for k, v in e.extra.items() if k != "errors"})
        out_entries.append(row)
    return {
        "edgekd_version": edgekd.__version__,
        "dataset": dataset,
        "split": split,
        "data": str(data) if data is not None else None,
        "faces": len(scored),
        "skipped_images": list(skipped),
        "protocols": list(protocols),
        "threads": list(threads),
        "detector": getattr(det, "name", None),
        "machine": lat.machine(),
        "metrics": {"nme": "% of outer-eye-corner distance, mean over detected faces, original image",
                    "fr": "% of faces with NME > 0.1, detector failures included",
                    "auc": "standard AUC@0.1 of the CED (0..1), detector failures included",
                    "auc_paper": "KD-Loss paper's AUC variant (max 0.95), for comparison with its tables only"},
        "entries": out_entries,
    }


def _benchmark_device(models, samples, scheme, protocols, threads, device, out, data, dataset, split, worst,
                      options):
    """Score predictions made on a phone by edgekd.bench.device (issue 6) with the same metric code.

    ``device`` is "pixel"/"phone"/"android" (the one attached phone) or an adb serial. Each protocol runs once per
    thread count; accuracy comes from the first thread count, latencies from all of them. The APK is installed on the
    first call only; faces whose image file is missing are skipped, as on the desktop.
    """
    from edgekd.bench import report

    try:
        from edgekd.bench.device import run_on_device
    except ImportError:
        raise EdgekdError(f"--device {device}: on-device benchmarking is not available (edgekd.bench.device); "
                          f"use --device desktop") from None
    if not samples:
        raise EdgekdError(f"--device {device} needs --data (accuracy is scored on the desktop)")
    options = dict(options)
    if device.lower() not in ("pixel", "phone", "android"):
        options.setdefault("serial", device)
    for s in [s for s in samples if _image_missing(s)]:
        log.warning("%s: image file not found; face %s skipped", s.image_path, s.id)
    skipped = [s.id for s in samples if _image_missing(s)]
    samples = [s for s in samples if not _image_missing(s)]
    entries = []
    for m in models:
        path = Path(str(m))
        for p in protocols:
            e = Entry(path.name, p, "device", str(path), size_mb=path.stat().st_size / 1e6 if path.is_file() else None)
            for k, t in enumerate(threads):
                run = run_on_device(path, samples, threads=t, protocol=p, **options)
                options.pop("apk", None)  # installed once is enough
                lat_t = run.latency_ms()
                if k == 0:
                    e.predictions, e.runtime, e.latency_ms = dict(run.predictions), run.runtime_name(), lat_t
                    continue
                for key in ("model", "model_p90", "end_to_end", "end_to_end_p90"):
                    e.latency_ms[key].update(lat_t[key])
                e.latency_ms["threads"] = list(e.latency_ms["threads"]) + list(lat_t["threads"])
            entries.append(e)
    results = _results(entries, samples, skipped, scheme, dataset, data, split, threads, None, protocols)
    results["device"] = device
    table = report.table(results)
    if out is not None:
        report.write(results, entries, samples, Path(out), scheme, worst=worst)
    return BenchResult(results, entries, Path(out) if out is not None else None, table)
