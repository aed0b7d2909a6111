"""Recipes as files: a miniature recipe end to end (every stage in order, its settings recorded, a kill in the middle
stage resumed to the same weights, a command-line override recorded), its plain control, the shipped recipes, and
one-line errors for bad recipe files."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import edgekd.training.train as train_module
from edgekd.recipes import recipe as recipes
from edgekd.recipes import runner
from edgekd.core.checkpoint import LAST, checkpoint_info, load_model
from edgekd.cli.main import main
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import OUTPUT_MARKER

STAGE_FILES = {"config.json", "model_info.json", "log.csv", "best.h5", "last.h5", "summary.json"}
TINY_SETTINGS = {"batch_size": 8, "alpha": 0.35, "steps_per_epoch": 2, "bn_recalibration_samples": 8,
                 "learning_rate": 1e-3, "loss": "l1", "seed": 0}
MINI = {
    "description": "a miniature of the default recipe for tests",
    "input_size": 64,
    "settings": TINY_SETTINGS,
    "stages": {
        "warmup": {"kind": "baseline", "epochs": 1},
        "tough": {"kind": "tough", "from": "warmup", "epochs": 2},
        "tolerant": {"kind": "tolerant", "from": "tough", "epochs": 2, "learning_rate": 3e-4},
        "student": {"kind": "student", "from": "warmup", "epochs": 2, "teacher_flip": True,
                    "kd": {"main": "l1", "teacher_blend": 0.5}},
        "export": {"kind": "export", "from": "student", "modes": ["float32"]},
    },
}


def _write(path, body) -> str:
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def mini_file(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("recipe") / "mini.yaml", MINI)


@pytest.fixture(scope="module")
def mini_run(tiny_prepared, mini_file, tmp_path_factory):
    """The miniature recipe run once, uninterrupted, with one override from the command line."""
    run = tmp_path_factory.mktemp("mini") / "run"
    result = CliRunner().invoke(main, ["train", str(tiny_prepared), "--run-dir", str(run), "--recipe", mini_file,
                                       "student.epochs=3"])
    assert result.exit_code == 0, result.output
    return run, result.output


def _kernels(path):
    return [w for w in load_model(path).get_weights() if w.ndim >= 2]


def test_mini_recipe_runs_every_stage_in_order_with_its_settings(mini_run, mini_file):
    run, output = mini_run
    summary = json.loads((run / "summary.json").read_text())
    assert list(summary["stages"]) == ["warmup", "tough", "tolerant", "student", "export"]
    assert summary["recipe_sha256"] == recipes.load(mini_file).sha256 and summary["overrides"] == ["student.epochs=3"]
    order = [checkpoint_info(run / s / "best.h5")["stage"] for s in ("warmup", "tough", "tolerant", "student")]
    assert order == ["baseline", "tough", "tolerant", "student"]
    config = {s: json.loads((run / s / "config.json").read_text()) for s in ("warmup", "tough", "tolerant", "student")}
    assert config["warmup"]["init_from"] is None
    assert config["tough"]["init_from"] == str((run / "warmup" / "best.h5").resolve())
    assert config["tolerant"]["init_from"] == str((run / "tough" / "best.h5").resolve())
    assert config["tolerant"]["train"]["learning_rate"] == 3e-4 and config["tough"]["train"]["learning_rate"] == 1e-3
    assert config["student"]["train"]["epochs"] == 3  # the override, recorded in the stage that ran it
    assert config["student"]["train"]["kd"]["teacher_blend"] == 0.5 and config["student"]["train"]["teacher_flip"]
    assert config["student"]["teachers"] == {"tough": [str(run / "tough" / "best.h5")],
                                             "tolerant": [str(run / "tolerant" / "best.h5")]}
    assert all(c["train"]["recipe"] == "mini" and c["train"]["alpha"] == 0.35 for c in config.values())
    record = json.loads((run / "recipe.json").read_text())["runs"][0]
    assert record["overrides"] == ["student.epochs=3"] and record["stages"]["student"]["epochs"] == 3
    for name in ("warmup", "tough", "tolerant", "student"):
        stage = summary["stages"][name]
        assert np.isfinite(stage["best_val_nme"]) and stage["stage_seconds"] > 0
    card = json.loads((run / "export" / "student_float32.card.json").read_text())
    assert summary["stages"]["export"]["float32"]["val_nme"] == card["nme"]["tflite"]
    assert card["training"]["recipe_sha256"] == summary["recipe_sha256"]
    assert list(card["training"]["stages"]) == ["warmup", "tough", "tolerant", "student"]
    assert card["training"]["stages"]["student"]["val_nme"] == summary["stages"]["student"]["best_val_nme"]
    assert "## Training" in (run / "export" / "student_float32.card.md").read_text()
    assert re.search(r"student: val NME \d+\.\d{3} %", output)
    # every epoch says its time, the best validation NME and what is left of the stage and of the run
    lines = [line for line in output.splitlines() if "ETA stage" in line]
    assert len(lines) == 1 + 2 + 2 + 3 and all("s val" in line and "(best " in line for line in lines)
    assert "run " in lines[0] and "run " not in lines[-1]  # the last training stage has no later stages
    assert [line.split()[0] for line in lines] == ["warmup"] + ["tough"] * 2 + ["tolerant"] * 2 + ["student"] * 3
    # the Tolerant teacher's line says which NME selects it: its hard NME is log.csv's val_nme, its best the soft one
    tolerant = [line for line in lines if line.startswith("tolerant ")]
    rows = list(csv.DictReader((run / "tolerant" / "log.csv").open()))
    for line, row in zip(tolerant, rows):
        assert f"val NME {float(row['val_nme']):.2f}%, soft {float(row['val_nme_soft']):.2f}%" in line
        assert "(best soft " in line
    for name in ("warmup", "tough", "tolerant", "student"):
        stage_dir = run / name
        assert STAGE_FILES <= {p.name for p in stage_dir.iterdir()}
        rows = list(csv.DictReader((stage_dir / "log.csv").open()))
        assert [int(r["epoch"]) for r in rows] == list(range(1, config[name]["train"]["epochs"] + 1))
        selected = min(rows, key=lambda r: float(r["val_nme_soft" if name == "tolerant" else "val_nme"]))
        assert summary["stages"][name]["best_epoch"] == int(selected["epoch"])
        assert checkpoint_info(stage_dir / "best.h5")["epoch"] == int(selected["epoch"])
    assert {"main", "aloss_tough", "aloss_tol"} <= set(next(csv.DictReader((run / "student" / "log.csv").open())))
    student = load_model(run / "student" / "best.h5")
    assert student.input_shape == (None, 64, 64, 3) and student.output_shape == (None, 136)
    assert json.loads((run / "student" / "model_info.json").read_text())["params"] == student.count_params()


def test_a_kill_in_the_middle_stage_resumes_to_the_same_weights(mini_run, mini_file, tiny_prepared, tmp_path,
                                                                monkeypatch):
    """The finished stages of another run with the same settings are skipped (here copied in: how a second seed of
    the student shares one warm start and one pair of teachers); a kill after the Tolerant teacher's first epoch,
    then --resume, ends with the uninterrupted run's weights."""
    import shutil

    reference, _ = mini_run
    run = tmp_path / "run"
    for stage in ("warmup", "tough"):
        shutil.copytree(reference / stage, run / stage)
    shutil.copy(reference / OUTPUT_MARKER, run / OUTPUT_MARKER)  # the folder is `edgekd train`'s
    loaded = recipes.load(mini_file, ["student.epochs=3"])
    original = train_module.save_checkpoint

    def killed(net, path, info, optimizer=None):
        original(net, path, info, optimizer)
        if path.name == LAST and info["stage"] == "tolerant" and info["epoch"] == 1:
            raise KeyboardInterrupt  # as a kill after the tolerant stage's first epoch was saved

    monkeypatch.setattr(train_module, "save_checkpoint", killed)
    first = []
    with pytest.raises(KeyboardInterrupt):
        runner.run(tiny_prepared, run, loaded, progress=False, echo=first.append)
    monkeypatch.setattr(train_module, "save_checkpoint", original)
    skipped = [f"warmup: already trained ({run / 'warmup' / 'summary.json'}), skipped",
               f"tough: already trained ({run / 'tough' / 'summary.json'}), skipped"]
    assert first[:2] == skipped
    assert not (run / "tolerant" / "summary.json").exists() and (run / "tolerant" / LAST).is_file()
    with pytest.raises(EdgekdError, match="pass --resume"):
        runner.run(tiny_prepared, run, loaded, progress=False, echo=lambda *_: None)
    with pytest.raises(EdgekdError, match="holds no run of this recipe and settings to resume"):
        runner.run(tiny_prepared, run, recipes.load(mini_file, ["seed=1"]), resume=True, progress=False)
    with pytest.raises(EdgekdError, match="started with recipe mini"):
        runner.run(tiny_prepared, run, recipes.load(mini_file, ["seed=1"]), progress=False)
    lines = []
    runner.run(tiny_prepared, run, loaded, resume=True, progress=False, echo=lines.append)
    assert lines[:2] == skipped
    assert json.loads((run / "tolerant" / "config.json").read_text())["resumed_from_epoch"] == 1
    for stage in ("tolerant", "student"):
        for got, want in zip(_kernels(run / stage / "best.h5"), _kernels(reference / stage / "best.h5")):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_the_plain_control_shares_the_warm_start_and_drops_the_teachers(mini_run, mini_file, tiny_prepared):
    run, _ = mini_run
    result = CliRunner().invoke(main, ["-q", "train", str(tiny_prepared), "--run-dir", str(run), "--recipe", mini_file,
                                       "student.epochs=3", "control=true"])
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary-control.json").read_text())
    assert list(summary["stages"]) == ["warmup", "student-control", "export-control"] and summary["control"]
    config = json.loads((run / "student-control" / "config.json").read_text())
    assert config["train"]["stage"] == "baseline" and config["train"]["epochs"] == 3
    assert config["train"]["loss"] == "l1" and not config["train"]["teacher_flip"] and config["teachers"] == {}
    assert config["init_from"] == str((run / "warmup" / "best.h5").resolve())  # the KD student's very start
    assert (run / "export-control" / "student_float32.tflite").is_file()
    # the KD export, written before the control trained, now names the control's validation NME in its card
    card = json.loads((run / "export" / "student_float32.card.json").read_text())
    assert card["training"]["plain_control_val_nme"] == {
        "student-control": summary["stages"]["student-control"]["best_val_nme"]}
    assert "| student-control | plain control |" in (run / "export" / "student_float32.card.md").read_text()


