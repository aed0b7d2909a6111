"""`edgekd train`: a prepared folder -> a recipe's stages (or one stage), resumable, with a dry run."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from edgekd.cli.app import config_options, given_settings, main
from edgekd.core import logs
from edgekd.core.errors import OptionError
from edgekd.core.settings import option
from edgekd.core.timing import machine
from edgekd.models.losses import KDLossConfig
from edgekd.recipes import recipe as recipes
from edgekd.training.config import STAGES, TrainConfig

# `--loss-variant`: a named set of KD-Loss constants (the --kd-* options given beside it win over it)
LOSS_VARIANTS = {"code": KDLossConfig(), "paper-figure": KDLossConfig.paper_figure()}
VARIANT_CONSTANTS = ("c", "tough_pos", "tough_neg", "tol_pos", "tol_neg", "ramp", "main_slope", "w_main", "w_tough",
                     "w_tol")
# TrainConfig fields a recipe's stages set themselves from the stage graph (and the command from -q or its own options)
NOT_FOR_A_RECIPE = ("stage", "recipe", "progress", "init_from", "teachers_dir", "teacher_targets")
# A dry run on a machine whose load average is at least this share of its cores says its projection is high
BUSY_LOAD = 0.5


@main.command("train", short_help="Prepared folder -> a recipe's stages: teachers, KD student, int8 export.")
@click.argument("prepared", type=click.Path(exists=True, file_okay=False))
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--run-dir", required=True, type=click.Path(file_okay=False),
              help="Run folder (one sub-folder per stage).")
@click.option("--stage", type=click.Choice(["all", *STAGES]), default="all",
              show_default=True, help="all = every stage of the recipe in order (finished ones skipped); or one stage "
                                      "alone, with the recipe's shared settings as its defaults.")
@click.option("--recipe", default="default", show_default=True,
              help=f"A recipe name (edgekd/recipes/: {', '.join(recipes.available())}) or your own .yaml recipe "
                   f"file. Options given explicitly and KEY=VALUE / STAGE.KEY=VALUE overrides win over it; "
                   f"control=true trains its plain control instead.")
@config_options(TrainConfig, exclude=("stage", "recipe", "progress", "teacher_checkpoints"))
@click.option("--loss-variant", type=click.Choice(list(LOSS_VARIANTS)), default=None,
              help="KD-Loss constants: the authors' code (the --kd-* defaults) or the paper's figures; --kd-* options "
                   "given beside it win.")
@click.option("--resume", is_flag=True, help="Continue from last.h5 (weights, optimizer, epoch) with the settings "
                                              "the run recorded; options that contradict them are refused.")
@click.option("--dry-run", is_flag=True, help="Time a few steps of each stage and print the projected run time; "
                                               "trains nothing.")
def train(prepared, overrides, run_dir, stage, recipe, loss_variant, resume, dry_run, **_settings):
    """Train a recipe from scratch, e.g. `edgekd train runs/data/300w-128 --run-dir runs/train/300w`.

    The default recipe (edgekd/recipes/default.yaml): a warm start, the Tough and Tolerant teachers, two plain
    refines of the Tough teacher, the KD student they teach, its float32 and int8 exports. `control=true` trains
    its plain control; `--stage X` trains one stage alone.
    """
    from edgekd.training.train import train as train_stage  # lazy: training code, kept out of edgekd --help

    given = given_settings(click.get_current_context())  # the settings come from here: **_settings is the same
    if given.get("augment") is False and "augment_preset" in given:
        raise OptionError(f"--no-augment and --augment {given['augment_preset']}: choose one (--no-augment trains on "
                          f"the canonical crops only)")
    if loss_variant is not None:
        variant = LOSS_VARIANTS[loss_variant]
        given["kd"] = {**{k: getattr(variant, k) for k in VARIANT_CONSTANTS}, **given.get("kd", {})}
    explicit = set(given)
    if stage == "all":
        _train_recipe(prepared, run_dir, recipe, overrides, explicit, given, resume, dry_run)
        return
    if overrides:
        raise OptionError(f"{overrides[0]}: KEY=VALUE overrides set a recipe's stages; with --stage {stage} give "
                          f"options (--epochs 30, ...)")
    cfg = recipes.stage_config(recipe, stage=stage, progress=logs.show_progress(), **given)
    if dry_run:
        from edgekd.training.projection import dry_run as project  # lazy: training code, kept out of edgekd --help

        load = machine()["load_average_1m"]  # before the dry run's own steps raise it
        _print_projection(project(prepared, cfg, (stage,)), load)
        return
    result = {stage: train_stage(prepared, run_dir, cfg, resume=resume, explicit=explicit)}
    click.echo(json.dumps(result, indent=1))


def _train_recipe(prepared, run_dir, recipe_name, overrides, explicit, given, resume, dry_run):
    """`edgekd train` of a whole recipe: explicit options become overrides of every stage that has the setting."""
    from edgekd.recipes import runner  # lazy: the recipe runner loads the training and export code

    refused = sorted(explicit & set(NOT_FOR_A_RECIPE))
    if refused:
        raise OptionError(f"{option(refused[0])}: a recipe's stages start from each other and find their teachers in "
                          f"the run; give it with --stage STAGE to train one stage alone")
    options = [f"kd.{k}={json.dumps(v)}" for k, v in given.pop("kd", {}).items()]
    options += [f"{name}={json.dumps(value)}" for name, value in sorted(given.items())]
    loaded = recipes.load(recipe_name, (*options, *overrides))
    if dry_run:
        load = machine()["load_average_1m"]  # before the dry run's own steps raise it
        _print_projection(runner.project(prepared, loaded), load)
        return
    result = runner.run(prepared, run_dir, loaded, resume=resume, progress=logs.show_progress(),
                        echo=click.echo if logs.show_progress() else (lambda *_: None))
    if not result.get("chief", True):
        click.echo(f"recipe {loaded.name}: this worker's share is trained; the chief exports and records the run")
        return
    for name, s in result["stages"].items():
        nme = s.get("best_val_nme")
        shown = f"val NME {nme:.3f} %" if nme is not None else \
            ", ".join(f"{v['file']} (val NME {v['val_nme']:.3f} %)" for v in s.values() if isinstance(v, dict))
        minutes = (s.get("stage_seconds") or 0) / 60
        click.echo(f"{name:>16}: {shown} ({minutes:.1f} min)")
    click.echo(f"recipe {loaded.name} (sha256 {loaded.sha256[:12]}): {result['total_seconds'] / 3600:.2f} h of "
               f"stages; {Path(run_dir) / ('summary-control.json' if loaded.control else 'summary.json')}")


def _print_projection(rows, load: float | None = None) -> None:
    """Each stage's projected time, the total and the CPU it was timed on; a busy machine is named, because its
    step times (and so the projection) come out high: other work shares the cores."""
    from edgekd.core.timing import cpu_name
    from edgekd.training.projection import format_duration  # lazy: training code, kept out of edgekd --help

    for r in rows:
        click.echo(f"{r['stage']:>16} {r['network']:<16} {r['seconds_per_step']:.2f} s/step x {r['steps']} steps"
                   f" = {format_duration(r['projected_seconds'])}")
    cores = os.cpu_count() or 1
    click.echo(f"projected total: {format_duration(sum(r['projected_seconds'] for r in rows))} on this machine "
               f"({cpu_name()}, {cores} cores)")
    if load is not None and load >= BUSY_LOAD * cores:
        click.echo(f"note: the machine was busy when the steps were timed (load average {load:.1f} on {cores} "
                   f"cores): the projection is high; time it again with the cores to itself")
