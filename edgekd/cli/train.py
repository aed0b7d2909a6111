"""`edgekd train`: a prepared folder -> a recipe's stages (or one stage), resumable, with a dry run."""
from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.app import main
from edgekd.core import logs
from edgekd.core.errors import OptionError
from edgekd.data.augment import PRESETS as AUGMENT_PRESETS
from edgekd.models.backbones import HEADS, MODELS
from edgekd.models.losses import LOSSES
from edgekd.training.config import SCHEDULES, STAGES


@main.command("train", short_help="Prepared folder -> a recipe's stages: teachers, KD student, int8 export.")
@click.argument("prepared", type=click.Path(exists=True, file_okay=False))
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--run-dir", required=True, type=click.Path(file_okay=False), help="Run folder (one sub-folder per stage).")
@click.option("--stage", type=click.Choice(["all", *STAGES]), default="all",
              show_default=True, help="all = every stage of the recipe in order (finished ones skipped); or one stage "
                                      "alone, with the recipe's shared settings as its defaults.")
@click.option("--recipe", default="default", show_default=True,
              help="A recipe name (edgekd/recipes/: default, paper) or your own .yaml recipe file. Options given "
                   "explicitly and KEY=VALUE / STAGE.KEY=VALUE overrides win over it; control=true trains its plain "
                   "control instead.")
@click.option("--epochs", type=int, default=None, help="Epochs (default: the recipe's; 110 for a single stage).")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--lr", default=1e-3, show_default=True, help="Initial (peak) Adam learning rate.")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=None,
              help="cosine: to --min-lr over exactly the planned steps; inverse-time: lr / (1 + --lr-decay * step).")
@click.option("--warmup-steps", default=0, show_default=True, help="Linear warm-up steps before the cosine.")
@click.option("--min-lr", default=1e-5, show_default=True, help="Where the cosine schedule ends.")
@click.option("--lr-decay", default=1e-4, show_default=True, help="Inverse-time decay per step (the paper's 1e-4).")
@click.option("--loss", type=click.Choice(list(LOSSES)), default=None,
              help="Loss of teachers and plain students (the KD student uses KD-Loss).")
@click.option("--head-init", type=click.Choice(["mean-shape", "default"]), default=None,
              help="mean-shape: the head's bias starts at the mean training shape.")
@click.option("--head", type=click.Choice(HEADS), default=None,
              help="gap: global average pooling -> Dense (the paper's); spatial: 1x1 conv -> Flatten -> Dense, "
                   "every output sees every position (--init-from a gap checkpoint starts it as that network).")
@click.option("--input-norm/--no-input-norm", default=None,
              help="Scale [0, 1] pixels to the backbone's input range inside the model.")
@click.option("--augment", "augment_preset", type=click.Choice(AUGMENT_PRESETS), default=None,
              help="light: geometry, mirror, contrast, brightness; full: also gamma, blur, noise, occlusion; mild: "
                   "light with rotations of at most 10 degrees (the last epochs of a long run); tight: mild with shifts "
                   "of at most 3 % and scales of 0.94-1.06 (for models whose detector crops come from the keypoints).")
@click.option("--alpha", default=1.0, show_default=True, help="MobileNetV2 width.")
@click.option("--dropout", type=float, default=None, help="Dropout before the teachers' Dense head.")
@click.option("--stochastic-depth", type=float, default=None, help="Teachers' EfficientNet drop-connect rate.")
@click.option("--teacher-arch", type=click.Choice(list(MODELS)), default=None,
              help="Teachers' network (recipe: mobilenetv2 fast-cpu, efficientnet-b3 paper).")
@click.option("--teacher-flip", is_flag=True, help="Average each teacher's output with its output on the mirrored "
                                                     "image (KD student; baseline with --teacher-blend).")
@click.option("--steps-per-epoch", type=int, default=None, help="Limit steps per epoch (default: whole train split).")
@click.option("--average-last", type=int, default=0, show_default=True,
              help="Also average the weights of the last K epochs (stochastic weight averaging): validated after the "
                   "last epoch, it becomes best.h5 when it beats every epoch.")
