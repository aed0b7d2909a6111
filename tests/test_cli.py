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
