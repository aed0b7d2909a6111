"""Training stages end to end on a tiny real 300-W sample (input 64, alpha 0.35, a handful of steps).

The teachers are the default recipe's MobileNetV2 (width 0.35 here): EfficientNet-B3 costs ~20 s of graph
tracing per stage on 2 cores, and is tested in test_models.py. The training code does not depend on the teacher's
architecture.
"""
import json
import shutil
from dataclasses import replace

import edgekd  # noqa: F401
import h5py
import numpy as np
import pytest
import tf_keras as keras
from click.testing import CliRunner

import edgekd.data.pipeline as pipeline
import edgekd.models.backbones as models
from edgekd.core.errors import EdgekdError, ModelError
from edgekd.core.checkpoint import LAST, OPTIMIZER_GROUP, checkpoint_info, load_model, save_checkpoint
from edgekd.training.config import TrainConfig
from edgekd.training.callbacks import TrainingDiverged
from edgekd.training.train import train
from edgekd.models.losses import KDLossConfig

from train_helpers import TINY, small_net
STAGE_FILES = {"config.json", "model_info.json", "log.csv", "best.h5", "last.h5", "summary.json"}


def _rows(stage_dir):
    import csv

    return list(csv.DictReader((stage_dir / "log.csv").open()))


def test_distiller_updates_only_the_student():
    from edgekd.training.trainers import Distiller
    student, tough, tolerant = (small_net() for _ in range(3))
    distiller = Distiller(student, tough, tolerant, KDLossConfig(), nme_pair=(0, 1))
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    rng = np.random.default_rng(0)
    images = rng.random((4, 16, 16, 3), dtype=np.float32)
    targets = {"hard": rng.uniform(-0.4, 0.4, (4, 8)).astype(np.float32)}
    targets["soft"] = targets["hard"]
    frozen = [w.numpy().copy() for w in tough.weights + tolerant.weights]  # BatchNorm moving stats included
    learner = [w.numpy().copy() for w in student.trainable_weights]
    logs = distiller.train_on_batch(images, targets, return_dict=True)
    assert {"loss", "nme", "main", "aloss_tough", "aloss_tol"} <= set(logs)
    for before, w in zip(frozen, tough.weights + tolerant.weights):
        np.testing.assert_array_equal(before, w.numpy())
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(learner, student.trainable_weights))


def test_mimic_fits_the_reference_not_the_targets():
    """QAT's --qat-target float: the network learns the frozen reference's outputs; the batch's own landmarks
    (here far from the reference) play no part, and the reference does not move."""
    from edgekd.training.trainers import Mimic

    def dense(seed):
        x = keras.Input((6,))
        return keras.Model(x, keras.layers.Dense(4, kernel_initializer=keras.initializers.RandomNormal(0, 1, seed))(x))

    net, reference = dense(1), dense(2)
    mimic = Mimic(net, reference, nme_pair=(0, 1), loss="l1")
    mimic.compile(optimizer=keras.optimizers.Adam(5e-2))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(32, 6)).astype(np.float32)
    targets = {"hard": np.full((32, 4), 9.0, np.float32)}
    frozen = [w.numpy().copy() for w in reference.weights]
    gap = lambda: float(np.abs(net(images).numpy() - reference(images).numpy()).mean())
    before = gap()
    for _ in range(200):
        mimic.train_on_batch(images, targets)
    assert gap() < 0.05 * before
    assert float(np.abs(net(images).numpy() - 9.0).mean()) > 1.0  # not pulled toward the batch's landmarks
    for b, w in zip(frozen, reference.weights):
        np.testing.assert_array_equal(b, w.numpy())


