"""The Android demo checked without the Android toolchain.

Its plain-Java core (TfliteMetadata, CropSpec, ImageWarp, TensorCodec, DeviceEvalJson) is compiled with the host's
javac (Java 8 language and library level, as on Android) and driven by tests/java/EdgekdJavaChecks.java against the
Python code it mirrors: a real converted .tflite with edgekd metadata, crop.py, cv2 warps, the desktop runtime's
quantization, the device JSON schema. The One Euro filter (pure Kotlin) is compiled with kotlinc when there is one.
Gradle files, manifest and resources are checked as text. Skips say which tool is missing.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import edgekd  # noqa: F401
from edgekd.bench import device
from edgekd.core.crop import CropSpec, transform_points, invert, warp
from edgekd.core.metadata import ModelMetadata, embed

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "android_demo"
SRC = APP / "app" / "src" / "main" / "java" / "org" / "edgekd" / "demo"
RES = APP / "app" / "src" / "main" / "res"
DRIVER = Path(__file__).resolve().parent / "java" / "EdgekdJavaChecks.java"

JAVAC, JAVA, KOTLINC = shutil.which("javac"), shutil.which("java"), shutil.which("kotlinc")
needs_java = pytest.mark.skipif(not (JAVAC and JAVA), reason="javac/java not installed")


@pytest.fixture(scope="module")
def java(tmp_path_factory):
    """Compiles the app's Java sources and the driver once; returns run(*commands) -> answer lines."""
    out = tmp_path_factory.mktemp("javac")
    proc = subprocess.run([JAVAC, "--release", "8", "-Xlint:all", "-Xlint:-options", "-Werror", "-encoding", "UTF-8",
                           "-d", str(out), *map(str, sorted(SRC.glob("*.java"))), str(DRIVER)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

    def run(*commands: str) -> list[str]:
        p = subprocess.run([JAVA, "-cp", str(out), "EdgekdJavaChecks"], input="\n".join(commands) + "\n",
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert len(lines) == len(commands), p.stdout
        return lines

    return run


def _nums(line: str) -> np.ndarray:
    assert not line.startswith("ERROR"), line
    return np.array([float(v) for v in line.split()])


def _spec_args(spec: CropSpec) -> str:
    return f"{spec.input_size} {spec.margin!r} {spec.detector_offset[0]!r} {spec.detector_offset[1]!r} " \
           f"{spec.detector_scale!r}"


# --- tiny real models (one TF conversion each, shared by the module) ------------------------------------------------
@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from runtime_helpers import tiny_keras, to_tflite

    folder = tmp_path_factory.mktemp("tiny_tflite")
    spec = CropSpec(input_size=32, margin=0.2, detector_offset=(0.01, 0.07), detector_scale=1.1)
    meta = ModelMetadata(scheme="300w", num_points=5, flip_permutation=[1, 0, 2, 4, 3], nme_pair=[0, 1], crop=spec,
                         quantization="int8-ptq", training_data="unit test", extra={"note": "üñí \"quoted\""})
    keras_model = tiny_keras(num_points=5, size=32)
    raw = {"float": to_tflite(keras_model, size=32), "int8": to_tflite(keras_model, int8=True, size=32)}
    paths = {}
    for kind, data in raw.items():
        paths[kind] = folder / f"{kind}.tflite"
        paths[kind].write_bytes(embed(data, meta))
    paths["plain"] = folder / "plain.tflite"
    paths["plain"].write_bytes(raw["float"])
    return paths, meta


# --- metadata -------------------------------------------------------------------------------------------------------
@needs_java
def test_metadata_reader_returns_the_embedded_json(java, tiny_models, tmp_path):
    paths, meta = tiny_models
    again = ModelMetadata(**{**meta.__dict__, "scheme": "wflw", "num_points": 5})
    replaced = tmp_path / "replaced.tflite"
    replaced.write_bytes(embed(paths["float"].read_bytes(), again))  # embedding twice keeps only the new entry
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(paths["float"].read_bytes()[:200])
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all")
    out = java(f"meta {paths['float']}", f"meta {paths['int8']}", f"meta {paths['plain']}",
               f"metanames {paths['int8']}", f"meta {replaced}", f"meta {truncated}", f"meta {junk}")
    for line in out[:2]:
        assert line.startswith("JSON ")
        text = line[5:].replace("\\n", "\n")
        assert text == meta.to_json()
        assert ModelMetadata.from_json(text) == meta
    assert out[2] == "NONE"
    names = out[3].split(",")
    assert "edgekd" in names and len(names) >= 2  # the converter's own entries (min_runtime_version, ...) come first
    assert ModelMetadata.from_json(out[4][5:].replace("\\n", "\n")).scheme == "wflw"
    assert out[5].startswith("ERROR IllegalArgumentException: truncated or corrupt")
    assert out[6].startswith("ERROR IllegalArgumentException: not a TFLite model")


# --- crop maths -----------------------------------------------------------------------------------------------------
@needs_java
def test_crop_maths_match_crop_py(java):
    rng = np.random.default_rng(3)
    cases, commands = [], []
    for _ in range(20):
        spec = CropSpec(input_size=int(rng.choice([64, 96, 128, 160])), margin=float(rng.uniform(0, 0.4)),
                        detector_offset=(float(rng.normal(0, 0.05)), float(rng.normal(0, 0.1))),
                        detector_scale=float(rng.uniform(0.8, 1.3)))
        det = rng.uniform(5, 400, 4)
        pts = rng.uniform(0, 500, (7, 2)).astype(np.float32)
        out = rng.uniform(-0.6, 0.6, 14).astype(np.float32)
        box = spec.box_from_detector(det)
        m = spec.matrix(box)
        other = rng.uniform(5, 400, 4)
        cases.append((spec, det, pts, out, box, m, other))
        commands += [f"box_from_detector {_spec_args(spec)} " + " ".join(map(repr, det.tolist())),
                     f"matrix {_spec_args(spec)} " + " ".join(map(repr, box)),
                     "box_from_points " + " ".join(repr(float(v)) for v in pts.ravel()),
                     f"decode {_spec_args(spec)} " + " ".join(map(repr, m.ravel().tolist())) + " "
                     + " ".join(repr(float(v)) for v in out),
                     "iou " + " ".join(map(repr, [*det.tolist(), *other.tolist()]))]
    answers = java(*commands)
    from edgekd.core.detector import iou

    for k, (spec, det, pts, out, box, m, other) in enumerate(cases):
        a = answers[5 * k: 5 * k + 5]
        np.testing.assert_allclose(_nums(a[0]), box, rtol=0, atol=1e-9)
        np.testing.assert_allclose(_nums(a[1]), m.ravel(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(_nums(a[2]), CropSpec.box_from_points(pts), rtol=0, atol=1e-4)
        expected = transform_points(spec.denormalize(out), invert(m))
        np.testing.assert_allclose(_nums(a[3]).reshape(-1, 2), expected, rtol=0, atol=1e-3)
        assert _nums(a[4])[0] == pytest.approx(iou(det, other), abs=1e-12)


@needs_java
def test_keypoint_mapping_matches_crop_py(java):
    """The phone places the crop from BlazeFace's keypoints as crop.py does, falling back to the box alike."""
    import dataclasses

    rng = np.random.default_rng(5)
    layout = np.array([[-0.17, -0.1], [0.17, -0.1], [0.0, 0.05], [0.0, 0.2], [-0.42, -0.02], [0.42, -0.02]])
    cases, commands = [], []
    for k in range(24):
        weights = rng.normal(0, 0.05, (3, 15))
        weights[:, 0] = (rng.normal(0, 0.02), 0.06 + rng.normal(0, 0.02), np.log(0.96))
        if k % 6 == 5:
            weights[0, 0] = 1.0  # a whole box side off: the guard keeps the box mapping
        if k % 6 == 3:
            weights[2, 0] += 0.5  # a crop e^0.5 too large: guarded too
        spec = CropSpec(input_size=128, margin=0.15, detector_offset=(-0.003, 0.058), detector_scale=0.963,
                        detector_keypoint_weights=tuple(map(tuple, weights)))
        x, y, w = rng.uniform(0, 300, 3)
        det = np.array([x, y, w + 40, (w + 40) * rng.uniform(0.9, 1.1)])
        kp = (det[:2] + det[2:] / 2 + (layout + rng.normal(0, 0.03, layout.shape)) * det[2]).astype(np.float32)
        if k % 6 == 4:
            kp[2, 0] = np.nan  # unusable keypoints: the box mapping
        cases.append((spec.box_from_detector(det, kp), dataclasses.replace(spec, detector_keypoint_weights=None)
                      .box_from_detector(det), k))
        commands.append(f"box_from_keypoints {_spec_args(spec)} " + " ".join(map(repr, weights.ravel().tolist()))
                        + " " + " ".join(map(repr, det.tolist())) + " " + " ".join(repr(float(v)).replace("nan", "NaN") for v in kp.ravel()))
    for (expected, by_box, k), answer in zip(cases, java(*commands)):
        np.testing.assert_allclose(_nums(answer), expected, rtol=0, atol=1e-9)
        assert (expected == by_box) == (k % 6 in (3, 4, 5))


@needs_java
def test_warp_matches_cv2_crops(java, tmp_path):
    """The phone's crops are the desktop's, pyramid (large downscales) and border cases included."""
    import cv2

    rng = np.random.default_rng(5)
    h, w = 517, 689
    image = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), np.uint8), (0, 0), 1.5)
    image = np.clip(image.astype(int) + rng.integers(-30, 30, image.shape), 0, 255).astype(np.uint8)
    src = tmp_path / "image.rgb"
    image.tofile(src)
    spec = CropSpec(input_size=96, margin=0.15)
    boxes = [(300.0, 250.0, 50.0), (344.5, 258.25, 240.0), (100.0, 90.0, 500.0), (680.0, 500.0, 300.0),
             (-200.0, -150.0, 80.0), (344.0, 258.0, 1600.0), (20.0, 510.0, 37.3)]
    commands = []
    for i, box in enumerate(boxes):
        m = spec.matrix(box)
        commands.append(f"warp {src} {w} {h} " + " ".join(map(repr, m.ravel().tolist()))
                        + f" {spec.input_size} {tmp_path / f'crop{i}.rgb'}")
    assert java(*commands) == ["OK"] * len(boxes)
    for i, box in enumerate(boxes):
        ours = np.fromfile(tmp_path / f"crop{i}.rgb", np.uint8).reshape(96, 96, 3).astype(int)
        theirs = warp(image, spec.matrix(box), 96).astype(int)
        diff = np.abs(ours - theirs)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (box, diff.max(), (diff > 0).mean())
    scale = 96 / (1600 * 1.3)
    assert scale < 0.125  # the big box went through three pyramid levels


# --- model input and output -----------------------------------------------------------------------------------------
@needs_java
def test_phone_pipeline_gives_the_desktop_landmarks(java, tiny_models, tmp_path):
    """Java warp + TensorCodec + CropSpec.decode around the same interpreter give the desktop Predictor's points,
    for a float and an int8 model (the interpreter is LiteRT in both places)."""
    from ai_edge_litert.interpreter import Interpreter

    from edgekd.runtime.model import LandmarkModel
    from edgekd.runtime.predictor import Predictor

    paths, meta = tiny_models
    rng = np.random.default_rng(11)
    image = rng.integers(0, 256, (240, 320, 3), np.uint8)
    src = tmp_path / "image.rgb"
    image.tofile(src)
    spec = meta.crop
    box = (170.25, 110.5, 90.0)
    m = spec.matrix(box)
    for kind, codec in (("float", 0), ("int8", 1)):
        interp = Interpreter(model_path=str(paths[kind]))
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
        in_scale, in_zero = inp["quantization"]
        out_scale, out_zero = out["quantization"]
        crop, x, y = tmp_path / f"{kind}.crop", tmp_path / f"{kind}.in", tmp_path / f"{kind}.out"
        assert java(f"warp {src} 320 240 " + " ".join(map(repr, m.ravel().tolist())) + f" 32 {crop}",
                    f"encode {codec} {in_scale!r} {in_zero} {crop} {32 * 32} {x}") == ["OK", "OK"]
        tensor = np.frombuffer(x.read_bytes(), dtype=inp["dtype"]).reshape(inp["shape"])
        interp.set_tensor(inp["index"], tensor)
        interp.invoke()
        y.write_bytes(interp.get_tensor(out["index"]).tobytes())
        values = _nums(java(f"decode_output {codec} {out_scale!r} {out_zero} {y} 10")[0])
        phone = _nums(java(f"decode {_spec_args(spec)} " + " ".join(map(repr, m.ravel().tolist())) + " "
                           + " ".join(repr(float(v)) for v in values))[0]).reshape(-1, 2)
        with LandmarkModel(paths[kind]) as model:
            desktop = Predictor(model).predict_box(image, box).points
        np.testing.assert_allclose(phone, desktop, rtol=0, atol=1e-3)


@needs_java
def test_codec_quantizes_like_numpy(java, tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (50, 3), np.uint8)
    src = tmp_path / "px.rgb"
    rgb.tofile(src)
    for codec, dtype, scale, zero in ((1, np.int8, 0.0078125, -3), (2, np.uint8, 1 / 255.0, 0), (1, np.int8, 0.02, 5)):
        out = tmp_path / f"q{codec}.bin"
        assert java(f"encode {codec} {scale!r} {zero} {src} 50 {out}") == ["OK"]
        x = rgb.astype(np.float32) / 255.0
        info = np.iinfo(dtype)
        expected = np.clip(np.round(x.astype(np.float64) / np.float32(scale) + zero), info.min, info.max)
        np.testing.assert_array_equal(np.frombuffer(out.read_bytes(), dtype).reshape(50, 3), expected)
        q = rng.integers(info.min, info.max + 1, 20).astype(dtype)
        (tmp_path / "y.bin").write_bytes(q.tobytes())
        got = _nums(java(f"decode_output {codec} {scale!r} {zero} {tmp_path / 'y.bin'} 20")[0])
        np.testing.assert_allclose(got, (q.astype(np.float32) - zero) * np.float32(scale), rtol=1e-6)
    out = tmp_path / "f.bin"
    assert java(f"encode 0 0 0 {src} 50 {out}") == ["OK"]
    np.testing.assert_array_equal(np.frombuffer(out.read_bytes(), "<f4").reshape(50, 3),
                                  rgb.astype(np.float32) / np.float32(255.0))


# --- the evaluation JSON --------------------------------------------------------------------------------------------
@needs_java
def test_eval_json_writer_matches_the_schema(java, tmp_path):
    out = tmp_path / "result.json"
    assert java(f"evaljson {out}") == ["OK"]
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert device.schema_errors(doc) == []
    run = device.to_device_run(doc)
    assert run.predictions["000000.png"].shape == (3, 2) and run.predictions["000001.png"] is None
    np.testing.assert_allclose(run.predictions["000000.png"][0], [120.5, 130.25])
    assert doc["images"][1]["timings_ms"]["detector"] is None  # NaN is written as null
    assert doc["images"][1]["error"] == "no face\tfound" and doc["runtime"]["model_file"] == 'student "int8".tflite'
    assert run.timings["detector"] == [2.5] and run.device["soc_model"] == "GS201"


@needs_java
def test_java_constants_are_the_schema_keys_and_host_names(java):
    consts = json.loads(java("constants")[0])
    schema = device.load_schema()
    defs = schema["$defs"]
    result_keys = set(schema["properties"])
    for node in (schema["properties"]["app"], schema["properties"]["device"], schema["properties"]["runtime"],
                 defs["image"], defs["image"]["properties"]["timings_ms"]):
        result_keys |= set(node["properties"])
    written = {v for k, v in consts.items() if k.startswith(("K_", "T_"))}
    assert written == result_keys  # every key the app writes is in the schema, and every schema key has a constant
    request = {v for k, v in consts.items() if k.startswith("REQ_")}
    request_schema = defs["request"]["properties"]
    assert request == set(request_schema) | set(request_schema["images"]["items"]["properties"])
    assert {v for k, v in consts.items() if k.startswith("EXTRA_")} == set(device.EXTRAS.values())
    assert consts["FORMAT"] == device.FORMAT == schema["properties"]["format"]["const"]
    assert consts["REQUEST_FORMAT"] == device.REQUEST_FORMAT == defs["request"]["properties"]["format"]["const"]
    assert device.REMOTE_ROOT.endswith("/files/" + consts["EVAL_DIR"])
    host = Path(device.__file__).read_text()
    for name in ("RESULT_FILE", "DONE_FILE", "REQUEST_FILE"):
        assert f"/{consts[name]}" in host, name
    assert f'work / "{consts["IMAGES_DIR"]}"' in host or f'"{consts["IMAGES_DIR"]}"' in host


# --- Kotlin ---------------------------------------------------------------------------------------------------------
ONE_EURO_MAIN = """
import org.edgekd.demo.OneEuroFilter

fun main(args: Array<String>) {
    val f = OneEuroFilter(minCutoff = 1.0, beta = 10.0, dCutoff = 1.0)
    val lines = generateSequence(::readLine).toList()
    for (line in lines) {
        val p = line.trim().split(" ").map { it.toDouble() }
        if (p[0] < 0) { f.reset(); println("reset"); continue }
        val out = f.filter(floatArrayOf(p[1].toFloat(), p[2].toFloat()), p[0], p[3])
        println(out.joinToString(" "))
    }
}
"""


def _one_euro_reference(samples, min_cutoff=1.0, beta=10.0, d_cutoff=1.0, max_gap=0.5):
    """The filter as the paper writes it, speeds divided by the face size; the Kotlin class must agree."""
    out, prev, speed, last_t = [], None, None, 0.0
    alpha = lambda cutoff, dt: 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff) / dt)  # noqa: E731
    for t, x, y, scale in samples:
        v = np.array([x, y], np.float32).astype(np.float64)
        dt = t - last_t
        if prev is None or dt <= 0 or dt > max_gap:
            prev, speed, last_t = v.copy(), np.zeros(2), t
            out.append(v)
            continue
        a_d = alpha(d_cutoff, dt)
        speed = a_d * (v - prev) / dt + (1 - a_d) * speed
        a = alpha(min_cutoff + beta * np.abs(speed) / scale, dt)
        prev = a * v + (1 - a) * prev
        last_t = t
        out.append(prev.copy())
    return np.array(out)