@click.option("--teachers-dir", type=click.Path(file_okay=False), multiple=True,
              help="Folder with tough/ and tolerant/ teacher runs (default: --run-dir); a baseline with "
                   "--teacher-blend reads tough/ alone. Repeat it for ensembles: each teacher is then the mean of its "
                   "role's networks in every folder, each fed the batch resized to its own input size.")
@click.option("--teacher-targets", type=click.Path(dir_okay=False), default=None,
              help="KD student: the teachers' outputs computed once by `edgekd data teach` instead of --teachers-dir "
                   "(a KD step then costs a plain one; the teachers saw canonical crops, not augmented ones, which "
                   "made KD-Loss worse here: benchmarks/README.md).")
@click.option("--init-from", type=click.Path(dir_okay=False), default=None,
              help="Start from this checkpoint's weights (same network; any input size, for fine-tuning at "
                   "another resolution) instead of random ones; a float32 .tflite export works too (e.g. "
                   "models/300w/student_float32.tflite, to fine-tune the shipped student).")
@click.option("--strategy", type=click.Choice(["default", "mirrored"]), default="default", show_default=True,
              help="mirrored = data-parallel over all local GPUs.")
@click.option("--loss-variant", type=click.Choice(["code", "paper-figure"]), default="code", show_default=True,
              help="KD-Loss constants: the authors' code or the paper's figures.")
@click.option("--main-loss", type=click.Choice(["paper", *LOSSES]), default="paper", show_default=True,
              help="KD-Loss main term: paper = Loss_Main as published, or a plain loss against the ground truth.")
@click.option("--teacher-blend", type=float, default=0.0, show_default=True,
              help="KD student: the main term's target is (1 - b) x ground truth + b x the Tough teacher's output, "
                   "0 to 1 (needs --main-loss l1, l2 or wing); baseline: the same target for its --loss, with no "
                   "assistive terms (distillation of the teacher's positions, e.g. of its mirror average).")
@click.option("--no-augment", is_flag=True, help="Train on the canonical crops only.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from last.h5 (weights, optimizer, epoch) with the settings "
                                              "the run recorded; options that contradict them are refused.")
@click.option("--dry-run", is_flag=True, help="Time a few steps of each stage and print the projected run time; "
                                               "trains nothing.")
def train(prepared, overrides, run_dir, stage, recipe, epochs, batch_size, lr, schedule, warmup_steps, min_lr, lr_decay, loss,
          head_init, head, input_norm, augment_preset, alpha, dropout, stochastic_depth, teacher_arch, teacher_flip,
          steps_per_epoch, average_last, teachers_dir, teacher_targets, init_from, strategy, loss_variant, main_loss,
          teacher_blend, no_augment, seed, resume, dry_run):
    """Train a recipe from scratch, e.g. `edgekd train runs/data/300w-128 --run-dir runs/train/300w`.

    The default recipe (edgekd/recipes/default.yaml): a warm start, the Tough and Tolerant teachers, the KD student,
    its float32 and int8 exports. `control=true` trains its plain control; `--stage X` trains one stage alone.
    """
    import json

    from edgekd.recipes import recipe as recipes
    from edgekd.training.train import train as train_stage

    ctx = click.get_current_context()
    explicit = _explicit_train_fields(ctx)
    if no_augment and augment_preset is not None:
        raise OptionError(f"--no-augment and --augment {augment_preset}: choose one (--no-augment trains on the "
                          f"canonical crops only)")
    given = _given_settings(ctx, locals())
    if stage == "all":
        _train_recipe(prepared, run_dir, recipe, overrides, explicit, given, resume, dry_run)
        return
    if overrides:
        raise OptionError(f"{overrides[0]}: KEY=VALUE overrides set a recipe's stages; with --stage {stage} give "
                          f"options (--epochs 30, ...)")
    cfg = recipes.stage_config(recipe, stage=stage, teachers_dir=teachers_dir, teacher_targets=teacher_targets,
                               init_from=init_from, progress=logs.show_progress(), **given)
    if dry_run:
        from edgekd.training.train import dry_run as project

        _print_projection(project(prepared, cfg, (stage,)))
        return
    result = {stage: train_stage(prepared, run_dir, cfg, resume=resume, explicit=explicit)}
    click.echo(json.dumps(result, indent=1))