def test_mimic_blend_and_flip_average_set_the_target():
    """--teacher-blend on the baseline stage: the target is (1 - b) x the landmarks + b x the reference, and with a
    flip permutation the reference's output is its mean over the image and the mirrored image."""
    import tensorflow as tf

    from edgekd.training.trainers import Mimic, teach, unflip

    net, reference = small_net(), small_net()
    rng = np.random.default_rng(0)
    images = rng.random((2, 16, 16, 3), dtype=np.float32)
    hard = rng.uniform(-0.3, 0.3, (2, 8)).astype(np.float32)
    perm = [1, 0, 3, 2]
    ref, mirrored = reference(images).numpy(), reference(images[:, :, ::-1]).numpy()
    averaged = 0.5 * (ref + unflip(tf.constant(mirrored), perm, 16).numpy())
    np.testing.assert_allclose(teach(reference, images, perm).numpy(), averaged, atol=1e-6)
    assert not np.allclose(averaged, ref, atol=1e-4)  # the mirror pass changes the target
    pred = net(images).numpy()
    for blend, flip, reference_out in ((1.0, None, ref), (0.25, perm, averaged)):
        mimic = Mimic(net, reference, nme_pair=(0, 1), loss="l1", blend=blend, flip_permutation=flip)
        loss, _ = mimic.objective({"hard": tf.constant(hard)}, tf.constant(pred), mimic.guidance(images, None))
        target = (1 - blend) * hard + blend * reference_out
        assert float(loss) == pytest.approx(float(np.abs(pred - target).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="blend 0"):
        Mimic(net, reference, nme_pair=(0, 1), blend=0.0)


def test_ensemble_averages_members_each_at_its_own_input_size():
    """An ensemble teacher: the mean of its members, a member of another input size fed the batch resized and its
    output moved to the batch's normalised coordinates (half a pixel of each size apart); flip-averaging works on
    it as on one network."""
    import tensorflow as tf

    from edgekd.training.trainers import Ensemble, teach

    small, large = small_net(size=64), small_net(size=96)
    head = large.layers[-1]
    kernel, bias = head.get_weights()
    head.set_weights([np.zeros_like(kernel), np.full_like(bias, 0.1)])  # outputs 0.1 whatever the image
    images = np.random.default_rng(1).random((2, 64, 64, 3), dtype=np.float32)
    np.testing.assert_allclose(Ensemble([small], 64)(images).numpy(), small(images).numpy(), atol=1e-6)
    # 0.1 at 96 px is the point 0.1 + 0.5 / 96 from the crop's centre: 0.1 + 0.5 / 96 - 0.5 / 64 at 64 px
    moved = 0.1 + 0.5 / 96 - 0.5 / 64
    np.testing.assert_allclose(Ensemble([large], 64)(images).numpy(), np.full((2, 8), moved), atol=1e-6)
    pair = Ensemble([small, large], 64)
    np.testing.assert_allclose(pair(images).numpy(), 0.5 * (small(images).numpy() + moved), atol=1e-6)
    # with real weights: the member's own flip average on the batch enlarged to 96 px, moved to 64 px coordinates
    other = small_net(size=96)
    perm = [1, 0, 3, 2]
    own = teach(other, tf.image.resize(images, (96, 96)), perm).numpy()
    np.testing.assert_allclose(teach(Ensemble([other], 64), tf.constant(images), perm).numpy(),
                               own + 0.5 / 96 - 0.5 / 64, atol=1e-5)
    assert not np.allclose(own, teach(other, tf.image.resize(images, (96, 96))).numpy(), atol=1e-4)
    assert not small.trainable and not large.trainable and not other.trainable
    with pytest.raises(ValueError, match="no members"):
        Ensemble([], 64)
    # KD-Loss's two teachers as ensembles: the Distiller's A and S are the ensembles' flip averages
    from edgekd.training.trainers import Distiller

    distiller = Distiller(small_net(size=64), pair, Ensemble([other], 64), KDLossConfig(), (0, 1), perm)
    guidance = distiller.guidance(tf.constant(images), None)
    np.testing.assert_allclose(guidance["A"].numpy(), teach(pair, tf.constant(images), perm).numpy(), atol=1e-6)
    np.testing.assert_allclose(guidance["S"].numpy(), own + 0.5 / 96 - 0.5 / 64, atol=1e-5)


def test_baseline_learns_from_an_ensemble_of_teacher_folders_in_the_cli(tiny_prepared, tmp_path,
                                                                          one_epoch_baseline):
    """--teachers-dir twice: the Tough teacher is the ensemble of both folders' networks, one of them at another
    input size; both are recorded, the planned cost counts both, and a resume keeps them."""
    from edgekd.cli.main import main
    from edgekd.training.config import resumed_config
    from edgekd.training.projection import stage_cost
    from edgekd.training.teachers import load_teachers, teacher_paths
    from edgekd.training.trainers import Ensemble

    (tmp_path / "a" / "tough").mkdir(parents=True)
    shutil.copy(one_epoch_baseline / "baseline" / "best.h5", tmp_path / "a" / "tough" / "best.h5")
    _fake_teacher(tmp_path / "b" / "tough" / "best.h5", 68, 68, size=96)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["-q", "train", str(tiny_prepared), "--run-dir", str(run), "--stage",
                                       "baseline", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8",
                                       "--alpha", "0.35", "--teachers-dir", str(tmp_path / "a"), "--teachers-dir",
                                       str(tmp_path / "b"), "--teacher-blend", "1", "--teacher-flip"])
    assert result.exit_code == 0, result.output
    config = json.loads((run / "baseline" / "config.json").read_text())
    assert config["teachers"] == {"tough": [str(tmp_path / d / "tough" / "best.h5") for d in "ab"]}
    assert (run / "baseline" / "summary.json").is_file()
    cfg = TrainConfig.from_dict(config["train"])
    assert len(cfg.teachers_dir) == 2
    assert TrainConfig.from_dict({**config["train"], "teachers_dir": "t"}).teachers_dir == ["t"]  # before ensembles
    assert stage_cost(cfg, "baseline") > stage_cost(replace(cfg, teachers_dir=cfg.teachers_dir[:1]), "baseline")
    teacher = load_teachers(teacher_paths(run, cfg), pipeline.PreparedData.open(tiny_prepared))["tough"]
    assert isinstance(teacher, Ensemble) and [m.input_shape[1] for m in teacher.members] == [64, 96]
    # a resume keeps the recorded folders, and refuses another number of them (that would be another teacher)
    assert resumed_config(run / "baseline", cfg, explicit=set()).teachers_dir == cfg.teachers_dir
    with pytest.raises(EdgekdError, match="--teachers-dir given 1 time.*started with 2 teacher folder"):
        resumed_config(run / "baseline", replace(cfg, teachers_dir=cfg.teachers_dir[:1]), explicit={"teachers_dir"})
    with pytest.raises(EdgekdError, match="--teachers-dir: a folder is given twice"):
        replace(cfg, teachers_dir=[str(tmp_path / "a"), str(tmp_path / "b" / ".." / "a")]).validate()


