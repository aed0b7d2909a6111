"""The CLI as a user meets it: verbs listed, user errors as one line with exit status 2."""
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edgekd.cli.main import main


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


@pytest.mark.parametrize("augment", [[], ["--no-augment"], ["--augment", "light"]])
def test_data_show_draws_a_grid(tiny_prepared, tmp_path, augment):
    import cv2

    out = tmp_path / "grid.png"
    r = CliRunner().invoke(main, ["data", "show", str(tiny_prepared), "--out", str(out), "--count", "8", *augment])
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

    from edgekd.core.fileio import write_json

    path = write_json(tmp_path / "sub" / "x.json", {"a": 1})
    assert os.listdir(tmp_path / "sub") == ["x.json"] and path.read_text().strip() == '{\n "a": 1\n}'
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_train_options_reach_the_config(tiny_prepared, tmp_path, monkeypatch):
    import edgekd.training.train

    seen = {}

    def fake_train(prepared, run_dir, cfg, resume=False, **kw):
        seen["cfg"] = cfg
        return {}

    monkeypatch.setattr(edgekd.training.train, "train", fake_train)
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


# --- issue 15: help texts, one name per concept, run folders, quiet output -----------------------------------------
def _commands(group=None, path=()):
    """(path, command) of every verb, nested groups included."""
    import click

    group = group or main
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def _visible(cmd):
    """Option spellings --help shows (hidden old spellings left out) -> the parameter; arguments by NAME."""
    import click

    names = {}
    for p in cmd.params:
        if isinstance(p, click.Argument):
            names[p.name.upper()] = p
        elif not p.hidden:
            for o in p.opts:
                if o not in getattr(p, "old", ()):
                    names[o] = p
    return names


# One name per concept across verbs: the name, and the verbs that take that concept.
CONCEPTS = {
    "dataset root": ("--root", {("data", "prepare"), ("bench",)}),
    "prepared folder (main input)": ("PREPARED", {("data", "show"), ("data", "teach"), ("train",)}),
    "prepared folder (option)": ("--prepared", {("export",), ("bench",)}),
    "dataset split": ("--split", {("data", "show"), ("bench",)}),
    "flip averaging": ("--tta", {("bench",), ("predict",)}),
    "re-crops from the predicted points": ("--refine", {("bench",), ("predict",)}),
    "output file": ("--out", {("data", "show"), ("data", "teach"), ("export",), ("predict",)}),
    "teachers' flip averaging": ("--teacher-flip", {("data", "teach"), ("train",)}),
    "the teachers' cached outputs": ("--teacher-targets", {("train",)}),
    "output folder": ("--out-dir", {("data", "prepare"), ("bench",)}),
    "run folder name": ("--name", {("data", "show"), ("bench",), ("predict",)}),
    "reuse a run folder": ("--exist-ok", {("data", "show"), ("bench",), ("predict",)}),
    "thread counts": ("--threads", {("bench",), ("predict",)}),
    "dataset format": ("--dataset", {("data", "prepare"), ("bench",)}),
    "augmentation preset": ("--augment", {("data", "show"), ("train",)}),
    "no augmentation": ("--no-augment", {("data", "show"), ("train",)}),
}


def test_every_verb_uses_the_same_names_for_the_same_things():
    import click

    from edgekd.cli.app import ThreadCounts

    verbs = dict(_commands())
    for concept, (name, users) in CONCEPTS.items():
        have = {path for path, cmd in verbs.items() if name in _visible(cmd)}
        assert have == users, f"{concept}: {name} shown by {sorted(have)}, expected {sorted(users)}"
    for path, cmd in verbs.items():
        shown = _visible(cmd)
        assert "--data" not in shown, f"{' '.join(path)} shows --data (a dataset root is --root, a prepared folder " \
                                       f"--prepared)"
        if "--out" in shown:  # a file
            assert isinstance(shown["--out"].type, click.Path) and not shown["--out"].type.dir_okay, path
        if "--out-dir" in shown:  # a folder
            assert isinstance(shown["--out-dir"].type, click.Path) and not shown["--out-dir"].type.file_okay, path
        if "--threads" in shown:
            assert isinstance(shown["--threads"].type, ThreadCounts), path
        if "--augment" in shown:
            assert shown["--augment"].type.choices == _visible(verbs[("train",)])["--augment"].type.choices, path
        if "--dataset" in shown:
            assert shown["--dataset"].type.choices == _visible(verbs[("data", "prepare")])["--dataset"].type.choices