# train options that a recipe's stages set themselves: refused with `--stage all`
_STAGE_ONLY = {"init_from": "--init-from", "teachers_dir": "--teachers-dir", "teacher_targets": "--teacher-targets"}


def _given_settings(ctx, params: dict) -> dict:
    """The settings the user gave on the command line, as TrainConfig fields (``kd`` as the KD-Loss constants
    given): what wins over the recipe, and nothing else (an option left at its default does not)."""
    from click.core import ParameterSource

    from edgekd.models.losses import KDLossConfig
    from edgekd.training.config import TrainConfig

    given_option = lambda name: ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE  # noqa: E731
    values = {"learning_rate": params["lr"], "augment": not params["no_augment"]}
    out = {}
    for name in TrainConfig.__dataclass_fields__:
        option = {"learning_rate": "lr", "augment": "no_augment"}.get(name, name)
        if name not in ("kd", "stage", "recipe", "progress", "teachers_dir", "teacher_targets", "init_from") \
                and option in ctx.params and given_option(option):
            out[name] = values.get(name, params.get(name))
    kd = {}
    if given_option("loss_variant"):
        constants = KDLossConfig.paper_figure() if params["loss_variant"] == "paper-figure" else KDLossConfig()
        kd.update({k: getattr(constants, k) for k in ("c", "tough_pos", "tough_neg", "tol_pos", "tol_neg", "ramp",
                                                       "main_slope", "w_main", "w_tough", "w_tol")})
    if given_option("main_loss"):
        kd["main"] = params["main_loss"]
    if given_option("teacher_blend"):
        kd["teacher_blend"] = params["teacher_blend"]
    if kd:
        out["kd"] = kd
    return out


def _train_recipe(prepared, run_dir, recipe_name, overrides, explicit, given, resume, dry_run):
    """`edgekd train` of a whole recipe: explicit options become overrides of every stage that has the setting."""
    import json

    from edgekd.recipes import recipe as recipes

    for name, option in _STAGE_ONLY.items():
        if name in explicit:
            raise OptionError(f"{option}: a recipe's stages start from each other and find their teachers in the run; "
                              f"give it with --stage STAGE to train one stage alone")
    options = [f"kd.{k}={json.dumps(v)}" for k, v in given.pop("kd", {}).items()]
    options += [f"{name}={json.dumps(value)}" for name, value in sorted(given.items())]
    loaded = recipes.load(recipe_name, (*options, *overrides))
    if dry_run:
        _print_projection(recipes.project(prepared, loaded))
        return
    result = recipes.run(prepared, run_dir, loaded, resume=resume, progress=logs.show_progress(),
                         echo=click.echo if logs.show_progress() else (lambda *_: None))
    for name, s in result["stages"].items():
        nme = s.get("best_val_nme")
        shown = f"val NME {nme:.3f} %" if nme is not None else \
            ", ".join(f"{v['file']} (val NME {v['val_nme']:.3f} %)" for v in s.values() if isinstance(v, dict))
        minutes = (s.get("stage_seconds") or 0) / 60
        click.echo(f"{name:>16}: {shown} ({minutes:.1f} min)")
    click.echo(f"recipe {loaded.name} (sha256 {loaded.sha256[:12]}): {result['total_seconds'] / 3600:.2f} h of "
               f"stages; {Path(run_dir) / ('summary-control.json' if loaded.control else 'summary.json')}")


def _print_projection(rows) -> None:
    from edgekd.training.train import format_duration

    for r in rows:
        click.echo(f"{r['stage']:>16} {r['network']:<16} {r['seconds_per_step']:.2f} s/step x {r['steps']} steps"
                   f" = {format_duration(r['projected_seconds'])}")
    click.echo(f"projected total: {format_duration(sum(r['projected_seconds'] for r in rows))} on this machine")




def _explicit_train_fields(ctx) -> set[str]:
    """TrainConfig fields the user set on the command line (--resume refuses those that contradict the run)."""
    from click.core import ParameterSource

    from edgekd.training.config import OPTION_NAMES, TrainConfig

    fields = {option.lstrip("-").replace("-", "_"): field for field, options in OPTION_NAMES.items()
              for option in options.split("/")}
    out = set()
    for name in ctx.params:
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            field = fields.get(name, name)
            if field in TrainConfig.__dataclass_fields__:
                out.add(field)
    return out