def test_options_given_with_a_recipe_override_every_stage(tiny_prepared, mini_file, tmp_path):
    loaded = recipes.load(mini_file, ["epochs=1", "tough.learning_rate=5e-4", "kd.teacher_blend=0.25"])
    epochs = {s.name: s.settings.get("epochs") for s in loaded.stages}
    assert epochs == {"warmup": 1, "tough": 1, "tolerant": 1, "student": 1, "export": None}
    assert loaded.stage("tough").settings["learning_rate"] == 5e-4
    assert loaded.stage("tolerant").settings["learning_rate"] == 3e-4
    assert loaded.stage("student").settings["kd"] == {"main": "l1", "teacher_blend": 0.25}
    run = tmp_path / "r"
    result = CliRunner().invoke(main, ["train", str(tiny_prepared), "--run-dir", str(run), "--recipe", mini_file,
                                       "--init-from", "x.h5"])
    assert result.exit_code == 2 and "--init-from: a recipe's stages start from each other" in result.output


def test_dry_run_projects_every_stage_from_real_steps(tiny_prepared, mini_file, monkeypatch):
    """Each stage is timed on its own network (a teacher stage on the teacher's), and a network is timed once: here
    the teachers have dropout, so the warm start and the student share one plain step, the two teachers another."""
    import edgekd.training.projection as projection

    loaded = recipes.load(mini_file, ["student.epochs=3", "dropout=0.1"])
    built, build_stage = [], projection.build_stage
    monkeypatch.setattr(projection, "build_stage",
                        lambda cfg, *a: built.append(cfg.network()) or build_stage(cfg, *a))
    rows = runner.project(tiny_prepared, loaded, timed_steps=1)
    assert [r["stage"] for r in rows] == ["warmup", "tough", "tolerant", "student", "export"]
    student_net, teacher_net = (loaded.train_config(loaded.stage(s), ".").network() for s in ("warmup", "tough"))
    assert teacher_net.dropout == 0.1 and student_net.dropout == 0.0
    assert built == [student_net, teacher_net, student_net]  # the student's net again: its KD step with stand-ins
    plain = [r["plain_seconds_per_step"] for r in rows[:4]]
    assert plain[0] == plain[3] and plain[1] == plain[2]
    student = rows[3]
    assert student["steps"] == 3 * 2 and student["plain_seconds_per_step"] > 0
    assert student["projected_seconds"] == round(1.15 * student["seconds_per_step"] * 6)
    assert rows[4]["steps"] == 0 and rows[4]["projected_seconds"] == round(runner.EXPORT_SECONDS)  # float32 only


