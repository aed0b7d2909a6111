"""Landmarks and latency measured on an Android phone, through adb and the demo app's evaluation mode.

``run_on_device`` pushes the model and the test images into the app's external files folder
(``/sdcard/Android/data/org.edgekd.demo/files/eval/RUN/``: adb may write there and the app may read it without any
permission on every Android version), starts ``EvalActivity`` with ``am start``, polls for the ``done`` marker and
pulls ``result.json``. The phone runs the same pipeline as the live demo (MediaPipe face detector, the crop from the
model's metadata, LiteRT with XNNPACK or the GPU delegate) and returns points in the original image, so the bench's
desktop metric code scores them unchanged. The JSON formats both ways are one JSON Schema,
``device_eval.schema.json`` next to this module, which the Kotlin/Java side writes with the constants of
``android_demo/.../DeviceEvalJson.java``.

Images are sent as lossless PNGs of exactly the pixels the desktop sees (decoded here), so JPEG decoders and EXIF
handling cannot make the phone's input differ. Optional: TFLite's ``benchmark_model`` binary for model-only latency.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgekd.errors import DataError, EdgekdError, ModelError
from edgekd.fileio import write_json

PACKAGE = "org.edgekd.demo"
ACTIVITY = f"{PACKAGE}/.EvalActivity"
REMOTE_ROOT = f"/sdcard/Android/data/{PACKAGE}/files/eval"
FORMAT = "edgekd-device-eval/1"
REQUEST_FORMAT = "edgekd-device-request/1"
SCHEMA_PATH = Path(__file__).with_name("device_eval.schema.json")
STAGES = ("decode", "detector", "crop", "inference", "landmarks", "total")
PROTOCOLS = ("detector", "gt")
# am start extras; the app reads the same names (DeviceEvalJson.EXTRA_*).
EXTRAS = {"run": "run", "model": "model", "threads": "threads", "delegate": "delegate", "warmup": "warmup",
          "prepare": "prepare"}
REMOTE_MODEL = "model.tflite"
BENCHMARK_DIR = "/data/local/tmp"

APP_HINT = "build android_demo (see android_demo/README.md) and pass --apk app/build/outputs/apk/debug/app-debug.apk"


@dataclass
class DeviceRun:
    """What the phone measured, keyed by sample id, ready for the desktop metric code.

    predictions: (N, 2) float32 0-based image points, or None where no face was found or the image failed.
    timings: stage ("detector", "crop", "inference", "landmarks", "total", "decode") -> milliseconds, one value per
        image where that stage ran, in sample order (``landmarks`` = crop + inference + output decoding; ``total`` =
        detector + landmarks, end to end from the decoded image); ``end_to_end`` is ``total`` of the images where
        landmarks were predicted (the desktop's end-to-end latency leaves detector misses out too).
    device: the app's Build fields (model, android_release, soc_model, abis, ...) plus the adb serial.
    runtime: the app's runtime fields (threads, delegate actually used, input type, init times, ...), the app
        version, and ``benchmark_model`` latencies (microseconds) when that binary was given.
    details: per sample id, the file name on the phone, image size, face count, detector score and box, the crop
        box, and any per-image error.
    """

    predictions: dict[str, np.ndarray | None]
    timings: dict[str, list[float]]
    device: dict
    runtime: dict
    details: dict[str, dict] = field(default_factory=dict)

    def device_name(self) -> str:
        d = self.device
        soc = d.get("soc_model") or d.get("board_platform") or d.get("hardware") or "unknown SoC"
        abi = (d.get("abis") or ["?"])[0]
        name = f"{d.get('manufacturer') or ''} {d.get('model') or '?'}".strip()
        return f"{name} (Android {d.get('android_release')}, {soc}, {abi})"

    def runtime_name(self) -> str:
        r = self.runtime
        engine = "GPU delegate" if r.get("delegate") == "gpu" else "XNNPACK"
        return (f"LiteRT {r.get('litert_version') or ''} {engine}, {r.get('threads')} threads, "
                f"{r.get('input_type')} input, on {self.device_name()}").replace("  ", " ")

    def latency_ms(self) -> dict:
        """Medians and p90s in the bench report's ``latency_ms`` layout (edgekd.bench.runner), under this thread
        count: model = interpreter call, crop = warp + input encoding, end_to_end = detector + crop + model +
        inverse crop, faces found only)."""
        from edgekd.timing import stats

        t = str(self.runtime.get("threads"))
        model, e2e, det, crop = (stats(self.timings.get(k, []))
                                 for k in ("inference", "end_to_end", "detector", "crop"))
        return {"model": {t: model["median"]}, "model_p90": {t: model["p90"]},
                "detector": det["median"], "detector_p90": det["p90"], "crop": crop["median"],
                "end_to_end": {t: e2e["median"]}, "end_to_end_p90": {t: e2e["p90"]},
                "runtime": self.runtime_name(),
                "detector_runtime": f"MediaPipe BlazeFace short-range (tasks-vision, CPU) on {self.device_name()}",
                "threads": [t]}


# --- adb ------------------------------------------------------------------------------------------------------------
def find_adb(adb: str | os.PathLike | None = None) -> str:
    """The adb executable: the given path, else PATH, else $ANDROID_HOME / $ANDROID_SDK_ROOT platform-tools."""
    if adb is not None:
        path = Path(adb)
        if not path.is_file() or not os.access(path, os.X_OK):
            raise EdgekdError(f"{path}: no adb executable there; pass the path of Android platform-tools' adb")
        return str(path)
    found = shutil.which("adb")
    if found:
        return found
    for var in ("ANDROID_HOME", "ANDROID_SDK_ROOT"):
        root = os.environ.get(var)
        if root:
            candidate = Path(root) / "platform-tools" / "adb"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise EdgekdError("adb not found: install Android platform-tools and put adb on PATH, set ANDROID_HOME, "
                      "or pass --adb PATH")


class Adb:
    """One device's adb: every command carries ``-s SERIAL``; failures become one-line EdgekdErrors."""

    def __init__(self, exe: str, serial: str | None = None, timeout: float = 600.0):
        self.exe = exe
        self.serial = serial
        self.timeout = timeout

    def run(self, *args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
        cmd = [self.exe] + (["-s", self.serial] if self.serial else []) + [str(a) for a in args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            raise EdgekdError(f"`adb {' '.join(map(str, args))}` did not finish in {timeout or self.timeout:.0f} s; "
                              "check the connection (adb devices)") from None
        except OSError as e:
            raise EdgekdError(f"cannot run {self.exe}: {e.strerror}") from None
        if check and proc.returncode != 0:
            raise EdgekdError(f"`adb {' '.join(map(str, args))}` failed: {_last_line(proc)}")
        return proc

    def shell(self, command: str, check: bool = True, timeout: float | None = None) -> str:
        return self.run("shell", command, check=check, timeout=timeout).stdout


def list_devices(adb: Adb) -> list[tuple[str, str]]:
    """(serial, state) of everything `adb devices -l` lists; state is device, unauthorized, offline, ..."""
    out = adb.run("devices", "-l", timeout=30).stdout
    devices = []
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("List of devices") or line.startswith("*"):
            continue
        parts = line.split()
        if len(parts) >= 2:
            # "no permissions (...)" spans several words; the state is what follows the serial.
            state = "no permissions" if parts[1] == "no" else parts[1]
            devices.append((parts[0], state))
    return devices


def pick_device(exe: str, serial: str | None = None) -> str:
    """The serial to use: the given one if attached and ready, else the only ready device."""
    devices = list_devices(Adb(exe))
    states = dict(devices)
    if serial is not None:
        if serial not in states:
            attached = ", ".join(s for s, _ in devices) or "none"
            raise EdgekdError(f"device {serial} is not attached (attached: {attached}); see `adb devices -l`")
        _check_state(serial, states[serial])
        return serial
    ready = [s for s, state in devices if state == "device"]
    if len(ready) == 1:
        return ready[0]
    if len(ready) > 1:
        raise EdgekdError(f"{len(ready)} Android devices attached ({', '.join(ready)}); choose one with --serial")
    if devices:
        _check_state(*devices[0])
    raise EdgekdError("no Android device attached: connect a phone with USB debugging enabled "
                      "(`adb devices` lists none)")


def _check_state(serial: str, state: str) -> None:
    if state == "device":
        return
    if state == "unauthorized":
        raise EdgekdError(f"device {serial} is unauthorized: unlock it and accept the USB debugging prompt")
    raise EdgekdError(f"device {serial} is {state}: reconnect it (or `adb kill-server`) until `adb devices` shows it "
                      "as 'device'")


def getprop(adb: Adb) -> dict[str, str]:
    props = {}
    for line in adb.shell("getprop", check=False).splitlines():
        m = re.match(r"\[(.+?)\]: \[(.*)\]", line.strip())
        if m:
            props[m.group(1)] = m.group(2)
    return props


# --- the run --------------------------------------------------------------------------------------------------------
def run_on_device(
    model_path: str | os.PathLike,
    samples: Sequence,
    serial: str | None = None,
    adb: str | os.PathLike | None = None,
    apk: str | os.PathLike | None = None,
    threads: int = 4,
    delegate: str = "cpu",
    protocol: str = "detector",
    warmup: int = 3,
    workdir: str | os.PathLike | None = None,
    timeout: float = 1800.0,
    poll_interval: float = 1.0,
    benchmark_binary: str | os.PathLike | None = None,
    keep_remote: bool = False,
    log: Callable[[str], None] | None = None,
) -> DeviceRun:
    """Runs ``model_path`` on the attached phone over ``samples`` and returns what it measured.

    samples: objects with ``id`` and either ``image`` (HxWx3 uint8 RGB) or an ``image_path`` that
        ``edgekd.data.readers.load_image`` reads (``edgekd.data.readers.Sample``). With ``points``, the two crop
        protocols run as on the desktop (edgekd.bench.protocols): "gt" crops CropSpec.box_from_points (no
        detector); "detector" uses the detection overlapping the landmark box most, none overlapping being a miss.
        Without points, "detector" takes the highest-scoring face.
    apk: install (or update) the demo app first. workdir: keep the pushed PNGs and the pulled result.json there.
    benchmark_binary: TFLite's ``benchmark_model`` for the device's ABI; adds model-only latency to ``runtime``.
    """
    if delegate not in ("cpu", "gpu"):
        raise EdgekdError(f"delegate {delegate!r}: expected cpu or gpu")
    if protocol not in PROTOCOLS:
        raise EdgekdError(f"protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if threads < 1:
        raise EdgekdError(f"threads {threads}: expected 1 or more")
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"{model_path}: no such model file")
    from edgekd import metadata

    metadata.read(model_path)  # fail here, not on the phone, when the model is not an edgekd export
    if apk is not None and not Path(apk).is_file():
        raise EdgekdError(f"{apk}: no such APK; {APP_HINT}")
    if benchmark_binary is not None:
        if str(benchmark_binary).endswith(".apk"):
            raise EdgekdError(f"{benchmark_binary}: the benchmark_model APK is not supported; pass the native "
                              "benchmark_model binary for the phone's ABI (android_aarch64)")
        if not Path(benchmark_binary).is_file():
            raise EdgekdError(f"{benchmark_binary}: no such benchmark_model binary")
    say = log or (lambda message: None)

    exe = find_adb(adb)
    serial = pick_device(exe, serial)
    dev = Adb(exe, serial)
    with tempfile.TemporaryDirectory(prefix="edgekd-device-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        files = _write_inputs(samples, work, protocol)

        _ensure_app(dev, apk, say)
        props = getprop(dev)

        dev.shell("input keyevent KEYCODE_WAKEUP", check=False)
        # Let the app create its own files folder before adb writes into it.
        _am_start(dev, f"-W -n {ACTIVITY} --ez {EXTRAS['prepare']} true")
        run_id = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        remote = f"{REMOTE_ROOT}/{run_id}"
        dev.shell(f"mkdir -p {shlex.quote(remote)}")
        try:
            say(f"pushing the model and {len(files)} images to {serial}")
            dev.run("push", str(model_path), f"{remote}/{REMOTE_MODEL}")
            dev.run("push", str(work / "images"), f"{remote}/")
            dev.run("push", str(work / "request.json"), f"{remote}/request.json")
            say(f"running {ACTIVITY} ({threads} threads, {delegate})")
            _am_start(dev, f"-S -n {ACTIVITY} --es {EXTRAS['run']} {run_id} --es {EXTRAS['model']} {REMOTE_MODEL} "
                           f"--ei {EXTRAS['threads']} {threads} --es {EXTRAS['delegate']} {delegate} "
                           f"--ei {EXTRAS['warmup']} {warmup}")
            _wait_done(dev, remote, timeout, poll_interval)
            local = work / "result.json"
            dev.run("pull", f"{remote}/result.json", str(local))
        finally:
            if not keep_remote:
                dev.shell(f"rm -rf {shlex.quote(remote)}", check=False)
        doc = read_result(local)
        if doc["run_id"] != run_id:
            raise DataError(f"{local}: result of run {doc['run_id']!r}, expected {run_id!r}")
        if doc["status"] != "ok":
            raise EdgekdError(f"the app could not run {model_path.name} on {serial}: {doc['error']}")
        result = to_device_run(doc, files)
        result.device["serial"] = serial
        for key, prop in (("board_platform", "ro.board.platform"), ("soc_model", "ro.soc.model"),
                          ("soc_manufacturer", "ro.soc.manufacturer")):
            if not result.device.get(key) and props.get(prop):
                result.device[key] = props[prop]
        result.runtime["model_path"] = str(model_path)
        if benchmark_binary is not None:
            say("running benchmark_model")
            result.runtime["benchmark_model"] = run_benchmark_model(dev, benchmark_binary, model_path, threads,
                                                                    delegate)
        return result


def _ensure_app(dev: Adb, apk, say) -> None:
    """Installs ``apk`` when given (keeping data, granting permissions), then checks the app is there."""
    if apk is not None:
        say(f"installing {apk} on {dev.serial}")
        out = dev.run("install", "-r", "-g", str(apk), timeout=300)
        if "Success" not in out.stdout:
            raise EdgekdError(f"installing {apk} failed: {_last_line(out)}")
    if "package:" not in dev.shell(f"pm path {PACKAGE}", check=False):
        raise EdgekdError(f"the edgekd demo app ({PACKAGE}) is not installed on {dev.serial}: {APP_HINT}")


def _write_inputs(samples: Sequence, work: Path, protocol: str) -> dict[str, str]:
    """Writes images/NNNNNN.png and request.json; returns phone file name -> sample id."""
    import cv2

    from edgekd.data.crop import CropSpec
    from edgekd.detector import points_box

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
        image = _image_of(sample)
        name = f"{i:06d}.png"
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(images / name), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise DataError(f"{images / name}: could not write the image")
        points = getattr(sample, "points", None)
        box = match = None
        if points is not None and len(points):
            points = np.asarray(points, dtype=np.float32)
            box = [float(v) for v in CropSpec.box_from_points(points)]
            match = [float(v) for v in points_box(points)]
        elif protocol == "gt":
            raise DataError(f"sample {sid}: protocol gt needs its landmarks (points) for the crop box")
        files[name] = sid
        entries.append({"file": name, "box": box, "match": match})
    if not files:
        raise DataError("no samples to run on the device")
    request = {"format": REQUEST_FORMAT, "protocol": protocol, "images": entries}
    write_json(work / "request.json", request)
    return files


def _image_of(sample) -> np.ndarray:
    image = getattr(sample, "image", None)
    if image is None:
        from edgekd.data.readers import load_image

        image = load_image(sample)
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"sample {sample.id}: expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
    return image


def _am_start(dev: Adb, args: str) -> None:
    out = dev.run("shell", f"am start {args}", check=False, timeout=120)
    text = out.stdout + out.stderr
    # am reports a missing activity or a refused intent with exit status 0 on older Android versions.
    if out.returncode != 0 or re.search(r"^(Error|Exception|java\.lang\.SecurityException)", text, re.M):
        raise EdgekdError(f"`am start {args}` failed: {_last_line(out)}; is the app up to date? {APP_HINT}")


def _wait_done(dev: Adb, remote: str, timeout: float, poll_interval: float) -> None:
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


# --- result.json ----------------------------------------------------------------------------------------------------
def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def schema_errors(value, schema: dict | None = None, definition: str | None = None) -> list[str]:
    """Where ``value`` breaks the device JSON schema (the result document, or ``$defs/<definition>``).

    A small checker for the keywords the schema uses (type, const, enum, required, properties,
    additionalProperties, items, minItems, maxItems, minimum, oneOf, $ref), so no jsonschema dependency is needed.
    """
    root = schema or load_schema()
    node = root["$defs"][definition] if definition else root
    return _errors(value, node, root, "$")


def read_result(path: str | os.PathLike) -> dict:
    """A result.json checked against the schema; one-line DataError naming the first problem."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not JSON ({e})") from None
    problems = schema_errors(doc)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(f"{path}: not an {FORMAT} result: {problems[0]}{more}")
    return doc


def to_device_run(doc: dict, files: dict[str, str] | None = None) -> DeviceRun:
    """DeviceRun of a checked result document; ``files`` maps phone file names to sample ids (default: the names)."""
    predictions: dict[str, np.ndarray | None] = {}
    timings: dict[str, list[float]] = {stage: [] for stage in STAGES + ("end_to_end",)}
    details: dict[str, dict] = {}
    seen = set()
    for image in doc["images"]:
        sid = files.get(image["file"]) if files is not None else image["file"]
        if sid is None:
            raise DataError(f"result lists image {image['file']!r}, which was not sent")
        seen.add(image["file"])
        points = image["points"]
        predictions[sid] = None if points is None else np.asarray(points, dtype=np.float32).reshape(-1, 2)
        for stage in STAGES:
            value = image["timings_ms"][stage]
            if value is not None:
                timings[stage].append(float(value))
        if points is not None and image["timings_ms"]["total"] is not None:
            timings["end_to_end"].append(float(image["timings_ms"]["total"]))
        details[sid] = {k: image[k] for k in ("file", "width", "height", "faces", "score", "detector_box", "box",
                                              "error")}
    if files is not None:
        for name, sid in files.items():
            if name not in seen:
                predictions[sid] = None
                details[sid] = {"file": name, "error": "missing from the app's result"}
    runtime = dict(doc["runtime"])
    runtime["app"] = dict(doc["app"])
    runtime["run_id"] = doc["run_id"]
    return DeviceRun(predictions=predictions, timings=timings, device=dict(doc["device"]), runtime=runtime,
                     details=details)


# --- benchmark_model ------------------------------------------------------------------------------------------------
_TIMINGS = re.compile(
    r"Inference timings in us:\s*Init:\s*([\d.]+),\s*First inference:\s*([\d.]+),\s*"
    r"Warmup \(avg\):\s*([\d.eE+-]+),\s*Inference \(avg\):\s*([\d.eE+-]+)")
_RUN = re.compile(r"count=(\d+)\s+first=(\d+)\s+curr=(\d+)\s+min=(\d+)\s+max=(\d+)\s+avg=([\d.eE+-]+)\s+std=(\d+)")
_MEMORY = re.compile(r"Memory footprint delta from the start of the tool \(MB\):\s*init=([\d.]+)\s+overall=([\d.]+)")


def parse_benchmark_output(text: str) -> dict:
    """Latencies (microseconds) from TFLite benchmark_model's output."""
    m = _TIMINGS.search(text)
    if not m:
        last = next((line for line in reversed(text.strip().splitlines()) if line.strip()), "no output")
        raise EdgekdError(f"benchmark_model printed no 'Inference timings in us' line; it ended with: {last.strip()}")
    out = {"init_us": float(m.group(1)), "first_inference_us": float(m.group(2)),
           "warmup_avg_us": float(m.group(3)), "inference_avg_us": float(m.group(4))}
    runs = _RUN.findall(text)
    if runs:  # the last count= line is the measured run (the one before it is the warm-up)
        count, _, _, lo, hi, _, std = runs[-1]
        out.update(inference_count=int(count), inference_min_us=float(lo), inference_max_us=float(hi),
                   inference_std_us=float(std))
    mem = _MEMORY.search(text)
    if mem:
        out.update(memory_init_mb=float(mem.group(1)), memory_overall_mb=float(mem.group(2)))
    return out


def run_benchmark_model(dev: Adb, binary: str | os.PathLike, model_path: Path, threads: int, delegate: str) -> dict:
    remote_bin = f"{BENCHMARK_DIR}/edgekd_benchmark_model"
    remote_model = f"{BENCHMARK_DIR}/edgekd_model.tflite"
    dev.run("push", str(binary), remote_bin)
    dev.run("push", str(model_path), remote_model)
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


# --- helpers --------------------------------------------------------------------------------------------------------
def _errors(value, node: dict, root: dict, path: str) -> list[str]:
    if "$ref" in node:
        return _errors(value, root["$defs"][node["$ref"].rsplit("/", 1)[-1]], root, path)
    if "oneOf" in node:
        matching = sum(not _errors(value, option, root, path) for option in node["oneOf"])
        if matching != 1:
            return [f"{path}: {_show(value)} matches {matching} of the {len(node['oneOf'])} allowed forms"]
    if "const" in node and value != node["const"]:
        return [f"{path}: {_show(value)}, expected {node['const']!r}"]
    if "enum" in node and value not in node["enum"]:
        return [f"{path}: {_show(value)}, expected one of {node['enum']}"]
    if "type" in node:
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if not any(_is_type(value, t) for t in types):
            return [f"{path}: {_show(value)}, expected {' or '.join(types)}"]
    errors = []
    if "minimum" in node and _is_type(value, "number") and value < node["minimum"]:
        errors.append(f"{path}: {value} is below the minimum {node['minimum']}")
    if isinstance(value, dict):
        for key in node.get("required", []):
            if key not in value:
                errors.append(f"{path}: missing {key!r}")
        props = node.get("properties", {})
        if node.get("additionalProperties") is False:
            errors += [f"{path}: unexpected key {key!r}" for key in value if key not in props]
        for key, sub in props.items():
            if key in value:
                errors += _errors(value[key], sub, root, f"{path}.{key}")
    if isinstance(value, list):
        if "minItems" in node and len(value) < node["minItems"]:
            errors.append(f"{path}: {len(value)} items, expected at least {node['minItems']}")
        if "maxItems" in node and len(value) > node["maxItems"]:
            errors.append(f"{path}: {len(value)} items, expected at most {node['maxItems']}")
        if "items" in node:
            for i, item in enumerate(value):
                errors += _errors(item, node["items"], root, f"{path}[{i}]")
    return errors


def _is_type(value, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {"string": str, "array": list, "object": dict}[name])


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _last_line(proc: subprocess.CompletedProcess) -> str:
    """The line that says what went wrong: adb and am print errors last, on stderr or (older versions) stdout."""
    for text in (proc.stderr, proc.stdout):
        lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return f"exit status {proc.returncode}"


