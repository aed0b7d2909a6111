"""Bad input, tried as a new user would: every case must exit with status 2 and one line that names the option or
file and what was expected, print no traceback, and leave every file on disk as it was (checksums before/after,
nothing added). Issue 13's battery, kept, and issue 33's second one (checkpoints that would run code, output folders
of the user's, resumes of nothing or of other data, damaged prepared folders, a file where a folder goes, empty
paths, sizes beyond memory): add a row for every new way to get it wrong.

The world each case runs in (module-scoped, in tmp): a tiny 300-W root (links to real faces), a prepared folder, an
unrelated folder with a note, an ``X.old`` folder of the user's, a corrupt model, and an empty working directory
(the verbs' default run folders land there); also a valid tiny checkpoint, a real face picture and a short video
made from it, run folders with recorded settings, and a read-only folder (``readonly`` fixture).

Faults: OS errors, ``kill -9`` during prepare, export and train followed by the same command (training: with
--resume), compared with an uninterrupted run."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from runtime_helpers import SHIPPED_INT8

from edgekd.cli.main import main

REPO = Path(__file__).resolve().parents[1]
MODEL = SHIPPED_INT8


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_prepared):
    from tests.conftest import make_300w_subset

    w = tmp_path_factory.mktemp("world")
    make_300w_subset(w / "300w", n_train=12, n_test=4)
    shutil.copytree(tiny_prepared, w / "prepared")
    other = json.loads((w / "prepared" / "manifest.json").read_text())
    shutil.copytree(tiny_prepared, w / "prepared_other")  # a prepared folder with other settings
    other["config"]["margin"] = 0.3
    (w / "prepared_other" / "manifest.json").write_text(json.dumps(other))
    shutil.copytree(tiny_prepared, w / "prepared_extra")  # prepared, plus a picture the user put inside
    (w / "prepared_extra" / "mine.png").write_bytes(b"user's picture")
    shutil.copytree(tiny_prepared, w / "prepared_nomanifest")
    (w / "prepared_nomanifest" / "manifest.json").unlink()
    shutil.copytree(tiny_prepared, w / "prepared_badmanifest")
    (w / "prepared_badmanifest" / "manifest.json").write_text("{not json")
    shutil.copytree(tiny_prepared, w / "prepared_notest")  # prepared from a root without a test set
    shutil.rmtree(w / "prepared_notest" / "test")
    notest = json.loads((w / "prepared_notest" / "manifest.json").read_text())
    del notest["counts"]["test"]
    (w / "prepared_notest" / "manifest.json").write_text(json.dumps(notest))
    shutil.copytree(tiny_prepared, w / "prepared_truncated")
    with open(w / "prepared_truncated" / "train" / "images.npy", "r+b") as f:
        f.truncate(5000)
    shutil.copytree(tiny_prepared, w / "prepared_missing")
    (w / "prepared_missing" / "train" / "hard.npy").unlink()
    for name in ("notes", "notes.old", "prepared_extra.old"):
        (w / name).mkdir()
        (w / name / "precious.txt").write_text("keep me")
    (w / "a_file.txt").write_text("not a folder")
    (w / "mini.yaml").write_text("input_size: 64\nstages:\n  warmup: {kind: baseline, epochs: 1}\n"
                                 "  student: {kind: baseline, from: warmup, epochs: 1}\n")
    (w / "flat" / "lfpw").mkdir(parents=True)  # lfpw without trainset/ and testset/
    for f in sorted((w / "300w" / "lfpw" / "trainset").iterdir())[:2]:
        (w / "flat" / "lfpw" / f.name).symlink_to(f.resolve())
    (w / "empty").mkdir()
    (w / "nest").mkdir()
    (w / "nest" / "300w").symlink_to(w / "300w")  # a folder one level above a 300-W root
    (w / "corrupt.tflite").write_bytes(b"this is not a flatbuffer")
    (w / "corrupt.h5").write_bytes(b"this is not HDF5")
    (w / "corrupt.mp4").write_bytes(b"this is not a video")
    shutil.copy(MODEL, w / "model.tflite")
    face = sorted((w / "300w" / "lfpw" / "trainset").glob("*.jpg"))[0]  # a real face, as a PNG of the user's
    import cv2

    cv2.imwrite(str(w / "face.png"), cv2.imread(str(face)))
    (w / "face.pts").symlink_to(face.with_suffix(".pts").resolve())
    _write_clip(w / "clip.mp4", face)
    # a valid tiny checkpoint recording {w}/prepared as its data (export --out must never replace it)
    tiny_checkpoint(w / "prepared", w / "ckpt" / "best.h5")
    (w / "ckpt_link.tflite").symlink_to(w / "ckpt" / "best.h5")
    _second_battery_world(w, tiny_prepared)
    # run folders with recorded settings: a finished baseline and tough stage (3 epochs, alpha 0.35)
    from edgekd.training.config import TrainConfig

    for stage in ("baseline", "tough"):
        (w / "run" / stage).mkdir(parents=True)
        recorded = TrainConfig(stage=stage, epochs=3, alpha=0.35, steps_per_epoch=2).to_dict()
        (w / "run" / stage / "config.json").write_text(json.dumps({"train": recorded}))
        (w / "run" / stage / "summary.json").write_text(json.dumps({"stage": stage, "epochs": 3}))
    (w / "run_badcfg" / "baseline").mkdir(parents=True)
    (w / "run_badcfg" / "baseline" / "config.json").write_text("{not json")
    (w / "cwd").mkdir()
    (w / "readonly").mkdir()
    (w / "readonly" / "precious.txt").write_text("keep me")
    return w


def _second_battery_world(w: Path, tiny_prepared: Path) -> None:
    """Issue 33's additions to the world: checkpoints that would run code or are none, damaged prepared folders,
    300-W roots with a subset that is a file, folders of the user's where a verb writes, run folders to resume."""
    import h5py

    ckpt = w / "ckpt" / "best.h5"
    code_checkpoint(w / "lambda.h5", w / "pwned.txt", ckpt)  # would write pwned.txt into the world (a snapshot sees it)
    code_checkpoint(w / "tfop.h5", w / "pwned.txt", ckpt, kind="tfop")
    for role in ("tough", "tolerant"):
        (w / "teachers_lambda" / role).mkdir(parents=True)
        shutil.copy(w / "lambda.h5", w / "teachers_lambda" / role / "best.h5")
    edited_checkpoint(ckpt, w / "custom.h5", "class")  # a layer of a class edgekd does not know
    edited_checkpoint(ckpt, w / "module.h5", "module")  # an initializer Keras would import from the module 'os'
    with h5py.File(ckpt, "r") as src, h5py.File(w / "weights_only.h5", "w") as dst:  # weights, no network
        src.copy("model_weights", dst)
    (w / "empty.h5").write_bytes(b"")
    (w / "text.h5").write_text("best.h5: see my notes\n")
    (w / "empty.npz").write_bytes(b"")
    # damaged prepared folders: an array deleted, of the wrong shape, holding NaN; faces.json not JSON
    shutil.copytree(tiny_prepared, w / "prepared_noimages")
    (w / "prepared_noimages" / "train" / "images.npy").unlink()
    shutil.copytree(tiny_prepared, w / "prepared_badshape")
    hard = np.load(w / "prepared_badshape" / "train" / "hard.npy")
    np.save(w / "prepared_badshape" / "train" / "hard.npy", hard[:, :10])
    shutil.copytree(tiny_prepared, w / "prepared_nan")
    hard = np.load(w / "prepared_nan" / "train" / "hard.npy")
    hard[3, 5] = np.nan
    np.save(w / "prepared_nan" / "train" / "hard.npy", hard)
    shutil.copytree(tiny_prepared, w / "prepared_badfaces")
    (w / "prepared_badfaces" / "val" / "faces.json").write_text("[{not json")
    # the same faces at the same size, prepared with another seed: another split, the same counts
    shutil.copytree(tiny_prepared, w / "prepared_same_size")
    same = json.loads((w / "prepared_same_size" / "manifest.json").read_text())
    same["config"]["seed"] = 1
    (w / "prepared_same_size" / "manifest.json").write_text(json.dumps(same))
    # 300-W roots whose subset is a file: a file named helen, an archive not unpacked, a testset/ that is a file
    for name in ("300w_helenfile", "300w_zip", "300w_testsetfile"):
        (w / name).mkdir()
    (w / "300w_helenfile" / "lfpw").symlink_to(w / "300w" / "lfpw")
    (w / "300w_helenfile" / "helen").write_text("downloaded, not unpacked")
    (w / "300w_zip" / "lfpw").symlink_to(w / "300w" / "lfpw")
    (w / "300w_zip" / "helen.zip").write_bytes(b"PK")
    (w / "300w_testsetfile" / "lfpw").mkdir()
    (w / "300w_testsetfile" / "lfpw" / "trainset").symlink_to(w / "300w" / "lfpw" / "trainset")
    (w / "300w_testsetfile" / "lfpw" / "testset").write_text("not a folder")
    # folders of the user's where a verb would write, and one that another verb marked as its own
    (w / "my_reports").mkdir()
    (w / "my_reports" / "report.md").write_text("# my own report, not bench's")
    (w / "predict_run").mkdir()
    (w / "predict_run" / ".edgekd-output.json").write_text(json.dumps({"verb": "predict"}))
    (w / "cwd_runs" / "runs" / "show" / "exp").mkdir(parents=True)  # runs/show/exp holding a picture of the user's
    (w / "cwd_runs" / "runs" / "show" / "exp" / "samples.png").write_bytes(b"user's picture")
    (w / "cwd_runs" / "runs" / "bench" / "exp").mkdir(parents=True)
    (w / "cwd_runs" / "runs" / "bench" / "exp" / "report.md").write_text("mine")
    (w / "cwd_runs" / "runs" / "predict" / "exp").mkdir(parents=True)
    (w / "cwd_runs" / "runs" / "predict" / "exp" / "notes.txt").write_text("mine")
    # run folders to resume: empty; a started stage bound to {w}/prepared (config.json; and a last.h5 recording
    # the manifest's sha256, written by save_checkpoint)
    (w / "run_empty").mkdir()
    (w / "run_empty_stage" / "baseline").mkdir(parents=True)
    from edgekd.training.config import TrainConfig

    recorded = TrainConfig(stage="baseline", epochs=3, alpha=0.35, steps_per_epoch=2).to_dict()
    for name in ("run_bound", "run_bound_last"):
        (w / name / "baseline").mkdir(parents=True)
        (w / name / "baseline" / "config.json").write_text(json.dumps({"train": recorded,
                                                                        "prepared": str(w / "prepared")}))
    shutil.copy(ckpt, w / "run_bound_last" / "baseline" / "last.h5")


def code_checkpoint(path: Path, marker: Path, attrs_from: Path, kind: str = "lambda") -> Path:
    """A Keras checkpoint whose network would run code when built, with the ``edgekd`` attribute of a real
    checkpoint (as a file passed around would carry it): a ``Lambda`` layer whose marshalled Python writes
    ``marker``, or (``tfop``) a TensorFlow operation named in the file (``TFOpLambda``)."""
    import h5py
    import tensorflow as tf
    import tf_keras as keras

    inp = keras.Input((64, 64, 3), name="image")
    if kind == "lambda":
        code = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), t)[1]")  # noqa: S307
        x = keras.layers.Lambda(code, name="evil")(inp)
    else:
        x = tf.math.multiply(inp, 1.0)
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inp, keras.layers.Dense(136, name="landmarks")(x)).save(path, save_format="h5")
    with h5py.File(attrs_from, "r") as src, h5py.File(path, "a") as dst:
        dst.attrs["edgekd"] = src.attrs["edgekd"]
    marker.unlink(missing_ok=True)  # building the network here ran the Lambda once
    return path