def test_dry_run_refuses_a_batch_that_cannot_fit_before_timing_it(tiny_prepared, mini_file, monkeypatch):
    """As a run does before its first stage: the dry run names the batch and the estimate, and builds nothing."""
    import edgekd.models.backbones as backbones

    monkeypatch.setattr(backbones, "machine_memory", lambda: 1 << 20)  # a 1 MiB machine
    monkeypatch.setattr(runner, "dry_run", lambda *a, **k: pytest.fail("timed a batch that cannot fit"))
    with pytest.raises(EdgekdError, match=r"^--batch-size 8: a training batch of 64 px crops needs about"):
        runner.project(tiny_prepared, recipes.load(mini_file))


def test_shipped_recipes_load_and_project(tiny_prepared):
    assert {"default", "paper"} <= set(recipes.available())
    default = recipes.load("default")
    assert [s.kind for s in default.stages] == ["baseline", "tough", "tolerant", "tough", "tough", "student", "export"]
    student = default.train_config(default.stage("student"), "run")
    assert student.kd.main != "paper" and student.teacher_flip and default.stage("export").settings["modes"] == \
        ["float32", "qat"] and not default.stage("export").settings.get("float_head")
    # its Tough teacher: the ensemble of two plain refines of the Tough stage, with other seeds
    best = lambda name: str(Path("run", name, "best.h5"))  # noqa: E731
    assert student.teacher_checkpoints == {"tough": [best("refine0"), best("refine1")], "tolerant": [best("tolerant")]}
    assert {default.train_config(default.stage(r), "run").seed for r in ("refine0", "refine1")} == {0, 1}
    assert [s.name for s in recipes.as_control(default).stages] == ["warmup", "tough", "student-control",
                                                                    "export-control"]
    paper = recipes.load("paper")
    assert paper.input_size == 224 and paper.train_config(paper.stage("tough"), "r").network().arch == "efficientnet-b3"
    with pytest.raises(EdgekdError, match=r"prepared at 64 px, but recipe default trains at 128 px; .*--input-size 128"):
        runner.project(tiny_prepared, default)


