"""`run_on_device` against a scripted adb (tests/fixtures/fake_adb.py) that plays back a phone's answers, the
result JSON schema and its fixture, and the benchmark_model parser. No phone, no Android SDK needed."""
from __future__ import annotations

import copy
import json
import re
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import edgekd  # noqa: F401
from edgekd.bench import adb as adb_client
from edgekd.bench import device, device_result, device_schema
from edgekd.core.crop import CropSpec
from edgekd.core.errors import DataError, EdgekdError
from edgekd.core.metadata import ModelMetadata, embed

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXAMPLE = FIXTURES / "device_eval_example.json"

BENCHMARK_OUTPUT = """\
INFO: STARTING!
INFO: Graph: [/data/local/tmp/edgekd_model.tflite]
INFO: #threads used for CPU inference: [2]
INFO: Use xnnpack: [1]
INFO: Loaded model /data/local/tmp/edgekd_model.tflite
INFO: The input model file size (MB): 0.512304
INFO: Initialized session in 21.3ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=262 first=5012 curr=1843 min=1790 max=5012 avg=1905.4 std=240
INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=530 first=1880 curr=1850 min=1781 max=2403 avg=1861.22 std=61
INFO: Inference timings in us: Init: 21302, First inference: 5012, Warmup (avg): 1905.4, Inference (avg): 1861.22
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=3.83984 overall=6.77734
"""

PIXEL = ["35121FDH2000A1", "device", "usb:1-1 product:panther model:Pixel_7 device:panther transport_id:3"]
PROPS = {"ro.product.model": "Pixel 7", "ro.build.version.release": "14", "ro.board.platform": "gs201",
         "ro.soc.model": "GS201"}


