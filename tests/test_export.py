"""Export of a tiny student in every mode: metadata, model card, int8 op check, the NME guard, atomic writes, and
the option checks that refuse a bad export before any work (one line each, naming the option)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.core.errors import EdgekdError, ModelError

SIZE = 64
# An untrained network calibrated on 16 crops may lose a few tenths of a point (the guard has its own tests), and
# any real QAT step moves its tiny head a lot: a near-zero learning rate keeps the QAT model comparable.
FAST = dict(calibration_samples=16, qat_epochs=1, qat_steps_per_epoch=2, qat_learning_rate=1e-7, latency_runs=3,
            progress=False, tolerance=2.0)


def _save(net, path, prepared, data):
    from edgekd.core.checkpoint import save_checkpoint

    save_checkpoint(net, path, {"stage": "baseline", "scheme": "300w", "num_points": 68,
                                "input_size": net.input_shape[1], "crop": data.crop.to_dict(),
                                "prepared": str(prepared)})
    return path


@pytest.fixture(scope="module")
def checkpoint(tiny_prepared, tmp_path_factory):
    """An untrained alpha-0.35 student whose outputs spread like landmarks: BatchNorm statistics estimated on the
    data (so activations are O(1)) and a head = mean training shape + small image-dependent offsets."""
    from edgekd.data.pipeline import PreparedData, make_dataset
    from edgekd.models.backbones import build_student, recalibrate_batchnorm

    import tf_keras as keras

    keras.utils.set_random_seed(0)
    data = PreparedData.open(tiny_prepared)
    net = build_student(68, SIZE, alpha=0.35)
    recalibrate_batchnorm(net, make_dataset(data, "train", 16, augment=True, seed=0), 2)
    _, hard = data.arrays("train")
    mean = data.crop.normalize(hard).reshape(len(hard), -1).mean(0)
    kernel, _ = net.get_layer("landmarks").get_weights()
    net.get_layer("landmarks").set_weights([kernel * 0.02, mean])
    return _save(net, tmp_path_factory.mktemp("ckpt") / "best.h5", tiny_prepared, data)


@pytest.fixture(scope="module")
def exports(checkpoint, tiny_prepared, tmp_path_factory):
    """Each mode exported once (lazily) and shared by the tests below."""
    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import export_model

    out, cache = tmp_path_factory.mktemp("exports"), {}

    def get(mode, **kw):
        key = (mode, tuple(sorted(kw.items())))
        if key not in cache:
            name = f"{mode}{''.join(f'_{v}' for v in kw.values())}.tflite"
            cache[key] = export_model(ExportConfig(checkpoint, out / name, mode, tiny_prepared, **{**FAST, **kw}))
        return cache[key]

    return get


def _params(checkpoint):
    from edgekd.core.checkpoint import load_model

    return load_model(checkpoint).count_params()


# bytes per parameter each mode should give (weights dominate a MobileNetV2 file)
BYTES_PER_PARAM = {"float32": (3.5, 4.6), "float16": (1.8, 2.6), "dynamic": (0.9, 1.6), "int8": (0.9, 1.6),
                   "qat": (0.9, 1.6)}


@pytest.mark.parametrize("mode", ["float32", "float16", "dynamic", "int8", "qat"])
def test_export_each_mode(mode, exports, checkpoint):
    from ai_edge_litert.interpreter import Interpreter

    from edgekd.core.metadata import read
    from edgekd.export.quantize import FORMATS

    r = exports(mode)
    assert r.path.is_file() and r.card_md.is_file() and r.card_json.is_file()
    card = json.loads(r.card_json.read_text())
    assert card["size_bytes"] == r.path.stat().st_size
    lo, hi = BYTES_PER_PARAM[mode]
    assert lo < card["size_bytes"] / _params(checkpoint) < hi
    assert read(r.path).quantization == FORMATS[mode].label == card["metadata"]["quantization"]
    # the file as shipped tracks the Keras model it came from
    assert abs(r.nme_tflite - r.nme_keras) < 1.0
    assert card["latency_ms"]["median"] > 0 and card["latency_ms"]["threads"] == 1
    assert card == json.loads(json.dumps(r.card, default=str))  # the card on disk is the result's card
    assert card["config"]["mode"] == mode and card["config"]["checkpoint"] == str(checkpoint)
    it = Interpreter(model_path=str(r.path))
    it.allocate_tensors()
    want = "int8" if mode in ("int8", "qat") else "float32"
    assert it.get_input_details()[0]["dtype"].__name__ == want == card["input"]["dtype"]
    if mode == "qat":  # by default QAT fits the float network's outputs, with the run's loss (L2 here)
        assert abs(r.nme_tflite - card["nme"]["keras_qat"]) < 0.5
        assert "plain L2 against the float network's own outputs" in card["quantization"]["qat"]["loss"]
        qat = card["quantization"]["qat"]  # the default schedule decays the rate: at half of it on step 2 of 2
        assert qat["schedule"] == "cosine"
        assert qat["last_step_learning_rate"] == pytest.approx(FAST["qat_learning_rate"] / 2)
        assert "float network's own outputs" in r.card_md.read_text()


def _op_input_types(path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    dtypes = {t["index"]: t["dtype"].__name__ for t in it.get_tensor_details()}
    return [(op["op_name"], [dtypes[i] for i in op["inputs"] if i >= 0]) for op in it._get_ops_details()]


@pytest.mark.parametrize("mode", ["int8", "qat"])
def test_int8_exports_compute_in_integers(mode, exports):
    r = exports(mode)
    ops = _op_input_types(r.path)
    inner = [(name, types) for name, types in ops if name not in ("QUANTIZE", "DEQUANTIZE")]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= {name for name, _ in inner}
    assert all(t in ("int8", "int32") for _, types in inner for t in types), ops
    assert r.card["ops"]["all_integer"] and r.card["ops"]["float_ops"] == []
    assert "QUANTIZE/DEQUANTIZE only at the boundary" in r.card_md.read_text()


def test_qat_float_head_runs_the_landmark_layer_alone_in_float(exports, checkpoint):
    """--float-head: every op integer up to the pooled features, then one float FULLY_CONNECTED whose output is not
    on an int8 grid; the card says so, and the model still computes what the Keras network does."""
    r = exports("qat", float_head=True)
    inner = [(name, types) for name, types in _op_input_types(r.path) if name not in ("QUANTIZE", "DEQUANTIZE")]
    floats = [(name, types) for name, types in inner if "float32" in types]
    assert floats == [("FULLY_CONNECTED", ["float32", "float32", "float32"])], inner
    assert r.card["ops"]["float_ops"][0]["op"] == "FULLY_CONNECTED" and not r.card["ops"]["all_integer"]
    assert r.card["quantization"]["qat"]["landmark_head"] == "float" and r.card["output_precision"]["scale"] == 0
    md = r.card_md.read_text()
    assert "The landmark layer runs in float" in md and "1 op takes float inputs" in md
    assert "Ops in float (the landmark layer, `--float-head`): FULLY_CONNECTED x1" in md
    assert "fall back" not in md
    assert abs(r.nme_tflite - r.card["nme"]["keras_qat"]) < 0.5  # the file computes the QAT model
    assert exports("qat").card["quantization"]["qat"]["landmark_head"] == "int8"


def test_quantize_model_leaves_only_the_last_dense_unwrapped(checkpoint):
    """The float head's wrapping: every weighted layer but the landmark Dense is a QuantizeWrapper, and that Dense
    keeps the checkpoint's weights."""
    import tf_keras as keras

    from edgekd.core.checkpoint import load_model
    from edgekd.models.backbones import HEAD_NAME
    from edgekd.training.qat import quantize_model

    net = load_model(checkpoint)
    q = quantize_model(net, float_head=True)
    head = q.get_layer(HEAD_NAME)
    assert isinstance(head, keras.layers.Dense)
    for got, want in zip(head.get_weights(), net.get_layer(HEAD_NAME).get_weights()):
        np.testing.assert_array_equal(got, want)
    weighted = [layer for layer in q.layers if layer.weights and layer.name != HEAD_NAME]
    assert weighted and all(type(layer).__name__ in ("QuantizeWrapperV2", "QuantizeWrapper", "QuantizeLayer")
                            for layer in weighted), {type(layer).__name__ for layer in weighted}
    assert not any(layer.name == HEAD_NAME for layer in quantize_model(net).layers)  # int8 head: wrapped