def test_a_shipped_recipe_is_recorded_by_its_place_in_the_package(mini_file, tmp_path, monkeypatch):
    """A run and a card name a shipped recipe ``edgekd/recipes/NAME.yaml`` (the same on every machine), which loads
    back from any folder to the same file; a user's file is named by its absolute path."""
    monkeypatch.chdir(tmp_path)
    default = recipes.load("default")
    assert default.source == "edgekd/recipes/default.yaml"
    assert recipes.load(default.source).sha256 == default.sha256 == recipes.load(
        str(recipes.RECIPES_DIR / "default.yaml")).sha256
    assert recipes.load(mini_file).source == str(Path(mini_file).resolve())


def test_a_stage_starts_from_a_model_file_to_fine_tune(mini_run, tiny_prepared, tmp_path):
    """``from: PATH`` fine-tunes a trained model (recipes/finetune.yaml starts from the shipped student); the command
    line moves the start (``ft.from=...``) or drops it (``ft.from=``: the same stage from scratch, to compare)."""
    run, _ = mini_run
    start = run / "warmup" / "best.h5"
    body = {"input_size": 64, "settings": TINY_SETTINGS,
            "stages": {"ft": {"kind": "baseline", "from": str(start), "epochs": 1},
                       "export": {"kind": "export", "from": "ft", "modes": ["float32"]}}}
    path = _write(tmp_path / "ft.yaml", body)
    r = CliRunner().invoke(main, ["train", str(tiny_prepared), "--run-dir", str(tmp_path / "a"), "--recipe", path])
    assert r.exit_code == 0, r.output
    recorded = json.loads((tmp_path / "a" / "ft" / "config.json").read_text())["train"]
    assert recorded["init_from"] == str(start) and recorded["stage"] == "baseline"
    assert json.loads((tmp_path / "a" / "recipe.json").read_text())["runs"][0]["stages"]["ft"]["from"] == str(start)
    card = json.loads((tmp_path / "a" / "export" / "ft_float32.card.json").read_text())  # no KD student: no control
    assert card["training"]["plain_control_val_nme"] is None and "ft" in card["training"]["stages"]
    scratch = recipes.load(path, ["ft.from="])
    assert scratch.train_config(scratch.stage("ft"), "r").init_from is None
    finetune = recipes.load("finetune")  # the shipped recipe starts from the shipped student
    assert finetune.train_config(finetune.stage("student"), "r").init_from == "models/300w/kd_student_float32.tflite"
    assert recipes.as_control(recipes.load("default")).stage("warmup").start is None


