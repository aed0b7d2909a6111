"""benchmark() end to end on a few real 300-W test faces, the oracle through the bench path, and bad input."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from runtime_helpers import W300, build_tiny_models
from test_runtime import OracleModel

from edgekd.bench import benchmark
from edgekd.data.crop import CropSpec
from edgekd.errors import DataError, ModelError

needs_data = pytest.mark.skipif(not W300.is_dir(), reason="300-W data not available")
try:
    import dlib  # noqa: F401

    HAVE_DLIB = True
except ImportError:
    HAVE_DLIB = False


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_models(tmp_path_factory.getbasetemp() / "edgekd_tiny")


def _mini_300w(root, n=5, extra=None):
    """A 300-W layout in tmp with links to the first n real test pairs (the data is never copied into the repo)."""
    src = W300 / "lfpw" / "testset"
    dst = root / "lfpw" / "testset"
    dst.mkdir(parents=True)
    for pts in sorted(src.glob("*.pts"))[:n]:
        for f in (pts, pts.with_suffix(".png")):
            os.symlink(f, dst / f.name)
    return root


@needs_data
def test_benchmark_end_to_end_writes_results_and_report(tiny, tmp_path):
    data = _mini_300w(tmp_path / "300w")
    out = tmp_path / "bench"
    compare = ("dlib",) if HAVE_DLIB else ()
    res = benchmark([tiny["float"], tiny["int8"]], data=data, dataset="300w", out=out, crop="both",
                    threads=(1, 2), compare=compare, progress=False, e2e_images=3)
    results = json.loads((out / "results.json").read_text())
    assert results["faces"] == 5 and results["protocols"] == ["detector", "gt"]
    entries = results["entries"]
    assert len(entries) == 2 * (2 + len(compare))
    for e in entries:
        for key in ("model", "protocol", "nme", "fr", "auc", "auc_paper", "subsets", "detector_failures",
                    "latency_ms", "size_mb", "runtime"):
            assert key in e, key
        assert list(e["subsets"]) == ["common"]
        assert 0.0 <= e["auc"] <= 1.0 and 0.0 <= e["fr"] <= 100.0
        lat = e["latency_ms"]
        assert {"model", "detector", "end_to_end", "runtime"} <= set(lat)
    ours = [e for e in entries if e["kind"] == "edgekd"]
    for e in ours:
        assert set(e["latency_ms"]["model"]) == {"1", "2"} and set(e["latency_ms"]["end_to_end"]) == {"1", "2"}
        assert e["latency_ms"]["end_to_end"]["1"] >= e["latency_ms"]["model"]["1"]
        assert "ai-edge-litert" in e["runtime"]
    if compare:
        dl = [e for e in entries if e["kind"] == "peer"]
        assert all(e["nme"] < 10.0 for e in dl)  # a real predictor on real faces
        assert dl[0]["latency_ms"]["detector"] > 0
    for name in ("report.md", "ced.png", "per_face_nme.json"):
        assert (out / name).stat().st_size > 0, name
    assert all((out / e["worst_sheet"]).is_file() for e in entries)
    report = (out / "report.md").read_text()
    assert "CED" in report and ("likely includes these test images" in report) == bool(compare)
    assert "NME %" in res.table and "float.tflite" in res.table


@needs_data
def test_oracle_scores_zero_through_benchmark(tmp_path):
    """The bench's own crop -> model -> inverse -> metric path gives NME ~0 for a perfect model (gt protocol: one
    prediction per face, in reading order; the detector path is checked in test_runtime)."""
    from edgekd.data.readers import read_dataset

    data = _mini_300w(tmp_path / "300w", n=4)
    truth = iter([s.points for s in read_dataset("300w", data, "test")])
    oracle = OracleModel(CropSpec(input_size=96, margin=0.2))
    perfect = oracle.predict

    def predict(patch):
        oracle.gt = next(truth)
        return perfect(patch)

    oracle.predict, oracle.name = predict, "oracle"
    res = benchmark([oracle], data=data, dataset="300w", crop="gt", progress=False)
    (entry,) = res.results["entries"]
    assert entry["count"] == 4 and entry["nme"] < 1e-3 and entry["fr"] == 0.0 and entry["auc"] > 0.9999


def test_latency_only_without_data(tiny, tmp_path):
    res = benchmark([tiny["int8"]], data=None, out=tmp_path / "b", threads=(1,), progress=False)
    (entry,) = res.results["entries"]
    assert res.results["faces"] == 0 and "nme" not in entry
    assert entry["latency_ms"]["model"]["1"] > 0 and entry["latency_ms"]["end_to_end"]["1"] > 0
    assert "accuracy needs --data" in res.table


@needs_data
def test_landmark_count_mismatch_is_clear(tiny, tmp_path):
    data = _mini_300w(tmp_path / "300w", n=1)
    with pytest.raises(ModelError, match=r"wflw.tflite: predicts 98 points but --dataset 300w has 68"):
        benchmark([tiny["wflw"]], data=data, dataset="300w", progress=False)


@needs_data
def test_corrupt_image_is_one_line_cli_error(tiny, tmp_path):
    from edgekd.cli import main

    data = _mini_300w(tmp_path / "300w", n=1)
    folder = data / "lfpw" / "testset"
    pts = next(folder.glob("*.pts"))
    shutil.copy(pts, folder / "zz_broken.pts")
    (folder / "zz_broken.png").write_bytes(b"\x89PNG garbage")
    res = CliRunner().invoke(main, ["bench", str(tiny["float"]), "--data", str(data), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert lines[-1].startswith("error:") and "zz_broken.png" in lines[-1] and "not a readable image" in lines[-1]


def test_folder_without_annotations_is_a_data_error(tiny, tmp_path):
    (tmp_path / "empty" / "lfpw" / "testset").mkdir(parents=True)
    with pytest.raises(DataError, match="no 300-W test annotations"):
        benchmark([tiny["float"]], data=tmp_path / "empty", dataset="300w", progress=False)


def test_missing_images_are_skipped_and_counted(tiny, tmp_path, caplog):
    """WFLW lists name image paths; a vanished image skips that face with a warning and is counted."""
    from skimage import data as skdata

    root = tmp_path / "wflw"
    (root / "WFLW_images").mkdir(parents=True)
    cv2.imwrite(str(root / "WFLW_images" / "a.png"), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    rng = np.random.default_rng(0)
    lines = []
    for name, pose in (("a.png", 1), ("a.png", 0), ("gone.png", 0)):
        pts = rng.uniform(190, 260, (98, 2))
        coords = " ".join(f"{v:.2f}" for v in pts.ravel())
        lines.append(f"{coords} 177 82 272 177 {pose} 0 0 0 0 0 {name}")
    (root / "list_98pt_rect_attr_test.txt").write_text("\n".join(lines) + "\n")
    res = benchmark([tiny["wflw"]], data=root, dataset="wflw", out=tmp_path / "o", crop="gt", threads=(1,),
                    progress=False)
    assert res.results["faces"] == 2 and res.results["skipped_images"] == ["gone#3"]
    assert "gone.png" in caplog.text
    (entry,) = res.results["entries"]
    assert entry["skipped_images"] == 1 and entry["count"] == 2
    assert list(entry["subsets"]) == ["pose", "full"] and entry["subsets"]["pose"]["count"] == 1
    assert "1 faces skipped" in res.table


def test_compare_without_dlib_is_clear(tiny, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_dlib(name, *a, **k):
        if name == "dlib":
            raise ImportError("no dlib")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_dlib)
    from edgekd.errors import EdgekdError

    with pytest.raises(EdgekdError, match="--compare dlib needs dlib"):
        benchmark([tiny["float"]], compare=("dlib",), progress=False)


def test_other_device_goes_through_the_device_hook(tiny, monkeypatch, tmp_path):
    """`--device pixel` hands the samples to edgekd.bench.device.run_on_device (faked here: no phone) and scores
    what comes back with the desktop metric code."""
    import sys
    import types

    if not W300.is_dir():
        pytest.skip("300-W data not available")
    from edgekd.data.readers import read_dataset

    data = _mini_300w(tmp_path / "300w", n=2)
    samples = read_dataset("300w", data, "test")
    calls = []

    class FakeRun:
        def __init__(self, threads):
            self.predictions = {s.id: s.points + 1.0 for s in samples}
            self.predictions[samples[0].id] = None  # a miss on the phone
            self.threads = threads

        def runtime_name(self):
            return "LiteRT XNNPACK on Pixel 7"

        def latency_ms(self):
            t = str(self.threads)
            return {"model": {t: 3.0 * self.threads}, "model_p90": {t: 4.0}, "end_to_end": {t: 9.0},
                    "end_to_end_p90": {t: 10.0}, "detector": 5.0, "threads": [t]}

    def run_on_device(model_path, samples, serial=None, threads=4, protocol="detector", **kw):
        calls.append((model_path, protocol, serial, threads))
        return FakeRun(threads)

    monkeypatch.setitem(sys.modules, "edgekd.bench.device", types.SimpleNamespace(run_on_device=run_on_device))
    res = benchmark([tiny["float"]], data=data, dataset="300w", crop="gt", threads=(1, 2), device="pixel",
                    progress=False)
    (entry,) = res.results["entries"]
    assert calls == [(tiny["float"], "gt", None, 1), (tiny["float"], "gt", None, 2)]
    assert entry["detector_failures"] == 1 and entry["count"] == 2 and entry["runtime"].endswith("Pixel 7")
    d = np.linalg.norm(samples[1].points[36] - samples[1].points[45])
    assert entry["nme"] == pytest.approx(100 * np.sqrt(2) / d, rel=1e-4)  # every point 1 px off in x and y
    assert entry["latency_ms"]["model"] == {"1": 3.0, "2": 6.0}


def test_cli_passes_phone_options_to_the_device_runner(tiny, monkeypatch, tmp_path):
    """`edgekd bench --device pixel --serial ... --adb ... --apk ...` reaches run_on_device with those options."""
    import sys
    import types

    from edgekd.cli import main

    if not W300.is_dir():
        pytest.skip("300-W data not available")
    data = _mini_300w(tmp_path / "300w", n=1)
    seen = {}

    class Run:
        def __init__(self, samples):
            self.predictions = {s.id: s.points for s in samples}

        def runtime_name(self):
            return "LiteRT on a phone"

        def latency_ms(self):
            return {"model": {"1": 2.0}, "model_p90": {"1": 2.5}, "end_to_end": {"1": 7.0},
                    "end_to_end_p90": {"1": 8.0}, "detector": 4.0, "threads": ["1"]}

    def run_on_device(model_path, samples, **kw):
        seen.update(kw)
        return Run(samples)

    monkeypatch.setitem(sys.modules, "edgekd.bench.device", types.SimpleNamespace(run_on_device=run_on_device))
    res = CliRunner().invoke(main, ["bench", str(tiny["float"]), "--data", str(data), "--crop", "gt", "--threads", "1",
                                    "--device", "pixel", "--serial", "ABC123", "--adb", "/opt/adb", "--apk", "app.apk",
                                    "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert seen == {"serial": "ABC123", "adb": "/opt/adb", "apk": "app.apk", "threads": 1, "protocol": "gt"}
    assert json.loads((tmp_path / "out" / "results.json").read_text())["entries"][0]["nme"] == pytest.approx(0.0, abs=1e-6)
