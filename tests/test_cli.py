"""The CLI as a user meets it: verbs listed, user errors as one line with exit status 2."""
from click.testing import CliRunner

from edgekd.cli import main


def test_help_lists_every_verb():
    out = CliRunner().invoke(main, ["--help"]).output
    for verb in ("data", "train", "export", "bench", "predict"):
        assert f"  {verb}" in out


def test_prepare_with_missing_root_is_one_line_error(tmp_path):
    r = CliRunner().invoke(main, ["data", "prepare", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [f"error: {tmp_path / 'nope'}: dataset root not found"]
    assert not (tmp_path / "o").exists()


def test_prepare_refuses_bad_input_size(tmp_path):
    r = CliRunner().invoke(main, ["data", "prepare", "--root", str(tmp_path), "--out", str(tmp_path / "o"),
                                  "--input-size", "100"])
    assert r.exit_code == 2 and "multiple of 32" in r.output


def test_data_show_draws_a_grid(tiny_prepared, tmp_path):
    import cv2

    out = tmp_path / "grid.png"
    r = CliRunner().invoke(main, ["data", "show", str(tiny_prepared), "--out", str(out), "--count", "8"])
    assert r.exit_code == 0, r.output
    img = cv2.imread(str(out))
    assert img.shape == (2 * 192, 4 * 192, 3) and img.std() > 10


def test_prepare_never_replaces_a_folder_that_is_not_prepared_data(tmp_path, tiny_300w_root):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious")
    for extra in ([], ["--force"]):
        r = CliRunner().invoke(main, ["data", "prepare", "--root", str(tiny_300w_root), "--out", str(keep),
                                      "--input-size", "64", "--no-fit-detector", *extra])
        assert r.exit_code == 2 and "is not a prepared folder" in r.output
    assert (keep / "notes.txt").read_text() == "precious"


def test_prepare_validates_ranges_before_work(tmp_path, tiny_300w_root):
    for opt, val in (("--asm-variance", "1.5"), ("--margin", "-0.6")):
        r = CliRunner().invoke(main, ["data", "prepare", "--root", str(tiny_300w_root), "--out", str(tmp_path / "o"),
                                      opt, val])
        assert r.exit_code == 2 and r.output.startswith("error: " + opt)


def test_data_show_with_unknown_extension_is_one_line_error(tiny_prepared, tmp_path):
    r = CliRunner().invoke(main, ["data", "show", str(tiny_prepared), "--out", str(tmp_path / "grid")])
    assert r.exit_code == 2 and r.output.strip().splitlines() == [
        f"error: {tmp_path / 'grid'}: cannot write an image with this extension (use .png or .jpg)"]


def test_atomic_writes_leave_no_temp_files_and_normal_permissions(tmp_path):
    import os
    import stat

    from edgekd.fileio import write_json

    path = write_json(tmp_path / "sub" / "x.json", {"a": 1})
    assert os.listdir(tmp_path / "sub") == ["x.json"] and path.read_text().strip() == '{\n "a": 1\n}'
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_train_options_reach_the_config(tiny_prepared, tmp_path, monkeypatch):
    import edgekd.train

    seen = {}

    def fake_train(prepared, run_dir, cfg, resume=False):
        seen["cfg"] = cfg
        return {}

    monkeypatch.setattr(edgekd.train, "train", fake_train)
    result = CliRunner().invoke(main, ["train", str(tiny_prepared), "--run-dir", str(tmp_path), "--stage", "tough",
                                       "--teacher-arch", "mobilenetv2", "--init-from", str(tmp_path / "b.h5"),
                                       "--stochastic-depth", "0", "--dropout", "0.1", "--lr", "3e-4"])
    assert result.exit_code == 0, result.output
    cfg = seen["cfg"]
    assert (cfg.stage, cfg.teacher_arch, cfg.init_from, cfg.stochastic_depth, cfg.dropout, cfg.learning_rate) == \
        ("tough", "mobilenetv2", str(tmp_path / "b.h5"), 0.0, 0.1, 3e-4)


def test_train_with_missing_init_checkpoint_is_one_line_error(tiny_prepared, tmp_path):
    result = CliRunner().invoke(main, ["train", str(tiny_prepared), "--run-dir", str(tmp_path), "--stage", "baseline",
                                       "--init-from", str(tmp_path / "none.h5")])
    assert result.exit_code == 2 and "none.h5: checkpoint to start from (--init-from) not found" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "baseline").exists()
