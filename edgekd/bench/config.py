"""BenchConfig: everything one ``edgekd bench`` run is asked to do, checked in one place before any work starts.

A mistyped option should cost the user a one-line error naming it, not minutes of reading a dataset and loading
models first; and results.json keeps the config beside the numbers, so a run can be repeated from its folder.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from edgekd.bench.protocols import PROTOCOLS, parse_protocols
from edgekd.core.errors import OptionError, check_range
from edgekd.core.schemes import get_scheme
from edgekd.core.settings import check_choices, check_ranges, setting
from edgekd.data.readers import DATASETS, dataset_format

PEERS = ("dlib", "mediapipe")  # dlib: HOG + 68-point predictor; mediapipe: Face Mesh mapped to 68 points
from edgekd.runtime.blazeface import BACKENDS as DETECTOR_BACKENDS  # noqa: E402  (the ones `predict` offers)
from edgekd.runtime.predictor import MAX_REFINE, TTA  # noqa: E402  (test-time choices, one list)

SPLITS = ("test", "val", "train")  # val: a prepared folder's validation faces, to choose settings without the test set
DEVICES = ("desktop", "pixel")  # pixel: the one Android phone attached over adb (--serial picks among several)
RUN_BY_BENCH = ("threads", "protocol")  # device options the bench sets per run from --threads and --crop


@dataclass
class BenchConfig:
    """One benchmark run (a configuration, hence more than eight fields; each is an `edgekd bench` option).

    models: .tflite paths, Keras checkpoints or LandmarkModel-like objects. data: the dataset root as downloaded
    (None: latency only, on a sample face). dataset / split: which reader and split ("val": the validation faces
    of the prepared folder ``prepared``, read from their original images under ``data``). out: folder for results.json,
    report.md and plots (None: nothing written). crop: "detector", "gt" or "both". threads: thread counts to time.
    compare: peers scored in the same run (dlib, mediapipe). limit: only the first N faces. device: "desktop" or
    "pixel".
    device_options: for --device pixel, edgekd.bench.device.DeviceOptions fields (serial, adb, apk,
    benchmark_binary, ...). progress: a progress bar. worst: faces per worst-case sheet. e2e_images: images the
    end-to-end latency is timed on. video: also the video row (edgekd.bench.video: tracking vs detector crops on
    pan-and-zoom clips of the test faces, and on talking ones for 300-W faces; off by default, it adds passes
    over every face). video_frames: frames per clip. tta: "flip" adds a flip-averaged row of every model beside
    its plain one. refine: N > 0 adds a row of every model that cuts each face N more times from its own predicted
    points. detector_backend: the face detector's runtime, as for `predict` ("auto" = "litert": BlazeFace on LiteRT,
    the pipeline `predict` runs; "tasks": MediaPipe Tasks' FaceDetector, what the Android app runs).
    """

    models: Sequence = ()
    data: str | Path | None = None  # `--root`, as every verb names a dataset root as downloaded
    dataset: str = setting("300w", "Dataset format and landmarks (a --root with a dataset.yaml names its own).",
                           choices=lambda: tuple(DATASETS))
    out: str | Path | None = None  # `--out-dir`, as every verb names a folder it writes
    crop: str = setting("detector", "Crop from the face detector's box (as an app does), from the ground truth "
                                    "(paper), or both.", choices=lambda: (*PROTOCOLS, "both"))
    threads: Sequence[int] = setting((1, 2), "Thread counts to time.")
    compare: tuple[str, ...] = setting((), "Peers scored in the same run (repeatable): dlib (HOG + 68-point "
                                           "predictor), mediapipe (Face Mesh on LiteRT behind the same detector, "
                                           "mapped to 68 points).", choices=PEERS)
    limit: int | None = setting(None, "Only the first N faces of the split (quick checks), 1 or more.",
                                range={"lo": 1, "integer": True})
    device: str = setting("desktop", "desktop, or pixel: the one Android phone attached over adb (runs "
                                     "android_demo's evaluation mode).", choices=DEVICES)
    device_options: dict = field(default_factory=dict)  # `--serial`, `--adb`, `--apk`, `--benchmark-binary`
    split: str = setting("test", "val: the validation faces of --prepared (from their images under --root), to "
                                 "choose settings such as --refine or --tta without reading the test set; train: "
                                 "every training face as downloaded, validation faces included.", choices=SPLITS)
    prepared: str | Path | None = setting(None, "With --split val: the prepared folder (`edgekd data prepare`) whose "
                                                "validation faces to score.", path="dir")
    progress: bool = True
    worst: int = 12
    e2e_images: int = 20
    video: bool = setting(False, "Also a video row: each face as a pan-and-zoom clip (and as a talking one, for "
                                 "300-W faces), per-frame time and NME with tracking vs detector crops on the "
                                 "same frames (adds passes over every face).")
    video_frames: int = 20
    tta: str = setting("none", "flip: every model also as a flip-averaged row (two model runs per face), as "
                               "`predict --tta`.", choices=TTA)
    refine: int = setting(0, f"Cut each face again N times from its own predicted points and predict again (N more "
                             f"model runs): crops from the detector's box come closer to ground-truth ones. 0 to "
                             f"{MAX_REFINE}.", range={"lo": 0, "hi": MAX_REFINE, "integer": True})
    detector_backend: str = setting("auto", "auto = litert: BlazeFace on LiteRT (the boxes MediaPipe Tasks finds, "
                                            "without its wrapper's cost); tasks: MediaPipe Tasks' FaceDetector, as "
                                            "the Android app runs it.", choices=DETECTOR_BACKENDS)

    def __post_init__(self):
        self.models = list(self.models or ())
        self.protocols = parse_protocols(self.crop)
        self.threads = _thread_counts(self.threads)
        self.compare = tuple(dict.fromkeys(str(c).lower() for c in self.compare or ()))  # each peer once
        self.device = str(self.device).lower()
        self.device_options = dict(self.device_options or {})
        # a root with a dataset.yaml (a user's own points) names its scheme itself; else --dataset does. The format
        # is read here once, and the runner reads the faces through it (``read``)
        self.format = (dataset_format(self.dataset, self.data) if self.data is not None and Path(self.data).is_dir()
                       else None)
        self.scheme = self.format.scheme if self.format is not None else get_scheme(self.dataset)
        self.validate()

    def validate(self) -> None:
        """Every option's check, one line naming the option on the first failure (OptionError)."""
        self._check_choices()
        self._check_counts()
        self._check_device()
        self._check_video()

    def _check_choices(self) -> None:
        check_choices(self)  # each field's declared choices and ranges (--crop's spellings: parse_protocols)
        check_ranges(self)
        if not self.models and not self.compare:
            raise OptionError("nothing to benchmark: give at least one model (or --compare dlib / mediapipe)")
        for peer in self.compare:
            if self.scheme.num_points != 68:
                raise OptionError(f"--compare {peer} predicts 68 points; the dataset's scheme {self.scheme.name} has "
                                  f"{self.scheme.num_points}")
        if self.tta != "none" and self.device != "desktop":
            raise OptionError(f"--tta {self.tta} runs on the desktop only; leave it out with --device {self.device}")
        if self.refine and self.device != "desktop":
            raise OptionError(f"--refine runs on the desktop only; leave it out with --device {self.device}")
        if self.detector_backend == "litert" and self.device != "desktop":
            raise OptionError(f"--detector-backend litert runs on the desktop only; the app on --device "
                              f"{self.device} runs MediaPipe Tasks")
        if self.split == "val" and (self.prepared is None or self.data is None):
            raise OptionError("--split val needs --root (the images) and --prepared (the prepared folder whose "
                              "validation faces to score)")
        if self.prepared is not None and self.split != "val":
            raise OptionError(f"--prepared is read with --split val only (here --split {self.split})")

    def _check_counts(self) -> None:
        check_range("worst", self.worst, lo=0, integer=True)
        check_range("e2e_images", self.e2e_images, lo=1, integer=True)
        check_range("video_frames", self.video_frames, lo=2, integer=True)

    def _check_video(self) -> None:
        if not self.video:
            return
        if self.device != "desktop":
            raise OptionError(f"--video runs on the desktop only; leave it out with --device {self.device}")
        if self.data is None:
            raise OptionError("--video needs --root, the dataset (its clips are made from the test faces)")
        if not self.models:
            raise OptionError("--video tracks edgekd models: give at least one model")

    def _check_device(self) -> None:
        if self.device not in DEVICES:
            raise OptionError(f"--device {self.device}: expected desktop or pixel (pick a phone with --serial)")
        if self.device == "desktop":
            if self.device_options:
                key = next(iter(self.device_options)).replace("_", "-")
                raise OptionError(f"--{key} is a phone option: add --device pixel")
            return
        if self.data is None:
            raise OptionError(f"--device {self.device} needs --root, the dataset (accuracy is scored on the desktop)")
        if self.compare:
            raise OptionError(f"--compare runs on the desktop only; leave it out with --device {self.device}")
        for m in self.models:
            if not isinstance(m, (str, Path)):
                raise OptionError(f"--device {self.device} runs .tflite files; give the model's path, not {m!r}")
        from edgekd.bench.device import DeviceOptions  # lazy: loads jsonschema (~40 ms), for --device runs only

        names = {f.name for f in dataclasses.fields(DeviceOptions)} - set(RUN_BY_BENCH)
        for key in self.device_options:
            if key not in names:
                raise OptionError(f"device option {key!r}: expected one of {', '.join(sorted(names))}")
        DeviceOptions(**self.device_options)  # its own checks (apk and benchmark binary exist, ...)

    def device_run_options(self, threads: int, protocol: str):
        """The DeviceOptions of one phone run of this config."""
        from edgekd.bench.device import DeviceOptions  # lazy: loads jsonschema, as above

        return DeviceOptions(**self.device_options, threads=threads, protocol=protocol)

    def to_json(self) -> dict:
        """What results.json records: the options as given (models by path or name)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["models"] = [str(getattr(m, "path", None) or getattr(m, "name", None) or m)
                         if not isinstance(m, (str, Path)) else str(m) for m in self.models]
        out["data"] = None if self.data is None else str(self.data)
        out["out"] = None if self.out is None else str(self.out)
        out["prepared"] = None if self.prepared is None else str(self.prepared)
        out["threads"], out["compare"] = list(self.threads), list(self.compare)
        out["device_options"] = {k: v if isinstance(v, (bool, int, float, type(None))) else str(v)
                                 for k, v in self.device_options.items()}
        return out


def _thread_counts(threads) -> tuple[int, ...]:
    """--threads as a tuple of counts >= 1 (default 1 when empty)."""
    out = []
    for t in threads or (1,):
        try:
            n = float(t)
        except (TypeError, ValueError):
            raise OptionError(f"--threads {t!r}: expected whole numbers like 1,2") from None
        check_range("--threads", int(n) if n.is_integer() else n, lo=1, integer=True)
        out.append(int(n))
    return tuple(out)
