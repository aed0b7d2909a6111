"""Teacher targets (`edgekd data teach`, `train --teacher-targets`): the teachers' outputs computed once, carried
by each sample's augmentation, read by the Distiller instead of running the teachers (tiny real 300-W sample)."""
import json

import numpy as np
import pytest
import tf_keras as keras
from click.testing import CliRunner

import edgekd  # noqa: F401
import edgekd.models.backbones as models
from edgekd.cli.main import main
from edgekd.core.checkpoint import load_model
from edgekd.core.crop import from_box, to_box
from edgekd.core.errors import DataError, EdgekdError
from edgekd.data.augment import AugmentConfig
from edgekd.data.pipeline import PreparedData, make_training_dataset
from edgekd.models.losses import KDLossConfig
from edgekd.training import teacher_targets
from edgekd.training.config import TrainConfig
from edgekd.training.train import train
from edgekd.training.trainers import Distiller, unflip
from train_helpers import small_net

TINY = dict(batch_size=8, alpha=0.35, steps_per_epoch=2, bn_recalibration_samples=8, progress=False, epochs=1)


@pytest.fixture(scope="module")
def teacher(tiny_prepared, tmp_path_factory):
    run = tmp_path_factory.mktemp("teacher")
    train(tiny_prepared, run, TrainConfig(stage="baseline", **TINY))
    return run / "baseline" / "best.h5"