def edited_checkpoint(src: Path, path: Path, what: str) -> Path:
    """A copy of a real checkpoint whose network description names a class edgekd does not know (``class``), or
    an initializer from another module (``module``)."""
    import h5py

    shutil.copy(src, path)
    with h5py.File(path, "a") as f:
        config = json.loads(f.attrs["model_config"])
        layers = config["config"]["layers"]
        if what == "class":
            layers[-1]["class_name"] = "MyLandmarkHead"
        else:
            layers[-1]["config"]["kernel_initializer"]["module"] = "os"
        f.attrs["model_config"] = json.dumps(config)
    return path


def _write_clip(path: Path, face_png: Path, frames: int = 3) -> None:
    """A tiny real video: a few frames of a real face, so a video source opens and decodes."""
    import cv2

    img = cv2.resize(cv2.imread(str(face_png)), (160, 120))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    assert writer.isOpened()
    for _ in range(frames):
        writer.write(img)
    writer.release()


def tiny_checkpoint(prepared: Path, path: Path) -> Path:
    """An untrained alpha-0.35 student at 64 px, made exportable as tests/test_export.py makes its own (BatchNorm
    statistics from the data, head = mean training shape + small offsets), saved with edgekd's checkpoint info."""
    import tf_keras as keras
    from test_export import _save

    from edgekd.data.pipeline import PreparedData, make_dataset
    from edgekd.models.backbones import build_student, recalibrate_batchnorm

    keras.utils.set_random_seed(0)
    data = PreparedData.open(prepared)
    net = build_student(68, data.input_size, alpha=0.35)
    recalibrate_batchnorm(net, make_dataset(data, "train", 16, augment=True, seed=0), 2)
    _, hard = data.arrays("train")
    kernel, _ = net.get_layer("landmarks").get_weights()
    net.get_layer("landmarks").set_weights([kernel * 0.02, data.crop.normalize(hard).reshape(len(hard), -1).mean(0)])
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(net, path, prepared, data)


