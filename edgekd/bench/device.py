"""Landmarks and latency measured on an Android phone, through adb and the demo app's evaluation mode.

``run_on_device`` pushes the model and the test images into the app's external files folder
(``/sdcard/Android/data/org.edgekd.demo/files/eval/RUN/``: adb may write there and the app may read it without any
permission on every Android version), starts ``EvalActivity`` with ``am start``, polls for the ``done`` marker and
pulls ``result.json``. The phone runs the same pipeline as the live demo (MediaPipe face detector, the crop from the
model's metadata, LiteRT with XNNPACK or the GPU delegate) and returns points in the original image, so the bench's
desktop metric code scores them unchanged.

This module is the run itself; the adb client is ``edgekd.bench.adb``, the JSON formats both ways are one JSON
Schema checked by ``edgekd.bench.device_schema`` (the Kotlin/Java side writes it with the constants of
``android_demo/.../DeviceEvalJson.java``), and ``edgekd.bench.device_result`` turns what comes back into a
``DeviceRun``. Their public names are importable from here too, where users and the app's tests know them.

Images are sent as lossless PNGs of exactly the pixels the desktop sees (decoded here), so JPEG decoders and EXIF
handling cannot make the phone's input differ. Optional: TFLite's ``benchmark_model`` binary for model-only latency.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgekd.bench.adb import Adb, connect, find_adb, last_line  # noqa: F401  (find_adb: part of this API)
from edgekd.bench.device_result import (STAGES, DeviceRun, parse_benchmark_output, read_result,  # noqa: F401
                                        to_device_run)
from edgekd.bench.device_schema import FORMAT, REQUEST_FORMAT, SCHEMA_PATH, load_schema, schema_errors  # noqa: F401
from edgekd.bench.protocols import PROTOCOLS
from edgekd.core import metadata
from edgekd.core.crop import CropSpec
from edgekd.core.detector import points_box
from edgekd.core.errors import DataError, EdgekdError, ModelError, OptionError, check_range
from edgekd.core.fileio import write_json
from edgekd.core.imageio import load_image

PACKAGE = "org.edgekd.demo"
ACTIVITY = f"{PACKAGE}/.EvalActivity"
REMOTE_ROOT = f"/sdcard/Android/data/{PACKAGE}/files/eval"
# am start extras; the app reads the same names (DeviceEvalJson.EXTRA_*).
EXTRAS = {"run": "run", "model": "model", "threads": "threads", "delegate": "delegate", "warmup": "warmup",
          "prepare": "prepare"}
REMOTE_MODEL = "model.tflite"
BENCHMARK_DIR = "/data/local/tmp"
DELEGATES = ("cpu", "gpu")

APP_HINT = "build android_demo (see android_demo/README.md) and pass --apk app/build/outputs/apk/debug/app-debug.apk"


@dataclass(frozen=True)
class DeviceOptions:
    """How one evaluation runs on the phone (a configuration, hence more than eight fields), checked on creation.

    serial: the adb serial when several devices are attached. adb: the adb executable (default: PATH,
    $ANDROID_HOME). apk: install (or update) the demo app first. threads, delegate ("cpu" | "gpu"), protocol
    ("detector" | "gt", edgekd.bench.protocols), warmup: what the app runs. workdir: keep the pushed PNGs and the
    pulled result.json there. timeout / poll_interval: seconds to wait for the app, and between looks.
    benchmark_binary: TFLite's ``benchmark_model`` for the device's ABI; adds model-only latency to ``runtime``.
    keep_remote: leave the run folder on the phone. log: called with a line per step.
    """

    serial: str | None = None
    adb: str | os.PathLike | None = None
    apk: str | os.PathLike | None = None
    threads: int = 4
    delegate: str = "cpu"
    protocol: str = "detector"
    warmup: int = 3
    workdir: str | os.PathLike | None = None
    timeout: float = 1800.0
    poll_interval: float = 1.0
    benchmark_binary: str | os.PathLike | None = None
    keep_remote: bool = False
    log: Callable[[str], None] | None = None

    def __post_init__(self):
        if self.delegate not in DELEGATES:
            raise OptionError(f"delegate {self.delegate!r}: expected cpu or gpu")
        if self.protocol not in PROTOCOLS:
            raise OptionError(f"protocol {self.protocol!r}: expected one of {', '.join(PROTOCOLS)}")
        check_range("threads", self.threads, lo=1, integer=True)
        check_range("warmup", self.warmup, lo=0, integer=True)
        check_range("timeout", self.timeout, lo=0, lo_open=True)
        check_range("poll_interval", self.poll_interval, lo=0)
        if self.apk is not None and not Path(self.apk).is_file():
            raise EdgekdError(f"{self.apk}: no such APK; {APP_HINT}")
        binary = self.benchmark_binary
        if binary is not None and str(binary).endswith(".apk"):
            raise EdgekdError(f"{binary}: the benchmark_model APK is not supported; pass the native "
                              "benchmark_model binary for the phone's ABI (android_aarch64)")
        if binary is not None and not Path(binary).is_file():
            raise EdgekdError(f"{binary}: no such benchmark_model binary")

    def say(self, message: str) -> None:
        if self.log is not None:
            self.log(message)


def run_on_device(model_path: str | os.PathLike, samples: Sequence, options: DeviceOptions | None = None,
                  **overrides) -> DeviceRun:
    """Runs ``model_path`` on the attached phone over ``samples`` and returns what it measured.

    samples: objects with ``id`` and either ``image`` (HxWx3 uint8 RGB) or an ``image_path`` that
        ``edgekd.data.readers.load_image`` reads (``edgekd.data.readers.Sample``). With ``points``, the two crop
        protocols run as on the desktop (edgekd.bench.protocols): "gt" crops CropSpec.box_from_points (no
        detector); "detector" uses the detection overlapping the landmark box most, none overlapping being a miss.
        Without points, "detector" takes the highest-scoring face.
    options: a DeviceOptions; keyword ``overrides`` (serial=..., threads=..., ...) replace its fields.
    """
    opts = dataclasses.replace(options or DeviceOptions(), **overrides)
    model_path = _check_model(model_path)
    dev = connect(opts.adb, opts.serial)
    with tempfile.TemporaryDirectory(prefix="edgekd-device-") as tmp:
        work = Path(opts.workdir) if opts.workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        files = write_inputs(samples, work, opts.protocol)
        ensure_app(dev, opts.apk, opts.say)
        props = dev.getprop()
        run_id, local = _run_app(dev, model_path, work, len(files), opts)
        result = _collect(local, run_id, files, dev.serial, model_path)
        _add_props(result, props)
        if opts.benchmark_binary is not None:
            opts.say("running benchmark_model")
            result.runtime["benchmark_model"] = run_benchmark_model(dev, opts.benchmark_binary, model_path,
                                                                    opts.threads, opts.delegate)
        return result


def _check_model(model_path) -> Path:
    """Fails here, not on the phone, when the model is missing or not an edgekd export."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"{model_path}: no such model file")
    metadata.read(model_path)
    return model_path