def test_baseline_with_teacher_blend_learns_from_the_tough_teacher_alone(tiny_prepared, tmp_path,
                                                                        one_epoch_baseline):
    """A plain student distilled from one teacher's flip average: no Tolerant teacher is needed, the teacher is
    recorded, and options that need a teacher are refused where no teacher runs."""
    teachers = tmp_path / "teachers"
    (teachers / "tough").mkdir(parents=True)
    shutil.copy(one_epoch_baseline / "baseline" / "best.h5", teachers / "tough" / "best.h5")
    cfg = TrainConfig(stage="baseline", **{**TINY, "epochs": 1}, teachers_dir=str(teachers), teacher_flip=True,
                      kd=KDLossConfig(teacher_blend=0.5))
    summary = train(tiny_prepared, tmp_path / "run", cfg)
    config = json.loads((tmp_path / "run" / "baseline" / "config.json").read_text())
    assert set(config["teachers"]) == {"tough"} and config["train"]["kd"]["teacher_blend"] == 0.5
    assert np.isfinite(summary["best_val_nme"])
    from edgekd.training.projection import stage_cost

    assert stage_cost(cfg, "baseline") > stage_cost(replace(cfg, teacher_flip=False), "baseline") > 1.0
    with pytest.raises(ModelError, match="no tough teacher"):
        train(tiny_prepared, tmp_path / "run2", replace(cfg, teachers_dir=str(tmp_path / "none")))
    assert not (tmp_path / "run2").exists()
    with pytest.raises(EdgekdError, match="--teacher-flip: the baseline stage runs no teacher"):
        replace(cfg, kd=KDLossConfig()).validate()