def test_op_check_lists_float_fallbacks(exports):
    """A dynamic-range model keeps float activations: the same check must name those ops."""
    r = exports("dynamic")
    assert not r.card["ops"]["all_integer"]
    named = {row["op"] for row in r.card["ops"]["float_ops"]}
    assert {"CONV_2D", "FULLY_CONNECTED"} & named


def test_card_tells_the_asked_for_float_layer_from_a_fallback():
    """With --float-head the card names the one float FULLY_CONNECTED as the landmark layer; any other float op
    (a converter fallback an int8-only accelerator cannot run) is still listed as a fallback, apart."""
    import copy

    from runtime_helpers import SHIPPED_INT8

    from edgekd.export.card import render_card

    card = json.loads(SHIPPED_INT8.with_suffix(".card.json").read_text())  # a real QAT card, made a --float-head one
    card["quantization"]["qat"]["landmark_head"] = "float"
    card["ops"].update(all_integer=False, float_ops=[{"op": "FULLY_CONNECTED", "count": 1}])
    md = render_card(card)
    assert "Ops in float (the landmark layer, `--float-head`): FULLY_CONNECTED x1" in md and "fall back" not in md
    mixed = copy.deepcopy(card)
    mixed["ops"]["float_ops"].append({"op": "CONV_2D", "count": 2})
    md = render_card(mixed)
    assert "3 ops take float inputs." in md
    assert "landmark layer, `--float-head`): FULLY_CONNECTED x1" in md and "fall back to float: CONV_2D x2" in md
    mixed["quantization"]["qat"]["landmark_head"] = "int8"  # the same ops without --float-head: all fallbacks
    assert "fall back to float: FULLY_CONNECTED x1, CONV_2D x2" in render_card(mixed)


