"""Runtime: LandmarkModel over .tflite (float/int8) and Keras, the MediaPipe detector, and the inverse-crop path."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from runtime_helpers import W300, build_tiny_models

from edgekd.core.crop import CropSpec, invert, transform_points, warp
from edgekd.core.errors import EdgekdError, ModelError
from edgekd.runtime import FaceDetector, LandmarkModel, Predictor, fit_detector_mapping
from edgekd.runtime.predictor import MAX_REFINE
from edgekd.core.detector import Detection, match_box
from edgekd.runtime.model import dequantize_output, quantize_input

REPO = Path(__file__).resolve().parents[1]


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

    It learns the crop's transform by watching CropSpec.matrix, so the whole detector -> crop -> model -> inverse
    path is exercised: scoring its output must give NME ~0 (any convention slip in the crop/inverse would show).
    """

    def __init__(self, spec: CropSpec):
        oracle = self

        class Watching(CropSpec):
            def matrix(self, box):
                oracle.matrix = super().matrix(box)
                return oracle.matrix

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
    from edgekd.core.metrics import nme
    from edgekd.bench.protocols import select_detection
    from edgekd.core.imageio import load_image
    from edgekd.data.readers import read_dataset
    from edgekd.core.schemes import get_scheme

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
    from edgekd.core.imageio import load_image
    from edgekd.data.readers import read_dataset

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


@pytest.mark.skipif(not W300.is_dir(), reason="300-W data not available")
def test_keypoint_mapping_places_crops_better_than_the_box_on_other_faces(detector):
    """Fitted on 120 real training faces, the keypoint mapping lands nearer the landmark box than the box mapping
    fitted on the same faces, on 40 faces it did not see (edgekd 0.7.0, 1,507 / 168 faces: x / y / size spread 2.7 /
    3.9 / 6.4 % -> 2.2 / 2.3 / 4.1 % of the box)."""
    from edgekd.core.imageio import load_image
    from edgekd.data.readers import read_dataset

    samples = read_dataset("300w", W300, "train")[:160]
    mapping = fit_detector_mapping(samples[:120], detector, progress=False)
    assert mapping.keypoint_weights is not None and len(mapping.keypoint_weights) == 3
    assert len(mapping.keypoint_spread) == 3 and all(0 < v < 0.1 for v in mapping.keypoint_spread)
    with_keypoints = mapping.apply(CropSpec())
    box_only = CropSpec.from_dict({**with_keypoints.to_dict(), "detector_keypoint_weights": None})
    err_kp, err_box = [], []
    for s in samples[120:]:
        dets = detector.detect(load_image(s))
        k = match_box([d.box for d in dets], s.points)
        if k is None:
            continue
        target = np.array(CropSpec.box_from_points(s.points))
        err_kp.append(np.abs(np.array(with_keypoints.box_from_detector(dets[k].box, dets[k].keypoints)) - target)
                      / target[2])
        err_box.append(np.abs(np.array(box_only.box_from_detector(dets[k].box, dets[k].keypoints)) - target)
                       / target[2])
    assert len(err_kp) >= 30
    assert np.mean(err_kp) < 0.85 * np.mean(err_box)


@pytest.mark.skipif(not W300.is_dir(), reason="300-W data not available")
def test_keypoint_fit_on_padded_views_keeps_crop_size_where_faces_are_smaller(detector):
    """The training images are cut to about twice the face; fitted on them alone, the keypoint mapping makes crops
    too large where the face fills less of the frame. Fitted on padded views too, it keeps their size on faces it
    did not see, shown in a canvas twice the image's size."""
    from edgekd.core.imageio import load_image
    from edgekd.data.readers import read_dataset
    from edgekd.core.detector import padded_view

    samples = read_dataset("300w", W300, "train")[:150]
    as_is = fit_detector_mapping(samples[:110], detector, progress=False, pads=(1.0,)).apply(CropSpec())
    padded = fit_detector_mapping(samples[:110], detector, progress=False).apply(CropSpec())
    bias = {"as_is": [], "padded": []}
    for s in samples[110:]:
        view, corner = padded_view(load_image(s), 2.0)
        dets = detector.detect(view)
        k = match_box([(x - corner[0], y - corner[1], w, h) for x, y, w, h in (d.box for d in dets)], s.points)
        if k is None:
            continue
        box = (dets[k].box[0] - corner[0], dets[k].box[1] - corner[1], dets[k].box[2], dets[k].box[3])
        side = CropSpec.box_from_points(s.points)[2]
        for name, spec in (("as_is", as_is), ("padded", padded)):
            bias[name].append(spec.box_from_detector(box, dets[k].keypoints - corner)[2] / side - 1)
    assert len(bias["padded"]) >= 30
    assert abs(np.mean(bias["padded"])) < 0.5 * abs(np.mean(bias["as_is"]))


