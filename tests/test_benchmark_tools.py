"""The tools behind benchmarks/README.md: the op profiler's cut models, the ablation table's bookkeeping, the recipe
timing, KD against plain over seeds and the same-weights check."""
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import SHIPPED_INT8

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    """benchmarks/NAME.py, or benchmarks/FOLDER/NAME.py given as "FOLDER/NAME"."""
    spec = importlib.util.spec_from_file_location(Path(name).name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profile_cuts_run_exactly_the_ops_before_them():
    from tensorflow.lite.tools import flatbuffer_utils

    from edgekd.core.interpreter import make_interpreter

    profile = _load("profile_ops")
    model = flatbuffer_utils.read_model(str(SHIPPED_INT8))
    names, points = profile.op_names(model), profile.cut_points(model)
    assert len(names) == 66 and points[-1] == len(names) - 1
    assert names[points[0]] == "DEPTHWISE_CONV_2D"  # the input scaling, before the first conv
    # a residual block's inner ops are no cut points: the ADD needs the block's input too
    assert len(points) < len(names) and names.count("ADD") == 10
    full, _ = make_interpreter(SHIPPED_INT8)
    x = np.random.default_rng(0).integers(-128, 128, full.get_input_details()[0]["shape"], dtype=np.int8)
    for k in (points[3], points[-1]):
        cut, _ = make_interpreter(content=profile.cut(model, k))
        assert len(cut.get_output_details()) == 1
        cut.set_tensor(cut.get_input_details()[0]["index"], x)
        cut.invoke()
        if k == points[-1]:
            full.set_tensor(full.get_input_details()[0]["index"], x)
            full.invoke()
            np.testing.assert_array_equal(cut.get_tensor(cut.get_output_details()[0]["index"]),
                                          full.get_tensor(full.get_output_details()[0]["index"]))
    rows = profile.aligned(["dw", "conv", "conv dw conv add", "fc", "deq"], np.array([0.1, 0.2, 0.3, 0.05, 0.01]))
    assert [r[0] for r in rows] == ["input scaling (dw)", "conv", "conv dw conv add", "fc", "output (deq)"]
    assert sum(v for _, v in rows) == pytest.approx(0.66)


def test_ablation_rows_from_stage_folders(tmp_path):
    table = _load("ablation_table")
    for name, stage, loss, kd in (("paper", "baseline", "l2", None), ("kd", "student", "l1", {"ramp": True})):
        d = tmp_path / name / stage
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"best_val_nme": 5.5, "best_epoch": 3, "epochs": 4,
                                                    "seconds": 600.0, "checkpoint": "best.h5"}))
        train = {"stage": stage, "loss": loss, "batch_size": 32, "steps_per_epoch": None, "schedule": "cosine",
                 "head_init": "default", "input_norm": False, "augment_preset": "full", "bn_momentum": None,
                 "learning_rate": 1e-3, "teacher_flip": False, "kd": kd}
        (d / "config.json").write_text(json.dumps({"train": train, "data": {"counts": {"train": 100},
                                                                             "input_size": 128}}))
        (d / "log.csv").write_text("epoch,seconds,eval_seconds,val_nme\n1,10,2,9\n2,20,2,7\n3,30,2,6\n4,99,2,5.5\n")
    rows = table.finished([tmp_path / "kd" / "student", tmp_path / "paper" / "baseline", tmp_path / "missing"])
    assert [r["run"] for r in rows] == ["paper", "kd/student"]  # the ablation's order first, unfinished left out
    paper = rows[0]
    assert paper["steps"] == 4 * 4 and paper["median_epoch_minutes"] == pytest.approx(4 * 27 / 60)
    assert rows[1]["loss"] == "KD-Loss (paper-figure constants, main paper)"
    assert table.last_epochs_mean(tmp_path / "paper" / "baseline" / "log.csv", k=2) == pytest.approx(5.75)
    for r in rows:
        r["test_nme"], r["last10_val_nme"] = 4.2, 6.875
    rows[1]["test_nme"] = None  # a choice made on validation: the test set was not read
    text = table.table(rows)
    assert "| paper | l2 | cosine | gap (default) | 128 | [0, 1] | full | 5.500 | 6.875 | 4.20 | 16 | 1.8 |" in text
    assert "| 5.500 | 6.875 | not read | 16 |" in text