def _fake_teacher(path, num_points, info_points=None, size=64):
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {} if info_points is None else {"num_points": info_points, "input_size": size}
    save_checkpoint(models.build_student(num_points, size, 0.35), path, info)


@pytest.mark.parametrize("recorded", [True, False], ids=["from-info", "from-shape"])
def test_student_refuses_teacher_with_other_landmark_count(tiny_prepared, tmp_path, recorded):
    _fake_teacher(tmp_path / "tough" / "best.h5", 29, 29 if recorded else None)
    _fake_teacher(tmp_path / "tolerant" / "best.h5", 68, 68)
    with pytest.raises(ModelError, match=r"tough teacher .*(num_points 29|29 landmarks)"):
        train(tiny_prepared, tmp_path, TrainConfig(stage="student", **{**TINY, "epochs": 1}))
    assert not (tmp_path / "student" / "log.csv").exists()


def test_student_refuses_missing_teacher_in_the_cli(tiny_prepared, tmp_path):
    from edgekd.cli.main import main

    result = CliRunner().invoke(main, ["train", str(tiny_prepared), "--run-dir", str(tmp_path), "--stage", "student"])
    assert result.exit_code == 2
    assert "error:" in result.output and "no tough teacher" in result.output and "Traceback" not in result.output


def _copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def _iterations(path):
    with h5py.File(path, "r") as f:
        return int(f[OPTIMIZER_GROUP]["00000"][()])


def _planned_two_killed_after_one(one_epoch_baseline, tmp_path):
    """The one-epoch run, rewritten as a two-epoch run killed after its first epoch."""
    run = _copy(one_epoch_baseline, tmp_path)
    (run / "baseline" / "summary.json").unlink()
    config = json.loads((run / "baseline" / "config.json").read_text())
    config["train"]["epochs"] = 2
    (run / "baseline" / "config.json").write_text(json.dumps(config))
    return run