def test_the_control_of_a_student_refined_from_its_tough_teacher_keeps_that_start(tmp_path):
    body = json.loads(json.dumps(MINI))
    body["stages"]["student"]["from"] = "tough"
    control = recipes.as_control(recipes.load(_write(tmp_path / "refine.yaml", body)))
    assert [(s.name, s.kind, s.start) for s in control.stages] == [
        ("warmup", "baseline", None), ("tough", "tough", "warmup"), ("student-control", "baseline", "tough"),
        ("export-control", "export", "student-control")]
    default = recipes.as_control(recipes.load(_write(tmp_path / "mini.yaml", MINI)))
    assert [s.name for s in default.stages] == ["warmup", "student-control", "export-control"]


def test_the_control_keeps_every_stage_its_student_starts_from_through_a_teacher(tmp_path):
    """A student refined from a stage that also teaches it (a plain refine of the Tough teacher): the control keeps
    that stage and the stages it starts from, and leaves out the teachers nothing starts from."""
    body = json.loads(json.dumps(MINI))
    stages = body["stages"]
    body["stages"] = {"warmup": stages["warmup"], "tough": stages["tough"], "tolerant": stages["tolerant"],
                      "refine": {"kind": "baseline", "from": "tough", "epochs": 1},
                      "student": {**stages["student"], "from": "refine", "teachers": {"tough": ["refine", "tough"]}},
                      "export": stages["export"]}
    control = recipes.as_control(recipes.load(_write(tmp_path / "refined.yaml", body)))
    assert [(s.name, s.kind, s.start) for s in control.stages] == [
        ("warmup", "baseline", None), ("tough", "tough", "warmup"), ("refine", "baseline", "tough"),
        ("student-control", "baseline", "refine"), ("export-control", "export", "student-control")]


def test_an_ensemble_of_stages_that_train_the_same_network_is_refused():
    """Training is deterministic: two teacher stages with the same start and settings are one network twice. A
    recipe-wide ``seed=1`` makes the default recipe's two refines so, and is refused with the override to use."""
    with pytest.raises(EdgekdError, match=r"default.yaml: stages.student.teachers.tough: 'refine0' and 'refine1' "
                                          r"train the same network .*`refine1.seed=N`, not `seed=N`"):
        recipes.load("default", ["seed=1"])
    another = recipes.load("default", ["student.seed=1"])  # another seed of the student: its teachers unchanged
    assert another.train_config(another.stage("student"), "r").seed == 1
    assert recipes.load("default", ["seed=1", "refine1.seed=2"]).stage("refine1").settings["seed"] == 2


def test_teacher_checkpoints_name_every_role_the_stage_runs():
    from edgekd.training.config import TrainConfig

    with pytest.raises(EdgekdError, match="expected one or more checkpoints for each of tough, tolerant"):
        TrainConfig(stage="student", teacher_checkpoints={"tough": ["a.h5"]}).validate()
    TrainConfig(stage="student", teacher_checkpoints={"tough": ["a.h5", "b.h5"], "tolerant": ["c.h5"]}).validate()