def ensure_app(dev: Adb, apk, say: Callable[[str], None]) -> None:
    """Installs ``apk`` when given (keeping data, granting permissions), then checks the app is there."""
    if apk is not None:
        say(f"installing {apk} on {dev.serial}")
        dev.install(apk)
    if not dev.has_package(PACKAGE):
        raise EdgekdError(f"the edgekd demo app ({PACKAGE}) is not installed on {dev.serial}: {APP_HINT}")


def _run_app(dev: Adb, model_path: Path, work: Path, count: int, opts: DeviceOptions) -> tuple[str, Path]:
    """Pushes the run folder, starts the evaluation, waits for it and pulls result.json; (run id, local path)."""
    dev.shell("input keyevent KEYCODE_WAKEUP", check=False)
    # Let the app create its own files folder before adb writes into it.
    am_start(dev, f"-W -n {ACTIVITY} --ez {EXTRAS['prepare']} true")
    run_id = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    remote = f"{REMOTE_ROOT}/{run_id}"
    dev.shell(f"mkdir -p {shlex.quote(remote)}")
    local = work / "result.json"
    try:
        opts.say(f"pushing the model and {count} images to {dev.serial}")
        dev.push(model_path, f"{remote}/{REMOTE_MODEL}")
        dev.push(work / "images", f"{remote}/")
        dev.push(work / "request.json", f"{remote}/request.json")
        opts.say(f"running {ACTIVITY} ({opts.threads} threads, {opts.delegate})")
        am_start(dev, f"-S -n {ACTIVITY} --es {EXTRAS['run']} {run_id} --es {EXTRAS['model']} {REMOTE_MODEL} "
                      f"--ei {EXTRAS['threads']} {opts.threads} --es {EXTRAS['delegate']} {opts.delegate} "
                      f"--ei {EXTRAS['warmup']} {opts.warmup}")
        wait_done(dev, remote, opts.timeout, opts.poll_interval)
        dev.pull(f"{remote}/result.json", local)
    finally:
        if not opts.keep_remote:
            dev.shell(f"rm -rf {shlex.quote(remote)}", check=False)
    return run_id, local