def test_predict_cli_draws_faces(tiny, tmp_path, astronaut):
    import cv2

    from edgekd.cli.main import main

    img = tmp_path / "astronaut.png"
    cv2.imwrite(str(img), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    out, pts = tmp_path / "out.png", tmp_path / "face.pts"
    res = CliRunner().invoke(main, ["predict", str(tiny["float"]), str(img), "--out", str(out), "--pts", str(pts)])
    assert res.exit_code == 0, res.output
    assert "1 face found" in res.output and "score 0.9" in res.output
    drawn = cv2.imread(str(out))
    assert drawn.shape == astronaut.shape and np.any(drawn != cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    from edgekd.core.imageio import read_pts

    assert read_pts(pts, 68).shape == (68, 2)


def test_predict_cli_bad_image_is_one_line_error(tiny, tmp_path):
    from edgekd.cli.main import main

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
    from edgekd.cli.main import main

    out = tmp_path / "sample.png"
    res = CliRunner().invoke(main, ["predict", str(tiny["float"]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "1 face found in the astronaut sample" in res.output and out.stat().st_size > 10_000


# --- the fast still-image path ----------------------------------------------------------------------------------------
from runtime_helpers import SHIPPED_INT8  # noqa: E402


def _whole_image_warp(image, matrix, size):
    """The warp before region-only downsampling: pyrDown over the whole image, then the forward warpAffine."""
    import cv2

    m = np.array(matrix, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    while scale < 0.5 and min(image.shape[:2]) >= 4:
        image = cv2.pyrDown(image)
        m[:, :2] *= 2.0
        scale *= 2.0
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def test_warp_downsamples_only_the_region_bit_identically(astronaut):
    import cv2

    rng = np.random.default_rng(7)
    big = cv2.resize(astronaut, (1531, 1203), interpolation=cv2.INTER_CUBIC)  # odd sizes: pyramid edge cases
    images = [big, astronaut, rng.integers(0, 256, (37, 23, 3), np.uint8), big[:, :, 0].copy()]
    checked = pyramid = 0
    for image in images:
        h, w = image.shape[:2]
        for k in range(150):
            spec = CropSpec(input_size=int(rng.choice([64, 128])), margin=float(rng.uniform(0, 0.4)))
            box = (float(rng.uniform(-0.3 * w, 1.3 * w)), float(rng.uniform(-0.3 * h, 1.3 * h)),
                   float(np.exp(rng.uniform(np.log(4), np.log(3 * max(w, h))))))
            m = spec.matrix(box)
            if k % 5 == 0:  # rotated maps take the whole-image path; still identical
                c, s_ = np.cos(0.3), np.sin(0.3)
                m[:, :2] = np.array([[c, -s_], [s_, c]]) @ m[:, :2]
            expected = _whole_image_warp(image, m, spec.input_size)
            np.testing.assert_array_equal(warp(image, m, spec.input_size), expected, err_msg=str((image.shape, box)))
            checked += 1
            pyramid += spec.matrix(box)[0, 0] < 0.5
    assert checked == 600 and pyramid > 200
    out = np.full((128, 128, 3), 7, np.uint8)  # into a caller's buffer, also when the crop misses the image
    m = CropSpec().matrix((700.0, 600.0, 900.0))
    assert warp(big, m, 128, out) is out and np.array_equal(out, _whole_image_warp(big, m, 128))
    m = CropSpec().matrix((-5000.0, 600.0, 900.0))
    assert warp(big, m, 128, out) is out and not out.any()


def test_int8_input_takes_the_pixels_directly_and_matches_the_quantizer():
    from edgekd.runtime.model import input_encoding

    crop = (np.random.default_rng(3).random((128, 128, 3)) * 255).astype(np.uint8)
    crop[0, 0] = (0, 255, 128)
    with LandmarkModel(SHIPPED_INT8) as model:
        backend = model._backend
        assert backend.input_encoding == "int8-xor"  # the shipped model: int8, zero point -128, scale 1/255
        model.set_input(crop)
        reference = quantize_input(crop[None].astype(np.float32) / 255.0, backend.inp)
        np.testing.assert_array_equal(backend.interp.get_tensor(backend.inp["index"]), reference)
        model.invoke()
        m = CropSpec().matrix((250.0, 180.0, 120.0))
        folded = model.points(invert(m))
        stepwise = transform_points(model.crop.denormalize(dequantize_output(backend.output(), backend.out)[0]),
                                    invert(m))
    np.testing.assert_allclose(folded, stepwise, rtol=0, atol=2e-3)
    assert input_encoding({"dtype": np.uint8, "quantization": (1 / 255, 0)}) == "uint8"
    assert input_encoding({"dtype": np.int8, "quantization": (1 / 127.5, 0)}) == "quantize"  # [-1, 1] inputs
    assert input_encoding({"dtype": np.int8, "quantization": (1 / 255, -127)}) == "quantize"
    assert input_encoding({"dtype": np.float32, "quantization": (0.0, 0)}) == "float"


def test_staged_calls_give_predict_for_every_backend(tiny):

    crop = _crop()
    m = CropSpec(input_size=64).matrix((40.0, 50.0, 30.0))
    for kind in ("float", "int8", "keras"):
        with LandmarkModel(tiny[kind]) as model:
            expected = model.crop.denormalize(model.run(crop.astype(np.float32) / 255.0)[0])
            np.testing.assert_allclose(model.predict(crop), expected, rtol=0, atol=1e-3, err_msg=kind)
            model.set_input(crop)
            model.invoke()
            np.testing.assert_allclose(model.points(invert(m)), transform_points(expected, invert(m)), rtol=0,
                                       atol=1e-3, err_msg=kind)


# --- detectors ----------------------------------------------------------------------------------------------------
def _grid(image, rows, tile=(slice(40, 340), slice(110, 350))):
    """rows x rows copies of the astronaut's face tile (300x240, the face 95 px wide): a group photo of real faces."""
    face = image[tile]
    return np.ascontiguousarray(np.vstack([np.hstack([face] * rows)] * rows)), \
        [(67 + 240 * i, 42 + 300 * j, 95, 95) for j in range(rows) for i in range(rows)]


@pytest.mark.skipif(not W300.is_dir(), reason="300-W data not available")
def test_blazeface_on_litert_finds_the_boxes_tasks_finds(detector, astronaut):
    from edgekd.core.imageio import load_image
    from edgekd.data.readers import read_dataset
    from edgekd.core.detector import iou
    from edgekd.runtime import BlazeFace

    images = [astronaut, _grid(astronaut, 2)[0]] + [load_image(s) for s in read_dataset("300w", W300, "test")[:12]]
    compared = 0
    with BlazeFace() as litert:
        for image in images:
            ours, theirs = litert.detect(image), detector.detect(image)
            assert len(ours) == len(theirs)
            for d in theirs:
                x, y, w, h = d.box
                if x <= 0 or y <= 0:  # Tasks moves a box that crosses the left/top edge inside the image
                    continue
                best = max(ours, key=lambda e: iou(e.box, d.box))
                assert iou(best.box, d.box) >= 0.95 and abs(best.score - d.score) < 0.01
                np.testing.assert_allclose(best.keypoints, d.keypoints, atol=0.02 * w)
                compared += 1
    assert compared >= 14


def test_full_range_and_tiles_find_small_faces(astronaut):
    from edgekd.core.detector import iou
    from edgekd.runtime import open_detector

    grid, truth = _grid(astronaut, 4)

    def recall(**options):
        with open_detector(**options) as det:
            found = det.detect(grid)
        return sum(any(iou(d.box, t) > 0.3 for d in found) for t in truth), len(found)

    assert recall() == (0, 0)  # short-range sees 10 px faces in a 1200 px photo letterboxed to 128
    hits, n = recall(detector="full-range")
    assert 3 <= hits == n < 8
    assert recall(tiles=2) == (16, 16)
    assert recall(detector="full-range", tiles=2) == (16, 16)
    with pytest.raises(ModelError, match="tiles 9"):
        open_detector(tiles=9)


def test_detector_asset_checksums():
    from edgekd.core.detector import SHIPPED, check_asset

    for path in SHIPPED:
        assert check_asset(path)[4:8] == b"TFL3"


# --- predict: every face, points per face, no face ------------------------------------------------------------------
def _write(path, rgb):
    import cv2

    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def test_predict_writes_one_pts_per_face_and_touches_nothing_else(tiny, tmp_path, astronaut):
    from edgekd.cli.main import main
    from edgekd.core.imageio import read_pts

    group = _write(tmp_path / "group.png", _grid(astronaut, 2)[0])
    single = _write(tmp_path / "single.png", astronaut)
    pts = tmp_path / "faces.pts"
    (tmp_path / "faces_7.pts").write_text("a file predict did not write (it could be an annotation)")
    res = CliRunner().invoke(main, ["predict", str(tiny["float"]), str(group), "--out", str(tmp_path / "g.png"),
                                    "--pts", str(pts)])
    assert res.exit_code == 0, res.output
    assert "4 faces found" in res.output and res.output.count("score 0.9") == 4
    written = sorted(p.name for p in tmp_path.glob("faces*") if p.name != "faces_7.pts")
    assert written == ["faces_1.pts", "faces_2.pts", "faces_3.pts", "faces_4.pts"]
    assert (tmp_path / "faces_7.pts").read_text().startswith("a file predict did not write")
    assert all(name in res.output for name in written)  # the final line names every file written
    centres = sorted(tuple(np.round(read_pts(tmp_path / n, 68).mean(0) / 100)) for n in written)
    assert len(set(centres)) == 4  # four different faces, not one face four times
    res = CliRunner().invoke(main, ["predict", str(tiny["float"]), str(single), "--out", str(tmp_path / "s.png"),
                                    "--pts", str(pts)])
    assert res.exit_code == 0 and "1 face found" in res.output and "faces.pts" in res.output
    assert len(read_pts(pts, 68)) == 68


def test_predict_json_holds_every_face_with_box_and_score(tiny, tmp_path, astronaut):
    import json

    from edgekd.cli.main import main

    group = _write(tmp_path / "group.png", _grid(astronaut, 2)[0])
    out = tmp_path / "faces.json"
    res = CliRunner().invoke(main, ["predict", str(tiny["float"]), str(group), "--out", str(tmp_path / "g.png"),
                                    "--pts", str(out), "--detector-backend", "litert", "--min-score", "0.6"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert len(doc["faces"]) == 4 and doc["source"] == str(group)
    for face in doc["faces"]:
        assert len(face["box"]) == 4 and face["score"] >= 0.6 and np.array(face["points"]).shape == (68, 2)


def test_predict_without_a_face_says_so_and_leaves_nothing(tiny, tmp_path):
    from edgekd.cli.main import main

    blank = _write(tmp_path / "wall.png", np.full((240, 320, 3), 128, np.uint8))
    out, pts = tmp_path / "wall_out.png", tmp_path / "wall.pts"
    out.write_bytes(b"an earlier run's image")
    pts.write_text("an earlier run's points")
    res = CliRunner().invoke(main, ["predict", str(tiny["float"]), str(blank), "--out", str(out), "--pts", str(pts)])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"no face found in {blank}") and "nothing written" in lines[0]
    # nothing written, and nothing an earlier run (or the user) left there removed
    assert out.read_bytes() == b"an earlier run's image" and pts.read_text() == "an earlier run's points"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wall.png", "wall.pts", "wall_out.png"]


def test_predict_option_errors_are_one_line(tiny, tmp_path, astronaut):
    from edgekd.cli.main import main

    img = _write(tmp_path / "a.png", astronaut)
    for args, expected in ((["--min-score", "1.5"], "error: --min-score 1.5"),
                           (["--pts", str(tmp_path / "p.csv")], "error: --pts"),
                           (["--tiles", "0"], "error: --tiles 0"),
                           (["--out", str(img)], "error: --out")):
        res = CliRunner().invoke(main, ["predict", str(tiny["float"]), str(img), *args])
        assert res.exit_code == 2 and res.output.strip().splitlines()[-1].startswith(expected), (args, res.output)


def test_flip_averaging_runs_the_model_twice_and_stays_on_the_face():
    """--tta flip: the mirrored crop's points, mirrored back and relabelled, land where the plain ones do (a trained
    model is nearly symmetric), and the average is what predict returns."""
    from skimage import data

    from edgekd.core.metrics import nme
    from edgekd.runtime import FaceDetector, LandmarkModel, Predictor
    from edgekd.core.schemes import get_scheme

    model = LandmarkModel(SHIPPED_INT8)
    image = np.ascontiguousarray(data.astronaut())
    with FaceDetector() as det:
        detection = det.detect(image)[0]
    plain = Predictor(model).predict_detection(image, detection)
    both = Predictor(model, flip=True).predict_detection(image, detection)
    assert "flip" in both.timings_ms and "flip" not in plain.timings_ms
    differ = nme(both.points, plain.points, get_scheme("300w"))
    assert 0 < differ < 0.03  # averaged with a second, slightly different prediction of the same face


class FixedModel:
    """Stand-in that predicts the same crop points (pixels of a 64 px crop) whatever it is shown."""

    def __init__(self, points: np.ndarray):
        self.crop, self.scheme, self.points = CropSpec(input_size=64, margin=0.2), "300w", points

    def predict(self, patch):
        return self.points.copy()


def test_flip_averaging_is_exact_for_a_model_with_fixed_output():
    """A stand-in that always predicts the same crop points P: flip averaging must give the mean of P and
    scheme.flip(P) (mirrored back, left/right relabelled), mapped to the image: checked against the scheme's own
    flip, an independent implementation."""
    from edgekd.core.schemes import get_scheme

    scheme = get_scheme("300w")
    fixed = np.random.default_rng(5).uniform(5, 58, (68, 2)).astype(np.float32)
    model = FixedModel(fixed)
    crop = model.crop
    image = np.random.default_rng(6).integers(0, 255, (200, 240, 3), dtype=np.uint8)
    box = (120.0, 90.0, 80.0)
    face = Predictor(model, flip=True).predict_box(image, box)
    expected = transform_points(0.5 * (fixed + scheme.flip(fixed, 64)), invert(crop.matrix(box)))
    np.testing.assert_allclose(face.points, expected, atol=1e-4)


def test_refine_cuts_the_face_again_from_the_points_just_predicted():
    """Predictor(refine=2): the second and third crops come from the box of the previous pass's points, the face
    keeps the last box, and the extra passes are timed as "refine"; 0 re-crops is the plain pass."""
    fixed = np.random.default_rng(7).uniform(10, 50, (68, 2)).astype(np.float32)
    model = FixedModel(fixed)  # the same crop points whatever it is shown: each pass moves the box
    crop = model.crop
    image = np.random.default_rng(8).integers(0, 255, (200, 240, 3), dtype=np.uint8)
    box = (120.0, 90.0, 80.0)
    expected, boxes = [], [box]
    for _ in range(3):
        expected.append(transform_points(fixed, invert(crop.matrix(boxes[-1]))))
        boxes.append(crop.box_from_points(expected[-1]))
    plain = Predictor(model).predict_box(image, box)
    np.testing.assert_allclose(plain.points, expected[0], atol=1e-4)
    assert "refine" not in plain.timings_ms
    face = Predictor(model, refine=2).predict_box(image, box)
    np.testing.assert_allclose(face.points, expected[2], atol=1e-4)
    assert np.abs(expected[2] - expected[0]).max() > 1.0  # the passes did move the points
    assert face.box == pytest.approx(boxes[2]) and face.timings_ms["refine"] > 0
    for bad in (-1, 1.5, True, MAX_REFINE + 1):
        with pytest.raises(EdgekdError, match=f"refine {bad}: expected a whole number"):
            Predictor(model, refine=bad)