def test_card_names_the_checkpoint_by_its_absolute_path(checkpoint, tiny_prepared, tmp_path, monkeypatch):
    """Exported from inside the run folder with a relative path, the card still says where the weights are."""
    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import export_model

    monkeypatch.chdir(checkpoint.parent)
    r = export_model(ExportConfig(checkpoint.name, tmp_path / "m.tflite", "float32", tiny_prepared, **FAST))
    assert json.loads(r.card_json.read_text())["checkpoint"] == str(checkpoint.resolve())


def test_output_precision_matches_the_output_error(exports, checkpoint, tiny_prepared):
    """The int8 head's step, as reported, bounds how far the float-out int8 model strays from a rounding."""
    from edgekd.data.pipeline import PreparedData
    from edgekd.runtime.model import LandmarkModel

    r = exports("int8")
    prec = r.card["output_precision"]
    assert prec["scale"] > 0 and "DEQUANTIZE" in prec["source"]
    data = PreparedData.open(tiny_prepared)
    images, _ = data.arrays("val")
    with LandmarkModel(r.path) as model:
        out = model.run(images.astype(np.float32) / 255)
    steps = out / prec["scale"]
    # every dequantized output value sits on the int8 grid (a whole number of steps from the zero point)
    assert np.allclose(steps - np.round(steps), 0, atol=1e-2)
    # the card measures what the int8 head costs against the same features through a float head
    assert abs(prec["nme_int8_head"] - r.nme_tflite) < 0.5 and abs(prec["nme_cost"]) < 1.0
    assert "cost of the int8 output" in r.card_md.read_text()