@pytest.fixture(scope="module")
def readonly(world):
    """``{w}/readonly`` made unwritable for the module: immutable (chattr +i, which binds root too), or mode 0555
    where chattr is unavailable and the tests do not run as root. Cases writing into it skip when neither works."""
    import subprocess

    folder = world / "readonly"
    immutable = shutil.which("chattr") is not None and subprocess.run(
        ["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    if not immutable and os.geteuid() != 0:
        folder.chmod(0o555)
    try:
        probe = folder / ".probe"
        probe.write_text("x")
        probe.unlink()
        writable = True
    except OSError:
        writable = False
    yield not writable
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def snapshot(folder: Path) -> dict:
    """Path -> (kind, size, sha1) of everything under ``folder`` (links by their target's content)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink() and not p.exists():
            out[rel] = ("dangling link", 0, os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir", 0, "")
        else:
            data = p.read_bytes()
            out[rel] = ("file", len(data), hashlib.sha1(data).hexdigest())
    return out


# (case id, arguments with {w} for the world folder, text the one error line must contain)
CASES = [
    # --- the command line itself
    ("unknown-verb", ["nosuchverb"], "no such command"),
    ("verbose-and-quiet", ["-v", "-q", "data", "show", "{w}/prepared"], "exclude each other"),
    ("unknown-option", ["data", "prepare", "--bogus", "1"], "--bogus"),
    # --- data prepare: options
    ("prepare-no-root", ["data", "prepare", "--out-dir", "{w}/cwd/o"], "--root"),
    ("prepare-no-out", ["data", "prepare", "--root", "{w}/300w"], "--out-dir"),
    ("prepare-dataset", ["data", "prepare", "--dataset", "afw", "--root", "{w}/300w", "--out-dir", "{w}/cwd/o"],
     "--dataset"),
    ("prepare-size-text", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/cwd/o", "--input-size", "big"],
     "--input-size"),
    *[(f"prepare-size-{v}", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/cwd/o", "--input-size", v],
       "--input-size") for v in ("100", "0", "-32", "256", "32")],
    *[(f"prepare-margin-{v}", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/cwd/o", "--margin", v],
       "--margin") for v in ("nan", "-0.1", "50", "inf", "-inf")],
    *[(f"prepare-val-{v}", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/cwd/o", "--val-fraction", v],
       "--val-fraction") for v in ("0", "0.5", "-1", "nan", "1")],
    *[(f"prepare-asm-{v}", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/cwd/o", "--asm-variance", v],
       "--asm-variance") for v in ("0", "1.5", "nan", "-0.9")],
    ("prepare-seed", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/cwd/o", "--seed", "-1"], "--seed"),
    # --- data prepare: dataset roots
    ("root-missing", ["data", "prepare", "--root", "{w}/nope", "--out-dir", "{w}/cwd/o"], "{w}/nope"),
    ("root-is-file", ["data", "prepare", "--root", "{w}/a_file.txt", "--out-dir", "{w}/cwd/o"], "a_file.txt"),
    ("root-one-too-deep", ["data", "prepare", "--root", "{w}/300w/lfpw", "--out-dir", "{w}/cwd/o"],
     "subset folder"),
    ("root-two-too-deep", ["data", "prepare", "--root", "{w}/300w/lfpw/trainset", "--out-dir", "{w}/cwd/o"],
     "subset folder"),
    ("root-one-too-high", ["data", "prepare", "--root", "{w}/nest", "--out-dir", "{w}/cwd/o"], "300w looks like one"),
    ("root-unrelated", ["data", "prepare", "--root", "{w}/empty", "--out-dir", "{w}/cwd/o"],
     "not a 300-W dataset root"),
    ("root-flat-subset", ["data", "prepare", "--root", "{w}/flat", "--out-dir", "{w}/cwd/o"],
     "expected trainset/ and testset/"),
    ("root-wflw-layout", ["data", "prepare", "--dataset", "wflw", "--root", "{w}/300w", "--out-dir", "{w}/cwd/o"],
     "list_98pt_rect_attr_train.txt"),
    ("root-cofw-layout", ["data", "prepare", "--dataset", "cofw", "--root", "{w}/300w", "--out-dir", "{w}/cwd/o"],
     "COFW_train_color.mat"),
    # --- data prepare: outputs
    ("out-is-root", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/300w"], "--out-dir"),
    ("out-inside-root", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/300w/prepared"], "--out-dir"),
    ("out-contains-root", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}"], "--out-dir"),
    ("out-unrelated", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/notes"], "not a prepared folder"),
    ("out-unrelated-force", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/notes", "--force"],
     "not a prepared folder"),
    ("out-is-file", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/a_file.txt"], "a_file.txt"),
    ("out-other-settings", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/prepared_other",
                            "--input-size", "64"], "other settings"),
    ("out-foreign-files-force", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/prepared_extra",
                                 "--input-size", "64", "--force", "--no-fit-detector"], "mine.png"),
    ("out-bad-manifest-force", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/prepared_badmanifest",
                                "--force"], "not a prepared folder"),
    ("out-no-permission", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "/sys/edgekd-test/o",
                           "--input-size", "64", "--no-fit-detector"], "/sys/edgekd-test"),
    # --- data show
    ("show-no-prepared", ["data", "show"], "PREPARED"),
    ("show-prepared-missing", ["data", "show", "{w}/nope"], "nope"),
    ("show-not-prepared", ["data", "show", "{w}/notes"], "manifest"),
    ("show-no-manifest", ["data", "show", "{w}/prepared_nomanifest"], "manifest"),
    ("show-bad-manifest", ["data", "show", "{w}/prepared_badmanifest"], "unreadable manifest"),
    ("show-missing-split", ["data", "show", "{w}/prepared_notest", "--split", "test", "--out", "{w}/cwd/x.png"],
     "no 'test' split"),
    ("show-truncated-array", ["data", "show", "{w}/prepared_truncated", "--out", "{w}/cwd/x.png"],
     "damaged prepared file"),
    ("show-missing-array", ["data", "show", "{w}/prepared_missing", "--out", "{w}/cwd/x.png"], "hard.npy"),
    *[(f"show-count-{v}", ["data", "show", "{w}/prepared", "--count", v], "--count") for v in ("0", "-3", "401", "x")],
    ("show-split", ["data", "show", "{w}/prepared", "--split", "holdout"], "--split"),
    ("show-augment", ["data", "show", "{w}/prepared", "--augment", "heavy"], "--augment"),
    ("show-seed", ["data", "show", "{w}/prepared", "--seed", "-1"], "--seed"),
    ("show-out-inside", ["data", "show", "{w}/prepared", "--out", "{w}/prepared/grid.png"], "--out"),
    ("show-out-extension", ["data", "show", "{w}/prepared", "--out", "{w}/cwd/grid.txt"], "grid.txt"),
    ("show-out-no-permission", ["data", "show", "{w}/prepared", "--out", "/sys/edgekd-test/g.png"],
     "/sys/edgekd-test"),
    ("show-name-path", ["data", "show", "{w}/prepared", "--name", "a/b"], "--name"),
    ("show-name-dotdot", ["data", "show", "{w}/prepared", "--name", ".."], "--name"),
    # --- train (the options the CLI checks; TrainConfig checks the rest)
    ("train-no-prepared", ["train", "--run-dir", "{w}/cwd/r"], "PREPARED"),
    ("train-no-run-dir", ["train", "{w}/prepared"], "--run-dir"),
    ("train-prepared-missing", ["train", "{w}/nope", "--run-dir", "{w}/cwd/r"], "nope"),
    *[(f"train-{opt[2:]}", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", opt, "nonsense"], opt)
      for opt in ("--stage", "--recipe", "--loss", "--teacher-arch", "--schedule", "--epochs", "--seed")],
    *[(f"train-{opt[2:]}-{v}", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", opt, v], opt)
      for opt, v in (("--epochs", "0"), ("--alpha", "0"), ("--dropout", "2"), ("--steps-per-epoch", "0"),
                     ("--batch-size", "0"), ("--learning-rate", "-1"), ("--learning-rate", "nan"), ("--margin", "1"))],
    ("train-init-from-missing", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--stage", "baseline",
                                 "--init-from", "{w}/none.h5"], "none.h5"),
    *[(f"train-{opt[2:]}-{v}", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", opt, v], opt)
      for opt, v in (("--average-last", "-1"), ("--bn-recalibration-samples", "-1"), ("--bn-momentum", "2"),
                     ("--head", "nonsense"), ("--student-arch", "nonsense"), ("--kd-c", "0"),
                     ("--kd-tough-pos", "nonsense"), ("--kd-tough-neg", "nonsense"), ("--kd-tol-pos", "nonsense"),
                     ("--kd-tol-neg", "nonsense"), ("--kd-main-slope", "-1"), ("--kd-w-main", "0"),
                     ("--kd-w-tough", "-2"), ("--kd-w-tol", "nan"), ("--kd-teacher-blend", "2"))],
    # --- export (the options the CLI checks)
    ("export-nothing", ["export"], "usage: edgekd export"),
    ("export-no-out", ["export", "{w}/none.h5"], "--out"),
    ("export-two-modes", ["export", "{w}/none.h5", "--out", "{w}/cwd/m.tflite", "--int8", "--qat"], "choose one"),
    ("export-input-type", ["export", "{w}/none.h5", "--out", "{w}/cwd/m.tflite", "--input-type", "int4"],
     "--input-type"),
    ("export-checkpoint-missing", ["export", "{w}/none.h5", "--out", "{w}/cwd/m.tflite", "--prepared",
                                   "{w}/prepared"], "none.h5"),
    ("export-tolerance", ["export", "{w}/none.h5", "--out", "{w}/cwd/m.tflite", "--tolerance", "-5"], "--tolerance"),
    ("export-calibration", ["export", "{w}/none.h5", "--out", "{w}/cwd/m.tflite", "--int8", "--calibration-samples",
                            "0"], "--calibration-samples"),
    ("export-out-is-input", ["export", "{w}/corrupt.tflite", "--out", "{w}/corrupt.tflite"], "corrupt.tflite"),
    # --- bench
    ("bench-nothing", ["bench"], "nothing to benchmark"),
    ("bench-detector-backend", ["bench", "{w}/model.tflite", "--detector-backend", "nonsense"], "--detector-backend"),
    ("bench-adb-missing", ["bench", "{w}/model.tflite", "--root", "{w}/300w", "--device", "pixel", "--adb",
                           "{w}/none-adb", "--out-dir", "{w}/cwd/b"], "none-adb"),
    ("teach-also-prepared-missing", ["data", "teach", "{w}/prepared", "--tough", "{w}/ckpt/best.h5", "--tolerant",
                                     "{w}/ckpt/best.h5", "--out", "{w}/cwd/t.npz", "--also-prepared", "{w}/nope"],
     "--also-prepared"),
    ("bench-model-missing", ["bench", "{w}/none.tflite"], "none.tflite"),
    ("bench-model-corrupt", ["bench", "{w}/corrupt.tflite"], "corrupt.tflite"),
    *[(f"bench-limit-{v}", ["bench", str(MODEL), "--root", "{w}/300w", "--limit", v, "--out-dir", "{w}/cwd/b"],
       "--limit") for v in ("0", "-5")],
    *[(f"bench-threads-{v}", ["bench", str(MODEL), "--threads", v], "--threads") for v in ("0", "x", "1,,y", "-2")],
    ("bench-crop", ["bench", str(MODEL), "--crop", "nose"], "--crop"),
    ("bench-device", ["bench", str(MODEL), "--device", "toaster"], "--device"),
    ("bench-compare", ["bench", str(MODEL), "--compare", "opencv"], "--compare"),
    ("bench-dataset", ["bench", str(MODEL), "--dataset", "afw"], "--dataset"),
    ("bench-name", ["bench", str(MODEL), "--name", "x/y"], "--name"),
    ("bench-root-missing", ["bench", str(MODEL), "--root", "{w}/nope", "--out-dir", "{w}/cwd/b"], "nope"),
    ("bench-root-too-deep", ["bench", str(MODEL), "--root", "{w}/300w/lfpw", "--out-dir", "{w}/cwd/b"],
     "subset folder"),
    ("bench-root-too-high", ["bench", str(MODEL), "--root", "{w}/nest", "--out-dir", "{w}/cwd/b"], "looks like one"),
    # --- predict
    *[(f"predict-threads-{v}", ["predict", str(MODEL), "--threads", v], "--threads") for v in ("0", "1,2", "x")],
    ("predict-no-model", ["predict"], "MODEL"),
    ("predict-model-missing", ["predict", "{w}/none.tflite"], "none.tflite"),
    ("predict-model-corrupt", ["predict", "{w}/corrupt.tflite"], "corrupt.tflite"),
    ("predict-image-missing", ["predict", str(MODEL), "{w}/none.jpg", "--out", "{w}/cwd/p.png"], "none.jpg"),
    ("predict-image-is-folder", ["predict", str(MODEL), "{w}/empty", "--out", "{w}/cwd/p.png"], "empty"),
    ("predict-image-not-image", ["predict", str(MODEL), "{w}/a_file.txt", "--out", "{w}/cwd/p.png"], "a_file.txt"),
    # ===== added for issue 13's rerun: every numeric option with NaN / sign / zero / range, wrong-type files,
    # outputs equal to or inside inputs, read-only folders ({w}/readonly, see the fixture), unknown choices
    # --- data prepare
    *[(f"prepare-size-{v}", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/cwd/o", "--input-size", v],
       "--input-size") for v in ("nan", "64.5", "1e3")],
    ("prepare-margin-text", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/cwd/o", "--margin", "wide"],
     "--margin"),
    ("prepare-val-inf", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/cwd/o", "--val-fraction", "inf"],
     "--val-fraction"),
    ("prepare-asm-inf", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/cwd/o", "--asm-variance", "inf"],
     "--asm-variance"),
    *[(f"prepare-seed-{v}", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/cwd/o", "--seed", v],
       "--seed") for v in ("nan", "4294967296")],
    ("root-is-prepared", ["data", "prepare", "--root", "{w}/prepared", "--out-dir", "{w}/cwd/o"], "{w}/prepared"),
    ("out-is-root-link", ["data", "prepare", "--root", "{w}/nest/300w", "--out-dir", "{w}/300w"], "--out-dir"),
    ("out-readonly", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/readonly/o", "--input-size", "64",
                      "--no-fit-detector"], "{w}/readonly"),
    ("out-is-readonly-user-folder", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/readonly", "--force"],
     "{w}/readonly"),
    # --- data show
    *[(f"show-count-{v}", ["data", "show", "{w}/prepared", "--count", v], "--count") for v in ("nan", "1.5")],
    *[(f"show-seed-{v}", ["data", "show", "{w}/prepared", "--seed", v], "--seed") for v in ("nan", "4294967296")],
    ("show-prepared-is-file", ["data", "show", "{w}/a_file.txt"], "a_file.txt"),
    ("show-prepared-is-model", ["data", "show", "{w}/model.tflite"], "model.tflite"),
    ("show-prepared-is-root", ["data", "show", "{w}/300w", "--out", "{w}/cwd/x.png"], "manifest"),
    ("show-out-is-manifest", ["data", "show", "{w}/prepared", "--out", "{w}/prepared/manifest.json"], "--out"),
    ("show-out-is-folder", ["data", "show", "{w}/prepared", "--out", "{w}/empty"], "--out"),
    ("show-out-readonly", ["data", "show", "{w}/prepared", "--out", "{w}/readonly/g.png"], "{w}/readonly"),
    ("show-name-empty", ["data", "show", "{w}/prepared", "--name", ""], "--name"),
    # --- train: numbers (TrainConfig.validate; nothing is trained and no run folder appears)
    *[(f"train-{opt[2:]}-{v}", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--stage", "baseline", opt, v],
       opt)
      for opt, v in (("--epochs", "-3"), ("--epochs", "nan"), ("--alpha", "nan"), ("--alpha", "-1"),
                     ("--alpha", "5"), ("--alpha", "inf"), ("--dropout", "nan"), ("--dropout", "-0.1"),
                     ("--dropout", "1"), ("--stochastic-depth", "1"), ("--stochastic-depth", "nan"),
                     ("--learning-rate", "0"), ("--learning-rate", "inf"), ("--min-lr", "-1"), ("--min-lr", "nan"), ("--min-lr", "1"),
                     ("--lr-decay", "-1"), ("--lr-decay", "nan"), ("--warmup-steps", "-1"), ("--warmup-steps", "x"),
                     ("--batch-size", "-1"), ("--batch-size", "nan"), ("--steps-per-epoch", "-1"),
                     ("--seed", "-1"), ("--seed", "4294967296"))],
    *[(f"train-{opt[2:]}-choice", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", opt, "nonsense"], opt)
      for opt in ("--head-init", "--augment", "--strategy", "--loss-variant", "--main-loss")],
    # --- train: files and folders
    ("train-run-dir-is-prepared", ["train", "{w}/prepared", "--run-dir", "{w}/prepared", "--stage", "baseline"],
     "--run-dir"),
    ("train-run-dir-inside-prepared", ["train", "{w}/prepared", "--run-dir", "{w}/prepared/run", "--stage",
                                       "baseline"], "--run-dir"),
    ("train-run-dir-contains-prepared", ["train", "{w}/prepared", "--run-dir", "{w}", "--stage", "baseline"],
     "--run-dir"),
    ("train-run-dir-is-file", ["train", "{w}/prepared", "--run-dir", "{w}/a_file.txt"], "a_file.txt"),
    ("train-prepared-not-prepared", ["train", "{w}/notes", "--run-dir", "{w}/cwd/r"], "manifest"),
    ("train-prepared-bad-manifest", ["train", "{w}/prepared_badmanifest", "--run-dir", "{w}/cwd/r"],
     "unreadable manifest"),
    ("train-prepared-is-file", ["train", "{w}/a_file.txt", "--run-dir", "{w}/cwd/r"], "a_file.txt"),
    ("train-init-from-corrupt", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--stage", "baseline",
                                 "--init-from", "{w}/corrupt.h5"], "corrupt.h5"),
    ("train-init-from-tflite", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--stage", "baseline",
                                "--init-from", "{w}/model.tflite"], "model.tflite"),
    ("train-teachers-missing", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--stage", "student",
                                "--teachers-dir", "{w}/nope"], "{w}/nope"),
    ("train-run-dir-readonly", ["train", "{w}/prepared", "--run-dir", "{w}/readonly/r", "--stage", "baseline",
                                "--epochs", "1", "--steps-per-epoch", "1", "--alpha", "0.35"], "{w}/readonly"),
    # --- train: a recorded run (3 epochs, alpha 0.35); --resume restores it and refuses contradictions
    ("train-finished-no-resume", ["train", "{w}/prepared", "--run-dir", "{w}/run", "--stage", "baseline"],
     "--resume"),
    ("train-resume-contradicts", ["train", "{w}/prepared", "--run-dir", "{w}/run", "--stage", "baseline", "--resume",
                                  "--alpha", "0.5"], "--alpha"),
    ("train-resume-more-epochs", ["train", "{w}/prepared", "--run-dir", "{w}/run", "--stage", "baseline",
                                  "--resume", "--epochs", "5"], "--init-from"),
    ("train-resume-bad-config", ["train", "{w}/prepared", "--run-dir", "{w}/run_badcfg", "--stage", "baseline",
                                 "--resume"], "{w}/run_badcfg/baseline/config.json"),
    ("train-recipe-other-input-size", ["train", "{w}/prepared", "--run-dir", "{w}/run", "--alpha", "0.5"],
     "{w}/prepared: prepared at 64 px, but recipe default trains at 128 px"),
    ("train-recipe-resume-nothing", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/empty", "--recipe", "{w}/mini.yaml",
                                     "--resume"],
     "--resume: {w}/cwd/empty holds no run of this recipe and settings to resume (found: nothing)"),
    ("train-recipe-unknown-key", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--recipe", "{w}/mini.yaml",
                                  "student.lr=1e-3"], "override 'student.lr=1e-3': lr is not a setting of stage student"),
    # --- train --dry-run: the same checks, before any timing
    *[(f"train-dry-run-{opt[2:]}-{v}", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--dry-run", opt, v], opt)
      for opt, v in (("--epochs", "0"), ("--alpha", "nan"), ("--batch-size", "0"), ("--steps-per-epoch", "-1"),
                     ("--learning-rate", "-1"))],
    ("train-dry-run-not-prepared", ["train", "{w}/notes", "--run-dir", "{w}/cwd/r", "--dry-run"], "manifest"),
    # --- export: numbers and choices
    *[(f"export-{opt[2:]}-{v}", ["export", "{w}/ckpt/best.h5", "--out", "{w}/cwd/m.tflite", "--int8", opt, v], opt)
      for opt, v in (("--calibration-samples", "-1"), ("--calibration-samples", "nan"), ("--tolerance", "nan"),
                     ("--tolerance", "inf"), ("--seed", "-1"), ("--seed", "4294967296"))],
    *[(f"export-qat-{opt[2:]}-{v}", ["export", "{w}/ckpt/best.h5", "--out", "{w}/cwd/m.tflite", "--qat", opt, v], opt)
      for opt, v in (("--qat-epochs", "0"), ("--qat-epochs", "-1"), ("--qat-steps-per-epoch", "0"),
                     ("--qat-learning-rate", "0"), ("--qat-learning-rate", "nan"), ("--qat-learning-rate", "-1"),
                     ("--qat-schedule", "linear"), ("--qat-target", "teacher"))],
    ("export-output-type", ["export", "{w}/ckpt/best.h5", "--out", "{w}/cwd/m.tflite", "--output-type", "int4"],
     "--output-type"),
    # --- export: outputs equal to or inside inputs (a valid checkpoint, so nothing but the check can refuse)
    ("export-out-is-checkpoint", ["export", "{w}/ckpt/best.h5", "--out", "{w}/ckpt/best.h5", "--int8"], "--out"),
    ("export-out-links-to-checkpoint", ["export", "{w}/ckpt/best.h5", "--out", "{w}/ckpt_link.tflite"],
     "--out {w}/ckpt_link.tflite: is the input CHECKPOINT"),
    ("export-out-inside-stage-folder", ["export", "{w}/ckpt", "--out", "{w}/ckpt/m.tflite"], "lies inside"),
    ("export-out-inside-prepared", ["export", "{w}/ckpt/best.h5", "--prepared", "{w}/prepared", "--out",
                                    "{w}/prepared/m.tflite"], "--out"),
    ("export-out-inside-recorded-prepared", ["export", "{w}/ckpt/best.h5", "--out", "{w}/prepared/val/m.tflite"],
     "recorded in the checkpoint"),
    ("export-out-inside-teachers", ["export", "{w}/ckpt/best.h5", "--qat", "--qat-target", "truth", "--teachers-dir",
                                    "{w}/run", "--out",
                                    "{w}/run/m.tflite"], "--teachers-dir"),
    ("export-out-not-tflite", ["export", "{w}/ckpt/best.h5", "--out", "{w}/cwd/m.onnx"], "--out"),
    ("export-out-is-folder", ["export", "{w}/ckpt/best.h5", "--out", "{w}/empty"], "--out"),
    ("export-out-readonly", ["-q", "export", "{w}/ckpt/best.h5", "--out", "{w}/readonly/m.tflite", "--tolerance",
                             "100"], "{w}/readonly/m.tflite"),
    # --- export: wrong or corrupt inputs
    ("export-checkpoint-is-tflite", ["export", "{w}/model.tflite", "--out", "{w}/cwd/m.tflite"], "model.tflite"),
    ("export-checkpoint-corrupt", ["export", "{w}/corrupt.h5", "--prepared", "{w}/prepared", "--out",
                                   "{w}/cwd/m.tflite"], "corrupt.h5"),
    ("export-checkpoint-is-image", ["export", "{w}/face.png", "--prepared", "{w}/prepared", "--out",
                                    "{w}/cwd/m.tflite"], "face.png"),
    ("export-checkpoint-no-data", ["export", "{w}/corrupt.h5", "--out", "{w}/cwd/m.tflite"],
     "{w}/corrupt.h5: not a checkpoint"),
    ("export-prepared-not-prepared", ["export", "{w}/ckpt/best.h5", "--prepared", "{w}/notes", "--out",
                                      "{w}/cwd/m.tflite"], "manifest"),
    ("export-prepared-missing", ["export", "{w}/ckpt/best.h5", "--prepared", "{w}/nope", "--out",
                                 "{w}/cwd/m.tflite"], "nope"),
    ("export-teachers-missing", ["export", "{w}/ckpt/best.h5", "--qat", "--qat-target", "truth", "--teachers-dir",
                                 "{w}/nope", "--out",
                                 "{w}/cwd/m.tflite"], "{w}/nope"),
    # --- bench: numbers and choices
    *[(f"bench-limit-{v}", ["bench", str(MODEL), "--root", "{w}/300w", "--limit", v, "--out-dir", "{w}/cwd/b"],
       "--limit") for v in ("nan", "1.5", "x")],
    *[(f"bench-threads-{v}", ["bench", str(MODEL), "--threads", v], "--threads") for v in ("nan", "300", "1,0")],
    ("bench-tta", ["bench", str(MODEL), "--tta", "rotate"], "--tta"),
    ("bench-split", ["bench", str(MODEL), "--root", "{w}/300w", "--split", "dev"], "--split"),
    ("bench-split-val-no-prepared", ["bench", str(MODEL), "--root", "{w}/300w", "--split", "val"], "--prepared"),
    ("bench-split-val-not-prepared", ["bench", str(MODEL), "--root", "{w}/300w", "--split", "val", "--prepared",
                                      "{w}/empty", "--out-dir", "{w}/cwd/b"], "faces.json"),
    *[(f"bench-refine-{v}", ["bench", str(MODEL), "--refine", v], "--refine") for v in ("-1", "4", "x")],
    ("bench-refine-on-phone", ["bench", str(MODEL), "--root", "{w}/300w", "--refine", "1", "--device", "pixel"],
     "--refine"),
    ("bench-tta-on-phone", ["bench", str(MODEL), "--root", "{w}/300w", "--tta", "flip", "--device", "pixel"],
     "--tta"),
    ("bench-video-no-root", ["bench", str(MODEL), "--video"], "--video"),
    ("bench-video-on-phone", ["bench", str(MODEL), "--root", "{w}/300w", "--video", "--device", "pixel"], "--video"),
    ("bench-video-no-model", ["bench", "--compare", "dlib", "--root", "{w}/300w", "--video"], "--video"),
    ("bench-phone-no-root", ["bench", str(MODEL), "--device", "pixel"], "--device"),
    ("bench-phone-compare", ["bench", str(MODEL), "--root", "{w}/300w", "--device", "pixel", "--compare", "dlib"],
     "--compare"),
    ("bench-serial-on-desktop", ["bench", str(MODEL), "--serial", "abc"], "--serial"),
    ("bench-apk-missing", ["bench", str(MODEL), "--root", "{w}/300w", "--device", "pixel", "--apk", "{w}/none.apk"],
     "none.apk"),
    ("bench-benchmark-binary-apk", ["bench", str(MODEL), "--root", "{w}/300w", "--device", "pixel",
                                    "--benchmark-binary", "{w}/benchmark_model.apk"], "benchmark_model.apk"),
    ("bench-name-empty", ["bench", str(MODEL), "--name", ""], "--name"),
    ("bench-name-dotdot", ["bench", str(MODEL), "--name", ".."], "--name"),
    # --- bench: files and folders
    ("bench-model-is-folder", ["bench", "{w}/empty"], "{w}/empty: a folder without best.h5"),
    ("bench-model-is-image", ["bench", "{w}/face.png"], "face.png"),
    ("bench-model-corrupt-h5", ["bench", "{w}/corrupt.h5"], "{w}/corrupt.h5: not a checkpoint"),
    ("bench-model-other-points", ["bench", str(MODEL), "--dataset", "wflw"], "--dataset wflw"),
    ("bench-compare-dlib-other-points", ["bench", "--compare", "dlib", "--dataset", "wflw"], "--compare dlib"),
    ("bench-root-is-file", ["bench", str(MODEL), "--root", "{w}/a_file.txt"], "a_file.txt"),
    ("bench-root-other-layout", ["bench", str(MODEL), "--dataset", "cofw", "--root", "{w}/300w"],
     "COFW_test_color.mat"),
    ("bench-out-is-root", ["bench", str(MODEL), "--root", "{w}/300w", "--out-dir", "{w}/300w"], "--out-dir"),
    ("bench-out-inside-root", ["bench", str(MODEL), "--root", "{w}/300w", "--out-dir", "{w}/300w/lfpw/b"],
     "--out-dir"),
    ("bench-out-is-file", ["bench", str(MODEL), "--out-dir", "{w}/a_file.txt"], "a_file.txt"),
    ("bench-out-readonly", ["bench", str(MODEL), "--threads", "1", "--out-dir", "{w}/readonly/b"], "{w}/readonly"),
    # --- predict: numbers and choices
    *[(f"predict-{opt[2:]}-{v}", ["predict", str(MODEL), "{w}/face.png", "--out", "{w}/cwd/p.png", opt, v], opt)
      for opt, v in (("--min-score", "nan"), ("--min-score", "-0.1"), ("--min-score", "1.5"), ("--tiles", "0"),
                     ("--tiles", "9"), ("--tiles", "nan"), ("--redetect-every", "0"), ("--redetect-every", "-1"),
                     ("--max-faces", "0"), ("--max-frames", "0"), ("--max-frames", "-5"), ("--threads", "300"),
                     ("--tta", "rotate"), ("--detector", "long-range"), ("--detector-backend", "gpu"),
                     ("--refine", "-1"), ("--refine", "4"), ("--refine", "1.5"))],
    ("predict-video-refine", ["predict", str(MODEL), "{w}/clip.mp4", "--out", "{w}/cwd/v.mp4", "--refine", "1"],
     "--refine"),
    ("predict-video-max-frames", ["predict", str(MODEL), "{w}/clip.mp4", "--out", "{w}/cwd/v.mp4", "--max-frames",
                                  "nan"], "--max-frames"),
    ("predict-video-redetect", ["predict", str(MODEL), "{w}/clip.mp4", "--out", "{w}/cwd/v.mp4", "--redetect-every",
                                "0", "--tta", "flip"], "--redetect-every"),
    ("predict-name-slash", ["predict", str(MODEL), "{w}/face.png", "--name", "a/b"], "--name"),
    # --- predict: points files of the wrong kind
    ("predict-image-pts-csv", ["predict", str(MODEL), "{w}/face.png", "--out", "{w}/cwd/p.png", "--pts",
                               "{w}/cwd/p.csv"], "--pts"),
    ("predict-video-pts-pts", ["predict", str(MODEL), "{w}/clip.mp4", "--out", "{w}/cwd/v.mp4", "--pts",
                               "{w}/cwd/v.pts"], "--pts"),
    ("predict-pts-is-model", ["predict", "{w}/model.tflite", "{w}/face.png", "--out", "{w}/cwd/p.png", "--pts",
                              "{w}/model.tflite"], "--pts"),
    # --- predict: outputs equal to inputs, unwritable outputs
    ("predict-out-is-source", ["predict", str(MODEL), "{w}/face.png", "--out", "{w}/face.png"], "--out"),
    ("predict-out-is-model", ["predict", "{w}/model.tflite", "{w}/face.png", "--out", "{w}/model.tflite"], "--out"),
    ("predict-pts-is-source", ["predict", str(MODEL), "{w}/face.png", "--out", "{w}/cwd/p.png", "--pts",
                               "{w}/face.png"], "--pts"),
    ("predict-video-out-is-source", ["predict", str(MODEL), "{w}/clip.mp4", "--out", "{w}/clip.mp4"], "--out"),
    ("predict-out-readonly", ["predict", str(MODEL), "{w}/face.png", "--out", "{w}/readonly/p.png"],
     "{w}/readonly/p.png"),
    ("predict-pts-readonly", ["predict", str(MODEL), "{w}/face.png", "--out", "{w}/cwd/p.png", "--pts",
                              "{w}/readonly/p.json"], "{w}/readonly"),
    ("predict-video-out-readonly", ["predict", str(MODEL), "{w}/clip.mp4", "--out", "{w}/readonly/v.mp4",
                                    "--max-frames", "2"], "{w}/readonly/v.mp4"),
    ("predict-video-pts-readonly", ["predict", str(MODEL), "{w}/clip.mp4", "--out", "{w}/cwd/v.mp4", "--pts",
                                    "{w}/readonly/v.csv", "--max-frames", "2"], "{w}/readonly"),
    ("predict-image-out-video-ext", ["predict", str(MODEL), "{w}/face.png", "--out", "{w}/cwd/p.mp4"], "p.mp4"),
    ("predict-video-out-image-ext", ["predict", str(MODEL), "{w}/clip.mp4", "--out", "{w}/cwd/v.png",
                                     "--max-frames", "2"], "v.png"),
    # --- predict: wrong, corrupt or missing sources and models
    ("predict-video-missing", ["predict", str(MODEL), "{w}/none.mp4", "--out", "{w}/cwd/v.mp4"], "none.mp4"),
    ("predict-video-corrupt", ["predict", str(MODEL), "{w}/corrupt.mp4", "--out", "{w}/cwd/v.mp4"], "corrupt.mp4"),
    ("predict-video-tta-corrupt", ["predict", str(MODEL), "{w}/corrupt.mp4", "--out", "{w}/cwd/v.mp4", "--tta",
                                   "flip"], "corrupt.mp4"),
    ("predict-camera-absent", ["predict", str(MODEL), "97", "--out", "{w}/cwd/v.mp4", "--max-frames", "1"],
     "camera 97"),
    ("predict-model-is-image", ["predict", "{w}/face.png", "{w}/face.png", "--out", "{w}/cwd/p.png"], "face.png"),
    ("predict-model-is-folder", ["predict", "{w}/empty", "{w}/face.png", "--out", "{w}/cwd/p.png"],
     "{w}/empty: a folder without best.h5"),
    ("predict-model-corrupt-h5", ["predict", "{w}/corrupt.h5", "{w}/face.png", "--out", "{w}/cwd/p.png"],
     "{w}/corrupt.h5: not a checkpoint"),
    ("predict-image-is-pts", ["predict", str(MODEL), "{w}/face.pts", "--out", "{w}/cwd/p.png"], "face.pts"),
    # ===== added for issue 33 (the second battery): nothing lost, nothing silent, every error names its culprit,
    # and no model file runs code. Cases named runs-* run where runs/<verb>/exp holds the user's own files.
    # --- checkpoints that would run code (a Lambda layer writing {w}/pwned.txt, a TensorFlow op named in the file,
    # a class edgekd does not know, an initializer from the module 'os'), with a real checkpoint's edgekd attributes
    *[(f"predict-model-{name}", ["predict", f"{{w}}/{name}.h5", "{w}/face.png", "--out", "{w}/cwd/p.png"], words)
      for name, words in (("lambda", "{w}/lambda.h5: refused: its network holds a Lambda layer ('evil')"),
                          ("tfop", "{w}/tfop.h5: refused: its network holds a TFOpLambda layer"),
                          ("custom", "{w}/custom.h5: refused: its network holds a 'MyLandmarkHead' object"),
                          ("module", "{w}/module.h5: refused: its network holds a 'GlorotUniform' from the module "
                                     "'os'"))],
    *[(f"export-checkpoint-{name}", ["export", f"{{w}}/{name}.h5", "--out", "{w}/cwd/m.tflite"], words)
      for name, words in (("lambda", "{w}/lambda.h5: refused: its network holds a Lambda layer"),
                          ("tfop", "{w}/tfop.h5: refused: its network holds a TFOpLambda layer"),
                          ("custom", "{w}/custom.h5: refused"), ("module", "{w}/module.h5: refused"))],
    ("export-stage-folder-lambda", ["export", "{w}/teachers_lambda/tough", "--out", "{w}/cwd/m.tflite"],
     "{w}/teachers_lambda/tough/best.h5: refused: its network holds a Lambda layer"),
    *[(f"bench-model-{name}", ["bench", f"{{w}}/{name}.h5", "--threads", "1", "--out-dir", "{w}/cwd/b"],
       f"{{w}}/{name}.h5: refused: its network holds") for name in ("lambda", "tfop", "custom", "module")],
    *[(f"train-init-from-{name}", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--stage", "baseline",
                                   "--alpha", "0.35", "--init-from", f"{{w}}/{name}.h5"],
       f"{{w}}/{name}.h5: refused: its network holds") for name in ("lambda", "tfop", "custom", "module")],
    ("train-teachers-lambda", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--stage", "student", "--alpha",
                               "0.35", "--teachers-dir", "{w}/teachers_lambda"], "Lambda layer ('evil')"),
    ("export-qat-teachers-lambda", ["export", "{w}/ckpt/best.h5", "--qat", "--qat-target", "truth", "--teachers-dir",
                                    "{w}/teachers_lambda", "--out", "{w}/cwd/m.tflite"], "Lambda layer ('evil')"),
    ("teach-tough-lambda", ["data", "teach", "{w}/prepared", "--tough", "{w}/lambda.h5", "--tolerant",
                            "{w}/ckpt/best.h5", "--out", "{w}/cwd/t.npz"], "{w}/lambda.h5: refused"),
    ("teach-tolerant-tfop", ["data", "teach", "{w}/prepared", "--tough", "{w}/ckpt/best.h5", "--tolerant",
                             "{w}/tfop.h5", "--out", "{w}/cwd/t.npz"], "{w}/tfop.h5: refused"),
    # --- files that are no checkpoint: said as such, by every verb that loads one
    *[(f"{verb}-{name}-h5", [*args, f"{{w}}/{name}.h5", *rest], f"{{w}}/{name}.h5: not a checkpoint")
      for verb, args, rest in (
          ("export", ["export"], ["--out", "{w}/cwd/m.tflite"]),
          ("init-from", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--stage", "baseline", "--init-from"], []),
          ("teach", ["data", "teach", "{w}/prepared", "--tolerant", "{w}/ckpt/best.h5", "--out", "{w}/cwd/t.npz",
                     "--tough"], []),
          ("predict", ["predict"], ["{w}/face.png", "--out", "{w}/cwd/p.png"]),
          ("bench", ["bench"], ["--threads", "1", "--out-dir", "{w}/cwd/b"]))
      for name in ("empty", "text", "weights_only")],
    # --- lost data: an output folder that holds the user's files, or another verb's, is refused, never written
    ("bench-out-user-report", ["bench", str(MODEL), "--threads", "1", "--out-dir", "{w}/my_reports"],
     "{w}/my_reports holds files `edgekd bench` did not write (report.md)"),
    ("bench-out-other-verb", ["bench", str(MODEL), "--threads", "1", "--out-dir", "{w}/predict_run"],
     "the output folder of `edgekd predict`"),
    ("runs-bench-exist-ok", ["bench", str(MODEL), "--threads", "1", "--exist-ok"],
     "runs/bench/exp holds files `edgekd bench` did not write (report.md)"),
    ("runs-show-exist-ok", ["data", "show", "{w}/prepared", "--exist-ok"],
     "runs/show/exp holds files `edgekd data show` did not write"),
    ("runs-predict-exist-ok", ["predict", str(MODEL), "{w}/face.png", "--exist-ok"],
     "runs/predict/exp holds files `edgekd predict` did not write (notes.txt)"),
    ("train-resume-other-data", ["train", "{w}/prepared_same_size", "--run-dir", "{w}/run_bound", "--stage",
                                 "baseline", "--resume"],
     "{w}/prepared_same_size: not the prepared data {w}/run_bound/baseline/config.json was trained on"),
    ("train-resume-other-data-checkpoint", ["train", "{w}/prepared_same_size", "--run-dir", "{w}/run_bound_last",
                                            "--stage", "baseline", "--resume"],
     "{w}/prepared_same_size: not the prepared data {w}/run_bound_last/baseline/last.h5 was trained on"),
    # --- silent before: now refused with what was found
    ("train-resume-empty-run", ["train", "{w}/prepared", "--run-dir", "{w}/run_empty", "--stage", "baseline",
                                "--resume"], "--resume: {w}/run_empty/baseline does not exist: nothing to resume"),
    ("train-resume-empty-stage", ["train", "{w}/prepared", "--run-dir", "{w}/run_empty_stage", "--stage", "baseline",
                                  "--resume"], "{w}/run_empty_stage/baseline holds no run"),
    ("train-resume-missing-run", ["train", "{w}/prepared", "--run-dir", "{w}/no_run", "--stage", "tough",
                                  "--resume"], "--resume: {w}/no_run/tough does not exist"),
    ("prepare-subset-is-file", ["data", "prepare", "--root", "{w}/300w_helenfile", "--out-dir", "{w}/cwd/o"],
     "{w}/300w_helenfile/helen: is a file, not a folder"),
    ("prepare-subset-archive", ["data", "prepare", "--root", "{w}/300w_zip", "--out-dir", "{w}/cwd/o"],
     "{w}/300w_zip/helen.zip: is a file, not a folder (an archive; unpack it"),
    ("prepare-testset-is-file", ["data", "prepare", "--root", "{w}/300w_testsetfile", "--out-dir", "{w}/cwd/o"],
     "{w}/300w_testsetfile/lfpw/testset: is a file, not a folder"),
    ("bench-root-subset-is-file", ["bench", str(MODEL), "--root", "{w}/300w_helenfile", "--out-dir", "{w}/cwd/b"],
     "{w}/300w_helenfile/helen: is a file, not a folder"),
    ("show-no-augment-and-augment", ["data", "show", "{w}/prepared", "--no-augment", "--augment", "full"],
     "--no-augment and --augment full: choose one"),
    ("train-no-augment-and-augment", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--stage", "baseline",
                                      "--no-augment", "--augment", "full"], "--no-augment and --augment full: choose one"),
    *[(f"export-{mode[2:] or 'float32'}-{opt[2:]}-{v}",
       ["export", "{w}/ckpt/best.h5", "--out", "{w}/cwd/m.tflite", *mode.split(), opt, v],
       f"{opt} {v}: only for an int8 export")
      for mode, opt, v in (("", "--input-type", "uint8"), ("--float16", "--output-type", "int8"),
                           ("--dynamic", "--input-type", "uint8"), ("", "--output-type", "uint8"))],
    # --- tracebacks before
    ("show-hard-wrong-shape", ["data", "show", "{w}/prepared_badshape", "--out", "{w}/cwd/x.png"],
     "{w}/prepared_badshape/train/hard.npy: damaged prepared file (shape"),
    ("train-hard-wrong-shape", ["train", "{w}/prepared_badshape", "--run-dir", "{w}/cwd/r", "--stage", "baseline"],
     "{w}/prepared_badshape/train/hard.npy: damaged prepared file"),
    *[(f"train-{'-'.join(extra) or 'recipe'}-epochs-huge", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", *extra,
                                                            "--epochs", "99999999999999999999"],
       "--epochs 99999999999999999999: expected a whole number in [1, 100000]")
      for extra in ([], ["--stage", "baseline"], ["--dry-run"])],
    ("train-steps-overflow", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--stage", "baseline", "--epochs",
                              "100000", "--steps-per-epoch", "100000"], "--epochs 100000 x --steps-per-epoch 100000"),
    ("train-warmup-huge", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--stage", "baseline",
                           "--warmup-steps", "99999999999"], "--warmup-steps 99999999999"),
    ("show-count-huge", ["data", "show", "{w}/prepared", "--count", "99999999999999999999"], "--count"),
    # --- unclear before: a file where a folder is needed, one wording, naming the file, before any work
    *[(f"{name}-under-file", args, "{w}/a_file.txt: is a file, not a folder") for name, args in (
        ("prepare-out", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "{w}/a_file.txt/o"]),
        ("show-out", ["data", "show", "{w}/prepared", "--out", "{w}/a_file.txt/g.png"]),
        ("teach-out", ["data", "teach", "{w}/prepared", "--tough", "{w}/ckpt/best.h5", "--tolerant",
                       "{w}/ckpt/best.h5", "--out", "{w}/a_file.txt/t.npz"]),
        ("train-run-dir", ["train", "{w}/prepared", "--run-dir", "{w}/a_file.txt/r", "--stage", "baseline"]),
        ("export-out", ["export", "{w}/ckpt/best.h5", "--out", "{w}/a_file.txt/m.tflite"]),
        ("bench-out", ["bench", str(MODEL), "--out-dir", "{w}/a_file.txt/b"]),
        ("predict-out", ["predict", str(MODEL), "{w}/face.png", "--out", "{w}/a_file.txt/p.png"]),
        ("predict-pts", ["predict", str(MODEL), "{w}/face.png", "--out", "{w}/cwd/p.png", "--pts",
                         "{w}/a_file.txt/p.json"]),
        ("predict-video-out", ["predict", str(MODEL), "{w}/clip.mp4", "--out", "{w}/a_file.txt/v.mp4"]))],
    # --- unclear before: a prepared folder missing a file or holding a damaged one, one wording for every verb
    *[(f"{name}-images-deleted", args, "{w}/prepared_noimages/train/images.npy: missing from the prepared folder")
      for name, args in (
          ("show", ["data", "show", "{w}/prepared_noimages", "--out", "{w}/cwd/x.png"]),
          ("train", ["train", "{w}/prepared_noimages", "--run-dir", "{w}/cwd/r", "--stage", "baseline"]),
          ("train-dry-run", ["train", "{w}/prepared_noimages", "--run-dir", "{w}/cwd/r", "--stage", "baseline",
                             "--dry-run"]),
          ("export", ["export", "{w}/ckpt/best.h5", "--int8", "--prepared", "{w}/prepared_noimages", "--out",
                      "{w}/cwd/m.tflite"]),
          ("teach", ["data", "teach", "{w}/prepared_noimages", "--tough", "{w}/ckpt/best.h5", "--tolerant",
                     "{w}/ckpt/best.h5", "--out", "{w}/cwd/t.npz"]))],
    *[(f"{name}-nan-landmarks", args, "{w}/prepared_nan/train/hard.npy: damaged prepared file (NaN or infinite "
                                      "landmarks for 1 faces)")
      for name, args in (("show", ["data", "show", "{w}/prepared_nan", "--out", "{w}/cwd/x.png"]),
                         ("train", ["train", "{w}/prepared_nan", "--run-dir", "{w}/cwd/r", "--stage", "baseline"]))],
    ("show-faces-not-json", ["data", "show", "{w}/prepared_badfaces", "--split", "val", "--out", "{w}/cwd/x.png"],
     "{w}/prepared_badfaces/val/faces.json: damaged prepared file (not JSON"),
    ("train-teacher-targets-empty", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--stage", "student",
                                     "--teacher-targets", "{w}/empty.npz"],
     "{w}/empty.npz: not a teacher-targets file of `edgekd data teach` (an empty file)"),
    ("train-teacher-targets-folder", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--stage", "student",
                                      "--teacher-targets", "{w}/empty"], "--teacher-targets"),
    ("predict-source-empty", ["predict", str(MODEL), "", "--out", "{w}/cwd/p.png"], "SOURCE '': expected an image"),
    ("predict-source-folder", ["predict", str(MODEL), "{w}/notes", "--out", "{w}/cwd/p.png"],
     "{w}/notes: is a folder, expected a file"),
    # --- an empty path is no path: refused by every verb, never taken as the current folder
    *[(f"{name}-empty-path", args, option) for name, args, option in (
        ("prepare-out", ["data", "prepare", "--root", "{w}/300w", "--out-dir", ""], "'--out-dir'"),
        ("prepare-root", ["data", "prepare", "--root", "", "--out-dir", "{w}/cwd/o"], "'--root'"),
        ("show-out", ["data", "show", "{w}/prepared", "--out", ""], "'--out'"),
        ("teach-out", ["data", "teach", "{w}/prepared", "--tough", "{w}/ckpt/best.h5", "--tolerant",
                       "{w}/ckpt/best.h5", "--out", ""], "'--out'"),
        ("train-run-dir", ["train", "{w}/prepared", "--run-dir", ""], "'--run-dir'"),
        ("train-init-from", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--stage", "baseline", "--init-from",
                             ""], "'--init-from'"),
        ("export-checkpoint", ["export", "", "--out", "{w}/cwd/m.tflite"], "'CHECKPOINT'"),
        ("export-out", ["export", "{w}/ckpt/best.h5", "--out", ""], "'--out'"),
        ("bench-model", ["bench", ""], "MODELS"),
        ("bench-out", ["bench", str(MODEL), "--out-dir", ""], "'--out-dir'"),
        ("predict-model", ["predict", "", "{w}/face.png"], "'MODEL'"),
        ("predict-out", ["predict", str(MODEL), "{w}/face.png", "--out", ""], "'--out'"),
        ("predict-pts", ["predict", str(MODEL), "{w}/face.png", "--out", "{w}/cwd/p.png", "--pts", ""], "'--pts'"))],
    ("prepare-out-current-folder", ["data", "prepare", "--root", "{w}/300w", "--out-dir", "."],
     "--out-dir '.': the current folder"),
    # --- memory and size limits, checked before work starts
    *[(f"train-{'-'.join(extra) or 'recipe'}-batch-size-huge", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r",
                                                                *extra, "--batch-size", "100000"],
       "--batch-size 100000: expected a whole number in [1, 65536]")
      for extra in ([], ["--stage", "baseline"], ["--dry-run"])],
]


@pytest.mark.parametrize("case,args,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(world, readonly, monkeypatch, case, args, expected):
    if "{w}/readonly" in " ".join(args) and not readonly:
        pytest.skip("no way to make a folder read-only here (root without chattr)")
    monkeypatch.chdir(world / ("cwd_runs" if case.startswith("runs-") else "cwd"))
    args = [a.replace("{w}", str(world)) for a in args]
    expected = expected.replace("{w}", str(world))
    before = snapshot(world)
    result = CliRunner().invoke(main, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert snapshot(world) == before


def test_every_option_that_takes_a_value_has_a_bad_value_case():
    """The battery grows with the command line: an option added to any verb (a new config field makes one) without a
    case here that gives it a bad value fails this test, naming the verb and the option."""
    import click

    def verbs(cmd, path=()):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from verbs(sub, (*path, name))
        else:
            yield path, cmd

    missing = [f"{' '.join(path)} {p.opts[0]}" for path, cmd in verbs(main) for p in cmd.params
               if isinstance(p, click.Option) and not p.is_flag and p.name != "help"
               and not any(tuple(args[:len(path)]) == path and set(p.opts) & set(args) for _, args, _ in CASES)]
    assert not missing, f"options without a bad-value case: {missing}"
    assert len({c[0] for c in CASES}) == len(CASES), "two cases share an id"


# --- no model file runs code (issue 33) -----------------------------------------------------------------------------
def test_a_checkpoint_that_would_run_code_is_refused_by_every_verb_and_never_runs(world, tmp_path, monkeypatch):
    """A checkpoint whose network holds a Lambda layer that writes a file, with the edgekd attributes of a real
    checkpoint: predict, export, bench, `train --init-from`, a student's teachers and `data teach` each refuse it in
    one line naming the file and the layer, and the file is never written; plain Keras loading would have run it."""
    import tf_keras as keras

    marker = tmp_path / "pwned.txt"
    (tmp_path / "shared").mkdir()  # a stage folder as a user would pass it on
    evil = code_checkpoint(tmp_path / "shared" / "best.h5", marker, world / "ckpt" / "best.h5")
    for role in ("tough", "tolerant"):
        (tmp_path / "teachers" / role).mkdir(parents=True)
        shutil.copy(evil, tmp_path / "teachers" / role / "best.h5")
    monkeypatch.chdir(tmp_path)
    w, out = str(world), tmp_path / "out"
    runs = {
        "predict": ["predict", str(evil), f"{w}/face.png", "--out", str(out / "p.png")],
        "predict-stage-folder": ["predict", str(evil.parent), f"{w}/face.png", "--out", str(out / "p.png")],
        "export": ["export", str(evil), "--out", str(out / "m.tflite")],
        "bench": ["bench", str(evil), "--threads", "1", "--out-dir", str(out / "b")],
        "train --init-from": ["train", f"{w}/prepared", "--run-dir", str(out / "r"), "--stage", "baseline", "--alpha",
                              "0.35", "--epochs", "1", "--steps-per-epoch", "1", "--init-from", str(evil)],
        "train teachers": ["train", f"{w}/prepared", "--run-dir", str(out / "r"), "--stage", "student", "--alpha",
                           "0.35", "--epochs", "1", "--steps-per-epoch", "1", "--teachers-dir",
                           str(tmp_path / "teachers")],
        "data teach": ["data", "teach", f"{w}/prepared", "--tough", str(evil), "--tolerant", str(evil), "--out",
                       str(out / "t.npz")],
    }
    for verb, args in runs.items():
        r = CliRunner().invoke(main, args)
        lines = r.output.strip().splitlines()
        assert r.exit_code == 2 and len(lines) == 1, (verb, r.output)
        assert "refused: its network holds a Lambda layer ('evil')" in lines[0] and "best.h5" in lines[0], lines[0]
        assert not marker.exists(), f"{verb} ran the code in the file"
        assert not out.exists(), f"{verb} wrote {sorted(out.rglob('*'))}"
    keras.models.load_model(evil, compile=False)  # what every verb did before: the file's code runs
    assert marker.read_text() == "ran"


def test_a_file_that_is_both_hdf5_and_a_keras_archive_is_refused(world, tmp_path):
    """A harmless edgekd .h5 with a zip appended whose config.json holds another network: Keras loads the zip of a
    `.keras` name, the check would read the HDF5. Such a polyglot is refused whatever its name, and a `.keras` name on
    a file that is not a zip archive too."""
    import zipfile

    from edgekd.core.checkpoint import check_network, load_model
    from edgekd.core.errors import EdgekdError

    archive = tmp_path / "inner.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("config.json", json.dumps({"class_name": "TFOpLambda", "config": {}}))
    real = (world / "ckpt" / "best.h5").read_bytes()
    for name in ("poly.keras", "poly.h5"):
        poly = tmp_path / name
        poly.write_bytes(real + archive.read_bytes())
        assert zipfile.is_zipfile(poly)
        for opener in (check_network, load_model):
            with pytest.raises(EdgekdError, match="refused: the file is both an HDF5 file and a zip archive"):
                opener(poly)
    (tmp_path / "h5.keras").write_bytes(real)
    with pytest.raises(EdgekdError, match=r"h5\.keras: not a checkpoint \(a \.keras name, but not a \.keras archive"):
        check_network(tmp_path / "h5.keras")


def test_allowed_classes_cover_every_network_of_the_registry():
    """checkpoint.ALLOWED_CLASSES names every class a network of models.MODELS can hold, whatever its head,
    dropout or head initialisation (a new backbone must add its layers there, or its checkpoints are refused)."""
    from edgekd.core.checkpoint import ALLOWED_CLASSES, network_refusal
    from edgekd.models.backbones import MODELS, NetworkConfig, build_network

    def classes(node):
        if isinstance(node, dict):
            yield from ([node["class_name"]] if "class_name" in node else [])
            for v in node.values():
                yield from classes(v)
        elif isinstance(node, list):
            for v in node:
                yield from classes(v)

    seen = set()
    for arch in MODELS:  # every backbone; one with the spatial head, head dropout and a mean-shape head
        net = build_network(5, 64, NetworkConfig(arch=arch, alpha=0.35, head="spatial" if arch == "mobilenetv2"
                                                 else "gap", dropout=0.5, stochastic_depth=0.2), np.zeros(10))
        config = {"class_name": net.__class__.__name__, "config": net.get_config()}
        seen |= set(classes(config))
        assert network_refusal(config) is None, arch
    assert seen <= ALLOWED_CLASSES, seen - ALLOWED_CLASSES
    assert "Lambda" not in ALLOWED_CLASSES and "TFOpLambda" not in ALLOWED_CLASSES


# --- memory and size limits before work (issue 33) -----------------------------------------------------------------
def test_a_batch_that_cannot_fit_in_memory_is_refused_with_the_estimate(world, tmp_path, monkeypatch):
    """The estimate is checked against a built network (MobileNetV2 alpha 0.35 at 64 px: every layer's output
    elements per input pixel within 5 % of ACTIVATIONS_PER_PIXEL), and a machine too small for a batch refuses the
    run before anything is built, with the estimate and a batch size that fits."""
    import edgekd.models.backbones as models

    net = models.build_network(68, 64, models.NetworkConfig(alpha=0.35, head_init="default"))
    elements = sum(int(np.prod(layer.output_shape[1:])) for layer in net.layers[1:])
    assert abs(elements / 64**2 / models.ACTIVATIONS_PER_PIXEL["mobilenetv2"](0.35) - 1) < 0.05
    monkeypatch.setattr(models, "machine_memory", lambda: 64 << 20)  # a 64 MiB machine
    r = CliRunner().invoke(main, ["train", str(world / "prepared"), "--run-dir", str(tmp_path / "r"), "--stage",
                                  "baseline", "--alpha", "0.35", "--batch-size", "32"])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert "--batch-size 32: a training batch of 64 px crops needs about 191 MiB of memory (6 MiB per crop for " \
           "mobilenetv2 alpha 0.35, estimated), more than this machine's 64 MiB; try --batch-size 8 or less" \
           in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []
    r = CliRunner().invoke(main, ["train", str(world / "prepared"), "--run-dir", str(tmp_path / "r"), "--stage",
                                  "baseline", "--alpha", "0.35", "--batch-size", "1000"])
    assert "(the whole training split of 36 faces)" in r.output and r.exit_code == 2, r.output


# --- output folders are the verb's own (issue 33) ------------------------------------------------------------------
def test_bench_reuses_its_own_folder_and_the_report_names_the_right_option(tmp_path):
    """bench marks its output folder; a second run into it is fine (its own files replaced, a note the user added
    kept), the same folder is refused to predict; the latency-only report asks for --root, the option that exists."""
    from edgekd.core.fileio import OUTPUT_MARKER

    out = tmp_path / "b"
    for _ in range(2):
        r = CliRunner().invoke(main, ["-q", "bench", str(MODEL), "--threads", "1", "--out-dir", str(out)])
        assert r.exit_code == 0, r.output
        (out / "notes.txt").write_text("mine")
    assert json.loads((out / OUTPUT_MARKER).read_text())["verb"] == "bench"
    assert (out / "notes.txt").read_text() == "mine"
    report = (out / "report.md").read_text()
    assert "accuracy needs `--root`" in report and "--data" not in report
    from edgekd.core.errors import OutputError
    from edgekd.core.fileio import check_output_dir

    with pytest.raises(OutputError, match=r"is the output folder of `edgekd bench`, not of `edgekd predict`"):
        check_output_dir(out, "predict", "--exist-ok")


# --- faults with the path named (issue 33) --------------------------------------------------------------------------
def test_a_full_disk_during_prepare_names_the_folder_not_numpys_byte_counts(world, tmp_path, monkeypatch):
    """numpy says only "N requested and M written" (no errno, no path) when the disk fills: the one line names the
    --out-dir and the cause, and no temporary folder is left."""
    import edgekd.data.prepare as prepare_module

    def full(path, array, *a, **k):
        raise OSError(f"{array.nbytes} requested and 4096 written")

    monkeypatch.setattr(prepare_module.np, "save", full)
    r = CliRunner().invoke(main, ["-q", "data", "prepare", "--root", str(world / "300w"), "--out-dir",
                                  str(tmp_path / "o"), "--input-size", "64", "--no-fit-detector"])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0] == f"error: {tmp_path / 'o'}: no space left on the device; free some space or write elsewhere"
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_writing_a_video_is_said_with_the_path_not_blamed_on_the_format(world, tmp_path,
                                                                                           monkeypatch):
    """OpenCV's writer reports no failed frame: a disk found full after writing is an error naming the --out (the
    half-written video removed), and one full before the writer opens is said as such, not as a format problem."""
    import edgekd.runtime.video as video

    monkeypatch.setattr(video, "_free_bytes", lambda folder: 0)
    out = tmp_path / "v.mp4"
    r = CliRunner().invoke(main, ["predict", str(MODEL), str(world / "clip.mp4"), "--out", str(out)])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0] == f"error: {out}: no space left on the device; free some space or write elsewhere"
    assert list(tmp_path.iterdir()) == []


def test_a_file_where_a_folder_is_needed_is_named_in_one_wording(tmp_path):
    """mkdir of a path that is a file says "File exists", a file on the way says "Not a directory": both become
    "<the file>: is a file, not a folder", the wording every verb's own checks use."""
    import errno

    from edgekd.core.errors import describe_os_error

    (tmp_path / "f").write_text("x")
    with pytest.raises(OSError) as exists:
        (tmp_path / "f").mkdir(parents=True, exist_ok=True)
    assert exists.value.errno == errno.EEXIST
    assert describe_os_error(exists.value) == f"{tmp_path / 'f'}: is a file, not a folder"
    with pytest.raises(OSError) as inside:
        (tmp_path / "f" / "g" / "h.png").write_bytes(b"")
    assert describe_os_error(inside.value) == \
        f"{tmp_path / 'f'}: is a file, not a folder (needed as a folder for {tmp_path / 'f' / 'g' / 'h.png'})"


def test_an_end_of_file_inside_a_verb_is_an_error_not_an_interrupt(world, tmp_path, monkeypatch):
    """click turns every EOFError into "Aborted" (exit 1, or "interrupted" here): a truncated file read by a library
    (numpy's "No data left in file") is an error line with exit status 2, while Ctrl-C stays "interrupted"."""
    import edgekd.data.visualize as visualize

    def truncated(*a, **k):
        raise EOFError("No data left in file")

    monkeypatch.setattr(visualize, "draw_prepared_samples", truncated)
    r = CliRunner().invoke(main, ["data", "show", str(world / "prepared"), "--out", str(tmp_path / "g.png")])
    assert r.exit_code == 2 and r.output.strip().splitlines() == [
        "error: unexpected end of a file (No data left in file): an empty or truncated input"], r.output

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(visualize, "draw_prepared_samples", interrupted)
    r = CliRunner().invoke(main, ["data", "show", str(world / "prepared"), "--out", str(tmp_path / "g.png")])
    assert r.exit_code == 130 and r.output.strip().splitlines()[-1] == "error: interrupted", r.output


# --- newcomer frictions (issue 33) ----------------------------------------------------------------------------------
def test_newcomer_frictions_are_gone(world, tmp_path, monkeypatch):
    """The converter's "fully_quantize: 0, inference_type: 6, ..." is native noise (-q and the default hide it);
    --min-score 0 decodes without numpy's overflow warning; --count above the split's faces says how many it drew;
    prepare says why it fitted no keypoint mapping."""
    import warnings

    from edgekd.core.imageio import load_image
    from edgekd.core.logs import NATIVE_NOISE
    from edgekd.runtime.blazeface import BlazeFace

    assert NATIVE_NOISE.match(b"fully_quantize: 0, inference_type: 6, input_inference_type: INT8, "
                              b"output_inference_type: FLOAT32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        faces = BlazeFace(min_score=0.0).detect(load_image(world / "face.png"))
    assert len(faces) > 1  # every anchor's box, scores down to 0
    r = CliRunner().invoke(main, ["data", "show", str(world / "prepared"), "--count", "400", "--out",
                                  str(tmp_path / "g.png")])
    assert r.exit_code == 0, r.output
    assert "--count 400: the train split of" in r.output and "holds 36 faces; drawing all 36" in r.output
    r = CliRunner().invoke(main, ["data", "prepare", "--root", str(world / "300w"), "--out-dir",
                                  str(tmp_path / "p"), "--input-size", "64"])
    assert r.exit_code == 0, r.output
    assert "no keypoint mapping: it needs keypoints on 100 training faces" in r.output


# --- faults: OS errors, kill -9, --force ---------------------------------------------------------------------------
@pytest.mark.parametrize("errno_name,words", [("EROFS", "read-only file system"), ("ENOSPC", "no space left"),
                                              ("EACCES", "permission denied")])
def test_os_errors_are_one_line_naming_the_path(world, tmp_path, monkeypatch, errno_name, words):
    """A full disk or a read-only folder met while writing: one line with the path, nothing left behind."""
    import errno

    import edgekd.data.prepare as prepare_module

    def refuse(*a, **k):
        raise OSError(getattr(errno, errno_name), os.strerror(getattr(errno, errno_name)), str(tmp_path / "o"))

    monkeypatch.setattr(prepare_module, "_install", refuse)
    before = snapshot(world)
    r = CliRunner().invoke(main, ["-q", "data", "prepare", "--root", str(world / "300w"), "--out-dir",
                                  str(tmp_path / "o"), "--input-size", "64", "--no-fit-detector"])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0].startswith(f"error: {tmp_path / 'o'}: ") and words in lines[0], lines[0]
    assert snapshot(world) == before and list(tmp_path.iterdir()) == []


KILL_DURING_INSTALL = """
import os, signal, sys
import edgekd.data.prepare as p
from edgekd.cli.main import main
p._install = lambda tmp, out: os.kill(os.getpid(), signal.SIGKILL)  # killed with everything written, not yet moved
main(sys.argv[1:])
"""


def test_kill_9_during_prepare_then_rerun_gives_the_same_data_and_no_stray_files(world, tmp_path):
    import subprocess
    import sys

    args = ["data", "prepare", "--root", str(world / "300w"), "--input-size", "64", "--no-fit-detector"]
    killed = subprocess.run([sys.executable, "-c", KILL_DURING_INSTALL, *args, "--out-dir", str(tmp_path / "p")],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert killed.returncode == -9, killed.stderr[-2000:]
    stray = [p.name for p in tmp_path.iterdir()]
    assert len(stray) == 1 and stray[0].startswith(".p.") and ".tmp-" in stray[0]  # the half-done work, hidden
    r = CliRunner().invoke(main, [*args, "--out-dir", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    assert "removed" in r.output and stray[0] in r.output  # named in one line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]
    r = CliRunner().invoke(main, [*args, "--out-dir", str(tmp_path / "q")])  # an uninterrupted run
    for name in ("train", "val", "test"):
        for arr in ("images.npy", "hard.npy", "soft.npy"):
            np.testing.assert_array_equal(np.load(tmp_path / "p" / name / arr), np.load(tmp_path / "q" / name / arr))


def _start_frozen(script: str, args: list):
    """``edgekd ARGS`` in a child process whose ``script`` freezes it at a chosen point (started first, so that
    its imports and tracing overlap the uninterrupted reference run that the test does meanwhile)."""
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _kill_9_when(proc, ready, timeout: float = 240.0) -> None:
    """Poll until ``ready()`` sees the child's freezing point reached on disk, then SIGKILL it (``kill -9``)."""
    import signal
    import time

    try:
        t0 = time.monotonic()
        while not ready():
            assert proc.poll() is None, f"ended before the kill point: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() - t0 < timeout, "kill point not reached in time"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -9


FREEZE_EXPORT = """
import sys, time
import edgekd.export.exporter as e
from edgekd.cli.main import main
# frozen inside write(): the model's bytes in a hidden temporary file, the new card.json written, the card.md and
# the rename into place not yet done
e.write_text = lambda *a, **k: time.sleep(600)
main(sys.argv[1:])
"""


def test_kill_9_during_export_then_rerun_gives_the_same_model_and_no_stray_files(world, tmp_path):
    """`export --int8` killed while writing its output, then the same command again: the .tflite is byte for byte
    the uninterrupted export's (the conversion is deterministic: same checkpoint, calibration seed and metadata),
    and nothing but the model and its card is left beside it."""
    from edgekd.core.fileio import temp_names

    args = ["-q", "export", str(world / "ckpt" / "best.h5"), "--int8", "--calibration-samples", "16", "--tolerance",
            "2"]
    out, reference = tmp_path / "out" / "m.tflite", tmp_path / "reference" / "m.tflite"
    child = _start_frozen(FREEZE_EXPORT, [*args, "--out", str(out)])
    r = CliRunner().invoke(main, [*args, "--out", str(reference)])  # uninterrupted, meanwhile
    assert r.exit_code == 0, r.output
    hidden = temp_names(out)
    _kill_9_when(child, lambda: out.parent.is_dir() and any(hidden.match(p) for p in os.listdir(out.parent)))
    left = sorted(os.listdir(out.parent))
    assert "m.tflite" not in left and any(hidden.match(p) for p in left), left  # killed before the rename
    r = CliRunner().invoke(main, [*args, "--out", str(out)])  # the same command again
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(out.parent)) == ["m.card.json", "m.card.md", "m.tflite"]  # no stray temporary file
    assert out.read_bytes() == reference.read_bytes()
    card, ref_card = (json.loads(p.with_name("m.card.json").read_text()) for p in (out, reference))
    assert card["sha256"] == ref_card["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert card["nme"] == ref_card["nme"]


FREEZE_TRAIN = """
import sys, time
import edgekd.training.train as t
from edgekd.cli.main import main
save = t.save_checkpoint
def save_then_freeze(net, path, info, optimizer=None):
    save(net, path, info, optimizer)
    if path.name == "last.h5" and info["epoch"] == 1:
        time.sleep(600)  # frozen right after the first epoch's last.h5 is in place
t.save_checkpoint = save_then_freeze
main(sys.argv[1:])
"""
# Measured: 0. Resumed and uninterrupted runs gave bit-identical last.h5 and best.h5 weights in every one of 6
# runs on the 2-core CPU (TensorFlow 2.21 CPU kernels, oneDNN on, same thread settings in both processes); a
# machine whose kernels reorder sums between processes would need a tolerance here, not a weaker test.
WEIGHT_TOLERANCE = 0.0


def _h5_weights(path) -> list:
    """Every weight array of a Keras HDF5 checkpoint in the network's order (layer names may differ between two
    builds in one process; their order does not)."""
    import h5py

    def text(x):
        return x.decode() if isinstance(x, bytes) else x

    with h5py.File(path, "r") as f:
        g = f["model_weights"]
        return [np.asarray(g[text(layer)][text(w)]) for layer in g.attrs["layer_names"]
                for w in g[text(layer)].attrs["weight_names"]]


def test_kill_9_during_train_then_resume_gives_the_same_run_and_no_stray_files(world, tmp_path):
    """`train` (3 epochs of 2 steps, alpha 0.35, 64 px, seed 0) killed right after epoch 1's last.h5 is in place,
    then the same command with --resume: the same epochs logged, no temporary files, and the final weights those
    of an uninterrupted run (data order, augmentation and BatchNorm recalibration are functions of seed and epoch;
    the weights match within WEIGHT_TOLERANCE, measured 0: bit-identical). The kill lands in the worst window:
    last.h5 of epoch 1 in place, so the log must already hold epoch 1 (it is written first)."""
    import csv

    import tf_keras as keras

    keras.backend.clear_session()  # the graphs of the export tests before it, if any, out of the way
    args = ["-q", "train", str(world / "prepared"), "--stage", "baseline", "--epochs", "3", "--steps-per-epoch", "2",
            "--alpha", "0.35", "--seed", "0"]
    stage = tmp_path / "run" / "baseline"
    child = _start_frozen(FREEZE_TRAIN, [*args, "--run-dir", str(tmp_path / "run")])
    r = CliRunner().invoke(main, [*args, "--run-dir", str(tmp_path / "reference")])  # uninterrupted, meanwhile
    assert r.exit_code == 0, r.output
    _kill_9_when(child, lambda: (stage / "last.h5").is_file())
    assert [int(row["epoch"]) for row in csv.DictReader((stage / "log.csv").open())] == [1]  # killed after epoch 1
    r = CliRunner().invoke(main, [*args, "--run-dir", str(tmp_path / "run"), "--resume"])
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(tmp_path / "run")) == ["baseline"]
    files = ["best.h5", "config.json", "last.h5", "log.csv", "model_info.json", "summary.json"]
    assert sorted(os.listdir(stage)) == files  # nothing hidden, nothing temporary
    logs = [list(csv.DictReader((d / "baseline" / "log.csv").open())) for d in (tmp_path / "run",
                                                                                 tmp_path / "reference")]
    assert [int(row["epoch"]) for row in logs[0]] == [int(row["epoch"]) for row in logs[1]] == [1, 2, 3]
    for name in ("last.h5", "best.h5"):
        mine, theirs = (_h5_weights(d / "baseline" / name) for d in (tmp_path / "run", tmp_path / "reference"))
        assert [a.shape for a in mine] == [b.shape for b in theirs] and len(mine) > 100
        worst = max(float(np.max(np.abs(a - b))) for a, b in zip(mine, theirs))
        assert worst <= WEIGHT_TOLERANCE, f"{name}: largest weight difference {worst:g}"
    for a, b in zip(*logs):
        assert abs(float(a["val_nme"]) - float(b["val_nme"])) <= 1e-3, (a, b)


@pytest.mark.parametrize("source,expected", [("{w}/corrupt.mp4", "{w}/corrupt.mp4: not a readable video"),
                                             ("97", "camera 97: cannot open it")], ids=["corrupt-video", "no-camera"])
def test_video_errors_are_one_line_in_a_terminal_too(world, tmp_path, source, expected):
    """As a terminal shows it (a real process, fd 2 included, which CliRunner does not capture): OpenCV's and
    FFmpeg's own warnings about a corrupt file or a missing camera stay out; the one error line remains."""
    import subprocess
    import sys

    out = tmp_path / "v.mp4"
    r = subprocess.run([sys.executable, "-m", "edgekd.cli.main", "predict", str(MODEL), source.replace("{w}", str(world)),
                        "--out", str(out), "--max-frames", "1"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith("error: "), r.stderr
    assert expected.replace("{w}", str(world)) in r.stderr and r.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_only_prepared_data_and_never_a_users_old_folder(world, tmp_path):
    root = world / "300w"
    out = tmp_path / "X"
    args = ["data", "prepare", "--root", str(root), "--out-dir", str(out), "--input-size", "64", "--no-fit-detector"]
    assert CliRunner().invoke(main, args).exit_code == 0
    (tmp_path / "X.old").mkdir()
    (tmp_path / "X.old" / "precious.txt").write_text("keep me")
    stamp = (out / "train" / "images.npy").stat().st_mtime_ns
    r = CliRunner().invoke(main, [*args, "--force"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "X.old" / "precious.txt").read_text() == "keep me"
    assert (out / "train" / "images.npy").stat().st_mtime_ns != stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X", "X.old"]


def test_stale_temporary_files_of_a_dead_writer_are_removed_and_a_live_ones_kept(tmp_path):
    import subprocess
    import sys

    from edgekd.core.fileio import write_text

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = [tmp_path / f".log.csv.{pid}.abc123xy.tmp", tmp_path / f".best.{pid}.tmp.h5"]
    live = tmp_path / f".log.csv.{os.getppid()}.abc123xy.tmp"
    unrelated = tmp_path / ".log.csv.notapid.tmp"
    for p in (*stale, live, unrelated):
        p.write_text("x")
    write_text(tmp_path / "log.csv", "a,b\n")
    assert not stale[0].exists() and stale[1].exists()  # write_text cleans its own target's temporary files
    assert live.exists() and unrelated.exists()
    from edgekd.core.fileio import remove_stale_temps

    assert remove_stale_temps(tmp_path / "best.h5") == [stale[1]]  # what export and checkpoints call


def test_test_images_never_enter_training_even_when_copied_into_a_training_folder(world, tmp_path):
    """A test image copied (another name) under trainset/ is found by its content and left out of train and val."""
    from edgekd.data.prepare import PrepareConfig, prepare

    root = tmp_path / "300w"
    shutil.copytree(world / "300w", root, symlinks=True)
    test_pts = sorted((root / "lfpw" / "testset").glob("*.pts"))[0]
    test_img = next(test_pts.with_suffix(e) for e in (".png", ".jpg") if test_pts.with_suffix(e).exists())
    shutil.copy(test_pts.resolve(), root / "lfpw" / "trainset" / "leak.pts")
    shutil.copy(test_img.resolve(), root / "lfpw" / "trainset" / f"leak{test_img.suffix}")
    m = prepare(PrepareConfig(root=str(root), input_size=64, fit_detector=False), tmp_path / "out", progress=False)
    assert m.counts["train"] + m.counts["val"] == 12
    assert len(m.excluded_test_overlap) == 1 and "leak" in m.excluded_test_overlap[0]
    used = [f["image"] for s in ("train", "val") for f in json.loads((tmp_path / "out" / s / "faces.json").read_text())]
    assert not any("leak" in u for u in used)


def test_faces_that_cannot_be_cropped_are_skipped_by_name(world, tmp_path):
    """A 1x1 image and points far outside their image become skipped faces named by file, not black crops."""
    from edgekd.data.prepare import PrepareConfig, prepare
    from edgekd.core.imageio import read_pts, write_pts

    root = tmp_path / "300w"
    shutil.copytree(world / "300w", root, symlinks=True)
    train = root / "lfpw" / "trainset"
    pts = sorted(train.glob("*.pts"))
    import cv2

    for p in pts[:1]:
        img = next(p.with_suffix(e) for e in (".png", ".jpg") if p.with_suffix(e).exists())
        img.unlink()
        cv2.imwrite(str(img), np.zeros((1, 1, 3), np.uint8))
    far = read_pts(pts[1].resolve(), 68) + 10000
    pts[1].unlink()
    write_pts(pts[1], far)
    m = prepare(PrepareConfig(root=str(root), input_size=64, fit_detector=False), tmp_path / "out", progress=False)
    assert m.counts["train"] + m.counts["val"] == 10 and len(m.skipped) == 2
    assert all("lie inside" in s for s in m.skipped) and pts[1].stem in " ".join(m.skipped)
    images = np.load(tmp_path / "out" / "train" / "images.npy")
    assert images.reshape(len(images), -1).max(axis=1).min() > 0  # no all-black crop