def test_a_new_registry_entry_is_a_choice_of_the_config_and_of_the_command_line(monkeypatch):
    """The registries are the seams: a loss or a backbone registered by a user (after edgekd was imported) is a valid
    setting and a choice of an option made from the config, with no table of names to edit anywhere else."""
    import json

    from edgekd.cli.app import config_options
    from edgekd.core.errors import EdgekdError
    from edgekd.models.backbones import MODELS
    from edgekd.models.losses import LOSSES
    from edgekd.training.config import TrainConfig

    monkeypatch.setitem(LOSSES, "toy-loss", LOSSES["l1"])
    monkeypatch.setitem(MODELS, "toy-net", MODELS["mobilenetv2"])
    TrainConfig(loss="toy-loss", teacher_arch="toy-net", student_arch="toy-net").validate()

    @click.command()
    @config_options(TrainConfig, only=("loss", "teacher_arch", "student_arch"))
    def command(**given):
        click.echo(json.dumps(given))

    r = CliRunner().invoke(command, ["--loss", "toy-loss", "--teacher-arch", "toy-net", "--student-arch", "toy-net"])
    assert r.exit_code == 0 and json.loads(r.output) == {"loss": "toy-loss", "teacher_arch": "toy-net",
                                                          "student_arch": "toy-net"}, r.output
    r = CliRunner().invoke(command, ["--loss", "no-such-loss"])
    assert r.exit_code == 2 and "'no-such-loss' is not one of" in r.output and "'toy-loss'" in r.output
    monkeypatch.delitem(LOSSES, "toy-loss")
    with pytest.raises(EdgekdError, match="'toy-loss'; expected one of l2, l1, wing"):
        TrainConfig(loss="toy-loss").validate()


def test_top_level_help_shows_whole_verb_descriptions_and_required_arguments():
    out = CliRunner().invoke(main, ["--help"]).output
    assert "e.g." not in out and "..." not in out.split("Commands:")[1]
    assert "-q, --quiet" in out and "-v, --verbose" in out
    export_help = CliRunner().invoke(main, ["export", "--help"]).output
    assert "Usage: edgekd export [OPTIONS] CHECKPOINT\n" in export_help  # no [CHECKPOINT]: required
    assert "[required]" in export_help.split("--out FILE")[1].split("--int8")[0]


def test_old_spellings_still_work_but_are_hidden(tiny_300w_root, tmp_path):
    out = tmp_path / "p"
    r = CliRunner().invoke(main, ["-q", "data", "prepare", "--root", str(tiny_300w_root), "--out", str(out),
                                  "--input-size", "64", "--no-fit-detector"])
    assert r.exit_code == 0, r.output
    assert (out / "manifest.json").is_file()
    assert "--out " not in CliRunner().invoke(main, ["data", "prepare", "--help"]).output
    assert "--data " not in CliRunner().invoke(main, ["bench", "--help"]).output  # (--dataset is another option)


def test_rerun_of_prepare_says_already_prepared_in_one_line(tiny_prepared):
    from edgekd.data.prepare import Manifest

    m = Manifest.load(tiny_prepared / "manifest.json")
    r = CliRunner().invoke(main, ["data", "prepare", "--root", m.config["root"], "--out-dir", str(tiny_prepared),
                                  "--input-size", "64"])
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines() == [f"{tiny_prepared}: already prepared with these settings; nothing to do "
                                             f"(--force rewrites it)"]
    assert CliRunner().invoke(main, ["-q", "data", "prepare", "--root", m.config["root"], "--out-dir",
                                     str(tiny_prepared), "--input-size", "64"]).output == ""


def test_run_folders_are_numbered_and_printed(tiny_prepared, tmp_path, monkeypatch):
    from edgekd.core.fileio import next_run_dir

    monkeypatch.chdir(tmp_path)
    for expected in ("exp", "exp2", "exp3"):
        r = CliRunner().invoke(main, ["data", "show", str(tiny_prepared), "--count", "4"])
        assert r.exit_code == 0, r.output
        assert r.output.strip().splitlines()[-1] == f"wrote {Path('runs/show') / expected / 'samples.png'}"
    r = CliRunner().invoke(main, ["data", "show", str(tiny_prepared), "--count", "4", "--name", "exp", "--exist-ok"])
    assert r.output.strip().endswith(f"{Path('runs/show/exp/samples.png')}")
    assert sorted(p.name for p in (tmp_path / "runs" / "show").iterdir()) == ["exp", "exp2", "exp3"]
    assert next_run_dir(tmp_path / "runs" / "show", "night") == tmp_path / "runs" / "show" / "night"