def test_metadata_round_trip_and_model_still_runs(exports, tiny_prepared):
    from ai_edge_litert.interpreter import Interpreter

    from edgekd.data.pipeline import PreparedData
    from edgekd.core.metadata import embed, read

    r = exports("float32")
    meta = read(r.path)
    assert meta == r.metadata
    data = PreparedData.open(tiny_prepared)
    assert meta.crop == data.crop and meta.num_points == 68 and meta.scheme == "300w"
    assert meta.flip_permutation == list(data.scheme.flip_permutation)
    assert meta.nme_pair == list(data.scheme.nme_pair)
    assert meta.data_license == data.manifest.license and meta.edgekd_version
    # re-embedding replaces the entry (one edgekd entry, new content) and the model still runs identically
    changed = type(meta)(**{**meta.__dict__, "training_data": "changed"})
    raw = r.path.read_bytes()
    again = r.path.with_name("again.tflite")
    again.write_bytes(embed(raw, changed))
    assert read(again) == changed
    x = np.random.default_rng(0).random((1, SIZE, SIZE, 3), dtype=np.float32)
    outs = []
    for p in (r.path, again):
        it = Interpreter(model_path=str(p))
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_calibration_crops_are_augmented_and_seeded(tiny_prepared):
    from edgekd.data.pipeline import PreparedData
    from edgekd.training.qat import calibration_images

    data = PreparedData.open(tiny_prepared)
    a, b, c = (calibration_images(data, 8, seed) for seed in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (8, SIZE, SIZE, 3) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    canonical = data.arrays("train")[0].astype(np.float32) / 255
    assert not any(np.array_equal(img, ref) for img in a for ref in canonical)


@pytest.fixture(scope="module")
def fragile_checkpoint(checkpoint, tiny_prepared, tmp_path_factory):
    """The tiny student with one output coordinate pushed far out (bias +200): its int8 head must cover that range,
    so its step is ~50 crop pixels and every other coordinate collapses onto the crop centre; int8 loses tens of
    NME points (a rounding of a few pixels would not do: it adds to the untrained model's error in quadrature)."""
    from edgekd.core.checkpoint import load_model
    from edgekd.data.pipeline import PreparedData

    net = load_model(checkpoint)
    kernel, bias = net.get_layer("landmarks").get_weights()
    bias[0] += 200.0
    net.get_layer("landmarks").set_weights([kernel, bias])
    return _save(net, tmp_path_factory.mktemp("fragile") / "best.h5", tiny_prepared, PreparedData.open(tiny_prepared))


def test_guard_fires_and_leaves_nothing(fragile_checkpoint, tiny_prepared, tmp_path):
    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import export_model

    out = tmp_path / "m.tflite"
    out.write_bytes(b"an earlier export")
    with pytest.raises(EdgekdError, match=r"m.tflite: not written: the int8-ptq model.*> tolerance 2\);.*--qat") as err:
        export_model(ExportConfig(fragile_checkpoint, out, "int8", tiny_prepared, **FAST))
    assert "\n" not in str(err.value)
    assert out.read_bytes() == b"an earlier export"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]  # no temp file, no card


def test_allow_degradation_writes_a_flagged_card(fragile_checkpoint, tiny_prepared, tmp_path):
    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import export_model

    r = export_model(ExportConfig(fragile_checkpoint, tmp_path / "m.tflite", "int8", tiny_prepared,
                                  allow_degradation=True, **FAST))
    assert r.path.is_file() and r.degraded and r.nme.delta > FAST["tolerance"]
    card = json.loads(r.card_json.read_text())
    assert card["nme"]["degraded"] and card["nme"]["delta"] == pytest.approx(r.nme_tflite - r.nme_keras)
    assert "Degraded export" in r.card_md.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.card.json", "m.card.md", "m.tflite"]