@pytest.mark.skipif(not (KOTLINC and JAVA), reason="kotlinc not installed (apt-get install kotlin)")
def test_one_euro_filter_kotlin(tmp_path):
    (tmp_path / "Main.kt").write_text(ONE_EURO_MAIN)
    jar = tmp_path / "oneeuro.jar"
    proc = subprocess.run([KOTLINC, str(SRC / "OneEuroFilter.kt"), str(tmp_path / "Main.kt"), "-include-runtime",
                           "-d", str(jar)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rng = np.random.default_rng(4)
    fps, n = 30.0, 90
    t = np.arange(n) / fps
    still = 100 + rng.normal(0, 1.0, (n, 2))  # jitter on a still face (face size 100 px)
    moving = np.stack([100 + 300 * t, 100 + 0 * t], 1) + rng.normal(0, 1.0, (n, 2))  # 3 face sizes per second
    samples = [(ti, *p, 100.0) for ti, p in zip(t, still)]
    samples += [(10 + ti, *p, 100.0) for ti, p in zip(t, moving)]  # a 10 s gap restarts the filter
    text = "\n".join(" ".join(repr(float(v)) for v in s) for s in samples)
    run = subprocess.run([JAVA, "-jar", str(jar)], input=text + "\n", capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    got = np.array([[float(v) for v in line.split()] for line in run.stdout.splitlines()])
    np.testing.assert_allclose(got, _one_euro_reference(samples), rtol=0, atol=1e-3)
    still_out, moving_out = got[:n], got[n:]
    assert still_out[30:].std(0).max() < 0.5 * still[30:].std(0).min()  # jitter removed
    assert got[n][0] == pytest.approx(moving[0][0], abs=1e-4)  # restarted after the gap
    lag = np.abs(moving_out[30:, 0] - (100 + 300 * t[30:])).mean()
    slow = _one_euro_reference([(ti, *p, 100.0) for ti, p in zip(t, moving)], beta=0.0)
    assert lag < 0.5 * np.abs(slow[30:, 0] - (100 + 300 * t[30:])).mean()  # follows motion better than a plain low-pass


@pytest.mark.skipif(not (KOTLINC and JAVAC and JAVA), reason="kotlinc not installed (apt-get install kotlin)")
def test_face_tracker_kotlin_makes_the_desktop_decisions(tmp_path):
    """FaceTracker.kt and edgekd/runtime/tracker.py, driven by one scripted camera (tests/tracking_world.py), track
    the same faces with the same ids, detections, crop boxes and smoothed points on every frame."""
    from tracking_world import HEIGHT, WIDTH, run_python, script

    classes = tmp_path / "classes"
    proc = subprocess.run([JAVAC, "--release", "8", "-d", str(classes), str(SRC / "CropSpec.java")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    jar = tmp_path / "tracker.jar"
    proc = subprocess.run([KOTLINC, str(SRC / "FaceTracker.kt"), str(SRC / "OneEuroFilter.kt"),
                           str(DRIVER.parent / "FaceTrackerMain.kt"), "-cp", str(classes), "-include-runtime",
                           "-d", str(jar)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    cases = ((10, 2, True, 0.0, True, 0.0, True), (4, 1, False, 0.0, True, 0.0, True),
             (5, 1, False, 0.4, True, 0.0, True), (10, 2, True, 0.0, False, 0.0, True),
             (10, 1, True, 0.0, True, 0.3, True), (10, 1, True, 0.0, True, 0.3, False),
             (10, 2, True, 0.0, True, 0.3, True))  # mouth: the drift check, with one track and with two
    for redetect, max_faces, smooth, slide, anchor, mouth, drift in cases:
        lines = [f"{redetect} {max_faces} {int(smooth)} {WIDTH} {HEIGHT} {slide} {int(anchor)} {mouth} "
                 f"{'on' if drift else 'off'}"]
        for t, faces, boxes in script():
            values = [t, len(faces), *[v for f in faces for v in f], len(boxes), *[v for b in boxes for v in b]]
            lines.append(" ".join(repr(float(v)) for v in values))
        run = subprocess.run([JAVA, "-cp", f"{jar}:{classes}", "FaceTrackerMainKt"], input="\n".join(lines) + "\n",
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        kotlin = run.stdout.splitlines()
        checks = {} if drift else {"max_drift": None}
        python, _ = run_python({"redetect_every": redetect, "max_faces": max_faces, "smoothing": smooth,
                                "anchor": anchor, **checks}, slide=slide, mouth=mouth)
        assert len(kotlin) == len(python) == 100
        for k, (line, faces) in enumerate(zip(kotlin, python)):
            got = [part.split() for part in line.split(" | ")] if line.strip() else []
            assert [(int(g[0]), g[1] == "1") for g in got] == [(f[0], f[1]) for f in faces], (k, line)
            for g, f in zip(got, faces):
                np.testing.assert_allclose([float(v) for v in g[2:5]], f[2], rtol=0, atol=1e-9, err_msg=str(k))
                np.testing.assert_allclose([float(v) for v in g[5:]], np.ravel(f[3]), rtol=0, atol=1e-3,
                                           err_msg=str(k))


# --- Gradle, manifest and resources, as text --------------------------------------------------------------------
def _code(path: Path) -> str:
    """A source file without its comments (Kotlin/Java/Gradle //, /* */; XML <!-- -->; TOML #), so that the text
    checks below read code, and a comment naming what they look for cannot pass for it."""
    text = path.read_text()
    if path.suffix in (".kt", ".java", ".kts"):
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        return re.sub(r'(?m)^((?:[^"\n]|"[^"\n]*")*?)//.*$', r"\1", text)  # // outside string literals
    if path.suffix == ".xml":
        return re.sub(r"<!--.*?-->", "", text, flags=re.S)
    if path.suffix == ".toml":
        return re.sub(r"(?m)^\s*#.*$", "", text)
    return text


def test_gradle_manifest_and_resources_are_consistent():
    gradle = _code(APP / "app" / "build.gradle.kts")
    toml = _code(APP / "gradle" / "libs.versions.toml")
    manifest = _code(APP / "app" / "src" / "main" / "AndroidManifest.xml")
    kotlin = {p.name: _code(p) for p in SRC.glob("*.kt")}
    java_src = {p.name: _code(p) for p in SRC.glob("*.java")}

    assert re.search(r'applicationId = "([^"]+)"', gradle).group(1) == device.PACKAGE
    assert re.search(r'namespace = "([^"]+)"', gradle).group(1) == device.PACKAGE
    assert re.search(r"minSdk = (\d+)", gradle).group(1) == "24"
    assert 'noCompress += "tflite"' in gradle
    for module in ("tasks-vision", 'name = "litert"', "litert-gpu", "camera-core", "camera-camera2",
                   "camera-lifecycle", "camera-view"):
        assert module in toml, module
    for alias in re.findall(r"implementation\(libs\.([\w.]+)\)", gradle):
        assert re.search(rf"^{alias.replace('.', '-')} = ", toml, re.M), alias
    detector = re.search(r'detector\.set\(repoRoot\.resolve\("([^"]+)"\)\)', gradle).group(1)
    assert (REPO / detector).is_file() and Path(detector).name == re.search(
        r'MODEL_ASSET = "([^"]+)"', kotlin["FaceStage.kt"]).group(1)
    assert 'include("**/*.tflite")' in gradle and 'resolve("models")' in gradle

    assert 'android.permission.CAMERA' in manifest
    eval_activity = re.search(r'<activity[^>]*android:name="\.EvalActivity"[^>]*>', manifest, re.S).group(0)
    assert 'android:exported="true"' in eval_activity and device.ACTIVITY.endswith("/.EvalActivity")
    assert "android.intent.category.LAUNCHER" in manifest
    assert "STRATEGY_KEEP_ONLY_LATEST" in kotlin["MainActivity.kt"]
    assert "setUseXNNPACK(true)" in kotlin["LandmarkModel.kt"] and "GpuDelegate(" in kotlin["LandmarkModel.kt"]
    assert re.search(r"private var smoothing = true", kotlin["MainActivity.kt"])

    layouts = {p.stem: _code(p) for p in (RES / "layout").glob("*.xml")}
    ids = set(re.findall(r'android:id="@\+id/(\w+)"', "".join(layouts.values())))
    strings = set(re.findall(r'<string name="(\w+)"', (RES / "values" / "strings.xml").read_text()))
    styles = set(re.findall(r'<style name="([\w.]+)"', (RES / "values" / "themes.xml").read_text()))
    code = "".join(kotlin.values())
    assert set(re.findall(r"(?<!android\.)R\.id\.(\w+)", code)) <= ids
    assert set(re.findall(r"(?<!android\.)R\.layout\.(\w+)", code)) <= set(layouts)
    used_strings = set(re.findall(r"(?<!android\.)R\.string\.(\w+)", code))
    used_strings |= set(re.findall(r"@string/(\w+)", manifest + "".join(layouts.values())))
    assert used_strings <= strings
    assert set(re.findall(r"@style/([\w.]+)", manifest)) <= styles
    for name, text in {**kotlin, **java_src}.items():
        assert text.startswith("package org.edgekd.demo"), name
    for view in re.findall(r"<(org\.edgekd\.demo\.\w+)", "".join(layouts.values())):
        assert f"{view.rsplit('.', 1)[1]}.kt" in kotlin, view
    assert (APP / "gradle" / "wrapper" / "gradle-wrapper.properties").is_file()
    assert "./gradlew installDebug" in (APP / "README.md").read_text()