def test_average_last_is_the_mean_of_the_last_epochs_and_survives_a_kill(tiny_prepared, tmp_path,
                                                                         one_epoch_baseline, monkeypatch):
    """--average-last 2 of a 3-epoch run killed after epoch 2 between last.h5 and average.h5: the resumed run folds
    last.h5's epoch in first, so average.h5 is the mean of epochs 2 and 3 (kernels; BatchNorm re-estimated), then
    validated; best.h5 is whichever validated better, and summary.json says which."""
    import edgekd.training.train as train_module
    from edgekd.core.checkpoint import AVERAGE

    run = _planned_two_killed_after_one(one_epoch_baseline, tmp_path)
    train(tiny_prepared, run, TrainConfig(stage="baseline", progress=False), resume=True)  # epoch 2, no averaging
    stage = run / "baseline"
    assert not (stage / AVERAGE).exists()
    (stage / "summary.json").unlink()
    config = json.loads((stage / "config.json").read_text())
    config["train"].update(epochs=3, average_last=2)
    (stage / "config.json").write_text(json.dumps(config))
    kernels = lambda weights: [w for w in weights if w.ndim >= 2]
    epoch2 = kernels(load_model(stage / LAST).get_weights())
    saved = {}
    original = train_module.save_checkpoint

    def recording(net, path, info, optimizer=None):
        if path.name == LAST:
            saved[info["epoch"]] = kernels(net.get_weights())
        return original(net, path, info, optimizer)

    monkeypatch.setattr(train_module, "save_checkpoint", recording)
    summary = train(tiny_prepared, run, TrainConfig(stage="baseline", progress=False), resume=True)
    assert list(saved) == [3]
    info = checkpoint_info(stage / AVERAGE)
    assert info["averaged_epochs"] == [2, 3] and np.isfinite(info["val_nme"])
    for got, a, b in zip(kernels(load_model(stage / AVERAGE).get_weights()), epoch2, saved[3]):
        np.testing.assert_allclose(got, (a + b) / 2, rtol=1e-5, atol=1e-7)
    assert summary["average"]["epochs"] == [2, 3] and summary["average"]["val_nme"] == info["val_nme"]
    epochs_best = min(float(r["val_nme"]) for r in _rows(stage))
    assert summary["average"]["is_best"] == (info["val_nme"] < epochs_best)
    assert (checkpoint_info(stage / "best.h5").get("averaged_epochs") == [2, 3]) == summary["average"]["is_best"]
    assert summary["best_val_nme"] == pytest.approx(min(epochs_best, info["val_nme"]))
    # finished: a rerun neither trains nor folds again
    again = train(tiny_prepared, run, TrainConfig(stage="baseline", progress=False), resume=True)
    assert again["average"] == summary["average"] and checkpoint_info(stage / AVERAGE) == info
    with pytest.raises(EdgekdError, match=r"^--average-last 4: at most --epochs \(3\)$"):
        TrainConfig(epochs=3, average_last=4).validate()
    # resumed with one more epoch, the mean of epochs 2-3 is not continued: the new window is epoch 4 alone
    (stage / "summary.json").unlink()
    config = json.loads((stage / "config.json").read_text())
    config["train"].update(epochs=4, average_last=1)
    (stage / "config.json").write_text(json.dumps(config))
    longer = train(tiny_prepared, run, TrainConfig(stage="baseline", progress=False), resume=True)
    assert checkpoint_info(stage / AVERAGE)["averaged_epochs"] == [4, 4] and longer["average"]["epochs"] == [4, 4]
    for got, want in zip(kernels(load_model(stage / AVERAGE).get_weights()), saved[4]):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    (stage / LAST).unlink()  # a mean whose run is gone is not folded into a new one
    (stage / "summary.json").unlink()
    with pytest.raises(EdgekdError, match="average.h5: left by an earlier run without its last.h5"):
        train(tiny_prepared, run, TrainConfig(stage="baseline", **{**TINY, "epochs": 3, "average_last": 2}))


def test_resume_refuses_options_that_contradict_the_recorded_run(tiny_prepared, tmp_path, one_epoch_baseline):
    run = _planned_two_killed_after_one(one_epoch_baseline, tmp_path)
    with pytest.raises(EdgekdError, match="--learning-rate 0.5 contradicts the run's recorded 0.001"):
        train(tiny_prepared, run, TrainConfig(stage="baseline", learning_rate=0.5), resume=True,
              explicit={"learning_rate"})
    with pytest.raises(EdgekdError, match="cosine schedule.*--init-from"):
        train(tiny_prepared, run, TrainConfig(stage="baseline", epochs=5), resume=True, explicit={"epochs"})
    from edgekd.models.losses import KDLossConfig

    with pytest.raises(EdgekdError, match="^.*: --kd-main l1 contradicts the run's recorded paper"):
        train(tiny_prepared, run, TrainConfig(stage="baseline", kd=KDLossConfig(main="l1")), resume=True,
              explicit={"kd"})
    assert not (run / "baseline" / "summary.json").exists()  # nothing trained