def test_tolerance_guard_compares_the_nme_rise_with_the_tolerance(tmp_path):
    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import Scores, check_tolerance

    cfg = ExportConfig(tmp_path / "best.h5", tmp_path / "m.tflite", "qat", tolerance=0.1)
    check_tolerance(cfg, Scores(keras=5.0, tflite=5.1, faces=4))  # exactly the tolerance passes
    check_tolerance(cfg, Scores(keras=5.0, tflite=4.0, faces=4))  # an improvement passes
    with pytest.raises(EdgekdError, match=r"int8-qat model's validation NME is 5.300% against 5.000%.*"
                                          r"\+0.300 > tolerance 0.1.*--qat-epochs"):
        check_tolerance(cfg, Scores(keras=5.0, tflite=5.3, faces=4))
    cfg.allow_degradation = True
    check_tolerance(cfg, Scores(keras=5.0, tflite=5.3, faces=4))


def test_mismatched_data_is_refused(tiny_prepared, tmp_path):
    from edgekd.data.pipeline import PreparedData
    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import export_model
    from edgekd.models.backbones import build_student

    data = PreparedData.open(tiny_prepared)
    ck = _save(build_student(68, 96, alpha=0.35), tmp_path / "best.h5", tiny_prepared, data)
    with pytest.raises(ModelError, match="takes 96 px input, but .* prepared at 64 px"):
        export_model(ExportConfig(ck, tmp_path / "m.tflite", "int8", tiny_prepared, **FAST))
    assert not (tmp_path / "m.tflite").exists()


def test_a_refitted_detector_mapping_is_taken_from_the_data(checkpoint, tiny_prepared, tmp_path):
    """The detector mapping is run-time only: a checkpoint recorded with another one exports, and its file carries
    the data's mapping (a prepared folder refitted with keypoints updates models trained before)."""
    import h5py

    from edgekd.core.checkpoint import INFO_ATTR
    from edgekd.data.pipeline import PreparedData
    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import export_model
    from edgekd.core.metadata import read

    older = tmp_path / "older.h5"
    older.write_bytes(checkpoint.read_bytes())
    with h5py.File(older, "a") as f:
        info = json.loads(f.attrs[INFO_ATTR])
        info["crop"].update(detector_offset=[0.2, -0.1], detector_scale=1.4, detector_keypoint_weights=None)
        f.attrs[INFO_ATTR] = json.dumps(info)
    export_model(ExportConfig(older, tmp_path / "m.tflite", "float32", tiny_prepared, **FAST))
    assert read(tmp_path / "m.tflite").crop == PreparedData.open(tiny_prepared).crop


def test_other_crop_or_missing_teachers_are_refused(checkpoint, tiny_prepared, tmp_path):
    import h5py

    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import export_model
    from edgekd.core.checkpoint import INFO_ATTR

    other = tmp_path / "other.h5"
    other.write_bytes(checkpoint.read_bytes())
    with h5py.File(other, "a") as f:  # same network, but recorded as trained with another context around the face
        info = json.loads(f.attrs[INFO_ATTR])
        info["crop"]["margin"] = info["crop"]["margin"] + 0.1
        f.attrs[INFO_ATTR] = json.dumps(info)
    with pytest.raises(ModelError, match="other.h5: the model was trained on another crop"):
        export_model(ExportConfig(other, tmp_path / "m.tflite", "int8", tiny_prepared, **FAST))
    with pytest.raises(ModelError, match=r"nowhere/tough/best.h5: no tough teacher"):
        export_model(ExportConfig(checkpoint, tmp_path / "m.tflite", "qat", tiny_prepared,
                                  teachers_dir=tmp_path / "nowhere", qat_target="truth", **FAST))
    assert not list(tmp_path.glob("m.*"))


