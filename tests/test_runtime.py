"""Runtime: LandmarkModel over .tflite (float/int8) and Keras, the MediaPipe detector, and the inverse-crop path."""
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from runtime_helpers import W300, build_tiny_models

from edgekd.data.crop import CropSpec, transform_points
from edgekd.errors import ModelError
from edgekd.runtime import FaceDetector, LandmarkModel, Predictor, fit_detector_mapping
from edgekd.detector import Detection, match_box
from edgekd.runtime.model import dequantize_output, quantize_input


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_models(tmp_path_factory.getbasetemp() / "edgekd_tiny")


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as det:
        yield det


def _crop():
    return (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)


def test_tflite_float_int8_keras_agree(tiny):
    crop = _crop()
    with LandmarkModel(tiny["float"]) as f, LandmarkModel(tiny["int8"]) as q, LandmarkModel(tiny["keras"]) as k:
        assert f.runtime.startswith("ai-edge-litert") and "XNNPACK" in f.runtime
        assert (f.scheme, f.num_points, f.crop.input_size) == ("300w", 68, 64)
        assert q.info.quantization == "int8-ptq" and k.runtime.startswith("tf_keras")
        pf, pq, pk = f.predict(crop), q.predict(crop), k.predict(crop)
    assert pf.shape == (68, 2)
    np.testing.assert_allclose(pk, pf, atol=1e-3)
    # int8 I/O goes through the tensors' scale/zero point: close to float, not bit-identical
    assert 0 < np.abs(pq - pf).max() < 1.0


def test_fallback_runtime_is_named(tiny):
    crop = _crop()
    ref = LandmarkModel(tiny["float"]).predict(crop)
    tf_model = LandmarkModel(tiny["float"], runtime="tf")
    assert tf_model.runtime.startswith("tensorflow")
    np.testing.assert_allclose(tf_model.predict(crop), ref, atol=1e-5)
    assert LandmarkModel(tiny["float"], num_threads=1).with_threads(2).num_threads == 2


def test_quantization_round_trip_uint8_and_int8():
    u8 = {"dtype": np.uint8, "quantization": (1 / 127.5, 127)}
    np.testing.assert_array_equal(quantize_input(np.array([0.0, 0.5, -1.0, 5.0]), u8), [127, 191, 0, 255])  # clipped
    i8 = {"dtype": np.int8, "quantization": (0.5, -1)}
    np.testing.assert_allclose(dequantize_output(np.array([-1, 1, 3], np.int8), i8), [0.0, 1.0, 2.0])