def test_the_cli_names_which_train_options_were_given(tmp_path):
    """`--resume` checks only what the user typed: the --kd-* options (and their old spellings --main-loss,
    --teacher-blend) are fields of ``kd``; --lr and --augment name learning_rate and augment_preset."""
    from edgekd.cli.app import given_settings
    from edgekd.cli.train import train as train_command

    base = [str(tmp_path), "--run-dir", str(tmp_path / "r")]
    for extra, given in ((["--main-loss", "l1", "--lr", "0.1", "--augment", "full"],
                          {"kd": {"main": "l1"}, "learning_rate": 0.1, "augment_preset": "full"}),
                         (["--kd-w-tol", "2", "--epochs", "3", "--no-input-norm"],
                          {"kd": {"w_tol": 2.0}, "epochs": 3, "input_norm": False}),
                         (["--teacher-blend", "0.5", "--teacher-targets", "t.npz"],
                          {"kd": {"teacher_blend": 0.5}, "teacher_targets": "t.npz"}),
                         (["--teachers-dir", "a", "--teachers-dir", "b", "--no-augment"],
                          {"teachers_dir": ["a", "b"], "augment": False}),
                         ([], {})):
        with train_command.make_context("train", base + extra) as ctx:
            assert given_settings(ctx) == given, extra


def test_epoch_order_is_a_function_of_seed_and_epoch():
    from edgekd.data.pipeline import epoch_order

    a, b = epoch_order(10, 3, 7), epoch_order(10, 3, 7)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert sorted(a[0]) == list(range(10))
    assert not np.array_equal(a[0], epoch_order(10, 3, 8)[0])
    assert len(epoch_order(10, 3, 7, count=25)[0]) == 25


def test_bad_settings_name_the_option():
    for field, value, option in (("dropout", 2.0, "--dropout"), ("steps_per_epoch", 0, "--steps-per-epoch"),
                                 ("learning_rate", float("nan"), "--learning-rate"), ("alpha", -1.0, "--alpha"),
                                 ("bn_momentum", 1.0, "--bn-momentum")):
        with pytest.raises(EdgekdError, match=f"^{option} "):
            TrainConfig(**{field: value}).validate()


