"""Bad input, tried as a new user would: every case must exit with status 2 and one line that names the option or
file and what was expected, print no traceback, and leave every file on disk as it was (checksums before/after,
nothing added). Issue 13's battery, kept: add a row for every new way to get it wrong.

The world each case runs in (module-scoped, in tmp): a tiny 300-W root (links to real faces), a prepared folder, an
unrelated folder with a note, an ``X.old`` folder of the user's, a corrupt model, and an empty working directory
(the verbs' default run folders land there)."""
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

from edgekd.cli import main

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
    shutil.copytree(tiny_prepared, w / "prepared_notest")
    shutil.rmtree(w / "prepared_notest" / "test")
    shutil.copytree(tiny_prepared, w / "prepared_truncated")
    with open(w / "prepared_truncated" / "train" / "images.npy", "r+b") as f:
        f.truncate(5000)
    shutil.copytree(tiny_prepared, w / "prepared_missing")
    (w / "prepared_missing" / "train" / "hard.npy").unlink()
    for name in ("notes", "notes.old", "prepared_extra.old"):
        (w / name).mkdir()
        (w / name / "precious.txt").write_text("keep me")
    (w / "a_file.txt").write_text("not a folder")
    (w / "flat" / "lfpw").mkdir(parents=True)  # lfpw without trainset/ and testset/
    for f in sorted((w / "300w" / "lfpw" / "trainset").iterdir())[:2]:
        (w / "flat" / "lfpw" / f.name).symlink_to(f.resolve())
    (w / "empty").mkdir()
    (w / "nest").mkdir()
    (w / "nest" / "300w").symlink_to(w / "300w")  # a folder one level above a 300-W root
    (w / "corrupt.tflite").write_bytes(b"this is not a flatbuffer")
    (w / "cwd").mkdir()
    return w


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
     "unreadable prepared arrays"),
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
                     ("--batch-size", "0"), ("--lr", "-1"), ("--lr", "nan"), ("--margin", "1"))],
    ("train-init-from-missing", ["train", "{w}/prepared", "--run-dir", "{w}/cwd/r", "--stage", "baseline",
                                 "--init-from", "{w}/none.h5"], "none.h5"),
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
]


@pytest.mark.parametrize("case,args,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(world, monkeypatch, case, args, expected):
    monkeypatch.chdir(world / "cwd")
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


def test_battery_size():
    """Issue 13 asks for a battery; this file keeps it from shrinking unnoticed."""
    assert len(CASES) >= 100


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
from edgekd.cli import main
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

    from edgekd.fileio import write_text

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
    from edgekd.fileio import remove_stale_temps

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
    from edgekd.data.readers import read_pts, write_pts

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
