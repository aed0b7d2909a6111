"""How long a recipe takes on this machine with the cores to itself, stage by stage, beside what `--dry-run` projects.

    .venv/bin/python benchmarks/recipe_time.py PREPARED --run RUN --out benchmarks/recipe-time/default.json
    .venv/bin/python benchmarks/recipe_time.py PREPARED --recipe default --out OUT.json

With ``--run``: a finished run's own stage times (the run folder of `edgekd train`; the recipe loaded with the
overrides the run recorded, refused when its file has changed since), each training stage's epochs (training and
validation seconds from its log.csv, resumed parts included) and its wall time (from one stage's end to the next's,
so building, weight averaging and BatchNorm re-estimation count too; a stage stopped and resumed later counts its
epochs' seconds instead, as its wall time holds the pause), each export's wall time. What the machine did
beside the run is not known here: time a run with the cores to itself.

Without ``--run``: where a whole run cannot hold the machine quiet, each stage runs its first few epochs here
(``--epochs``, into a scratch folder that is removed) and its time is projected from them: the first epoch (graph
tracing included) plus the median of the others times the remaining epochs, plus what the stage costs besides its
epochs (building, weight averaging, BatchNorm re-estimation: the stage's wall time minus its epochs'). An export
stage runs once with one QAT epoch and once with four; a third of their difference is one QAT epoch (conversion,
calibration and validation vary by tens of seconds between exports: one epoch's difference drowned in it).

Either way, then `edgekd train --dry-run`'s projection of the same recipe, and the load average before and after,
which says whether the machine was quiet.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekd.core.fileio import write_json  # noqa: E402
from edgekd.core.timing import machine  # noqa: E402
from edgekd.export.config import ExportConfig  # noqa: E402
from edgekd.recipes import recipe as recipes  # noqa: E402
from edgekd.recipes import runner  # noqa: E402

QAT_TWIN_EPOCHS = 4  # the second export's QAT epochs
# A training stage's wall time beyond its epochs' own seconds (building, weight averaging, BatchNorm re-estimation)
# takes a minute or two; more than this means the run was stopped in that stage and resumed later, and the wall
# time counts the pause: its epochs' seconds stand for the stage instead.
STOPPED_GAP_SECONDS = 600


def timing_recipe(recipe: recipes.Recipe, epochs: int) -> recipes.Recipe:
    """The recipe with every training stage cut to ``epochs`` (weight averaging kept, over fewer epochs), each
    export's QAT to one epoch, and a second export of each with QAT_TWIN_EPOCHS QAT epochs."""
    stages = []
    for s in recipe.stages:
        if s.kind == "export":
            one = {**s.settings, "qat_epochs": 1}
            stages.append(replace(s, settings=one))
            if "qat" in one["modes"]:
                stages.append(recipes.Stage(f"{s.name}-qat{QAT_TWIN_EPOCHS}", "export", s.start,
                                            {**one, "modes": ["qat"], "qat_epochs": QAT_TWIN_EPOCHS}))
            continue
        settings = {**s.settings, "epochs": epochs}
        if settings.get("average_last"):
            settings["average_last"] = min(settings["average_last"], epochs - 1)
        stages.append(replace(s, settings=settings))
    return replace(recipe, stages=tuple(stages))


def epoch_seconds(stage_dir: Path) -> list[float]:
    with open(stage_dir / "log.csv", newline="") as f:
        return [float(r["seconds"]) + float(r["eval_seconds"] or 0) for r in csv.DictReader(f)]


