"""Running a recipe: its stages in order into one run folder (``run``), the export stage, the record that keeps a
run folder to one recipe and its plain control (``check_run``), what a card says of the run, and the dry run's
projection (``project``).

Apart from ``recipes.recipe`` so that reading and checking a recipe does not import the trainer and the exporter.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from dataclasses import replace
from pathlib import Path

from edgekd.core.checkpoint import BEST, SUMMARY, manifest_sha256
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import check_output_dir, mark_output_dir, write_json, write_text
from edgekd.data.pipeline import PreparedData
from edgekd.export.card import render_card
from edgekd.export.config import ExportConfig
from edgekd.export.exporter import export_model
from edgekd.export.quantize import FORMATS
from edgekd.models.backbones import check_batch_fits
from edgekd.recipes.recipe import Recipe, RecipeError, Stage, as_control, load
from edgekd.training import distributed
from edgekd.training.build import steps_per_epoch
from edgekd.training.config import check_finished_matches
from edgekd.training.projection import dry_run, stage_cost
from edgekd.training.train import train

RECORD = "recipe.json"
DONE = "done.json"  # an export stage's record of what it wrote, and with which settings
# a QAT step against a float step of the same network (MobileNetV2 at 128 px on 2 cores: 0.48 against 0.30 s), and
# the fixed part of one export (conversion, validation of the file, latency), measured on a 2-core Xeon: what the
# dry run and the ETA price an export stage at
QAT_STEP_COST = 1.6
EXPORT_SECONDS = 60.0


def check_run(run_dir, recipe: Recipe, resume: bool, data_sha256: str | None) -> None:
    """A run folder holds one recipe and its plain control, on one prepared folder: a recipe that ran here
    continues only with --resume; another recipe, other settings or other data are refused; --resume with nothing
    of this recipe to resume is refused with what was found."""
    record = Path(run_dir) / RECORD
    runs = []
    if record.is_file():
        try:
            runs = json.loads(record.read_text())["runs"]
        except (ValueError, KeyError, TypeError) as e:
            raise RecipeError(f"{record}: unreadable ({e}); use another --run-dir") from None
    mine = _comparable(recipe.to_dict())
    same = [r for r in runs if _comparable(r) == mine]
    if resume and not same:
        found = ", ".join(f"{r['name']}{' (control)' if r.get('control') else ''}" for r in runs) or "nothing"
        raise RecipeError(f"--resume: {run_dir} holds no run of this recipe and settings to resume (found: "
                          f"{found}); leave out --resume to start it")
    if same and not resume:
        raise RecipeError(f"{run_dir}: this recipe already ran here; pass --resume to continue it, or use another "
                          f"--run-dir")
    for r in runs:
        if r.get("prepared_sha256") and data_sha256 and r["prepared_sha256"] != data_sha256:
            raise RecipeError(f"{run_dir}: trained on other prepared data (manifest sha256 "
                              f"{r['prepared_sha256'][:12]}, this folder's {data_sha256[:12]}); use that folder, or "
                              f"another --run-dir")
    kd_runs = [r for r in runs if not r.get("control")]
    if not recipe.control and kd_runs and not same:
        first = kd_runs[0]
        raise RecipeError(f"{run_dir}: started with recipe {first['name']} (sha256 {first['sha256'][:12]}, overrides "
                          f"{' '.join(first['overrides']) or 'none'}); resume it with the same --recipe and "
                          f"overrides, or use another --run-dir")
    if recipe.control and not same:
        for r in runs:  # the control of another recipe would share this run's stages under other settings
            if r.get("control") and _comparable(r) != mine:
                raise RecipeError(f"{run_dir}: holds the control of another recipe or settings (sha256 "
                                  f"{r['sha256'][:12]}); use another --run-dir")


def _comparable(d: dict) -> dict:
    """What makes two runs the same: the file's bytes and the stages' effective settings (not the order or the
    spelling of the overrides that made them)."""
    return {k: d.get(k) for k in ("sha256", "control", "stages")}


def _record(run_dir, recipe: Recipe, data_sha256: str | None) -> None:
    record = Path(run_dir) / RECORD
    runs = json.loads(record.read_text()).get("runs", []) if record.is_file() else []
    if not any(_comparable(r) == _comparable(recipe.to_dict()) for r in runs):
        runs.append({**recipe.to_dict(), "prepared_sha256": data_sha256})
    write_json(record, {"runs": runs})


def stage_seconds(stage_dir: Path) -> float | None:
    """A training stage's measured time: every epoch's training and validation seconds in its log (resumed parts
    included), so a stage resumed after a kill still reports all it cost."""
    log = stage_dir / "log.csv"
    if not log.is_file():
        return None
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    return round(sum(float(r.get("seconds") or 0) + float(r.get("eval_seconds") or 0) for r in rows), 1)


def _open_sized(prepared_dir, recipe: Recipe):
    """The prepared folder, refused when it was prepared at another input size than the recipe trains at."""
    data = PreparedData.open(prepared_dir)
    if data.input_size != recipe.input_size:
        raise RecipeError(f"{prepared_dir}: prepared at {data.input_size} px, but recipe {recipe.name} trains at "
                          f"{recipe.input_size} px; prepare it with `edgekd data prepare --root DATASET --out-dir "
                          f"DIR --input-size {recipe.input_size}`")
    return data


def _check_batches(recipe: Recipe, data, run_dir) -> None:
    """Every training stage's batch is refused before the first stage starts (or is timed) when it cannot fit in
    memory: what would otherwise fail a later stage after hours, or time steps that swap."""
    for stage in recipe.stages:
        if stage.kind != "export":
            cfg = recipe.train_config(stage, run_dir)
            check_batch_fits(cfg.network(), data.input_size, cfg.batch_size, data.manifest.counts["train"])


def run(prepared_dir, run_dir, recipe: Recipe, resume: bool = False, progress: bool = True, echo=print) -> dict:
    """Every stage of ``recipe`` in order into ``<run_dir>/<stage>/``; a finished stage is skipped, an unfinished one
    continues from its last checkpoint (``resume``). Returns (and writes as ``summary.json``) each stage's result."""
    import tf_keras as keras  # here, not at the top: loading TensorFlow would slow `edgekd train --help`

    cluster = _cluster(recipe, run_dir)  # first: the strategy must be made before TensorFlow runs anything
    chief = cluster is None or cluster.chief
    data = _open_sized(prepared_dir, recipe)
    data_sha256 = manifest_sha256(prepared_dir)
    if chief:  # the other workers of a multi-worker job write nothing into the run folder (distributed.py)
        check_output_dir(run_dir, "train", "--run-dir")
        check_run(run_dir, recipe, resume, data_sha256)
    _check_batches(recipe, data, run_dir)
    if chief:
        mark_output_dir(run_dir, "train")
        _record(run_dir, recipe, data_sha256)
    results = {}
    for i, stage in enumerate(recipe.stages):
        stage_dir = Path(run_dir) / stage.name
        if stage.kind == "export" and not chief:
            echo(f"{stage.name}: exported by the chief alone")
            continue
        if stage.kind == "export":
            results[stage.name] = _export(run_dir, recipe, stage, prepared_dir, progress, echo)
            continue
        cfg = recipe.train_config(stage, run_dir, progress)
        if (stage_dir / SUMMARY).is_file():
            check_finished_matches(stage_dir, cfg)
            results[stage.name] = {**json.loads((stage_dir / SUMMARY).read_text()),
                                   "stage_seconds": stage_seconds(stage_dir)}
            echo(f"{stage.name}: already trained ({stage_dir / SUMMARY}), skipped")
            continue
        later = _later_epochs(recipe, stage, run_dir)
        started = (stage_dir / "last.h5").is_file() or (stage_dir / "config.json").is_file()
        summary = train(prepared_dir, run_dir, cfg, resume=resume and started, later_epochs=later, name=stage.name)
        if cluster is not None:  # the next stage starts from the files the chief has just finished writing
            distributed.barrier(stage.name, stage_dir)
        results[stage.name] = {**summary, "stage_seconds": stage_seconds(stage_dir)}
        keras.backend.clear_session()  # free the finished stage's graphs before the next one
    if not chief:  # the chief records the run (summary.json)
        return {"recipe": recipe.name, "stages": results, "chief": False}
    total = sum(r.get("stage_seconds") or 0 for r in results.values())
    out = {"recipe": recipe.name, "recipe_file": recipe.source, "recipe_sha256": recipe.sha256,
           "overrides": list(recipe.overrides), "control": recipe.control, "stages": results,
           "total_seconds": round(total, 1)}
    write_json(Path(run_dir) / ("summary-control.json" if recipe.control else "summary.json"), out)
    if recipe.control:
        _note_control_in_cards(run_dir, recipe)
    return out