def test_a_student_learns_from_an_ensemble_of_the_stages_its_teachers_name(tiny_prepared, tmp_path):
    """``teachers: {tough: [tough, peer]}``: the student's Tough teacher is the ensemble of both stages (the Tolerant
    one stays the stage named tolerant); its config records each role's checkpoints; the dry run prices three
    teacher networks; the plain control leaves the peer out with the other teachers."""
    body = json.loads(json.dumps(MINI))
    stages = body["stages"]
    body["stages"] = {"warmup": stages["warmup"], "tough": stages["tough"],
                      "peer": {"kind": "tough", "from": "warmup", "epochs": 1, "seed": 1},
                      "tolerant": stages["tolerant"],
                      "student": {**stages["student"], "epochs": 1, "teachers": {"tough": ["tough", "peer"]}},
                      "export": stages["export"]}
    path = _write(tmp_path / "ensemble.yaml", body)
    loaded = recipes.load(path)
    assert loaded.stage("student").teacher_stages() == {"tough": ["tough", "peer"], "tolerant": ["tolerant"]}
    assert [s.name for s in recipes.as_control(loaded).stages] == ["warmup", "student-control", "export-control"]
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["-q", "train", str(tiny_prepared), "--run-dir", str(run), "--recipe", path])
    assert result.exit_code == 0, result.output
    config = json.loads((run / "student" / "config.json").read_text())
    expected = {"tough": [str((run / n / "best.h5").resolve()) for n in ("tough", "peer")],
                "tolerant": [str((run / "tolerant" / "best.h5").resolve())]}
    assert config["train"]["teacher_checkpoints"] == expected
    assert {role: sorted(paths) for role, paths in config["teachers"].items()} == \
        {role: sorted(paths) for role, paths in expected.items()}
    from edgekd.training.projection import stage_cost, teacher_members

    cfg = loaded.train_config(loaded.stage("student"), run)
    assert teacher_members(cfg) == 1.5 and stage_cost(cfg, "student") > stage_cost(
        loaded.train_config(recipes.load(_write(tmp_path / "mini.yaml", MINI)).stage("student"), run), "student")


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["stages"].update(distil={"kind": "distill"}), r"stages\.distil\.kind: 'distill'; expected one of"),
    (lambda r: r["stages"]["tough"].update(lr=1e-3), r"stages\.tough\.lr: unknown key; expected one of"),
    (lambda r: r["stages"]["tough"].update(epochs="ten"), r"stages\.tough\.epochs: expected an integer, got 'ten'"),
    (lambda r: r["settings"].update(teacher_flip="yes"), r": settings\.teacher_flip: expected true or false"),
    (lambda r: r["stages"].pop("tolerant"), r"stages\.student: a KD student needs a stage named 'tolerant'"),
    (lambda r: r["stages"]["student"].update({"from": "later"}), r"stages\.student\.from: 'later' is not a stage"),
    (lambda r: r["stages"]["tough"].update(loss="l3"), r"stages\.tough: unknown loss 'l3'"),
    (lambda r: r["stages"]["student"]["kd"].update(weight=2), r"stages\.student\.kd\.weight: unknown key"),
    (lambda r: r["stages"]["export"].update(modes=["int4"]), r"stages\.export\.modes: \['int4'\]; expected"),
    (lambda r: r.pop("input_size"), r": input_size: missing"),
    (lambda r: r["stages"]["export"].update(qat_schedule="cosin"), r"stages\.export: qat_schedule 'cosin'"),
    (lambda r: r["stages"]["export"].update(tolerance=-1), r"stages\.export: tolerance"),
    (lambda r: r["stages"].update({"../out": {"kind": "baseline"}}), r"stages\.\.\./out: a stage name is a folder"),
    (lambda r: r["stages"].update({"seed": {"kind": "baseline"}}), r"stages\.seed: a stage name"),
    (lambda r: r["stages"]["warmup"].update({"from": "none/start.h5"}), r"stages\.warmup\.from: none/start\.h5: no "
                                                                        r"such model file"),
    (lambda r: r["stages"]["export"].update({"from": "models/300w/kd_student_float32.tflite"}),
     r"stages\.export\.from: an export stage exports a training stage"),
    (lambda r: r["stages"]["tough"].update(teachers={"tough": ["warmup"]}),
     r"stages\.tough\.teachers: only a KD student"),
    (lambda r: r["stages"]["student"].update(teachers={"tough": ["tolerant"]}),
     r"stages\.student\.teachers\.tough: 'tolerant' is of kind tolerant; expected a stage trained on the ground"),
    (lambda r: (r["stages"]["student"].update(teachers={"tough": ["tough"]}), r["stages"].pop("tolerant")),
     r"stages\.student\.teachers\.tolerant: 'tolerant' is not a training stage before it \(not given: the stage "
     r"named 'tolerant'\)"),
    (lambda r: r["stages"]["student"].update(teachers={"teacher": ["tough"]}),
     r"stages\.student\.teachers\.teacher: unknown role; expected one of tough, tolerant"),
    (lambda r: r["stages"]["student"].update(teachers={"tough": ["tough", "tough"]}),
     r"stages\.student\.teachers\.tough: expected a stage name or a list of different stage names"),
    (lambda r: r["stages"]["student"].update(teachers={"tough": ["export"]}),
     r"stages\.student\.teachers\.tough: 'export' is not a training stage before it"),
    (lambda r: r["stages"]["student"].update(teachers=["tough"]),
     r"stages\.student\.teachers: expected a mapping of tough and/or tolerant to stage names"),
])
def test_bad_recipe_files_get_one_line_naming_file_and_key(tmp_path, edit, message):
    body = json.loads(json.dumps(MINI))
    edit(body)
    path = _write(tmp_path / "bad.yaml", body)
    with pytest.raises(EdgekdError) as err:
        recipes.load(path)
    text = str(err.value)
    assert text.startswith(path) and "\n" not in text and re.search(message, text), text