def test_cli_export_uint8_in_int8_out(checkpoint, tiny_prepared, tmp_path):
    from edgekd.cli.main import main
    from edgekd.runtime.model import LandmarkModel

    run = lambda *a: CliRunner().invoke(main, ["export", *map(str, a)])
    r = run(checkpoint, "--out", tmp_path / "m.tflite", "--int8", "--input-type", "uint8", "--output-type", "int8",
            "--data", tiny_prepared, "--calibration-samples", 8, "--tolerance", 2)
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and (tmp_path / "m.tflite").is_file() and (tmp_path / "m.card.md").is_file()
    card = json.loads((tmp_path / "m.card.json").read_text())
    assert card["input"]["dtype"] == "uint8" and card["output"]["dtype"] == "int8"
    # [0, 1] floats on a uint8 input: one step per pixel value
    assert card["input"]["scale"] == pytest.approx(1 / 255, rel=1e-3) and card["input"]["zero_point"] == 0
    prec = card["output_precision"]
    assert prec["scale"] > 0 and prec["scale"] == pytest.approx(card["output"]["scale"])
    assert prec["pixels_per_step"] == pytest.approx(prec["scale"] * SIZE)
    with LandmarkModel(tmp_path / "m.tflite") as model:  # the runtime quantizes/dequantizes with the tensors' params
        assert model.info.quantization == "int8-ptq"
    assert abs(card["nme"]["tflite"] - card["nme"]["keras"]) < 2.0


def test_qat_target_truth_of_a_blended_baseline_fits_its_tough_teacher(checkpoint, tiny_prepared, tmp_path, caplog):
    """A --teacher-blend baseline's own objective is its blend with the Tough teacher alone: QAT with target truth
    reads the teacher its run recorded (no Tolerant one), flip-averaged and blended as in training."""
    import shutil
    from dataclasses import replace

    from edgekd.data.pipeline import PreparedData
    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import export_model
    from edgekd.training.qat import QATConfig, _trainer
    from edgekd.training.trainers import Mimic

    stage = tmp_path / "run" / "baseline"
    stage.mkdir(parents=True)
    shutil.copy(checkpoint, stage / "best.h5")
    (tmp_path / "t" / "tough").mkdir(parents=True)
    shutil.copy(checkpoint, tmp_path / "t" / "tough" / "best.h5")
    (stage / "config.json").write_text(json.dumps({
        "train": {"stage": "baseline", "loss": "l1", "teacher_flip": True, "kd": {"teacher_blend": 0.75}},
        "teachers": {"tough": [str(tmp_path / "t" / "tough" / "best.h5")]}}))
    # through the CLI: its QAT options reach the recipe the card records
    from edgekd.cli.main import main

    r = CliRunner().invoke(main, ["export", str(stage / "best.h5"), "--out", str(tmp_path / "q.tflite"), "--qat",
                                  "--qat-lr", "2e-7", "--qat-epochs", "1", "--qat-steps", "2", "--qat-schedule",
                                  "cosine", "--qat-target", "truth", "--data", str(tiny_prepared),
                                  "--calibration-samples", "8", "--tolerance", "50"])
    assert r.exit_code == 0, r.output
    recipe = json.loads((tmp_path / "q.card.json").read_text())["quantization"]["qat"]
    assert (recipe["learning_rate"], recipe["epochs"], recipe["steps_per_epoch"], recipe["schedule"]) == \
        (2e-7, 1, 2, "cosine")
    assert recipe["last_step_learning_rate"] == pytest.approx(1e-7)  # cosine over 2 steps: the 2nd at half the rate
    assert recipe["target"] == "truth"
    assert recipe["teachers"] == {"tough": [str(tmp_path / "t" / "tough" / "best.h5")]}
    assert recipe["loss"] == ("plain L1 against 0.75 x the Tough teacher's outputs (flip-averaged) "
                              "+ 0.25 x the hard targets")
    assert (recipe["teacher_blend"], recipe["teacher_flip"], recipe["kd"]) == (0.75, True, None)
    # --teachers-dir: a folder with tough/ alone is enough (no Tolerant teacher is read); recorded teachers that are
    # gone leave the run's plain loss on the hard targets, with a warning
    from edgekd.export.inputs import _load_teachers

    other = ExportConfig(stage / "best.h5", tmp_path / "o.tflite", "qat", tiny_prepared, qat_target="truth",
                         teachers_dir=tmp_path / "t")
    loaded, paths = _load_teachers(other, PreparedData.open(tiny_prepared))
    assert set(loaded) == {"tough"} and paths == {"tough": [str(tmp_path / "t" / "tough" / "best.h5")]}
    (tmp_path / "t" / "tough" / "best.h5").unlink()
    assert _load_teachers(replace(other, teachers_dir=None), PreparedData.open(tiny_prepared)) == (None, {})
    assert "the teachers its run recorded are gone" in caplog.text
    # the trainer itself: a Mimic of that teacher with the run's blend and the scheme's mirror permutation
    from edgekd.core.checkpoint import load_model

    data = PreparedData.open(tiny_prepared)
    cfg = QATConfig(target="truth", loss="l1", teacher_flip=True, teacher_blend=0.75)
    teacher, net = load_model(checkpoint), load_model(checkpoint)
    trainer, _ = _trainer(net, data, {"tough": teacher}, None, cfg)
    assert isinstance(trainer, Mimic) and trainer.reference is teacher and trainer.blend == 0.75
    assert trainer.flip_permutation == list(data.scheme.flip_permutation)
    assert _trainer(net, data, {"tough": teacher}, None, QATConfig(target="truth", loss="wing", teacher_blend=1.0))[1] \
        == "plain WING against the Tough teacher's outputs"
    with pytest.raises(ValueError, match="needs the run's teacher_blend"):
        _trainer(net, data, {"tough": teacher}, None, QATConfig(target="truth"))