def _tiny_tflite() -> bytes:
    """A schema-valid model flatbuffer (no ops) with edgekd metadata: enough for everything but running it."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT()
    model.version = 3
    model.buffers = [schema.BufferT()]
    builder = flatbuffers.Builder(256)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    meta = ModelMetadata(scheme="300w", num_points=3, flip_permutation=[1, 0, 2], nme_pair=[0, 1],
                         crop=CropSpec(input_size=64))
    return embed(bytes(builder.Output()), meta)


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "student int8.tflite"
    path.write_bytes(_tiny_tflite())
    return path


@pytest.fixture
def samples() -> list:
    rng = np.random.default_rng(0)
    out = []
    for i, (h, w) in enumerate([(48, 64), (40, 30), (60, 80)]):
        pts = rng.uniform(5, min(h, w) - 5, size=(3, 2)).astype(np.float32)
        out.append(SimpleNamespace(id=f"lfpw/test/image_{i:04d}", image=rng.integers(0, 256, (h, w, 3), np.uint8),
                                   points=pts))
    return out


class FakeAdb:
    def __init__(self, folder: Path, **scenario):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "adb"
        source = (FIXTURES / "fake_adb.py").read_text()
        self.path.write_text(f"#!{sys.executable}\n{source}")
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)
        base = {"root": str(folder / "phone"), "devices": [PIXEL], "props": PROPS, "installed": True,
                "fixture": str(EXAMPLE), "done_after": 2, "benchmark_output": BENCHMARK_OUTPUT}
        base.update(scenario)
        (folder / "scenario.json").write_text(json.dumps(base))

    def calls(self) -> list[list[str]]:
        log = self.folder / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def commands(self) -> list[str]:
        """Each call without its -s SERIAL, as one string."""
        return [" ".join(c[2:] if c[:1] == ["-s"] else c) for c in self.calls()]


def _index(commands, prefix, start=0):
    for i in range(start, len(commands)):
        if commands[i].startswith(prefix):
            return i
    raise AssertionError(f"no call starting with {prefix!r} after #{start} in {commands}")


# --- the whole run ----------------------------------------------------------------------------------------------
def test_run_on_device_pushes_runs_polls_and_parses(tmp_path, model, samples):
    adb = FakeAdb(tmp_path / "adb", installed=False)
    apk = tmp_path / "app-debug.apk"
    apk.write_bytes(b"PK fake")
    work = tmp_path / "work"
    run = device.run_on_device(model, samples, adb=adb.path, apk=apk, threads=2, workdir=work, poll_interval=0)

    example = json.loads(EXAMPLE.read_text())
    ids = [s.id for s in samples]
    assert list(run.predictions) == ids
    for sid, image in zip(ids, example["images"]):
        expected = image["points"]
        if expected is None:
            assert run.predictions[sid] is None
        else:
            assert run.predictions[sid].dtype == np.float32 and run.predictions[sid].shape == (3, 2)
            np.testing.assert_array_equal(run.predictions[sid], np.float32(expected))
    assert run.timings["inference"] == [1.95, 1.9]
    assert run.timings["detector"] == [3.2, 2.1, 3.4]
    assert run.timings["end_to_end"] == [5.7, 5.95]  # the detector miss is left out
    assert run.device["model"] == "Pixel 7" and run.device["serial"] == PIXEL[0]
    assert run.device["board_platform"] == "gs201"  # filled from getprop
    assert run.runtime["threads"] == 2 and run.runtime["app"]["package"] == device.PACKAGE
    assert run.runtime["model_path"] == str(model)
    assert run.details[ids[2]]["faces"] == 2 and run.details[ids[1]]["faces"] == 0
    lat = run.latency_ms()
    assert lat["threads"] == ["2"] and lat["model"]["2"] == pytest.approx(1.925)
    assert "Pixel 7" in lat["runtime"]

    # The images went over as lossless PNGs of exactly the given pixels, with the boxes of both protocols.
    request = json.loads((work / "request.json").read_text())
    assert device_schema.schema_errors(request, definition="request") == []
    assert request["protocol"] == "detector"
    for entry, s in zip(request["images"], samples):
        png = cv2.cvtColor(cv2.imread(str(work / "images" / entry["file"])), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(png, s.image)
        np.testing.assert_allclose(entry["box"], CropSpec.box_from_points(s.points), rtol=1e-6)
        lo, hi = s.points.min(0), s.points.max(0)
        np.testing.assert_allclose(entry["match"], [lo[0], lo[1], *(hi - lo)], rtol=1e-6)

    cmds = adb.commands()
    assert cmds[0] == "devices -l"
    assert all(c[:2] == ["-s", PIXEL[0]] for c in adb.calls()[1:])  # every device command names the device
    i_install = _index(cmds, "install -r -g")
    i_pm = _index(cmds, "shell pm path org.edgekd.demo", i_install)
    i_prepare = _index(cmds, "shell am start -W -n org.edgekd.demo/.EvalActivity --ez prepare true", i_pm)
    i_model = _index(cmds, f"push {model}", i_prepare)
    assert cmds[i_model].endswith("/model.tflite")
    i_images = _index(cmds, f"push {work / 'images'}", i_model)
    i_request = _index(cmds, f"push {work / 'request.json'}", i_images)
    i_start = _index(cmds, "shell am start -S -n org.edgekd.demo/.EvalActivity", i_request)
    run_id = run.runtime["run_id"]
    assert f"--es run {run_id} --es model model.tflite --ei threads 2 --es delegate cpu" in cmds[i_start]
    polls = [i for i, c in enumerate(cmds) if c.startswith("shell cat ") and c.endswith(f"{run_id}/done")]
    assert len(polls) == 3 and polls[0] > i_start  # two misses, then done
    i_pull = _index(cmds, f"pull {device.REMOTE_ROOT}/{run_id}/result.json", polls[-1])
    assert cmds[-1] == f"shell rm -rf {device.REMOTE_ROOT}/{run_id}" and i_pull < len(cmds) - 1
    assert not (tmp_path / "adb" / "phone" / device.REMOTE_ROOT.lstrip("/") / run_id).exists()


def test_serial_picks_one_of_several_devices(tmp_path, model, samples):
    other = ["emulator-5554", "device", "product:sdk_gphone64 model:sdk_gphone64_x86_64 transport_id:1"]
    adb = FakeAdb(tmp_path / "adb", devices=[other, PIXEL])
    run = device.run_on_device(model, samples[:1], adb=adb.path, serial=PIXEL[0], protocol="gt", poll_interval=0)
    assert run.device["serial"] == PIXEL[0]
    assert all(c[:2] == ["-s", PIXEL[0]] for c in adb.calls()[1:])


def test_benchmark_binary_adds_model_only_latency(tmp_path, model, samples):
    adb = FakeAdb(tmp_path / "adb")
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF fake")
    run = device.run_on_device(model, samples[:1], adb=adb.path, benchmark_binary=binary, threads=2, poll_interval=0)
    bench = run.runtime["benchmark_model"]
    assert bench["inference_avg_us"] == 1861.22 and bench["threads"] == 2
    cmds = adb.commands()
    i_run = _index(cmds, "shell /data/local/tmp/edgekd_benchmark_model --graph=/data/local/tmp/edgekd_model.tflite")
    assert "--num_threads=2 --use_xnnpack=true" in cmds[i_run] and "--use_gpu" not in cmds[i_run]
    assert _index(cmds, "push") < i_run < _index(cmds, "shell rm -f /data/local/tmp/edgekd_benchmark_model", i_run)


# --- what goes wrong, in one line -------------------------------------------------------------------------------
def _no_adb_anywhere(monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("ANDROID_HOME", raising=False)
    monkeypatch.delenv("ANDROID_SDK_ROOT", raising=False)


def test_no_adb(monkeypatch, tmp_path, model, samples):
    _no_adb_anywhere(monkeypatch, tmp_path)
    with pytest.raises(EdgekdError, match=r"^adb not found: install Android platform-tools .* --adb PATH$"):
        device.run_on_device(model, samples, poll_interval=0)
    with pytest.raises(EdgekdError, match="no adb executable there"):
        device.run_on_device(model, samples, adb=tmp_path / "missing" / "adb")


def test_adb_found_under_android_home(monkeypatch, tmp_path):
    _no_adb_anywhere(monkeypatch, tmp_path)
    fake = FakeAdb(tmp_path / "sdk" / "platform-tools")
    monkeypatch.setenv("ANDROID_HOME", str(tmp_path / "sdk"))
    assert adb_client.find_adb() == str(fake.path)


@pytest.mark.parametrize("devices, serial, message", [
    ([], None, r"^no Android device attached: connect a phone with USB debugging enabled"),
    ([PIXEL, ["emulator-5554", "device", ""]], None,
     r"^2 Android devices attached \(35121FDH2000A1, emulator-5554\); choose one with --serial$"),
    ([["35121FDH2000A1", "unauthorized", "usb:1-1"]], None, r"unauthorized: unlock it and accept the USB debugging"),
    ([["35121FDH2000A1", "offline", ""]], None, r"is offline: reconnect it"),
    ([PIXEL], "R5CT1234", r"^device R5CT1234 is not attached \(attached: 35121FDH2000A1\)"),
])
def test_device_selection_errors(tmp_path, model, samples, devices, serial, message):
    adb = FakeAdb(tmp_path / "adb", devices=devices)
    with pytest.raises(EdgekdError, match=message) as e:
        device.run_on_device(model, samples, adb=adb.path, serial=serial, poll_interval=0)
    assert "\n" not in str(e.value)
    assert not any("push" in c for c in adb.commands())  # nothing was sent anywhere


@pytest.mark.parametrize("scenario, kwargs, message", [
    ({"installed": False}, {}, r"is not installed on 35121FDH2000A1: build android_demo .* --apk "),
    ({"never_finish": True}, {"timeout": 0.2}, r"^timed out after 0 s waiting for the app to finish .*adb logcat"),
    ({"app_error": "model.tflite: no edgekd metadata"}, {},
     r"^the app could not run student int8.tflite on 35121FDH2000A1: model.tflite: no edgekd metadata$"),
    ({"am_error": True}, {}, r"am start .* failed: Error: Activity class .* does not exist"),
])
def test_app_errors(tmp_path, model, samples, scenario, kwargs, message):
    adb = FakeAdb(tmp_path / "adb", **scenario)
    with pytest.raises(EdgekdError, match=message) as e:
        device.run_on_device(model, samples, adb=adb.path, poll_interval=0.01, **kwargs)
    assert "\n" not in str(e.value)


def test_inputs_are_checked_before_adb(tmp_path, samples):
    not_edgekd = tmp_path / "plain.tflite"
    not_edgekd.write_bytes(b"\x00" * 64)
    with pytest.raises(EdgekdError, match="plain.tflite"):
        device.run_on_device(not_edgekd, samples, adb=tmp_path / "never-called")
    with pytest.raises(EdgekdError, match="delegate 'npu'"):
        device.run_on_device(not_edgekd, samples, delegate="npu")


def test_gt_protocol_needs_points(tmp_path, model):
    adb = FakeAdb(tmp_path / "adb")
    bare = [SimpleNamespace(id="x", image=np.zeros((8, 8, 3), np.uint8), points=None)]
    with pytest.raises(DataError, match="protocol gt needs its landmarks"):
        device.run_on_device(model, bare, adb=adb.path, protocol="gt", poll_interval=0)


# --- the JSON format --------------------------------------------------------------------------------------------
def test_example_fixture_matches_schema():
    assert device_schema.schema_errors(json.loads(EXAMPLE.read_text())) == []
    schema = device_schema.load_schema()
    # every object lists all its properties as required, so a valid document carries every key the schema names
    for node in (schema, schema["properties"]["app"], schema["properties"]["device"], schema["properties"]["runtime"],
                 schema["$defs"]["image"], schema["$defs"]["image"]["properties"]["timings_ms"]):
        assert sorted(node["required"]) == sorted(node["properties"]) and node["additionalProperties"] is False


@pytest.mark.parametrize("mutate, problem", [
    (lambda d: d.update(extra=1), "$: Additional properties are not allowed ('extra' was unexpected)"),
    (lambda d: d["device"].pop("soc_model"), "$.device: 'soc_model' is a required property"),
    (lambda d: d["runtime"].update(threads="4"), "$.runtime.threads: '4' is not of type 'integer'"),
    (lambda d: d["runtime"].update(delegate="npu"), "$.runtime.delegate: 'npu' is not one of"),
    (lambda d: d["images"][0].update(points=[[1.0, 2.0, 3.0]]), "$.images[0].points: [[1.0, 2.0, 3.0]] is not valid"),
    (lambda d: d["images"][1]["timings_ms"].update(total=-1), "$.images[1].timings_ms.total: -1 is less than the min"),
    (lambda d: d.update(format="edgekd-device-eval/2"), '$.format: "edgekd-device-eval/2", but \'edgekd-device-eval/1\''),
])
def test_schema_check_catches_bad_documents(tmp_path, mutate, problem):
    doc = copy.deepcopy(json.loads(EXAMPLE.read_text()))
    mutate(doc)
    errors = device_schema.schema_errors(doc)
    assert len(errors) == 1 and errors[0].startswith(problem), errors
    path = tmp_path / "result.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"result.json: not an edgekd-device-eval/1 result: ") as e:
        device_result.read_result(path)
    assert "\n" not in str(e.value)


def test_read_result_file_problems(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        device_result.read_result(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DataError, match="not JSON"):
        device_result.read_result(tmp_path / "broken.json")


def test_benchmark_output_parser():
    out = device_result.parse_benchmark_output(BENCHMARK_OUTPUT)
    assert out == {"init_us": 21302.0, "first_inference_us": 5012.0, "warmup_avg_us": 1905.4,
                   "inference_avg_us": 1861.22, "inference_count": 530, "inference_min_us": 1781.0,
                   "inference_max_us": 2403.0, "inference_std_us": 61.0, "memory_init_mb": 3.83984,
                   "memory_overall_mb": 6.77734}
    with pytest.raises(EdgekdError, match="no 'Inference timings in us' line; it ended with: .*Segmentation fault"):
        device_result.parse_benchmark_output("INFO: STARTING!\nSegmentation fault\n")


def test_schema_ships_with_the_package():
    assert device.SCHEMA_PATH.is_file() and device.SCHEMA_PATH.parent == Path(device.__file__).parent
    setup = (Path(device.__file__).resolve().parents[2] / "setup.cfg").read_text()
    assert "bench/*.json" in setup  # package_data, so installed copies can validate too
    assert "jsonschema==" in setup  # the schema check is the maintained validator, a pinned dependency


# --- the schema check is jsonschema's ---------------------------------------------------------------------------
def test_schema_is_standard_2020_12_checked_by_jsonschema():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(device_schema.load_schema())  # the schema file itself is well formed
    assert isinstance(device_schema.validator(), Draft202012Validator)
    # standard keywords the schema does not use yet are understood too (a hand-written checker knew a subset)
    strict = {"type": "object", "properties": {"file": {"type": "string", "pattern": r"^\d{6}\.png$"}},
              "patternProperties": {"^x_": {"type": "integer"}}}
    assert device_schema.schema_errors({"file": "000001.png", "x_a": 3}, schema=strict) == []
    errors = device_schema.schema_errors({"file": "../etc/passwd", "x_a": "3"}, schema=strict)
    assert [e.split(":")[0] for e in errors] == ["$.file", "$.x_a"], errors


@pytest.mark.parametrize("mutate, problem", [
    (lambda r: r.update(protocol="both"), "$.protocol: 'both' is not one of ['detector', 'gt']"),
    (lambda r: r["images"][0].update(box=[1.0, 2.0]), "$.images[0].box: [1.0, 2.0] is not valid"),
    (lambda r: r["images"][1].pop("match"), "$.images[1]: 'match' is a required property"),
])
def test_request_definition_rejects_bad_requests(mutate, problem):
    request = {"format": device.REQUEST_FORMAT, "protocol": "gt",
               "images": [{"file": "000000.png", "box": [10.0, 12.0, 30.0], "match": None},
                          {"file": "000001.png", "box": [5.0, 5.0, 8.0], "match": [1.0, 1.0, 8.0, 8.0]}]}
    assert device_schema.schema_errors(request, definition="request") == []
    mutate(request)
    errors = device_schema.schema_errors(request, definition="request")
    assert len(errors) == 1 and errors[0].startswith(problem), errors


def test_schema_errors_stay_one_short_line():
    doc = json.loads(EXAMPLE.read_text())
    doc["runtime"] = {"note": "a\nb " * 400}  # jsonschema quotes the whole offending value
    errors = device_schema.schema_errors(doc)
    assert errors and all("\n" not in e and len(e) <= device_schema.MAX_LINE for e in errors), errors


# --- options and the stage breakdown ----------------------------------------------------------------------------
@pytest.mark.parametrize("options, message", [
    ({"delegate": "npu"}, r"^delegate 'npu': expected cpu or gpu$"),
    ({"protocol": "both"}, r"^protocol 'both': expected one of detector, gt$"),
    ({"threads": 0}, r"^threads 0: expected a whole number >= 1$"),
    ({"timeout": 0}, r"^timeout 0: expected a number > 0$"),
    ({"apk": "/nowhere/app.apk"}, r"^/nowhere/app.apk: no such APK; build android_demo"),
    ({"benchmark_binary": "bench.apk"}, r"^bench.apk: the benchmark_model APK is not supported"),
    ({"benchmark_binary": "/nowhere/benchmark_model"}, r"^/nowhere/benchmark_model: no such benchmark_model binary$"),
])
def test_device_options_are_checked_on_creation(options, message):
    with pytest.raises(EdgekdError, match=message) as e:
        device.DeviceOptions(**options)
    assert "\n" not in str(e.value)


def test_device_run_breaks_end_to_end_into_stages():
    run = device_result.to_device_run(json.loads(EXAMPLE.read_text()))
    assert len(run.stages) == 2  # images with landmarks only: the detector miss is left out, as in end_to_end
    stages = run.latency_ms()["end_to_end_stages"]["4"]
    assert stages["detector"] == pytest.approx(3.3) and stages["model"] == pytest.approx(1.925)
    assert stages["crop"] == pytest.approx(0.465) and stages["post"] == pytest.approx(0.08)  # landmarks-crop-model
    assert sum(stages.values()) == pytest.approx(run.latency_ms()["end_to_end"]["4"], abs=0.01)
    assert run.latency_ms()["cpu"].startswith("Google Pixel 7 (Android 14, GS201")


def test_protocols_are_named_once():
    from edgekd.bench import protocols

    assert device.PROTOCOLS is protocols.PROTOCOLS
    package = Path(device.__file__).resolve().parents[1]
    defining = [p.relative_to(package).as_posix() for p in package.rglob("*.py")
                if re.search(r"^PROTOCOLS\s*=", p.read_text(), re.M)]
    assert defining == ["bench/protocols.py"]