def test_a_key_given_twice_is_refused(tmp_path):
    text = yaml.safe_dump(MINI, sort_keys=False).replace("  tolerant:", "  tough:\n    kind: tough\n    epochs: 1\n"
                                                         "  tolerant:", 1)
    (tmp_path / "twice.yaml").write_text(text)
    with pytest.raises(EdgekdError, match=r"twice\.yaml: not valid YAML \(line \d+\): the key 'tough' is given twice"):
        recipes.load(tmp_path / "twice.yaml")


def test_the_cli_maps_kd_options_to_their_own_keys(tiny_prepared, mini_file, tmp_path, monkeypatch):
    """An option given on the command line wins over the recipe even where its value is KDLossConfig's default."""
    seen = {}
    monkeypatch.setattr(runner, "run", lambda prepared, run_dir, loaded, **kw: seen.setdefault("r", loaded) and {})
    args = ["train", str(tiny_prepared), "--run-dir", str(tmp_path / "r"), "--recipe", mini_file]
    result = CliRunner().invoke(main, [*args, "--teacher-blend", "0", "--seed", "0"])
    assert "r" in seen, result.output
    student = seen.pop("r").stage("student").settings
    assert student["kd"] == {"main": "l1", "teacher_blend": 0.0} and student["seed"] == 0
    result = CliRunner().invoke(main, [*args, "--main-loss", "wing", "--loss-variant", "paper-figure"])
    assert "r" in seen, result.output
    kd = seen.pop("r").stage("student").settings["kd"]
    assert kd["main"] == "wing" and kd["c"] == 0.4 and kd["ramp"] is True and kd["teacher_blend"] == 0.5


def test_a_run_folder_is_bound_to_its_data_and_its_recipe(mini_run, mini_file, tiny_300w_root, tmp_path):
    from edgekd.data.prepare import PrepareConfig, prepare

    run, _ = mini_run
    other = tmp_path / "other"  # the same faces and size, another validation split: other data
    prepare(PrepareConfig(dataset="300w", root=str(tiny_300w_root), input_size=64, val_fraction=0.2), other,
            progress=False)
    with pytest.raises(EdgekdError, match="trained on other prepared data"):
        runner.run(other, run, recipes.load(mini_file, ["student.epochs=3"]), resume=True, progress=False)
    with pytest.raises(EdgekdError, match=r"--resume: .* holds no run of this recipe and settings to resume \(found: "
                                          r"mini"):
        runner.run(other, run, recipes.load(mini_file, ["student.epochs=4"]), resume=True, progress=False)


def test_bad_recipe_names_and_overrides_in_the_cli(tiny_prepared, mini_file, tmp_path):
    (tmp_path / "broken.yaml").write_text("stages: [unclosed\n")
    for args, message in [
        (["--recipe", "nonesuch"], f"--recipe nonesuch: expected a recipe name ({', '.join(recipes.available())}"),
        (["--recipe", str(tmp_path / "broken.yaml")], "broken.yaml: not valid YAML (line 2)"),
        (["--recipe", mini_file, "epochs"], "override 'epochs': expected KEY=VALUE or STAGE.KEY=VALUE"),
        (["--recipe", mini_file, "export.epochs=3"], "override 'export.epochs=3': epochs is not a setting of stage "
                                                      "export"),
        (["--recipe", mini_file, "warmup.epochs=many"], "stages.warmup.epochs: expected an integer, got 'many'"),
    ]:
        result = CliRunner().invoke(main, ["train", str(tiny_prepared), "--run-dir", str(tmp_path / "r"), *args])
        assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output, result.output
        assert not (tmp_path / "r").exists()