def _cluster(recipe: Recipe, run_dir):
    """TF_CONFIG's cluster, joined, when the recipe trains with ``strategy: multi-worker`` (every training stage
    must: a stage on one device would run on every worker, into the same folder), else None."""
    strategies = {recipe.train_config(s, run_dir).strategy for s in recipe.stages if s.kind != "export"}
    if "multi-worker" not in strategies:
        return None
    if len(strategies) > 1:
        raise RecipeError(f"{recipe.source}: strategy multi-worker must be every training stage's, or none's (a "
                          f"stage on one device would run on every worker, into the same folder); found "
                          f"{', '.join(sorted(strategies))}")
    return distributed.placement("multi-worker").cluster


def _later_epochs(recipe: Recipe, stage: Stage, run_dir) -> float:
    """The stages after ``stage`` in its own epochs (each priced by its step cost: a KD epoch runs its teachers too,
    a QAT epoch costs QAT_STEP_COST plain ones), for the run's ETA on every progress line."""

    own_cfg = recipe.train_config(stage, run_dir)
    own = stage_cost(own_cfg, stage.kind) * (own_cfg.steps_per_epoch or 1)
    later = 0.0
    for s in recipe.stages[recipe.stages.index(stage) + 1:]:
        if s.kind == "export":
            source = recipe.train_config(recipe.stage(s.start), run_dir)
            epochs = s.settings.get("qat_epochs", 6) if "qat" in s.settings["modes"] else 0
            later += epochs * QAT_STEP_COST * (s.settings.get("qat_steps_per_epoch") or source.steps_per_epoch or 1)
        else:
            cfg = recipe.train_config(s, run_dir)
            later += cfg.epochs * stage_cost(cfg, s.kind) * (cfg.steps_per_epoch or 1)
    return later / own