def test_usage_errors_are_one_line(tmp_path):
    for args, words in ((["data", "prepare", "--root", str(tmp_path)], "missing option '--out-dir'"),
                        (["-v", "-q", "data"], "exclude each other"),
                        (["export"], "missing argument 'CHECKPOINT' (usage: edgekd export [OPTIONS] CHECKPOINT")):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and words in r.output, r.output


def test_quiet_hides_notices_and_verbose_shows_debug(tmp_path):
    from edgekd.core.fileio import write_text

    stale = tmp_path / f".x.txt.{2**22 + 12345}.abcdefgh.tmp"  # a pid no process has (above pid_max's default)
    for flag, shown in (("-q", False), (None, True)):
        stale.write_text("left by a kill -9")
        import logging

        from edgekd.core import logs

        logs.setup(-1 if flag else 0)
        try:
            import io
            import sys

            buf, saved = io.StringIO(), sys.stderr
            sys.stderr = buf
            try:
                write_text(tmp_path / "x.txt", "x")
            finally:
                sys.stderr = saved
        finally:
            logs.reset()
        assert ("removed" in buf.getvalue()) == shown and not stale.exists()
        assert logging.getLogger("edgekd").level == logging.NOTSET


NOISY = r"""
import os, sys
from edgekd.core import logs
logs.setup(int(sys.argv[1]))
for line in (b"I0000 00:00:1795816739.735987    7733 port.cc:153] oneDNN custom operations are on.",
             b"E0000 00:00:1795816743.658324    7733 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)",
             b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
             b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
             b"W0000 00:00:1795816717.573597    7271 inference_runner_litert.cc:1433] Input tensor memory is not aligned",
             b"F0000 a fatal native line stays"):
    os.write(2, line + b"\n")
print("python's own stderr", file=sys.stderr)
import time; time.sleep(0.3)
"""


def test_native_library_logs_are_filtered_unless_verbose():
    import subprocess
    import sys

    quiet = subprocess.run([sys.executable, "-c", NOISY, "0"], capture_output=True, text=True, timeout=60)
    assert sorted(quiet.stderr.strip().splitlines()) == ["F0000 a fatal native line stays", "python's own stderr"]
    loud = subprocess.run([sys.executable, "-c", NOISY, "1"], capture_output=True, text=True, timeout=60)
    assert len(loud.stderr.strip().splitlines()) == 7


def test_predict_on_the_shipped_model_prints_no_native_log_lines(tmp_path):
    """TensorFlow Lite, LiteRT and MediaPipe all load here; only edgekd's own lines may reach the terminal."""
    import subprocess
    import sys

    from runtime_helpers import SHIPPED_INT8 as model
    r = subprocess.run([sys.executable, "-m", "edgekd.cli.main", "predict", str(model), "--out", str(tmp_path / "p.png")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.strip() == "", r.stderr
    assert r.stdout.strip().endswith(str(tmp_path / "p.png"))


@pytest.mark.parametrize("load, busy", [(0.1, False), (2.0, True)])
def test_dry_run_names_the_cpu_and_a_busy_machine(tiny_prepared, tmp_path, monkeypatch, load, busy):
    """`train --dry-run` ends with the total and the CPU it was timed on; when the load average before timing was
    at least half the cores, a note says the projection is high (other work shared the cores); nothing is trained."""
    import os

    from edgekd.core.timing import cpu_name

    monkeypatch.setattr(os, "getloadavg", lambda: (load * (os.cpu_count() or 1), 0.0, 0.0))
    r = CliRunner().invoke(main, ["train", str(tiny_prepared), "--run-dir", str(tmp_path / "r"), "--stage",
                                  "baseline", "--dry-run", "--epochs", "1", "--batch-size", "8", "--alpha", "0.35"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    total = next(i for i, line in enumerate(lines) if line.startswith("projected total: "))
    assert lines[total].endswith(f"on this machine ({cpu_name()}, {os.cpu_count()} cores)")
    notes = lines[total + 1:]
    assert bool(notes) == busy and all("busy" in n and "projection is high" in n for n in notes)
    assert not (tmp_path / "r").exists()
