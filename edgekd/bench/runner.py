"""benchmark(): every model x protocol (plus peers) over one test set, scored by the same metric code; with
``video``, also the video row (edgekd.bench.video).

Each image is read once and detected once; every model then cuts its own crop from the shared detection, so
models differ only in what they are. Latency is measured afterwards on real crops and images, with fresh
interpreters per thread count; the end-to-end time is broken into the pipeline stages it was spent in, and every
result names the CPU it was measured on (edgekd.core.timing.machine), because machines differ.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from edgekd.bench import latency as lat
from edgekd.bench.config import BenchConfig
from edgekd.bench.facemesh import FaceMeshPeer
from edgekd.bench.peers import DlibPeer, run_peer
from edgekd.bench.protocols import crop_box, select_detection
from edgekd.bench.results import BenchResult, Entry, finish
from edgekd.bench.video import video_bench
from edgekd.core.errors import DataError, ModelError
from edgekd.core.fileio import check_output_dir
from edgekd.core.imageio import load_image
from edgekd.data.readers import read_dataset
from edgekd.runtime.blazeface import open_detector
from edgekd.runtime.model import LandmarkModel
from edgekd.runtime.predictor import Predictor, sample_face

log = logging.getLogger(__name__)

def benchmark(config=None, /, *, detector=None, **options) -> BenchResult:
    """Benchmark models on a dataset: ``benchmark(BenchConfig(...))`` or ``benchmark(models, data=..., ...)`` with
    BenchConfig's fields as keywords.

    Without ``data`` only latency is measured, on a sample face. ``device="pixel"`` runs the models on the attached
    phone (edgekd.bench.device, given ``device_options``) and scores what comes back here. Writes results.json,
    report.md, ced.png and worst-case sheets to ``out`` (when given) and returns them with the printed table.
    ``detector``: a face detector to use instead of a fresh one (``open_detector(backend=detector_backend)``).
    """
    cfg = _as_config(config, options)
    if cfg.out is not None:  # a folder of the user's is refused now, not overwritten after the work
        check_output_dir(cfg.out, "bench", "--out-dir")
    samples, skipped = _read_samples(cfg)
    if cfg.device != "desktop":
        return _benchmark_device(cfg, samples, skipped)
    return _benchmark_desktop(cfg, samples, skipped, detector)


def _as_config(config, options: dict) -> BenchConfig:
    if isinstance(config, BenchConfig):
        if options:
            raise TypeError(f"benchmark(BenchConfig, ...) takes no other options ({', '.join(options)})")
        return config
    if config is not None:
        options = {"models": config, **options}
    return BenchConfig(**options)


def _read(cfg: BenchConfig, split: str, skipped: list) -> list:
    """One split of --root, through the dataset format the config read once (a dataset.yaml is parsed once)."""
    if cfg.format is None:  # --root is not a folder: the reader names it
        return read_dataset(cfg.dataset, cfg.data, split, skipped)
    return cfg.format.read(cfg.data, split, skipped)


def _read_samples(cfg: BenchConfig) -> tuple[list, list[str]]:
    """The split's faces (the first --limit of them), and the annotations the reader skipped (image missing beside
    a .pts), so the report counts them like faces whose image vanished later. Split "val": the training faces that
    the prepared folder set aside for validation, in its order (those whose image is gone are counted as skipped,
    as for the other splits)."""
    if cfg.data is None:
        return [], []
    if cfg.split != "val":
        skipped: list[str] = []
        return _read(cfg, cfg.split, skipped)[: cfg.limit], skipped
    faces = Path(cfg.prepared) / "val" / "faces.json"
    try:
        ids = [f["id"] for f in json.loads(faces.read_text())]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{faces}: not a prepared folder's validation list ({type(e).__name__}); expected the "
                        f"--prepared folder `edgekd data prepare` wrote") from None
    train_skips: list[str] = []
    by_id = {s.id: s for s in _read(cfg, "train", train_skips)}
    no_image = {Path(p).stem: p for p in train_skips}  # annotations whose image is gone, by file stem
    ids = ids[: cfg.limit]
    skipped = [no_image[i.rsplit("/", 1)[-1]] for i in ids if i not in by_id and i.rsplit("/", 1)[-1] in no_image]
    missing = [i for i in ids if i not in by_id and i.rsplit("/", 1)[-1] not in no_image]
    if missing:
        raise DataError(f"{faces}: {len(missing)} validation faces (first {missing[0]}) are not among the "
                        f"training faces of --root {cfg.data}; was it prepared from another dataset?")
    return [by_id[i] for i in ids if i in by_id], skipped


def _image_missing(sample) -> bool:
    return sample.image is None and not Path(sample.image_path).is_file()


# --- desktop ----------------------------------------------------------------------------------------------------------
def _benchmark_desktop(cfg: BenchConfig, samples, reader_skips, detector) -> BenchResult:
    loaded = _open_models(cfg)
    peers = _open_peers(cfg)
    own_detector = detector is None and bool(loaded)
    det = open_detector(backend=cfg.detector_backend) if own_detector else detector
    try:
        taken: set = set()
        names = [_model_name(m, taken) for m in loaded]
        model_rows = [(m, v, _entries_of_model(m, name, cfg.protocols, v))
                      for m, name in zip(loaded, names) for v in _variants(cfg)]
        peer_rows = [(p, {pr: Entry(p.name, pr, "peer", str(p.path), p.runtime,
                                    getattr(p, "quantization", "float64 (dlib)"), p.size_mb)
                          for pr in cfg.protocols}) for p in peers]
        scored, skipped, det_ms, keep = _accuracy_loop(cfg, samples, model_rows, peer_rows, det)
        images = keep["images"] or [sample_face()]
        for m, v, row in model_rows:
            _measure_latency(m, row, det, images, keep["crop_source"], cfg.threads, det_ms, v)
        for peer, row in peer_rows:
            if hasattr(peer, "latency"):  # timed like edgekd's models, on the same images and thread counts
                first = next(iter(row.values()))
                latency_ms = peer.latency(images, keep["crop_source"], cfg.threads, first.timings)
                for e in row.values():
                    e.latency_ms = latency_ms
            else:
                _peer_latency(peer, row, images if not samples else None)
        video = _video(cfg, model_rows, scored, det) if cfg.video else None
        entries = [e for *_, row in model_rows + peer_rows for e in row.values()]
        return finish(cfg, entries, scored, reader_skips + skipped, getattr(det, "name", None), video)
    finally:
        if own_detector and det is not None:
            det.close()
        for peer in peers:
            peer.close()


def _open_models(cfg: BenchConfig) -> list:
    """Each model loaded (paths) or taken as it is (LandmarkModel-like objects), checked against the dataset."""
    loaded = [LandmarkModel(m, num_threads=cfg.threads[0]) if isinstance(m, (str, Path)) else m for m in cfg.models]
    for m, src in zip(loaded, cfg.models):
        n = getattr(m, "num_points", None)
        if n is not None and n != cfg.scheme.num_points:
            raise ModelError(f"{getattr(m, 'path', src)}: predicts {n} points but --dataset {cfg.dataset} has "
                             f"{cfg.scheme.num_points}")
    return loaded


def _open_peers(cfg: BenchConfig) -> list:
    """The --compare peers in the order asked; each runs its own pipeline (dlib: HOG; mediapipe: its own instance of
    the run's BlazeFace detector, as Face Mesh is built on it)."""
    peers = []
    try:
        for name in cfg.compare:
            if name == "dlib":
                peers.append(DlibPeer())
            elif name == "mediapipe":
                peers.append(FaceMeshPeer(detector_backend=cfg.detector_backend, num_threads=cfg.threads[0]))
    except BaseException:
        for p in peers:
            p.close()
        raise
    return peers


PLAIN = {"flip": False, "refine": 0}


def _variants(cfg: BenchConfig) -> list[dict]:
    """Predictor settings each model is scored with, one row each: plain, flip-averaged (--tta flip), refined
    (--refine N)."""
    out = [PLAIN]
    if cfg.tta == "flip":
        out.append({**PLAIN, "flip": True})
    if cfg.refine:
        out.append({**PLAIN, "refine": cfg.refine})
    return out


def _entries_of_model(m, name: str, protocols, variant: dict = PLAIN) -> dict:
    name = name + (" +flip" if variant["flip"] else "") + (f" +refine{variant['refine']}" if variant["refine"] else "")
    return {p: Entry(name, p, "edgekd", str(getattr(m, "path", "")), getattr(m, "runtime", "custom"),
                     getattr(getattr(m, "info", None), "quantization", ""), _size(m)) for p in protocols}


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


def _size(m):
    try:
        return float(m.size_mb)
    except (AttributeError, OSError, TypeError):
        return None


def _accuracy_loop(cfg: BenchConfig, samples, model_rows, peer_rows, det):
    """Every face through every model and peer: (scored samples, skipped ids, detector ms, images kept for
    latency)."""
    predictors = [(Predictor(m, **v), row) for m, v, row in model_rows]
    scored, skipped, det_ms = [], [], []
    keep = {"images": [], "crop_source": None}
    for s in _progress(samples, cfg.progress):
        if _image_missing(s):
            log.warning("%s: image file not found; face %s skipped", s.image_path, s.id)
            skipped.append(s.id)
            continue
        image = load_image(s)  # an unreadable (corrupt) image is a DataError: the data set needs fixing
        detection = None
        if predictors and "detector" in cfg.protocols:
            detection = select_detection(det.detect(image), s.points)
            det_ms.append(det.last_ms)
        for pred, row in predictors:
            _score_model(pred, row, image, s, detection)
        for peer, row in peer_rows:
            _score_peer(peer, row, image, s, cfg.protocols)
        scored.append(s)
        if len(keep["images"]) < cfg.e2e_images:
            keep["images"].append(image)
        if keep["crop_source"] is None:
            keep["crop_source"] = (image, s.points)
    return scored, skipped, det_ms, keep


def _progress(samples, progress: bool, desc: str = "bench"):
    if not (progress and samples):
        return samples
    from tqdm import tqdm

    return tqdm(samples, desc=desc, unit="face")


def _video(cfg: BenchConfig, model_rows, samples, det) -> dict:
    """The video row (edgekd.bench.video) of every model, after the still-image latency so neither disturbs the
    other's timing; on the faces the accuracy loop scored."""
    models = [(next(iter(row.values())).name, m) for m, v, row in model_rows if v == PLAIN]
    return video_bench(models, det, samples, cfg.threads, cfg.scheme, cfg.video_frames,
                       lambda s: _progress(s, cfg.progress, "video"))


def _score_model(pred, row: dict, image, sample, detection) -> None:
    for p, entry in row.items():
        box = crop_box(p, pred.crop, sample.points, detection)
        if box is None:
            entry.predictions[sample.id] = None
            continue
        face = pred.predict_box(image, box)
        entry.predictions[sample.id] = face.points
        for k, v in face.timings_ms.items():
            entry.timings.setdefault(k, []).append(v)


def _score_peer(peer, row: dict, image, sample, protocols) -> None:
    points, times = (peer.run(image, sample.points, protocols) if hasattr(peer, "run")
                     else run_peer(peer, image, sample.points, protocols))
    for p in protocols:
        row[p].predictions[sample.id] = points[p]
    timings = row[protocols[0]].timings  # one set of timings per peer
    for k, v in times.items():
        timings.setdefault(k, []).append(v)
    if "detector" in times and points.get("detector") is not None and "end_to_end" not in times:
        timings.setdefault("end_to_end", []).append(times["detector"] + times["model"])


def _measure_latency(m, row, det, images, crop_source, threads, det_ms, variant: dict = PLAIN):
    """Model-only and end-to-end latency (with its stages) of one model, shared by its protocols' entries;
    ``variant``: Predictor settings (flip averaging: two model runs per face; refine N: N + 1)."""
    if not hasattr(m, "with_threads"):  # a stand-in model: accuracy only
        return
    first = next(iter(row.values()))
    if crop_source is not None:
        image, points = crop_source
        box = m.crop.box_from_points(points)
    else:  # no data: the sample face, cut from the detector's box
        image = images[0]
        dets = det.detect(image)
        box = (m.crop.box_from_detector(dets[0].box, dets[0].keypoints) if dets
               else (image.shape[1] / 2, image.shape[0] / 2, min(image.shape[:2]) / 2))
        det_ms = det_ms or lat.time_calls(lambda: det.detect(image), 3, 20)
    patch, _ = m.crop.crop(image, box)
    crop_ms = first.timings.get("crop") or lat.time_calls(lambda: m.crop.crop(image, box), 3, 30)
    model = lat.model_latency(m, patch, threads, **variant)
    e2e = lat.end_to_end_latency(m, det, images, threads, **variant)
    latency_ms = {
        "model": {t: v["median"] for t, v in model.items()},
        "model_p90": {t: v["p90"] for t, v in model.items()},
        "detector": lat.stats(det_ms)["median"],
        "detector_p90": lat.stats(det_ms)["p90"],
        "crop": lat.stats(crop_ms)["median"],
        "end_to_end": {t: v["median"] for t, v in e2e.items()},
        "end_to_end_p90": {t: v["p90"] for t, v in e2e.items()},
        "end_to_end_stages": {t: v["stages"] for t, v in e2e.items()},
        "runtime": m.runtime,
        "detector_runtime": getattr(det, "name", ""),
        "cpu": lat.machine()["cpu"],
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
                  "cpu": lat.machine()["cpu"], "threads": ["1"]}
    for e in row.values():
        e.latency_ms = latency_ms


# --- on a phone -------------------------------------------------------------------------------------------------------
def _benchmark_device(cfg: BenchConfig, samples, reader_skips) -> BenchResult:
    """Score predictions made on a phone by edgekd.bench.device with the same metric code.

    Each model and protocol runs once per thread count; accuracy comes from the first thread count, latencies from
    all of them. The APK is installed on the first run only; faces whose image file is missing are skipped, as on
    the desktop.
    """
    for s in samples:
        if _image_missing(s):
            log.warning("%s: image file not found; face %s skipped", s.image_path, s.id)
    skipped = reader_skips + [s.id for s in samples if _image_missing(s)]
    samples = [s for s in samples if not _image_missing(s)]
    entries: list[Entry] = []
    for m in cfg.models:
        for p in cfg.protocols:
            entries.append(_device_entry(cfg, Path(str(m)), p, samples, install=not entries))
    return finish(cfg, entries, samples, skipped, None)


def _device_entry(cfg: BenchConfig, path: Path, protocol: str, samples, install: bool) -> Entry:
    from edgekd.bench import device  # lazy: loads jsonschema (~40 ms), for --device runs only

    e = Entry(path.name, protocol, "device", str(path), size_mb=path.stat().st_size / 1e6 if path.is_file() else None)
    for k, t in enumerate(cfg.threads):
        options = cfg.device_run_options(t, protocol)
        if not (install and k == 0):
            options = dataclasses.replace(options, apk=None)  # installed once is enough
        run = device.run_on_device(path, samples, options)
        _merge_device_run(e, run, first=k == 0)
    return e


def _merge_device_run(e: Entry, run, first: bool) -> None:
    """Accuracy and runtime from the first thread count; each thread count's latencies beside the others."""
    lat_t = run.latency_ms()
    if first:
        e.predictions, e.runtime, e.latency_ms = dict(run.predictions), run.runtime_name(), lat_t
        return
    for key in ("model", "model_p90", "end_to_end", "end_to_end_p90", "end_to_end_stages"):
        if key in lat_t:
            e.latency_ms.setdefault(key, {}).update(lat_t[key])
    e.latency_ms["threads"] = list(e.latency_ms["threads"]) + list(lat_t["threads"])