def _export(run_dir, recipe: Recipe, stage: Stage, prepared_dir, progress: bool, echo) -> dict:
    """The export stage: each mode's .tflite of the stage it starts from, named ``<from>_<mode>.tflite``."""
    stage_dir = Path(run_dir) / stage.name
    source = Path(run_dir) / stage.start / BEST
    settings = dict(stage.settings)
    modes = settings.pop("modes")
    done_path = stage_dir / DONE
    wanted = {"from": stage.start, "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
              "settings": stage.settings}
    if done_path.is_file():
        done = json.loads(done_path.read_text())
        if done.get("wanted") == wanted:
            echo(f"{stage.name}: already exported ({done_path}), skipped")
            return done["result"]
        raise RecipeError(f"{stage_dir}: exported with other settings; use another --run-dir")
    stage_dir.mkdir(parents=True, exist_ok=True)
    result, seconds = {}, 0.0
    for mode in modes:
        out = stage_dir / f"{stage.start.removesuffix('-control')}_{FORMATS[mode].suffix}.tflite"
        out.unlink(missing_ok=True)  # left by a killed export of this stage (the record is written after all)
        for side in (out.with_suffix(".card.json"), out.with_suffix(".card.md")):
            side.unlink(missing_ok=True)
        qat_keys = {k: v for k, v in settings.items() if mode == "qat" or not k.startswith(("qat_", "float_head"))}
        t0 = time.time()
        cfg = ExportConfig(source, out, mode, prepared=Path(prepared_dir), progress=progress,
                           recipe=_card_record(run_dir, recipe, stage), **qat_keys)
        exported = export_model(cfg)
        took = time.time() - t0
        seconds += took
        result[mode] = {"file": str(out), "val_nme": exported.nme.tflite, "seconds": round(took, 1)}
        echo(f"{stage.name}: {out} ({took:.0f} s)")
    record = {"result": {**result, "stage_seconds": round(seconds, 1)}, "wanted": wanted}
    write_json(done_path, record)
    return record["result"]