def test_model_errors_are_one_line(tiny, tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        LandmarkModel(tmp_path / "missing.tflite")
    bare = tmp_path / "bare.h5"
    bare.write_bytes(tiny["keras"].read_bytes())
    with pytest.raises(ModelError, match="without scheme/crop") as e:
        LandmarkModel(bare)
    assert "\n" not in str(e.value)
    k = LandmarkModel(bare, scheme="300w", crop=CropSpec(input_size=64))  # explicit arguments work
    assert k.num_points == 68
    with pytest.raises(ModelError, match="input is 64x64"):
        LandmarkModel(bare, scheme="300w", crop=CropSpec(input_size=96))


def test_detector_on_astronaut(detector, astronaut):
    dets = detector.detect(astronaut)
    assert len(dets) == 1
    np.testing.assert_allclose(dets[0].box, (177, 82, 95, 95), atol=1.5)
    assert dets[0].score > 0.8 and dets[0].keypoints.shape == (6, 2)
    x, y, w, h = dets[0].box  # keypoints (eyes, nose, ...) lie inside the box
    assert np.all((dets[0].keypoints[:2] >= (x, y)) & (dets[0].keypoints[:2] <= (x + w, y + h)))


def test_mediapipe_import_does_not_load_tensorflow():
    code = ("import sys, edgekd.runtime as r; d = r.FaceDetector(); d.close(); "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_match_box_picks_most_overlapping_face():
    pts = np.array([[100, 100], [150, 160]], np.float32)
    boxes = [(0, 0, 40, 40), (95, 90, 60, 70), (120, 120, 100, 100)]
    assert match_box(boxes, pts) == 1
    assert match_box([(0, 0, 40, 40)], pts) is None


class OracleModel:
    """Stand-in LandmarkModel that 'predicts' the ground truth mapped into whatever crop it is shown.

    It learns the crop's transform by watching CropSpec.crop, so the whole detector -> crop -> model -> inverse path
    is exercised: scoring its output must give NME ~0 (any convention slip in the crop/inverse would show).
    """

    def __init__(self, spec: CropSpec):
        oracle = self

        class Watching(CropSpec):
            def crop(self, image, box):
                patch, m = super().crop(image, box)
                oracle.matrix = m
                return patch, m

        self.crop = Watching(**spec.to_dict())
        self.num_points = 68
        self.gt = None
        self.matrix = None

    def predict(self, patch):
        assert patch.shape == (self.crop.input_size, self.crop.input_size, 3)
        out = self.crop.normalize(transform_points(self.gt, self.matrix))  # what a perfect network outputs
        return self.crop.denormalize(out.reshape(-1))


@pytest.mark.skipif(not W300.is_dir(), reason="300-W data not available")
def test_oracle_through_detector_crop_inverse_scores_zero(detector):
    from edgekd.metrics import nme
    from edgekd.bench.protocols import select_detection
    from edgekd.data.readers import load_image, read_dataset
    from edgekd.schemes import get_scheme

    samples = read_dataset("300w", W300, "test")[:4]
    oracle = OracleModel(CropSpec(input_size=96, margin=0.2, detector_offset=(0.0, 0.1), detector_scale=0.9))
    pred = Predictor(oracle, detector)
    scored = 0
    for s in samples:
        image = load_image(s)
        oracle.gt = s.points
        faces = pred.predict(image)
        det = select_detection([f.detection for f in faces], s.points)
        if det is None:
            continue
        face = next(f for f in faces if f.detection is det)
        assert set(face.timings_ms) >= {"detector", "crop", "model", "inverse"}
        assert nme(face.points, s.points, get_scheme("300w")) < 1e-4
        scored += 1
    assert scored >= 3


@pytest.mark.skipif(not W300.is_dir(), reason="300-W data not available")
def test_fit_detector_mapping_moves_boxes_towards_landmark_boxes(detector):
    from edgekd.data.readers import load_image, read_dataset

    samples = read_dataset("300w", W300, "train")[:12]
    mapping = fit_detector_mapping(samples, detector, progress=False)
    assert mapping.faces_used + mapping.faces_missed == len(samples) and mapping.faces_used >= 8
    fitted, raw = mapping.apply(CropSpec()), CropSpec()
    err_fit, err_raw = [], []
    for s in samples:
        dets = detector.detect(load_image(s))
        k = match_box([d.box for d in dets], s.points)
        if k is None:
            continue
        target = np.array(CropSpec.box_from_points(s.points))
        err_fit.append(np.abs(np.array(fitted.box_from_detector(dets[k].box)) - target).sum())
        err_raw.append(np.abs(np.array(raw.box_from_detector(dets[k].box)) - target).sum())
    assert np.mean(err_fit) < 0.85 * np.mean(err_raw)


def test_predict_cli_draws_faces(tiny, tmp_path, astronaut):
    import cv2

    from edgekd.cli import main

    img = tmp_path / "astronaut.png"
    cv2.imwrite(str(img), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    out, pts = tmp_path / "out.png", tmp_path / "face.pts"
    res = CliRunner().invoke(main, ["predict", str(tiny["float"]), str(img), "--out", str(out), "--pts", str(pts)])
    assert res.exit_code == 0, res.output
    assert "1 face(s)" in res.output
    drawn = cv2.imread(str(out))
    assert drawn.shape == astronaut.shape and np.any(drawn != cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    from edgekd.data.readers import read_pts

    assert read_pts(pts, 68).shape == (68, 2)


def test_predict_cli_bad_image_is_one_line_error(tiny, tmp_path):
    from edgekd.cli import main

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    res = CliRunner().invoke(main, ["predict", str(tiny["float"]), str(bad), "--out", str(tmp_path / "o.png")])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "broken.png" in lines[0]


def test_detection_dataclass_is_what_predictor_maps():
    spec = CropSpec(detector_offset=(0.1, -0.2), detector_scale=1.5)
    d = Detection((10.0, 20.0, 40.0, 30.0), 0.9, np.zeros((6, 2), np.float32))
    assert spec.box_from_detector(d.box) == pytest.approx((30.0 + 4.0, 35.0 - 8.0, 60.0))


def test_predict_cli_without_image_uses_the_sample_face(tiny, tmp_path):
    from edgekd.cli import main

    out = tmp_path / "sample.png"
    res = CliRunner().invoke(main, ["predict", str(tiny["float"]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "1 face(s) found in the astronaut sample" in res.output and out.stat().st_size > 10_000