def test_ship_model_copies_the_model_and_says_where_it_came_from(tmp_path):
    ship = _load("ship_model")
    src = tmp_path / "export" / "plain_long_qat_int8.tflite"
    src.parent.mkdir()
    src.write_bytes(b"TFL3 model bytes")
    src.with_suffix(".card.json").write_text(json.dumps({"model": src.name, "nme": {"tflite": 4.6}}))
    src.with_suffix(".card.md").write_text(f"# {src.name}\n\n| quantization | int8-qat |\n")
    target = tmp_path / "models" / "student_qat_int8.tflite"
    target.parent.mkdir()
    ship.ship(src, target, "chosen on validation NME")
    assert target.read_bytes() == src.read_bytes()
    card = json.loads(target.with_suffix(".card.json").read_text())
    assert card["nme"] == {"tflite": 4.6} and card["shipped_as"]["exported_as"] == str(src)
    assert card["model"] == "student_qat_int8.tflite"
    md = target.with_suffix(".card.md").read_text()
    assert md.startswith("# student_qat_int8.tflite\n") and md.rstrip().endswith("chosen on validation NME.")
    with pytest.raises(SystemExit, match="card"):
        ship.ship(tmp_path / "export" / "missing.tflite", target, "x")


def test_ship_model_can_carry_a_refitted_detector_mapping(tmp_path, tiny_prepared):
    """--prepared: the same network bytes with the prepared folder's detector mapping, cards updated to match;
    keypoint weights travel in the metadata; another margin is refused."""
    import dataclasses
    import hashlib

    from runtime_helpers import build_tiny_models

    from edgekd.core import metadata
    from edgekd.core.crop import CropSpec
    from edgekd.data.pipeline import PreparedData
    from edgekd.core.errors import ModelError
    from edgekd.export.exporter import render_card

    ship = _load("ship_model")
    src = build_tiny_models(tmp_path / "tiny")["float"]
    meta = metadata.read(src)
    card = json.loads(SHIPPED_INT8.with_suffix(".card.json").read_text())  # a real card, for the tiny model
    card.update(model=src.name, metadata=json.loads(meta.to_json()))
    src.with_suffix(".card.json").write_text(json.dumps(card))
    src.with_suffix(".card.md").write_text(render_card(card))
    target = tmp_path / "models" / "student_float32.tflite"
    target.parent.mkdir()
    ship.ship(src, target, "chosen on validation NME", prepared=tiny_prepared)
    shipped = metadata.read(target)
    assert shipped.crop == PreparedData.open(tiny_prepared).crop != meta.crop  # the fitted offset and scale
    assert dataclasses.replace(shipped, crop=meta.crop) == meta  # nothing else changed
    new_card = json.loads(target.with_suffix(".card.json").read_text())
    assert new_card["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert new_card["size_bytes"] == target.stat().st_size and new_card["metadata"] == json.loads(shipped.to_json())
    assert new_card["shipped_as"]["detector_mapping_from"] == str(tiny_prepared.resolve())
    md = target.with_suffix(".card.md").read_text()
    assert md.startswith("# student_float32.tflite\n") and new_card["sha256"] in md

    weights = tuple((0.01 * i,) * 15 for i in range(3))
    with_kp = dataclasses.replace(meta.crop, detector_keypoint_weights=weights)
    model, carried = metadata.with_detector_mapping(src.read_bytes(), with_kp)
    assert metadata.read_bytes(model).crop.detector_keypoint_weights == weights == carried.crop.detector_keypoint_weights
    assert model.count(b'"num_points"') == 1  # the old metadata is replaced, not left behind
    with pytest.raises(ModelError, match="margin 0.15; the new mapping is for input 64 px, margin 0.3"):
        metadata.with_detector_mapping(src.read_bytes(), CropSpec(input_size=64, margin=0.3))
    with pytest.raises(ModelError, match="input 64 px, margin 0.15; the new mapping is for input 96 px"):
        metadata.with_detector_mapping(src.read_bytes(), CropSpec(input_size=96, margin=0.15))


def test_average_weights_writes_the_mean_network_and_refuses_mismatches(tmp_path):
    from runtime_helpers import tiny_keras

    from edgekd.core.checkpoint import checkpoint_info, load_model, save_checkpoint
    from edgekd.core.errors import EdgekdError

    soup = _load("average_weights")
    paths = []
    for seed in (1, 2):
        paths.append(tmp_path / f"run{seed}" / "best.h5")
        paths[-1].parent.mkdir()
        save_checkpoint(tiny_keras(seed=seed), paths[-1], {"scheme": "300w", "prepared": "/p", "val_nme": 4.0 + seed})
        (paths[-1].parent / "config.json").write_text(json.dumps({"train": {"loss": ["l1", "wing"][seed - 1]}}))
    out = tmp_path / "soup" / "best.h5"
    info = soup.average(paths, out, bn_samples=0)  # the tiny network has no BatchNorm
    got = load_model(out).get_weights()
    for w, a, b in zip(got, *(load_model(p).get_weights() for p in paths)):
        np.testing.assert_allclose(w, (a + b) / 2, rtol=1e-6)
    assert checkpoint_info(out) == info and info["prepared"] == "/p" and "val_nme" not in info
    assert info["averaged_from"] == [str(p) for p in paths] and info["bn_recalibration_samples"] == 0
    config = json.loads((out.parent / "config.json").read_text())  # what export --qat fine-tunes with
    assert config["train"] == {"loss": "l1"} and config["averaged_from"] == info["averaged_from"]
    with pytest.raises(EdgekdError, match=r"run1/best.h5: the prepared data it was trained on \(/p\) is not there"):
        soup.average(paths, tmp_path / "y.h5")
    snapshot = tmp_path / "snaps" / "ep3.h5"  # a copy of a run's checkpoint, without the run's config.json
    snapshot.parent.mkdir()
    shutil.copy(paths[0], snapshot)
    with pytest.raises(EdgekdError, match=r"ep3.h5: no config.json of its run beside it"):
        soup.average([snapshot, paths[1]], tmp_path / "z.h5")
    assert not (tmp_path / "z.h5").exists()
    wflw = tmp_path / "wflw.h5"
    save_checkpoint(tiny_keras(98), wflw, {})
    with pytest.raises(EdgekdError, match=r"wflw.h5: not the same network"):
        soup.average([paths[0], wflw], tmp_path / "x.h5")
    with pytest.raises(EdgekdError, match=r"is one of the inputs"):
        soup.average(paths, paths[1])


def test_quantization_table_ranks_int8_files_per_network(tmp_path, capsys):
    table = _load("quantization_table")

    def card(name, network, mode, keras, tflite, qat=None, calibration=None, seed=None):
        quant = {"mode": mode, **({"qat": qat} if qat else {}),
                 **({"calibration": f"{calibration} augmented training crops"} if calibration else {})}
        (tmp_path / f"{name}.card.json").write_text(json.dumps({
            "model": f"{name}.tflite", "checkpoint": f"/runs/{network}/baseline/best.h5", "quantization": quant,
            "nme": {"keras": keras, "tflite": tflite}, **({"config": {"seed": seed}} if seed is not None else {})}))
        return tmp_path / f"{name}.card.json"

    paths = [card("a_f32", "a", "float32", 4.10, 4.10), card("a_ptq", "a", "int8", 4.10, 4.15, calibration="300"),
             card("a_qat", "a", "qat", 4.10, 4.13, {"epochs": 6, "learning_rate": 1e-5, "target": "float",
                                                    "schedule": "cosine"}),
             card("b_qat", "b", "qat", 4.20, 4.27, {"epochs": 3, "learning_rate": 1e-5})]
    rows = table.collect(paths)
    assert [r["network"] for r in rows] == ["a/baseline", "b/baseline"]
    folder = json.loads(paths[-1].read_text())  # export also takes a stage folder: the same network, one row
    folder["checkpoint"], folder["model"] = "/runs/b/baseline", "b_ptq.tflite"
    (tmp_path / "b_folder.card.json").write_text(json.dumps(folder))
    assert [r["network"] for r in table.collect(paths + [tmp_path / "b_folder.card.json"])] == ["a/baseline",
                                                                                               "b/baseline"]
    assert [r["file"] for r in rows[0]["int8"]] == ["a_qat.tflite", "a_ptq.tflite"]  # best int8 first
    assert rows[0]["int8"][0]["cost"] == pytest.approx(0.03)
    assert rows[1]["int8"][0]["recipe"] == "QAT fitting the truth, 3 epochs at 1e-05 constant"  # older cards
    assert rows[0]["int8"][1]["recipe"] == "PTQ (300 calibration crops)"
    seeded = card("a_qat1", "a", "qat", 4.10, 4.12, {"epochs": 6, "learning_rate": 1e-5, "target": "float",
                                                      "schedule": "cosine"}, seed=1)
    assert table.collect([seeded])[0]["int8"][0]["recipe"] == "QAT fitting the float, 6 epochs at 1e-05 cosine, seed 1"
    assert table.main([str(p) for p in paths] + ["--out", str(tmp_path / "t")]) == 0
    assert "| a/baseline | 4.100 | `a_qat.tflite` | QAT fitting the float, 6 epochs at 1e-05 cosine | 4.130 | +0.030 |" in \
        (tmp_path / "t.md").read_text()
    (tmp_path / "bad.card.json").write_text("{}")
    assert table.main([str(tmp_path / "bad.card.json")]) == 2
    assert "bad.card.json: not an edgekd model card" in capsys.readouterr().err


def test_recipe_time_cuts_every_stage_and_times_more_qat_epochs():
    """The timing run of a recipe: each training stage cut to the timed epochs (averaging over fewer of them), each
    export with one QAT epoch and a twin with four (a third of their difference is one QAT epoch); the recipe
    itself unchanged."""
    from edgekd.recipes import recipe as recipes

    timing = _load("recipe_time")
    default = recipes.load("default")
    cut = timing.timing_recipe(default, 3)
    assert [s.name for s in cut.stages] == [s.name for s in default.stages] + ["export-qat4"]
    assert all(s.settings["epochs"] == 3 for s in cut.stages if s.kind != "export")
    assert cut.stage("student").settings["average_last"] == 2 and "average_last" not in cut.stage("tolerant").settings
    assert cut.stage("export").settings["qat_epochs"] == 1 and cut.stage("export").settings["modes"] == ["float32", "qat"]
    twin = cut.stage("export-qat4")
    assert twin.settings["qat_epochs"] == 4 and twin.settings["modes"] == ["qat"] and twin.start == "student"
    assert default.stage("student").settings["epochs"] == 40


def test_recipe_time_reads_a_finished_runs_own_stage_times(tmp_path, monkeypatch):
    """--run: each stage's epochs and wall time from the run folder itself, the recipe loaded with the run's recorded
    overrides and priced by the dry run beside it; a changed recipe file or an unfinished run is refused."""
    import os

    import yaml
    from edgekd.recipes import runner

    timing = _load("recipe_time")
    recipe_file = tmp_path / "two.yaml"
    recipe_file.write_text(yaml.safe_dump({"input_size": 64, "settings": {"batch_size": 8}, "stages": {
        "warmup": {"kind": "baseline", "epochs": 2},
        "export": {"kind": "export", "from": "warmup", "modes": ["float32"]}}}, sort_keys=False))
    from edgekd.recipes import recipe as recipes

    recipe = recipes.load(str(recipe_file), ["warmup.epochs=3"])
    run = tmp_path / "run"
    (run / "warmup").mkdir(parents=True)
    (run / "export").mkdir()
    (run / "warmup" / "log.csv").write_text("epoch,seconds,eval_seconds\n1,30.0,2.0\n2,20.0,1.0\n3,22.0,1.0\n")
    for name, when in (("warmup/config.json", 1000), ("warmup/summary.json", 1090), ("export/done.json", 1130),
                       ("export/warmup_float32.card.json", 1500)):  # a card rewritten by the control, later
        (run / name).write_text("{}")
        os.utime(run / name, (when, when))
    summary = {"recipe_file": str(recipe_file), "recipe_sha256": recipe.sha256, "overrides": ["warmup.epochs=3"],
               "stages": {"warmup": {"best_val_nme": 9.0}, "export": {"float32": {"seconds": 35.0},
                                                                      "stage_seconds": 35.0}}}
    (run / "summary.json").write_text(json.dumps(summary))
    loaded, stages = timing.from_run(run)
    assert loaded.stage("warmup").settings["epochs"] == 3 and loaded.overrides == ("warmup.epochs=3",)
    assert stages["warmup"] == {"kind": "baseline", "epochs": 3, "first_epoch_seconds": 32.0, "epoch_seconds": 22.0,
                                "seconds": 76.0, "wall_seconds": 90}
    assert stages["export"] == {"kind": "export", "float32": 35.0, "seconds": 35.0, "wall_seconds": 40}

    dry = [{"stage": "warmup", "projected_seconds": 100}, {"stage": "export", "projected_seconds": 30}]
    monkeypatch.setattr(runner, "project", lambda prepared, r: dry if r.sha256 == recipe.sha256 else [])
    monkeypatch.setattr("sys.argv", ["recipe_time.py", str(tmp_path), "--run", str(run), "--out",
                                     str(tmp_path / "t.json")])
    timing.main()
    out = json.loads((tmp_path / "t.json").read_text())
    assert (out["measured_total_seconds"], out["dry_run_total_seconds"]) == (130, 130)
    assert out["dry_run_over_measured"] == 1.0 and out["overrides"] == ["warmup.epochs=3"]

    os.utime(run / "warmup" / "summary.json", (1000 + 76 + 700, 1000 + 76 + 700))  # stopped 11 min, then resumed
    _, stages = timing.from_run(run)
    assert stages["warmup"]["wall_seconds"] is None and stages["warmup"]["seconds"] == 76.0
    assert stages["warmup"]["stopped_and_resumed"] == "wall 776 s, 700 s beside its epochs"

    recipe_file.write_text(recipe_file.read_text() + "# changed\n")
    with pytest.raises(SystemExit, match=r"run: trained with .*two\.yaml of sha256 .* which has changed since"):
        timing.from_run(run)
    (run / "summary.json").unlink()
    with pytest.raises(SystemExit, match=r"--run .*run: no summary\.json"):
        timing.from_run(run)


def _fake_run(folder, seed_nme, control_nme, sha="a" * 64, seed=0, control_seed=None):
    folder.mkdir(parents=True)
    for stage, s in (("student", seed), ("student-control", seed if control_seed is None else control_seed)):
        (folder / stage).mkdir()
        (folder / stage / "config.json").write_text(json.dumps({"train": {"seed": s}}))
    export = lambda nme: {"float32": {"val_nme": nme - 0.01}, "qat": {"val_nme": nme + 0.02}, "stage_seconds": 9.0}
    (folder / "summary.json").write_text(json.dumps({"recipe_sha256": sha, "stages": {
        "warmup": {"best_val_nme": 8.0}, "tough": {"best_val_nme": 4.1}, "student": {"best_val_nme": seed_nme},
        "export": export(seed_nme)}}))
    (folder / "summary-control.json").write_text(json.dumps({"recipe_sha256": sha, "stages": {
        "warmup": {"best_val_nme": 8.0}, "student-control": {"best_val_nme": control_nme},
        "export-control": export(control_nme)}}))
    return folder


def test_kd_vs_plain_compares_the_means_of_the_seeds(tmp_path):
    """Each run folder's KD student beside its control (the stage with a `-control` twin, not the warm start both
    share), float and int8; the recipe is judged by the ratio of the means over the seeds."""
    tool = _load("kd_vs_plain")
    rows = [tool.seed_row(_fake_run(tmp_path / "s0", 4.4, 4.8)),
            tool.seed_row(_fake_run(tmp_path / "s1", 4.6, 4.6, seed=1))]
    assert [(r["run"], r["seed"], r["student"], r["kd_val_nme"], r["plain_val_nme"]) for r in rows] == [
        ("s0", 0, "student", 4.4, 4.8), ("s1", 1, "student", 4.6, 4.6)]
    assert rows[0]["kd_int8_val_nme"] == pytest.approx(4.42) and rows[0]["plain_int8_val_nme"] == pytest.approx(4.82)
    out = tool.summarize(rows)
    assert (out["kd_mean"], out["plain_mean"], out["kd_spread"], out["plain_spread"]) == pytest.approx(
        (4.5, 4.7, 0.2, 0.2), abs=1e-12)
    assert out["ratio"] == pytest.approx(4.5 / 4.7, abs=1e-4) and out["ratio_int8"] == pytest.approx(4.52 / 4.72,
                                                                                                       abs=1e-4)
    # stored unrounded, so a page rounds once: 4.0734761 and 4.0854560 have the mean 4.07947, shown 4.079 (a mean
    # stored at 4 digits, 4.0795, would show 4.080)
    close = tool.summarize([tool.seed_row(_fake_run(tmp_path / "c0", 4.0734761, 4.06)),
                            tool.seed_row(_fake_run(tmp_path / "c1", 4.0854560, 4.06, seed=1))])
    assert f"{close['kd_mean']:.3f}" == "4.079"
    with pytest.raises(SystemExit, match="different recipe files"):
        tool.summarize([*rows, tool.seed_row(_fake_run(tmp_path / "s2", 4.5, 4.7, sha="b" * 64, seed=2))])
    with pytest.raises(SystemExit, match="same seed"):
        tool.summarize([*rows, tool.seed_row(_fake_run(tmp_path / "s3", 4.5, 4.7, seed=1))])
    with pytest.raises(SystemExit, match=r"s4: the KD student and its control were trained with different seeds"):
        tool.seed_row(_fake_run(tmp_path / "s4", 4.5, 4.7, seed=0, control_seed=1))
    (tmp_path / "s0" / "summary-control.json").unlink()
    with pytest.raises(SystemExit, match=r"s0/summary-control\.json: not found"):
        tool.seed_row(tmp_path / "s0")


def test_same_weights_cuts_the_recipe_and_finds_a_changed_array(tmp_path):
    """same_weights.py: its miniature keeps every stage and setting of the recipe file and cuts only the epochs,
    steps and QAT; two run folders compare equal, and one weight or one export byte changed is found."""
    import h5py
    import yaml

    tool = _load("same-weights/same_weights")
    recipe = (BENCHMARKS.parent / "edgekd" / "recipes" / "default.yaml").read_text()
    full, mini = yaml.safe_load(recipe), yaml.safe_load(tool.miniature(recipe))
    assert list(mini["stages"]) == list(full["stages"]) and mini["input_size"] == full["input_size"]
    assert {k: v for k, v in mini["settings"].items() if k in full["settings"]} == full["settings"]
    assert mini["settings"]["steps_per_epoch"] == 3 and mini["stages"]["student"]["epochs"] == 3
    assert mini["stages"]["student"]["kd"] == full["stages"]["student"]["kd"]
    assert (mini["stages"]["export"]["modes"], mini["stages"]["export"]["qat_epochs"]) == (["float32", "qat"], 1)

    def run(root, kernel, model):
        stage = root / "student"
        stage.mkdir(parents=True)
        (stage / "log.csv").write_text("epoch,val_nme\n1,5.0\n")
        for ck in ("last.h5", "best.h5"):
            with h5py.File(stage / ck, "w") as f:
                f["model_weights/dense/kernel"] = kernel
        (root / "export").mkdir()
        (root / "export" / "student_float32.tflite").write_bytes(model)

    kernel = np.arange(6, dtype=np.float32).reshape(2, 3)
    run(tmp_path / "a", kernel, b"model")
    run(tmp_path / "b", kernel, b"model")
    run(tmp_path / "c", kernel + np.float32(1e-3) * (kernel == 5), b"modeL")
    same = tool.compare(tmp_path / "a", tmp_path / "b")
    assert same["stages"]["student"]["last.h5"]["max_abs_diff"] == 0 and same["exports"][
        "student_float32.tflite"]["same_bytes"]
    other = tool.compare(tmp_path / "a", tmp_path / "c")
    assert other["stages"]["student"]["best.h5"]["max_abs_diff"] == pytest.approx(1e-3, rel=1e-3)
    assert not other["exports"]["student_float32.tflite"]["same_bytes"]


def test_paper_steps_reads_a_stage_folder_and_finds_where_it_left_the_mean_shape(tmp_path, tiny_prepared):
    paper = _load("paper_steps")
    stage = tmp_path / "tough"
    stage.mkdir()
    train = {"teacher_arch": "efficientnet-b3", "stage": "tough", "recipe": "paper", "batch_size": 8, "loss": "l2",
             "schedule": "inverse-time", "head_init": "mean-shape", "epochs": 150, "steps_per_epoch": None}
    (stage / "config.json").write_text(json.dumps({"train": train, "data": {"input_size": 64,
                                                                            "counts": {"train": 36}}}))
    rows = [(1, 30.0, 19.0, 900.0), (2, 25.0, 17.5, 36.0), (3, 20.0, 15.9, 45.0)]  # an epoch beside other work: slow
    (stage / "log.csv").write_text("epoch,loss,nme,val_nme,val_nme_soft,lr,seconds,eval_seconds,best\n" + "".join(
        f"{e},0.01,{t},{v},0,0.001,{s},5.0,1\n" for e, t, v, s in rows))
    plateau = paper.mean_shape_nme(tiny_prepared)
    assert 5 < plateau < 60  # the mean shape is far from every face, but not absurdly so
    config, read = paper.read_stage(stage)
    result = paper.summarize(config, read, 18.0, margin=10.0)
    assert result["steps_per_epoch"] == 5 and result["steps_run"] == 15  # ceil(36 / 8)
    assert result["left_mean_shape_at_epoch"] == 3 and result["left_mean_shape_at_step"] == 15  # 15.9 < 16.2
    assert result["seconds_per_step_median"] == pytest.approx(45.0 / 5)
    assert paper.summarize(config, read[:2], 18.0, margin=10.0)["left_mean_shape_at_epoch"] is None
    (stage / "log.csv").write_text("epoch,loss,nme,val_nme,val_nme_soft,lr,seconds,eval_seconds,best\n")
    with pytest.raises(SystemExit, match="no finished epoch yet"):
        paper.read_stage(stage)


def test_facemesh_teacher_file_puts_face_mesh_points_where_face_mesh_put_them(tiny_prepared, one_epoch_baseline,
                                                                              tmp_path):
    """facemesh_teacher.py writes a teacher-targets file whose Tough role, read back as `train --teacher-targets`
    reads it, is Face Mesh's mapped points on each stored training crop, and whose Tolerant role is the network's."""
    from edgekd.bench.facemesh import FaceMeshModel
    from edgekd.bench.meshmap import MeshMap
    from edgekd.core.checkpoint import load_model
    from edgekd.data.pipeline import PreparedData
    from edgekd.training import teacher_targets

    tool = _load("recipe-choice/facemesh_teacher")
    checkpoint = one_epoch_baseline / "baseline" / "best.h5"
    out, figures = tmp_path / "fm.npz", tmp_path / "fm.json"
    args = [str(tiny_prepared), "--tolerant", str(checkpoint), "--out", str(out), "--json", str(figures)]
    assert tool.main(args) == 0
    data = PreparedData(tiny_prepared)
    read = teacher_targets.load(out, data)
    train = data.split("train")
    first = tool.mesh_points(FaceMeshModel(), MeshMap.load(), np.ascontiguousarray(train.images[0]), train.hard[0])
    np.testing.assert_allclose(read["tough"][0], first, atol=1e-3)
    tolerant = teacher_targets.teacher_outputs(load_model(checkpoint), data, "train")
    np.testing.assert_allclose(np.load(out)["tolerant"], tolerant, atol=1e-6)
    f = json.loads(figures.read_text())
    assert 0 < f["val_nme_facemesh"] < 10 and 0 < f["train_nme_tough"] < f["train_nme_tolerant"]


def test_epoch_means_compare_blocks_every_run_has_finished(tmp_path):
    """Blocks of epochs both runs logged (a block with an epoch missing is left out; a resumed epoch logged twice
    counts once, its last line), each run's mean and its ratio to the first run's; the best of each run over the
    epochs both logged; the JSON and the plot are written, and a folder without log.csv is refused."""
    tool = _load("recipe-choice/epoch_means")

    def stage(name, values):
        folder = tmp_path / name / "student"
        folder.mkdir(parents=True)
        lines = ["epoch,val_nme"] + [f"{e},{v}" for e, v in values]
        (folder / "log.csv").write_text("\n".join(lines) + "\n")
        return folder

    plain = stage("plain", [(e, 6.0) for e in range(1, 31)] + [(31, 1.0)])  # its best comes after the common epochs
    kd = stage("kd", [(e, 5.0 if e <= 10 else 6.6) for e in range(1, 31) if e != 25] + [(21, 9.9), (21, 6.6)])
    assert tool.val_nme(kd)[21] == 6.6
    assert tool.block_means({"plain": tool.val_nme(plain), "kd": tool.val_nme(kd)}) == [
        {"epochs": [1, 10], "mean_val_nme": {"plain": 6.0, "kd": 5.0}, "ratio_to_first": {"kd": 5.0 / 6.0}},
        {"epochs": [11, 20], "mean_val_nme": {"plain": 6.0, "kd": pytest.approx(6.6)},
         "ratio_to_first": {"kd": pytest.approx(1.1)}}]  # 21-30 misses epoch 25 in kd
    out = tmp_path / "cmp.json"
    tool.main([str(plain), str(kd), "--names", "plain", "kd", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["common_epochs"] == 30 and saved["runs"]["plain"]["best_val_nme"] == 1.0
    assert saved["runs"]["plain"]["best_val_nme_common"] == 6.0 and saved["runs"]["kd"]["best_val_nme_common"] == 5.0
    assert len(saved["blocks"]) == 2 and out.with_suffix(".png").stat().st_size > 1000
    with pytest.raises(SystemExit, match=r"nothing/log\.csv: not found"):
        tool.main([str(plain), str(tmp_path / "nothing"), "--out", str(tmp_path / "x.json")])


def test_function_matching_step_adds_the_mixed_batch_term_and_leaves_the_teachers_alone():
    """function_matching.train_step: the labelled batch's KD-Loss parts as the Distiller reports them, plus L1 to the
    Tough teacher on the batch mixed with itself, so the step's loss is KD-Loss + that term (> 0 here); the frozen
    teachers do not move, and importing the script does not patch edgekd's Distiller."""
    import tf_keras as keras
    from train_helpers import small_net

    from edgekd.models.losses import KDLossConfig
    from edgekd.training.trainers import Distiller, LandmarkTrainer

    tool = _load("recipe-choice/function_matching")
    assert Distiller.train_step is LandmarkTrainer.train_step  # only its __main__ patches
    student, tough, tolerant = (small_net() for _ in range(3))
    distiller = Distiller(student, tough, tolerant, KDLossConfig(), nme_pair=(0, 1))
    distiller.compile(optimizer=keras.optimizers.SGD(0.0))  # rate 0: the step's loss, nothing learned
    rng = np.random.default_rng(0)
    images = rng.random((4, 16, 16, 3), dtype=np.float32)
    targets = {"hard": rng.uniform(-0.4, 0.4, (4, 8)).astype(np.float32)}
    frozen = [w.numpy().copy() for w in tough.weights + tolerant.weights]
    logs = {k: float(v) for k, v in tool.train_step(distiller, (images, targets)).items()}
    cfg = KDLossConfig()
    kd = cfg.w_main * logs["main"] + cfg.w_tough * logs["aloss_tough"] + cfg.w_tol * logs["aloss_tol"]
    assert logs["loss"] > kd + 1e-4
    for before, w in zip(frozen, tough.weights + tolerant.weights):
        np.testing.assert_array_equal(before, w.numpy())


def _talking_record(seed: int = 0, clips: int = 6, frames: int = 20):
    """A tune_smoothing recording of made-up clips: 68 points moving (pan and zoom), talking (the last 20 points
    dropping and coming back 4 times a second on a still face) and still, each with Gaussian noise on the points;
    detector crops score a little above the raw points."""
    rng = np.random.default_rng(seed)
    shape = np.stack([np.cos(np.linspace(0, 6, 68)), np.sin(np.linspace(0, 6, 68))], 1) * 50.0
    t = np.arange(frames) / 30.0
    moving = np.stack([[(1.02 ** k) * shape + [200.0 + 3.0 * k, 150.0] for k in range(frames)]] * clips)
    talk = np.stack([[shape + [200.0, 150.0]] * frames] * clips)
    talk[:, :, 48:, 1] += 8.0 * (0.5 - 0.5 * np.cos(2 * np.pi * 4.0 * t))[None, :, None]
    still = np.stack([[shape + [200.0, 150.0]] * frames] * clips)
    noisy = {k: v + rng.normal(0.0, 0.4, v.shape) for k, v in (("moving", moving), ("talk", talk), ("still", still))}
    sides = np.full((clips, frames), 100.0)

    def nme(points, truth):  # as tune_smoothing.frame_nme, a fraction: the inter-ocular distance of each frame
        return np.linalg.norm(points - truth, axis=-1).mean(-1) / np.linalg.norm(truth[..., 0, :] - truth[..., 34, :],
                                                                                 axis=-1)

    return {"nme_pair": np.array([0, 34]), "truth": moving, "raw": noisy["moving"], "smoothed": noisy["moving"],
            "side": sides, "det_nme": nme(noisy["moving"], moving) * 1.01, "still_raw": noisy["still"],
            "still_side": sides, "still_truth": still[:, 0], "talk_raw": noisy["talk"],
            "talk_smoothed": noisy["talk"], "talk_side": sides, "talk_truth": talk,
            "talk_det_nme": nme(noisy["talk"], talk)}


def test_smoothing_search_keeps_designs_that_do_not_lag_a_talking_face(monkeypatch):
    """tune_smoothing's rule on made-up clips: the chosen design is the lowest still-clip jitter among those at most
    the detector crops' NME on the moving clips and at most the raw points' on the talking ones; a slow shape filter
    that meets the first but lags the mouth is left out, and the file keeps the chosen design and the frontier."""
    tune = _load("tracking/tune_smoothing")
    monkeypatch.setattr(tune, "PLAIN_GRID", {"min_cutoff": (0.5,), "beta": (30.0,), "d_cutoff": (2.0,)})
    monkeypatch.setattr(tune, "POSE_GRID", {"min_cutoff": (0.25,), "beta": (700.0, 2000.0), "d_cutoff": (1.0,)})
    monkeypatch.setattr(tune, "SHAPE_GRID", {"min_cutoff": (0.25, 0.5), "beta": (30.0, 100.0), "d_cutoff": (2.0, 8.0)})
    result = tune.search(_talking_record())
    rows = [r for r in result["grid"] if r["design"] == "pose_shape"]
    assert result["searched"] == 1 + 2 * 8 and "talking" in result["reference"]
    talking_raw, detector = result["reference"]["talking"]["raw_nme"], result["reference"]["detector_nme"]
    chosen = result["chosen"]
    assert chosen["nme"] <= detector and chosen["talking_nme"] <= talking_raw
    laggy = [r for r in rows if r["shape"] == [0.5, 30.0, 2.0]]  # 0.11.0's shape filter: steadier, but it lags
    assert laggy and all(r["talking_lag"] > 0 for r in laggy)
    assert all(r["jitter"] < chosen["jitter"] for r in laggy if r["nme"] <= detector)
    assert chosen in result["grid"] and chosen["shape"] != [0.5, 30.0, 2.0]
    assert chosen in tune.kept_rows(rows, result["reference"])


def test_smoothing_json_keeps_the_frontier_of_the_search():
    """kept_rows: designs over all points and with 0.11.0's shape constants stay; of the rest, those above the
    detector crops' NME and those another design beats on both jitter and talking lag are left out."""
    tune = _load("tracking/tune_smoothing")

    def row(shape, nme, jitter, lag):
        return {"design": "pose_shape", "pose": [0.25, 700.0, 1.0], "shape": shape, "nme": nme, "jitter": jitter,
                "talking_lag": lag}

    old = row(list(tune.OLD), 4.2, 0.2, 0.06)
    plain = {"design": "one_euro", "constants": list(tune.OLD), "nme": 4.5, "jitter": 0.1}
    best_jitter, no_lag = row([1, 1, 1], 4.1, 0.3, 0.04), row([2, 2, 2], 4.1, 0.4, 0.0)
    dominated, above = row([3, 3, 3], 4.1, 0.35, 0.05), row([4, 4, 4], 4.3, 0.25, 0.0)
    kept = tune.kept_rows([plain, old, best_jitter, no_lag, dominated, above], {"detector_nme": 4.15})
    assert kept == [plain, old, best_jitter, no_lag]


def test_shape_square_follows_the_box_change_that_the_similarity_leaves():
    """talking_designs' crop that follows the points' box: on a moved copy of the anchor's points (a rigid motion)
    it is the anchored square; when the chin drops it moves down and grows as the landmark box does."""
    from edgekd.core.crop import CropSpec
    from edgekd.runtime.tracker import move_square

    designs = _load("tracking/talking_designs")
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.0, 100.0, (68, 2))
    ref[8] = (50.0, 110.0)  # the chin: the lowest point
    square = CropSpec.box_from_points(ref)
    a, b = 1.1 * np.cos(0.1), 1.1 * np.sin(0.1)
    moved = ref @ np.array([[a, b], [-b, a]]) + (7.0, -3.0)
    np.testing.assert_allclose(designs.shape_square(square, ref, moved), move_square(square, ref, moved), atol=1e-9)
    talking = ref.copy()
    talking[8, 1] += 20.0
    anchored, followed = move_square(square, ref, talking), designs.shape_square(square, ref, talking)
    assert followed[1] > anchored[1] and followed[2] > anchored[2]