def _card_record(run_dir, recipe: Recipe, stage: Stage) -> dict:
    """What a card says of the run that made the model: the recipe file and every stage's validation NME and time."""
    stages = {}
    for s in recipe.stages:
        if s.kind == "export":
            continue
        summary = Path(run_dir) / s.name / SUMMARY
        if summary.is_file():
            d = json.loads(summary.read_text())
            stages[s.name] = {"kind": s.kind, "val_nme": d.get("best_val_nme"),
                              "seconds": stage_seconds(Path(run_dir) / s.name)}
    return {"recipe": recipe.name, "recipe_file": recipe.source, "recipe_sha256": recipe.sha256,
            "overrides": list(recipe.overrides), "control": recipe.control, "stages": stages,
            "plain_control_val_nme": None if recipe.control else _control_nme(run_dir, recipe)}


def _control_nme(run_dir, recipe: Recipe) -> dict | None:
    """The validation NME of ``recipe``'s own plain control in this run folder (its ``as_control``, nothing else),
    each student stage's; None until that control has trained, or for a recipe without a KD student."""
    if not any(s.kind == "student" for s in recipe.stages):
        return None
    expected = _comparable(as_control(recipe).to_dict())
    record = Path(run_dir) / RECORD
    runs = json.loads(record.read_text()).get("runs", []) if record.is_file() else []
    if not any(r.get("control") and _comparable(r) == expected for r in runs):
        return None
    nme = {}
    for stage in as_control(recipe).stages:
        summary = Path(run_dir) / stage.name / SUMMARY
        if stage.name.endswith("-control") and stage.kind != "export" and summary.is_file():
            nme[stage.name] = json.loads(summary.read_text()).get("best_val_nme")
    return nme or None


def _note_control_in_cards(run_dir, control: Recipe) -> None:
    """After a plain control, the cards of its KD recipe's exports (when they exist) gain the control's validation
    NME, so the order of the two runs does not matter; the model files are not touched."""
    record = Path(run_dir) / RECORD
    for r in json.loads(record.read_text()).get("runs", []):
        if r.get("control") or r["sha256"] != control.sha256:
            continue
        try:
            kd = load(r["source"], r["overrides"])
        except EdgekdError:  # the file moved or changed since: its run is not this control's
            continue
        if _comparable(as_control(kd).to_dict()) != _comparable(control.to_dict()):
            continue
        nme = _control_nme(run_dir, kd)
        for stage in kd.stages:
            if stage.kind != "export":
                continue
            for card_path in sorted((Path(run_dir) / stage.name).glob("*.card.json")):
                card = json.loads(card_path.read_text())
                if card.get("training"):
                    card["training"]["plain_control_val_nme"] = nme
                    write_json(card_path, card)
                    write_text(card_path.with_name(card_path.name.replace(".card.json", ".card.md")),
                               render_card(card))


def project(prepared_dir, recipe: Recipe, timed_steps: int = 5) -> list[dict]:
    """``--dry-run``: each stage's projected time on this machine, from a few real steps of its own network (a KD
    student priced with its teachers' forward passes; an export priced as its QAT epochs at the QAT step cost)."""

    data = _open_sized(prepared_dir, recipe)
    _check_batches(recipe, data, ".")  # as `run` does
    rows, plain_step, measured = [], {}, {}
    for stage in recipe.stages:
        if stage.kind == "export":
            source = recipe.stage(stage.start)
            step = plain_step.get(source.name, math.nan) * QAT_STEP_COST
            cfg = recipe.train_config(source, ".")
            steps = (stage.settings.get("qat_steps_per_epoch") or steps_per_epoch(cfg, data)) * \
                stage.settings.get("qat_epochs", ExportConfig.qat_epochs) if "qat" in stage.settings["modes"] else 0
            seconds = step * steps + EXPORT_SECONDS * len(stage.settings["modes"])
            rows.append({"stage": stage.name, "kind": "export", "network": cfg.network().arch,
                         "seconds_per_step": round(step, 3), "steps": steps, "projected_seconds": round(seconds)})
            continue
        cfg = recipe.train_config(stage, ".", progress=False)
        row = dry_run(prepared_dir, replace(cfg, init_from=None), (cfg.stage,), timed_steps, measured)[0]
        plain_step[stage.name] = row["plain_seconds_per_step"]
        rows.append({**row, "stage": stage.name, "kind": stage.kind})
    return rows