def test_teachers_dir_needs_qat_target_truth(checkpoint, tiny_prepared, tmp_path):
    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import export_model

    with pytest.raises(EdgekdError, match="--teachers-dir .*only by --qat with --qat-target truth"):
        export_model(ExportConfig(checkpoint, tmp_path / "f.tflite", "qat", tiny_prepared, teachers_dir=tmp_path,
                                  **FAST))
    assert list(tmp_path.iterdir()) == []


def test_cli_errors_are_one_line(checkpoint, tiny_prepared, tmp_path):
    from edgekd.cli.main import main

    run = lambda *a: CliRunner().invoke(main, ["export", *map(str, a)])
    for args, msg in [((), "usage: edgekd export"),
                      ((checkpoint, "--out", tmp_path / "x.tflite", "--int8", "--qat"), "choose one of"),
                      ((tmp_path / "none.h5", "--out", tmp_path / "x.tflite", "--data", tiny_prepared), "not found"),
                      ((checkpoint, "--out", tmp_path / "x.tflite", "--data", checkpoint.parent), "no manifest"),
                      ((checkpoint, "--out", tmp_path / "x.onnx", "--data", tiny_prepared), "must end in .tflite")]:
        r = run(*args)
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and msg in r.output, r.output
    assert list(tmp_path.iterdir()) == []