def _collect(local: Path, run_id: str, files: dict[str, str], serial: str, model_path: Path) -> DeviceRun:
    """The checked result of this run as a DeviceRun; a failed run is the app's one-line reason."""
    doc = read_result(local)
    if doc["run_id"] != run_id:
        raise DataError(f"{local}: result of run {doc['run_id']!r}, expected {run_id!r}")
    if doc["status"] != "ok":
        raise EdgekdError(f"the app could not run {model_path.name} on {serial}: {doc['error']}")
    result = to_device_run(doc, files)
    result.device["serial"] = serial
    result.runtime["model_path"] = str(model_path)
    return result


def _add_props(result: DeviceRun, props: dict[str, str]) -> None:
    """SoC names from getprop where the app's Build fields have none (Build.SOC_* exists from API 31 only)."""
    for key, prop in (("board_platform", "ro.board.platform"), ("soc_model", "ro.soc.model"),
                      ("soc_manufacturer", "ro.soc.manufacturer")):
        if not result.device.get(key) and props.get(prop):
            result.device[key] = props[prop]


def write_inputs(samples: Sequence, work: Path, protocol: str) -> dict[str, str]:
    """Writes images/NNNNNN.png and request.json; returns phone file name -> sample id."""
    images = work / "images"
    if images.exists():
        shutil.rmtree(images)
    images.mkdir(parents=True)
    files: dict[str, str] = {}
    entries = []
    for i, sample in enumerate(samples):
        sid = str(sample.id)
        if sid in files.values():
            raise DataError(f"sample id {sid!r} appears twice")
        name = f"{i:06d}.png"
        _write_png(images / name, image_of(sample))
        entries.append({"file": name, **_request_boxes(sample, protocol)})
        files[name] = sid
    if not files:
        raise DataError("no samples to run on the device")
    write_json(work / "request.json", {"format": REQUEST_FORMAT, "protocol": protocol, "images": entries})
    return files


def _write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise DataError(f"{path}: could not write the image")


def _request_boxes(sample, protocol: str) -> dict:
    """The crop box (protocol gt) and the landmark box a detection must overlap, as the desktop protocols use."""
    points = getattr(sample, "points", None)
    if points is None or not len(points):
        if protocol == "gt":
            raise DataError(f"sample {sample.id}: protocol gt needs its landmarks (points) for the crop box")
        return {"box": None, "match": None}
    points = np.asarray(points, dtype=np.float32)
    return {"box": [float(v) for v in CropSpec.box_from_points(points)],
            "match": [float(v) for v in points_box(points)]}


def image_of(sample) -> np.ndarray:
    """The sample's pixels as HxWx3 uint8 RGB (grey images repeated into three channels)."""
    image = getattr(sample, "image", None)
    if image is None:
        image = load_image(sample)
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"sample {sample.id}: expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
    return image


def am_start(dev: Adb, args: str) -> None:
    out = dev.run("shell", f"am start {args}", check=False, timeout=120)
    text = out.stdout + out.stderr
    # am reports a missing activity or a refused intent with exit status 0 on older Android versions.
    if out.returncode != 0 or re.search(r"^(Error|Exception|java\.lang\.SecurityException)", text, re.M):
        raise EdgekdError(f"`am start {args}` failed: {last_line(out)}; is the app up to date? {APP_HINT}")


def wait_done(dev: Adb, remote: str, timeout: float, poll_interval: float) -> None:
    """Polls the run folder's ``done`` marker, which the app writes after result.json."""
    deadline = time.monotonic() + timeout
    done = f"{remote}/done"
    while True:
        state = dev.run("shell", f"cat {shlex.quote(done)}", check=False, timeout=60).stdout.strip()
        if state in ("ok", "error"):
            return
        if time.monotonic() >= deadline:
            raise EdgekdError(f"timed out after {timeout:.0f} s waiting for the app to finish ({done} never appeared); "
                              "keep the phone unlocked, see `adb logcat -s edgekd`, or raise the timeout")
        time.sleep(poll_interval)


def run_benchmark_model(dev: Adb, binary: str | os.PathLike, model_path: Path, threads: int, delegate: str) -> dict:
    """Model-only latency (microseconds) from TFLite's benchmark_model, run on the phone and removed afterwards."""
    remote_bin = f"{BENCHMARK_DIR}/edgekd_benchmark_model"
    remote_model = f"{BENCHMARK_DIR}/edgekd_model.tflite"
    dev.push(binary, remote_bin)
    dev.push(model_path, remote_model)
    dev.shell(f"chmod 755 {remote_bin}")
    command = f"{remote_bin} --graph={remote_model} --num_threads={threads} --use_xnnpack=true"
    if delegate == "gpu":
        command += " --use_gpu=true"
    try:
        proc = dev.run("shell", command, check=False, timeout=600)
    finally:
        dev.shell(f"rm -f {remote_bin} {remote_model}", check=False)
    out = parse_benchmark_output(proc.stdout + "\n" + proc.stderr)
    out.update(threads=threads, delegate=delegate, command=command)
    return out