def test_resume_continues_from_last_checkpoint(tiny_prepared, tmp_path, one_epoch_baseline):
    run = _planned_two_killed_after_one(one_epoch_baseline, tmp_path)
    cfg = TrainConfig(stage="baseline", **TINY)
    with pytest.raises(EdgekdError, match="--resume"):
        train(tiny_prepared, run, cfg)
    train(tiny_prepared, run, TrainConfig(stage="baseline", progress=False), resume=True)  # recorded settings win
    assert [int(r["epoch"]) for r in _rows(run / "baseline")] == [1, 2]
    assert checkpoint_info(run / "baseline" / LAST)["epoch"] == 2
    assert _iterations(run / "baseline" / LAST) == 4  # optimizer state carried on: 2 steps x 2 epochs
    assert json.loads((run / "baseline" / "config.json").read_text())["resumed_from_epoch"] == 1
    summary = json.loads((run / "baseline" / "summary.json").read_text())
    assert summary["checkpoint"] == str(run / "baseline" / "best.h5")  # the path it wrote, not a bare file name


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_prepared, tmp_path, one_epoch_baseline, monkeypatch):
    run = _planned_two_killed_after_one(one_epoch_baseline, tmp_path)
    original = pipeline.make_training_dataset

    def poisoned(*args, **kwargs):
        return original(*args, **kwargs).map(lambda x, y: (x * np.float32("nan"), y))

    monkeypatch.setattr(pipeline, "make_training_dataset", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, step 1.*last good checkpoint"):
        train(tiny_prepared, run, TrainConfig(stage="baseline", progress=False), resume=True)
    assert checkpoint_info(run / "baseline" / LAST)["epoch"] == 1
    weights = load_model(run / "baseline" / LAST).get_weights()
    assert all(np.isfinite(w).all() for w in weights)
    assert [int(r["epoch"]) for r in _rows(run / "baseline")] == [1]


def test_resume_refuses_a_network_of_another_width(tiny_prepared, tmp_path, one_epoch_baseline):
    run = _copy(one_epoch_baseline, tmp_path)
    with pytest.raises(EdgekdError, match="--alpha 0.5 contradicts the run's recorded 0.35"):
        train(tiny_prepared, run, TrainConfig(stage="baseline", **{**TINY, "alpha": 0.5}), resume=True)


def test_init_from_refuses_a_missing_or_foreign_checkpoint(tiny_prepared, tmp_path):
    with pytest.raises(ModelError, match=r"missing\.h5: checkpoint to start from \(--init-from\) not found"):
        train(tiny_prepared, tmp_path / "a", TrainConfig(stage="baseline", **TINY, init_from=str(tmp_path / "missing.h5")))
    _fake_teacher(tmp_path / "wide.h5", 68, 68)  # alpha 0.35 MobileNetV2 ...
    with pytest.raises(ModelError, match="does not fit this run's network"):  # ... into an alpha 0.5 student
        train(tiny_prepared, tmp_path / "b", TrainConfig(stage="baseline", **{**TINY, "alpha": 0.5},
                                                         init_from=str(tmp_path / "wide.h5")))


def _toy_backbone(x, alpha: float, stochastic_depth: float):
    """Two strided convolutions, their width scaled by ``alpha``: the smallest network a registry entry can build."""
    channels = max(4, int(16 * alpha))
    y = x
    for i in range(2):
        y = keras.layers.Conv2D(channels, 3, strides=2, padding="same", use_bias=False, name=f"toy_conv{i}")(y)
        y = keras.layers.BatchNormalization(name=f"toy_bn{i}")(y)
        y = keras.layers.ReLU(name=f"toy_relu{i}")(y)
    return keras.Model(x, y)


def test_any_registered_backbone_trains_as_the_student(tiny_prepared, tmp_path, monkeypatch):
    """The registry is the seam: a backbone registered in models.MODELS (here a tiny conv net) is the student through
    the normal train() path, recorded with its width, and priced for planning from its own multiply-adds (no table
    to extend)."""
    from edgekd.training.projection import stage_cost

    monkeypatch.setitem(models.MODELS, "toy", models.ModelSpec("toy", _toy_backbone, (0.0, 1.0), "test", width=True))
    cfg = TrainConfig(stage="baseline", student_arch="toy", **{**TINY, "epochs": 1, "steps_per_epoch": 1})
    summary = train(tiny_prepared, tmp_path, cfg)
    stage = tmp_path / "baseline"
    assert summary["epochs"] == 1 and np.isfinite(summary["best_val_nme"])
    net = load_model(stage / "best.h5")
    assert [layer.name for layer in net.layers if layer.name.startswith("toy_conv")] == ["toy_conv0", "toy_conv1"]
    assert net.get_layer("toy_conv1").filters == int(16 * TINY["alpha"])
    info = checkpoint_info(stage / LAST)
    assert (info["arch"], info["alpha"], info["epoch"]) == ("toy", TINY["alpha"], 1)
    assert json.loads((stage / "config.json").read_text())["train"]["student_arch"] == "toy"
    assert json.loads((stage / "model_info.json").read_text())["macs"] > 0
    # a MobileNetV2 teacher costs many toy steps; a KD student pays for its teachers' passes on top of its own step
    assert stage_cost(cfg, "tough") > 10 * stage_cost(cfg, "baseline") == 10.0
    assert stage_cost(cfg, "student") == pytest.approx(1 + 2 / 3 * stage_cost(cfg, "tough"))  # two teachers
    with pytest.raises(EdgekdError, match="unknown student arch 'resnet'"):
        replace(cfg, student_arch="resnet").validate()
    with pytest.raises(EdgekdError, match="unknown teacher architecture 'resnet'"):
        replace(cfg, stage="tough", teacher_arch="resnet").validate()