def measure(prepared: Path, recipe: recipes.Recipe, epochs: int) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="recipe-time-"))
    run_dir = scratch / "run"
    ends = {}
    start = time.time()
    try:
        def echo(line: str) -> None:  # each stage's last line: when it ended
            ends[line.split(":", 1)[0]] = time.time()

        result = runner.run(prepared, run_dir, timing_recipe(recipe, epochs), progress=False, echo=echo)
        stages, previous = {}, start
        for s in recipe.stages:
            if s.kind == "export":
                first = result["stages"][s.name]
                second = result["stages"].get(f"{s.name}-qat{QAT_TWIN_EPOCHS}")
                row = {mode: r["seconds"] for mode, r in first.items() if isinstance(r, dict)}
                if second:
                    qat_epoch = (second["qat"]["seconds"] - first["qat"]["seconds"]) / (QAT_TWIN_EPOCHS - 1)
                    qat_epochs = s.settings.get("qat_epochs", ExportConfig.qat_epochs)
                    row["qat"] = round(first["qat"]["seconds"] + (qat_epochs - 1) * qat_epoch, 1)
                    row["qat_epoch_seconds"] = round(qat_epoch, 1)
                projected = round(sum(v for k, v in row.items() if k in s.settings["modes"]))
                stages[s.name] = {"kind": "export", **row, "projected_seconds": projected}
                previous = ends.get(f"{s.name}-qat{QAT_TWIN_EPOCHS}", ends.get(s.name, previous))
                continue
            per_epoch = epoch_seconds(run_dir / s.name)
            wall = (run_dir / s.name / "summary.json").stat().st_mtime - previous
            previous = (run_dir / s.name / "summary.json").stat().st_mtime
            full = s.settings["epochs"]
            typical = statistics.median(per_epoch[1:]) if len(per_epoch) > 1 else per_epoch[0]
            besides = max(0.0, wall - sum(per_epoch))
            stages[s.name] = {"kind": s.kind, "epochs": full, "timed_epochs": len(per_epoch),
                              "first_epoch_seconds": round(per_epoch[0], 1), "epoch_seconds": round(typical, 1),
                              "besides_epochs_seconds": round(besides, 1),
                              "projected_seconds": round(per_epoch[0] + typical * (full - 1) + besides)}
        return stages
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def from_run(run: Path) -> tuple[recipes.Recipe, dict]:
    """The recipe a finished run trained (with its recorded overrides) and each of its stages' own times."""
    summary_path = run / "summary.json"
    if not summary_path.is_file():
        sys.exit(f"error: --run {run}: no summary.json; expected a run folder whose `edgekd train` has finished")
    summary = json.loads(summary_path.read_text())
    try:
        recipe = recipes.load(summary["recipe_file"], summary.get("overrides", ()))
    except (recipes.RecipeError, KeyError) as e:
        sys.exit(f"error: --run {run}: cannot load the recipe it recorded: {e}")
    if recipe.sha256 != summary["recipe_sha256"]:
        sys.exit(f"error: --run {run}: trained with {summary['recipe_file']} of sha256 {summary['recipe_sha256'][:12]}, "
                 f"which has changed since (now {recipe.sha256[:12]}); time a run of the file as it is")
    stages, previous = {}, None
    for s in recipe.stages:
        done = summary["stages"].get(s.name)
        if done is None:
            sys.exit(f"error: --run {run}: stage {s.name} is not in its summary.json; expected a finished run")
        stage_dir = run / s.name
        if s.kind == "export":
            end = (stage_dir / runner.DONE).stat().st_mtime  # written once; the control rewrites the cards later
            row = {mode: r["seconds"] for mode, r in done.items() if isinstance(r, dict)}
            stages[s.name] = {"kind": "export", **row, "seconds": round(done["stage_seconds"], 1),
                              "wall_seconds": round(end - previous) if previous else None}
        else:
            per_epoch = epoch_seconds(stage_dir)
            end = (stage_dir / "summary.json").stat().st_mtime
            start = previous or (stage_dir / "config.json").stat().st_mtime
            wall = round(end - start)
            beside = wall - sum(per_epoch)  # building, averaging, re-estimation; or a pause when stopped and resumed
            stopped = beside > STOPPED_GAP_SECONDS
            stages[s.name] = {"kind": s.kind, "epochs": len(per_epoch), "first_epoch_seconds": round(per_epoch[0], 1),
                              "epoch_seconds": round(statistics.median(per_epoch[1:] or per_epoch), 1),
                              "seconds": round(sum(per_epoch), 1), "wall_seconds": None if stopped else wall}
            if stopped:
                stages[s.name]["stopped_and_resumed"] = f"wall {wall} s, {beside:.0f} s beside its epochs"
        previous = end
    return recipe, stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prepared", type=Path)
    parser.add_argument("--run", type=Path, help="a finished run folder of the recipe: its own stage times")
    parser.add_argument("--recipe", default="default", help="without --run: the recipe to time a few epochs of")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per training stage (at least 2)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.epochs < 2:
        sys.exit("error: --epochs: expected at least 2 (the first epoch traces the graph)")
    if args.out.exists():
        sys.exit(f"error: --out {args.out}: exists; choose a new file")
    load_before = os.getloadavg()
    if args.run is not None:
        recipe, stages = from_run(args.run)
        key = "wall_seconds"
    else:
        recipe = recipes.load(args.recipe)
        stages = measure(args.prepared, recipe, args.epochs)
        key = "projected_seconds"
    dry = runner.project(args.prepared, recipe)
    load_after = os.getloadavg()
    measured = sum(s[key] or s.get("seconds", 0) for s in stages.values())
    projected = sum(r["projected_seconds"] for r in dry)
    write_json(args.out, {
        "recipe": recipe.source, "recipe_sha256": recipe.sha256, "prepared": str(args.prepared),
        "run": str(args.run) if args.run else None, "overrides": list(recipe.overrides),
        "machine": machine(), "load_average_before": load_before, "load_average_after": load_after,
        "timed_epochs_per_stage": None if args.run else args.epochs, "stages": stages,
        "measured_total_seconds": round(measured), "measured_total_hours": round(measured / 3600, 2),
        "dry_run": {r["stage"]: r for r in dry}, "dry_run_total_seconds": projected,
        "dry_run_over_measured": round(projected / measured, 3)})
    print(f"{args.out}: measured {measured / 3600:.2f} h, dry run {projected / 3600:.2f} h "
          f"({projected / measured:.2f} x); load average {load_before[0]:.2f} -> {load_after[0]:.2f}")


if __name__ == "__main__":
    main()