# --- options refused before any work ---------------------------------------------------------------------------
@pytest.mark.parametrize("options, message", [
    (dict(tolerance=-1), "--tolerance -1: expected a number >= 0"),
    (dict(tolerance=float("nan")), "--tolerance nan: expected a number >= 0"),
    (dict(tolerance=float("inf")), "--tolerance inf: expected a number >= 0"),
    (dict(calibration_samples=0), "--calibration-samples 0: expected a whole number >= 1"),
    (dict(qat_schedule="linear"), "--qat-schedule 'linear': expected one of cosine, constant"),
    (dict(qat_target="teacher"), "--qat-target 'teacher': expected one of float, truth"),
    (dict(mode="int8", float_head=True), "--float-head: only with --qat"),
    (dict(mode="qat", float_head=True, output_type="int8"), "--float-head: the float landmark layer outputs float32"),
    (dict(calibration_samples=2.5), "--calibration-samples 2.5: expected a whole number >= 1"),
    (dict(qat_epochs=0), "--qat-epochs 0: expected a whole number >= 1"),
    (dict(qat_steps_per_epoch=0), "--qat-steps-per-epoch 0: expected a whole number >= 1"),
    (dict(qat_learning_rate=0.0), "--qat-learning-rate 0.0: expected a number > 0"),
    (dict(mode="int4"), "the export mode 'int4': expected one of float32, float16, dynamic, int8, qat"),
    (dict(input_type="int16"), "--input-type 'int16': expected one of int8, uint8, float32"),
    (dict(latency_runs=0), "latency_runs 0: expected a whole number >= 1"),
])
def test_bad_options_are_refused_in_one_line(options, message, checkpoint, tiny_prepared, tmp_path):
    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import export_model

    with pytest.raises(EdgekdError) as err:
        export_model(ExportConfig(checkpoint, tmp_path / "m.tflite", prepared=tiny_prepared, **options))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_out_never_overwrites_or_enters_an_input(checkpoint, tiny_prepared, tmp_path):
    """The output must not be an input nor sit inside one: not the prepared folder (given or recorded in the
    checkpoint), not the stage folder given as the checkpoint, not the teachers folder."""
    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import export_model

    before = sorted(p.name for p in tiny_prepared.iterdir())
    as_folder = tmp_path / "data.tflite"
    as_folder.mkdir()
    cases = [
        (dict(checkpoint=checkpoint, out=tiny_prepared / "m.tflite", prepared=tiny_prepared),
         "lies inside the input --prepared"),
        (dict(checkpoint=checkpoint, out=tiny_prepared / "val" / "m.tflite"),
         "lies inside the input PREPARED (recorded in the checkpoint)"),
        (dict(checkpoint=checkpoint.parent, out=checkpoint.parent / "m.tflite", prepared=tiny_prepared),
         "lies inside the input CHECKPOINT"),
        (dict(checkpoint=checkpoint, out=as_folder, prepared=as_folder), "is the input --prepared"),
        (dict(checkpoint=checkpoint, out=tmp_path / "t" / "m.tflite", prepared=tiny_prepared, mode="qat",
              teachers_dir=tmp_path / "t", qat_target="truth"), "lies inside the input --teachers-dir"),
    ]
    for kw, what in cases:
        with pytest.raises(EdgekdError) as err:
            export_model(ExportConfig(**kw, **FAST))
        msg = str(err.value)
        assert msg.startswith(f"--out {kw['out']}: {what}") and "\n" not in msg, msg
    assert sorted(p.name for p in tiny_prepared.iterdir()) == before
    assert not list(checkpoint.parent.glob("*.tflite"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.tflite"]


def test_cli_refuses_a_tflite_checkpoint_and_bad_options(checkpoint, tiny_prepared, tmp_path):
    from edgekd.cli.main import main

    run = lambda *a: CliRunner().invoke(main, ["export", *map(str, a)])
    shipped = tmp_path / "in" / "model.tflite"
    shipped.parent.mkdir()
    shipped.write_bytes(b"a tflite")
    out = tmp_path / "x.tflite"
    for args, msg in [((shipped, "--out", out, "--data", tiny_prepared), "Keras checkpoint (.h5)"),
                      ((checkpoint, "--out", out, "--data", tiny_prepared, "--tolerance", -0.5), "--tolerance -0.5"),
                      ((checkpoint, "--out", out, "--data", tiny_prepared, "--tolerance", "nan"), "--tolerance nan"),
                      ((checkpoint, "--out", out, "--data", tiny_prepared, "--calibration-samples", 0, "--int8"),
                       "--calibration-samples 0"),
                      ((checkpoint, "--out", out, "--data", tiny_prepared, "--qat", "--qat-epochs", 0),
                       "--qat-epochs 0"),
                      ((checkpoint, "--out", tiny_prepared / "x.tflite", "--data", tiny_prepared, "--int8"),
                       "lies inside the input --prepared")]:
        r = run(*args)
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and msg in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"] and not (tiny_prepared / "x.tflite").exists()