@pytest.fixture(scope="module")
def targets_file(tiny_prepared, teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("targets") / "t.npz"
    result = CliRunner().invoke(main, ["-q", "data", "teach", str(tiny_prepared), "--tough", str(teacher),
                                       "--tolerant", str(teacher), "--teacher-flip", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "tough: 1 network(s), NME on the 36 training faces" in result.output
    return out


def test_box_coordinates_do_not_depend_on_the_input_size(tiny_300w_root, tiny_prepared, tmp_path):
    """Normalised crop coordinates differ by half a pixel between sizes; box coordinates are the same."""
    from edgekd.data.prepare import PrepareConfig, prepare

    prepare(PrepareConfig(dataset="300w", root=str(tiny_300w_root), input_size=96, val_fraction=0.1), tmp_path / "p96",
            progress=False)
    small, large = PreparedData.open(tiny_prepared), PreparedData.open(tmp_path / "p96")
    norm = {d.input_size: d.crop.normalize(d.arrays("train")[1]) for d in (small, large)}
    assert np.abs(norm[64] - norm[96]).max() > 1e-3  # the half-pixel shift, 1/128 - 1/192
    box = {size: to_box(v, size) for size, v in norm.items()}
    np.testing.assert_allclose(box[64], box[96], atol=2e-4)  # bilinear resampling of the stored landmarks aside
    np.testing.assert_allclose(from_box(box[64], 64), norm[64], atol=1e-7)


def test_flip_average_matches_the_distillers_online_one(tiny_prepared, teacher):
    data = PreparedData.open(tiny_prepared)
    model = load_model(teacher)
    images, _ = data.arrays("train")
    x = images[:6].astype(np.float32) / 255.0
    online = 0.5 * (model(x) + unflip(model(x[:, :, ::-1]), list(data.scheme.flip_permutation), 64))
    cached = teacher_targets.teacher_outputs(model, data, "train", flip=True)[:6]
    np.testing.assert_allclose(from_box(cached, 64).reshape(6, -1), online.numpy(), atol=1e-5)
    plain = teacher_targets.teacher_outputs(model, data, "train", flip=False)[:6]
    assert np.abs(plain - cached).max() > 1e-4  # the mirror changed something


def test_guides_move_with_each_samples_augmentation(tiny_prepared, targets_file):
    data = PreparedData.open(tiny_prepared)
    stored = data.split("train").hard
    data.attach_guides({"copy": stored.copy()})  # a guide equal to the landmarks must stay equal to them
    aug = AugmentConfig.light()
    flips = 0
    for i in range(12):
        _, points, flipped = data.sample_points("train", i, np.random.default_rng(i), aug)
        np.testing.assert_allclose(points["copy"], points["hard"], atol=1e-5)
        flips += flipped
    assert 0 < flips < 12  # mirrored and unmirrored samples both checked
    # the file's targets, unaugmented, are the teacher's outputs on the canonical crop, in crop pixels
    data.attach_guides(teacher_targets.load(targets_file, data))
    _, points, _ = data.sample_points("train", 3)
    with np.load(targets_file) as z:
        expected = data.crop.denormalize(from_box(z["tough"][3], 64))
    np.testing.assert_allclose(points["tough"], expected, atol=1e-3)
    assert "tough" not in data.sample_points("val", 0)[1]  # validation never carries teachers
    batch = next(iter(make_training_dataset(data, 4, aug, 0, 0, 1)))[1]
    assert set(batch) == {"hard", "soft", "tough", "tolerant"} and batch["tough"].shape == (4, 136)


def test_cached_outputs_give_the_distiller_the_same_step_as_online_teachers():
    rng = np.random.default_rng(0)
    images = rng.random((4, 16, 16, 3), dtype=np.float32)
    hard = rng.uniform(-0.4, 0.4, (4, 8)).astype(np.float32)
    tough, tolerant, student = (small_net() for _ in range(3))
    start = student.get_weights()
    kd = KDLossConfig(main="l1")
    results = []
    for online in (True, False):
        student.set_weights(start)
        targets = {"hard": hard, "soft": hard}
        if online:
            d = Distiller(student, tough, tolerant, kd, nme_pair=(0, 1))
        else:
            d = Distiller(student, None, None, kd, nme_pair=(0, 1))
            targets.update(tough=tough(images, training=False).numpy(),
                           tolerant=tolerant(images, training=False).numpy())
        d.compile(optimizer=keras.optimizers.SGD(0.1))
        logs = d.train_on_batch(images, targets, return_dict=True)
        results.append((logs, [w.copy() for w in student.get_weights()]))
    for k in ("loss", "main", "aloss_tough", "aloss_tol"):
        assert results[0][0][k] == pytest.approx(results[1][0][k], rel=1e-5)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(results[0][1], results[1][1]))
    with pytest.raises(ValueError, match="give both teachers, or neither"):
        Distiller(student, tough, None, kd, nme_pair=(0, 1))


def test_student_trains_from_the_file_and_records_it(tiny_prepared, targets_file, teacher, tmp_path):
    mine = tmp_path / "mine.npz"
    mine.write_bytes(targets_file.read_bytes())
    cfg = TrainConfig(stage="student", teacher_targets=str(mine), init_from=str(teacher),
                      kd=KDLossConfig(main="wing", teacher_blend=0.5), **TINY)
    summary = train(tiny_prepared, tmp_path, cfg)  # no tough/ or tolerant/ folder anywhere: nothing runs them
    assert summary["epochs"] == 1
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert config["teachers"] == {} and config["teacher_targets"]["file"] == str(mine.resolve())
    assert config["teacher_targets"]["flip"] is True and config["train"]["kd"]["teacher_blend"] == 0.5
    assert config["teacher_targets"]["teachers"]["tough"]["networks"][0]["checkpoint"] == str(teacher.resolve())
    # QAT export of this student fine-tunes under the same objective, from the same file
    from edgekd.export.config import ExportConfig
    from edgekd.export.inputs import _load_teachers

    data = PreparedData.open(tiny_prepared)
    teachers, paths = _load_teachers(ExportConfig(checkpoint=tmp_path / "student" / "best.h5",
                                                  out=tmp_path / "s.tflite", mode="qat"), data)
    assert teachers == {"tough": None, "tolerant": None} and paths == {"teacher_targets": str(mine.resolve())}
    assert set(data.guides) == {"tough", "tolerant"}
    # the file made again with other outputs: a resumed run refuses it
    with np.load(mine) as z:
        arrays = dict(z)
    np.savez(mine, **{**arrays, "tough": arrays["tough"] + 0.01})
    with pytest.raises(EdgekdError, match=r"mine\.npz: not the file .*student started with"):
        train(tiny_prepared, tmp_path, TrainConfig(stage="student", teacher_targets=str(mine), progress=False),
              resume=True)


def test_bad_teacher_targets_are_one_line_errors(tiny_300w_root, tiny_prepared, targets_file, teacher, tmp_path):
    from edgekd.data.prepare import PrepareConfig, prepare

    with pytest.raises(EdgekdError, match="--teacher-targets and --teacher-flip: choose one"):
        TrainConfig(stage="student", teacher_targets=str(targets_file), teacher_flip=True).validate()
    with pytest.raises(EdgekdError, match="only the student stage learns from teachers"):
        TrainConfig(stage="baseline", teacher_targets=str(targets_file)).validate()
    other = tmp_path / "other"  # the same images split with another seed: other training faces
    prepare(PrepareConfig(dataset="300w", root=str(tiny_300w_root), input_size=64, val_fraction=0.1, seed=1), other,
            progress=False)
    with pytest.raises(DataError, match=r"t\.npz: made for other training faces"):
        teacher_targets.load(targets_file, PreparedData.open(other))
    junk = tmp_path / "junk.npz"
    for content in (b"not a zip", targets_file.read_bytes()[:1000]):  # and a truncated real one
        junk.write_bytes(content)
        with pytest.raises(DataError, match="junk.npz: not a teacher-targets file"):
            teacher_targets.load(junk, PreparedData.open(tiny_prepared))
    with np.load(targets_file) as z:
        arrays = dict(z)
    np.savez(junk, **{**arrays, "meta": np.array("[1, 2]")})  # valid JSON, not an object
    with pytest.raises(DataError, match="its meta is not an object"):
        teacher_targets.load(junk, PreparedData.open(tiny_prepared))
    runner = CliRunner()
    cases = [
        (["train", str(tiny_prepared), "--run-dir", str(tmp_path / "r"), "--stage", "student", "--teacher-targets",
          str(tmp_path / "missing.npz")], "--teacher-targets", "missing.npz: file not found"),
        (["train", str(tiny_prepared), "--run-dir", str(tmp_path / "r"), "--teacher-targets", str(targets_file)],
         "--teacher-targets", "give it with --stage STAGE to train one stage alone"),
        (["data", "teach", str(tiny_prepared), "--tough", str(teacher), "--tolerant", str(teacher), "--out",
          str(tiny_prepared / "t.npz")], "--out", "lies inside the input PREPARED"),
        (["data", "teach", str(other), "--also-prepared", str(tiny_prepared), "--tough", str(teacher),
          "--tolerant", str(teacher), "--out", str(tmp_path / "x.npz")], "other", "not the same training faces"),
    ]
    for args, *expected in cases:
        result = runner.invoke(main, args)
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        assert all(e in result.output for e in expected) and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.npz").exists() and not (tiny_prepared / "t.npz").exists()


def test_teacher_of_an_input_size_without_a_folder_is_refused(tiny_prepared, tmp_path):
    path = tmp_path / "t96.h5"
    from edgekd.core.checkpoint import save_checkpoint

    save_checkpoint(models.build_student(68, 96, 0.35), path, {"num_points": 68, "input_size": 96})
    with pytest.raises(EdgekdError, match=r"t96\.h5: takes 96 px crops, but no prepared folder has that size"):
        teacher_targets.compute([PreparedData.open(tiny_prepared)], {"tough": [path], "tolerant": [path]})


def test_an_ensemble_of_two_input_sizes_averages_each_on_its_own_folder(tiny_300w_root, tiny_prepared, teacher,
                                                                       tmp_path):
    from edgekd.core.checkpoint import load_model, save_checkpoint
    from edgekd.data.prepare import PrepareConfig, prepare

    prepare(PrepareConfig(dataset="300w", root=str(tiny_300w_root), input_size=96, val_fraction=0.1), tmp_path / "p96",
            progress=False)
    folders = [PreparedData.open(tiny_prepared), PreparedData.open(tmp_path / "p96")]
    big = tmp_path / "t96.h5"
    save_checkpoint(models.build_student(68, 96, 0.35), big, {"num_points": 68, "input_size": 96,
                                                               "crop": folders[1].crop.to_dict()})
    targets, meta = teacher_targets.compute(folders, {"tough": [teacher, big], "tolerant": [teacher]}, flip=True)
    each = [teacher_targets.teacher_outputs(load_model(teacher), folders[0], flip=True),
            teacher_targets.teacher_outputs(load_model(big), folders[1], flip=True)]
    np.testing.assert_allclose(targets["tough"], 0.5 * (each[0] + each[1]), atol=1e-6)
    np.testing.assert_allclose(targets["tolerant"], each[0], atol=1e-6)
    assert [r["input_size"] for r in meta["teachers"]["tough"]["networks"]] == [64, 96]
