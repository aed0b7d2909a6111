"""The `edgekd` command: one verb per stage, each a thin layer over the Python API (no logic lives here).

Conventions every verb follows (tests/test_cli.py compares their --help):
  --root DIR        a dataset root as downloaded          PREPARED / --prepared DIR   a prepared folder
  --out FILE        a file to write                      --out-dir DIR                a folder to write
  --name, --exist-ok  a run folder runs/<verb>/<name>, numbered exp, exp2, ... unless --exist-ok (Ultralytics)
  --threads         thread counts (a list where a verb times several)
Choices are read from the registries (datasets, networks, losses, recipes), so a new entry shows up here by itself.
Errors are handled in one place (EdgekdGroup.main): one line, exit status 2, no traceback.
Each command function takes one parameter per option, as click passes them: the reason they exceed eight.
"""
from __future__ import annotations

import errno
import sys
from pathlib import Path

import click

import edgekd
from edgekd.core import logs
from edgekd.bench.config import DEVICES, PEERS, SPLITS
from edgekd.bench.protocols import PROTOCOLS
from edgekd.data.augment import PRESETS as AUGMENT_PRESETS
from edgekd.core.errors import EdgekdError, OptionError, describe_os_error
from edgekd.models.losses import LOSSES
from edgekd.models.backbones import HEADS, MODELS
from edgekd.training.qat import QAT_SCHEDULES, QAT_TARGETS, QATConfig
from edgekd.core.schemes import SCHEMES
from edgekd.training.train import SCHEDULES, STAGES
from edgekd.runtime.blazeface import BACKENDS as DETECTOR_BACKENDS, RANGES as DETECTOR_RANGES
from edgekd.runtime.predictor import MAX_REFINE, TTA

RUNS = Path("runs")  # run folders: runs/<verb>/<name>, relative to where the command runs (as in Ultralytics)
DATASETS = click.Choice(sorted(SCHEMES))


class EdgekdGroup(click.Group):
    """The top-level group: the one error handler of every verb. User errors (EdgekdError, bad options, OS errors
    such as a read-only folder or a full disk) become one line on stderr and exit status 2; Ctrl-C exits 130.
    Real bugs keep their traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click.exceptions.NoArgsIsHelpError as e:  # `edgekd` or `edgekd data` alone: the help, as click shows it
            e.show()
            code = e.exit_code
        except click.UsageError as e:
            code = _fail(_usage_line(e), 2)
        except click.ClickException as e:
            code = _fail(e.format_message(), e.exit_code)
        except EdgekdError as e:
            code = _fail(str(e), 2)
        except click.exceptions.Abort as e:
            if isinstance(e.__cause__, EOFError):  # click turns any EOFError into Abort: a file that ended early
                code = _fail(f"unexpected end of a file ({e.__cause__ or 'EOFError'}): an empty or truncated input", 2)
            else:
                code = _fail("interrupted", 130)
        except OSError as e:
            code = 0 if e.errno == errno.EPIPE else _fail(describe_os_error(e), 2)  # EPIPE: `| head` closed it
        finally:
            logs.reset()
        sys.exit(code)


def _fail(message: str, code: int) -> int:
    click.echo(f"error: {' '.join(str(message).split())}", err=True)  # one line, whatever the message held
    return code


def _usage_line(e: click.UsageError) -> str:
    msg = e.format_message()
    if e.ctx is None:
        return msg
    pieces = " ".join(e.ctx.command.collect_usage_pieces(e.ctx))
    return f"{msg[:1].lower()}{msg[1:].rstrip('.')} (usage: {e.ctx.command_path} {pieces}; see {e.ctx.command_path} -h)"


class Option(click.Option):
    """A click option whose old spellings (``old=("--data",)``) keep working but are hidden from --help, so each
    concept shows one name across verbs while scripts written for an earlier version still run."""

    def __init__(self, param_decls, old=(), **kwargs):
        super().__init__([*param_decls, *old], **kwargs)
        self.old = tuple(old)

    def get_help_record(self, ctx):
        saved = self.opts
        self.opts = [o for o in saved if o not in self.old]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = saved


class ThreadCounts(click.ParamType):
    """Thread counts, one concept for every verb: ``1,2`` where a verb times several (a tuple), one count where
    it runs once (``many=False``: an int)."""

    def __init__(self, many: bool = True):
        self.many = many
        self.name = "N[,N...]" if many else "N"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or (isinstance(value, tuple) and self.many):
            counts = (value,) if isinstance(value, int) else value
        else:
            try:
                counts = tuple(int(v) for v in str(value).split(",") if v.strip())
            except ValueError:
                self.fail(f"{value!r}: expected {'comma-separated thread counts like 1,2' if self.many else 'a count'}",
                          param, ctx)
        if not counts or min(counts) < 1 or max(counts) > 256:
            self.fail(f"{value!r}: expected thread counts from 1 to 256", param, ctx)
        if not self.many and len(counts) != 1:
            self.fail(f"{value!r}: expected one thread count", param, ctx)
        return counts if self.many else counts[0]


def run_dir_options(verb: str):
    """--name and --exist-ok, as Ultralytics users know them, for a verb whose output is a run folder."""
    def decorate(fn):
        fn = click.option("--exist-ok", is_flag=True, help=f"Reuse runs/{verb}/NAME instead of numbering a new "
                                                           "folder.")(fn)
        return click.option("--name", default="exp", show_default=True,
                            help=f"Run folder runs/{verb}/NAME; taken names get a number: exp2, exp3, ...")(fn)
    return decorate


detector_backend_option = click.option(
    "--detector-backend", type=click.Choice(DETECTOR_BACKENDS), default="auto", show_default=True,
    help="auto = litert: BlazeFace on LiteRT (the boxes MediaPipe Tasks finds, without its wrapper's cost); "
         "tasks: MediaPipe Tasks' FaceDetector, as the Android app runs it.")

refine_option = click.option(
    "--refine", type=int, default=0, show_default=True,
    help=f"Cut each face again N times from its own predicted points and predict again (N more model runs): "
         f"crops from the detector's box come closer to ground-truth ones. 0 to {MAX_REFINE}.")


@click.group(name="edgekd", cls=EdgekdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(edgekd.__version__, prog_name="edgekd")
@click.option("-v", "--verbose", is_flag=True, help="Also debug messages and the native libraries' own logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors: no progress bars, no notices.")
def main(verbose, quiet):
    """Knowledge-distilled facial landmarks for phones: data -> train -> export -> bench / predict."""
    if verbose and quiet:
        raise click.UsageError("-v/--verbose and -q/--quiet exclude each other")
    logs.setup(1 if verbose else -1 if quiet else 0)


# --- data -------------------------------------------------------------------------------------------------------
@main.group(short_help="Prepare a dataset (crops, ASM soft landmarks) and look at it.")
def data():
    """Read datasets, crop faces, fit the ASM, write prepared folders."""


@data.command("prepare", short_help="Dataset root -> prepared folder that training streams.")
@click.option("--dataset", type=DATASETS, default="300w", show_default=True, help="Dataset format and landmarks.")
@click.option("--root", required=True, type=click.Path(file_okay=False),
              help="Dataset root as downloaded (300-W: the folder holding lfpw/ and helen/).")
@click.option("--out-dir", "out_dir", cls=Option, old=("--out",), required=True, type=click.Path(file_okay=False),
              help="Prepared folder to write (never inside --root).")
@click.option("--input-size", type=int, default=128, show_default=True,
              help="Model input size: a multiple of 32 from 64 to 224 (64 is for quick tests).")
@click.option("--margin", type=float, default=0.15, show_default=True,
              help="Crop margin on each side, fraction of the box, 0 to 1.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Share of training faces kept for validation, above 0 and below 0.5.")
@click.option("--asm-variance", type=float, default=0.90, show_default=True,
              help="Variance share the ASM keeps (soft landmarks), above 0 and at most 1.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fit-detector/--no-fit-detector", default=True, show_default=True,
              help="Fit the MediaPipe face-box -> crop-box mapping on the training faces (stored in the crop spec).")
@click.option("--force", is_flag=True, help="Rewrite a prepared folder (only one that prepare wrote).")
def data_prepare(dataset, root, out_dir, input_size, margin, val_fraction, asm_variance, seed, fit_detector, force):
    """Prepare a dataset for training, e.g.
    `edgekd data prepare --root path/to/300w --out-dir runs/data/300w-128`.

    A rerun with the same settings finds the folder prepared and does nothing."""
    from edgekd.data.prepare import PrepareConfig, prepare

    cfg = PrepareConfig(dataset=dataset, root=root, input_size=input_size, margin=margin,
                        val_fraction=val_fraction, asm_variance=asm_variance, seed=seed, fit_detector=fit_detector)
    manifest = prepare(cfg, out_dir, force=force, progress=logs.show_progress())
    if not manifest.reused:  # prepare itself said, in one line, that there was nothing to do
        click.echo(manifest.summary())
        click.echo(f"prepared data in {out_dir}")


@data.command("show", short_help="Draw (augmented) training crops with their landmarks into a PNG.")
@click.argument("prepared", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False),
              help="PNG to write (default: runs/show/NAME/samples.png; never inside PREPARED).")
@run_dir_options("show")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train", show_default=True)
@click.option("--count", type=int, default=12, show_default=True, help="Faces to draw, 1 to 400.")
@click.option("--augment", "augment_preset", type=click.Choice(AUGMENT_PRESETS), default="light", show_default=True,
              help="Augmentation drawn, as `train --augment` takes it.")
@click.option("--no-augment", is_flag=True, help="Draw the canonical crops only.")
@click.option("--seed", type=int, default=0, show_default=True)
def data_show(prepared, out, name, exist_ok, split, count, augment_preset, no_augment, seed):
    """Draw training samples (augmented by default) with hard (green) and soft (red) landmarks into a PNG."""
    from click.core import ParameterSource

    from edgekd.data.visualize import draw_prepared_samples
    from edgekd.core.fileio import check_output_dir, mark_output_dir, next_run_dir

    augment_given = click.get_current_context().get_parameter_source("augment_preset") == ParameterSource.COMMANDLINE
    if no_augment and augment_given:
        raise OptionError(f"--no-augment and --augment {augment_preset}: choose one (--no-augment draws the "
                          f"canonical crops)")
    folder = None
    if out is None:
        folder = check_output_dir(next_run_dir(RUNS / "show", name, exist_ok), "data show", "--exist-ok")
        out = folder / "samples.png"
    path = draw_prepared_samples(prepared, out, split=split, count=count, augment=not no_augment and augment_preset,
                                 seed=seed)
    if folder is not None:
        mark_output_dir(folder, "data show")
    click.echo(f"wrote {path}")


@data.command("teach", short_help="Teachers' outputs on every training face, once: KD without teachers in the loop.")
@click.argument("prepared", type=click.Path(exists=True, file_okay=False))
@click.option("--tough", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Tough-teacher checkpoint (hard landmarks); repeat it for an ensemble, whose mean is the target.")
@click.option("--tolerant", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Tolerant-teacher checkpoint (soft landmarks); repeat it for an ensemble.")
@click.option("--teacher-flip", is_flag=True, help="Average each teacher's output with its output on the mirrored "
                                                     "crop.")
@click.option("--also-prepared", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Prepared folders of the same faces at other input sizes, for teachers of those sizes.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The .npz to write (`edgekd train --teacher-targets` reads it; never inside PREPARED).")
def data_teach(prepared, tough, tolerant, teacher_flip, also_prepared, out):
    """Run the teachers once over the training faces and save their outputs, e.g.
    `edgekd data teach runs/data/300w-128 --tough a.h5 --tough b.h5 --tolerant c.h5 --teacher-flip --out t.npz`.

    `edgekd train --stage student --teacher-targets t.npz` then trains KD-Loss from these outputs, carried by each
    sample's augmentation like the landmarks, at the cost of a plain step. Each teacher runs on the prepared folder
    of its input size (PREPARED or an --also-prepared one)."""
    from edgekd.training import teacher_targets
    from edgekd.data.pipeline import PreparedData
    from edgekd.core.checkpoint import check_network
    from edgekd.core.fileio import check_no_file_in_the_way, check_outside_inputs

    inputs = {"PREPARED": prepared, **{f"--also-prepared {p}": p for p in also_prepared},
              **{f"--tough {p}": p for p in tough}, **{f"--tolerant {p}": p for p in tolerant}}
    check_outside_inputs(out, "--out", inputs)
    check_no_file_in_the_way(out, "--out")
    for path in (*tough, *tolerant):  # every teacher before the first one runs: none that is no checkpoint
        check_network(path)
    folders = [PreparedData.open(p) for p in (prepared, *also_prepared)]
    targets, meta = teacher_targets.compute(folders, {"tough": tough, "tolerant": tolerant}, teacher_flip,
                                            logs.log.info if logs.show_progress() else None)
    teacher_targets.save(out, targets, meta, teacher_targets.face_ids(folders[0]))
    for role in teacher_targets.ROLES:
        nets = meta["teachers"][role]["networks"]
        each = ", ".join(f"{r['train_nme']:.2f}" for r in nets)
        click.echo(f"{role}: {len(nets)} network(s), NME on the {meta['faces']} training faces {each} -> "
                   f"target {meta['teachers'][role]['train_nme']:.2f} %")
    click.echo(f"wrote {out}")


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
    from edgekd.training.train import TrainConfig

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

    from edgekd.training.train import OPTION_NAMES, TrainConfig

    fields = {option.lstrip("-").replace("-", "_"): field for field, options in OPTION_NAMES.items()
              for option in options.split("/")}
    out = set()
    for name in ctx.params:
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            field = fields.get(name, name)
            if field in TrainConfig.__dataclass_fields__:
                out.add(field)
    return out


@main.command("export", short_help="Checkpoint -> .tflite (float32, float16, dynamic, int8, QAT) with a card.")
@click.argument("checkpoint", required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The .tflite to write (its card goes beside it).")
@click.option("--int8", "int8", is_flag=True, help="Full-integer int8 by post-training quantization.")
@click.option("--qat", is_flag=True, help="Full-integer int8 after quantization-aware fine-tuning (the landmark layer "
                                          "in float with --float-head).")
@click.option("--float16", is_flag=True, help="float16 weights.")
@click.option("--dynamic", is_flag=True, help="Dynamic-range: int8 weights, float activations.")
@click.option("--prepared", "prepared", cls=Option, old=("--data",), type=click.Path(file_okay=False),
              help="Prepared folder the checkpoint was trained on (default: the one its run recorded).")
@click.option("--input-type", type=click.Choice(["int8", "uint8", "float32"]), default="int8", show_default=True,
              help="Input tensor type of an int8/QAT export.")
@click.option("--output-type", type=click.Choice(["float32", "int8", "uint8"]), default="float32", show_default=True,
              help="Output tensor type of an int8/QAT export (float32 = dequantized int8 head).")
@click.option("--calibration-samples", default=300, show_default=True, help="Augmented training crops to calibrate on.")
@click.option("--qat-epochs", default=QATConfig.epochs, show_default=True,
              help="Quantization-aware fine-tuning epochs.")
@click.option("--qat-steps", default=None, type=int, help="Steps per QAT epoch (default: the whole training split).")
@click.option("--qat-lr", default=QATConfig.learning_rate, show_default=True,
              help="QAT Adam learning rate; keep it near the rate the checkpoint's training ended on (measured "
                   "best: 1e-5 after a cosine run to 1e-6; 3e-5 and 1e-4 were worse).")
@click.option("--qat-target", type=click.Choice(list(QAT_TARGETS)), default=QAT_TARGETS[0], show_default=True,
              help="What QAT fits: the float network's own outputs on the same crops (it then only learns to undo "
                   "the rounding; measured best), or the run's own targets and loss (KD-Loss with the student's "
                   "teachers; a --teacher-blend baseline's blend with its Tough teacher).")
@click.option("--qat-schedule", type=click.Choice(list(QAT_SCHEDULES)), default=QATConfig.schedule,
              show_default=True,
              help="QAT learning rate: cosine-decayed to 0 over the fine-tune, or constant.")
@click.option("--teachers-dir", type=click.Path(file_okay=False),
              help="QAT with --qat-target truth: folder with tough/best.h5 and tolerant/best.h5 (tough alone for a "
                   "--teacher-blend baseline; default: the run's teachers, all of an ensemble's networks).")
@click.option("--float-head", is_flag=True,
              help="QAT: keep the landmark layer in float (int8 up to its input): no int8 rounding of the output. "
                   "For the shipped 128 px student: +0.5 MB, about +0.02 ms, and 0.003-0.006 lower validation NME "
                   "in two paired runs (within one QAT run's spread).")
@click.option("--tolerance", default=0.1, show_default=True, help="Largest NME increase (points) over the Keras model.")
@click.option("--allow-degradation", is_flag=True, help="Write the model even if it loses more than --tolerance.")
@click.option("--seed", default=0, show_default=True)
def export(checkpoint, out, int8, qat, float16, dynamic, prepared, input_type, output_type, calibration_samples,
           qat_epochs, qat_steps, qat_lr, qat_schedule, qat_target, teachers_dir, float_head, tolerance,
           allow_degradation, seed):
    """Convert a checkpoint to .tflite with metadata and a model card, e.g.
    `edgekd export runs/train/300w/student/best.h5 --out runs/export/student_int8.tflite --int8`."""
    from edgekd.export.exporter import ExportConfig, export_model

    chosen = [m for m, on in (("int8", int8), ("qat", qat), ("float16", float16), ("dynamic", dynamic)) if on]
    if len(chosen) > 1:
        raise EdgekdError(f"choose one of --int8, --qat, --float16, --dynamic (got {', '.join(chosen)})")
    r = export_model(ExportConfig(
        checkpoint, out, chosen[0] if chosen else "float32", prepared, input_type=input_type, output_type=output_type,
        calibration_samples=calibration_samples, qat_epochs=qat_epochs, qat_steps_per_epoch=qat_steps,
        qat_learning_rate=qat_lr, qat_schedule=qat_schedule, qat_target=qat_target, teachers_dir=teachers_dir,
        float_head=float_head, tolerance=tolerance, allow_degradation=allow_degradation, seed=seed,
        progress=logs.show_progress()))
    warn = " (DEGRADED, written with --allow-degradation)" if r.degraded else ""
    click.echo(f"wrote {r.path} ({r.size_mb:.2f} MB, {r.metadata.quantization}): validation NME "
               f"{r.nme_tflite:.3f}% vs Keras {r.nme_keras:.3f}%{warn}, {r.latency['median']:.2f} ms "
               f"1 thread; card {r.card_md}")


@main.command(short_help="Accuracy (NME, FR, AUC) and latency of models behind the face detector.")
@click.argument("models", nargs=-1, type=click.Path())
@click.option("--root", "root", cls=Option, old=("--data",), type=click.Path(file_okay=False),
              help="Dataset root as downloaded (the --split faces are scored); without it, latency only.")
@click.option("--dataset", type=DATASETS, default="300w", show_default=True, help="Dataset format and landmarks.")
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True,
              help="val: the validation faces of --prepared (from their images under --root), to choose settings "
                   "such as --refine or --tta without reading the test set; train: every training face as "
                   "downloaded, validation faces included.")
@click.option("--prepared", type=click.Path(file_okay=False),
              help="With --split val: the prepared folder (`edgekd data prepare`) whose validation faces to score.")
@click.option("--out-dir", "out_dir", cls=Option, old=("--out",), type=click.Path(file_okay=False),
              help="Folder for results.json, report.md and the plots (default: runs/bench/NAME).")
@run_dir_options("bench")
@click.option("--crop", "crop", type=click.Choice([*PROTOCOLS, "both"]), default="detector", show_default=True,
              help="Crop from the face detector's box (as an app does), from the ground truth (paper), or both.")
@click.option("--threads", type=ThreadCounts(), default="1,2", show_default=True, help="Thread counts to time.")
@click.option("--compare", multiple=True, type=click.Choice(PEERS),
              help="Peers scored in the same run (repeatable): dlib (HOG + 68-point predictor), mediapipe (Face Mesh "
                   "on LiteRT behind the same detector, mapped to 68 points).")
@click.option("--limit", type=int, help="Only the first N faces of the split (quick checks), 1 or more.")
@click.option("--tta", type=click.Choice(TTA), default="none", show_default=True,
              help="flip: every model also as a mirror-averaged row (two model runs per face), as `predict --tta`.")
@refine_option
@click.option("--video", is_flag=True,
              help="Also a video row: each face as a pan-and-zoom clip, per-frame time and NME with tracking "
                   "vs detector crops on the same frames (adds a pass over every face).")
@detector_backend_option
@click.option("--device", type=click.Choice(DEVICES), default="desktop", show_default=True,
              help="desktop, or pixel: the one Android phone attached over adb (runs android_demo's evaluation mode).")
@click.option("--serial", help="Phone: adb serial, when several devices are attached.")
@click.option("--adb", "adb_path", type=click.Path(dir_okay=False), help="Phone: adb binary (default: PATH, $ANDROID_HOME).")
@click.option("--apk", type=click.Path(dir_okay=False), help="Phone: install this android_demo APK first.")
@click.option("--benchmark-binary", type=click.Path(dir_okay=False),
              help="Phone: TFLite's benchmark_model binary, for model-only latency on the device.")
def bench(models, root, dataset, split, prepared, out_dir, name, exist_ok, crop, threads, compare, limit, tta, refine,
          video, detector_backend,
          device, serial, adb_path, apk, benchmark_binary):
    """Accuracy and latency of .tflite models / Keras checkpoints, e.g.
    `edgekd bench models/300w/student_qat_int8.tflite --root path/to/300w --crop both --compare dlib`.

    Each run writes into a new folder runs/bench/exp, exp2, ... unless --out-dir or --exist-ok says otherwise."""
    from edgekd.bench import benchmark
    from edgekd.core.fileio import next_run_dir

    phone = {k: v for k, v in (("serial", serial), ("adb", adb_path), ("apk", apk),
                               ("benchmark_binary", benchmark_binary)) if v}
    from edgekd.core.fileio import check_output_dir, check_outside_inputs

    if out_dir is not None:
        check_outside_inputs(out_dir, "--out-dir", {"--root": root, "--prepared": prepared})  # inputs stay as they are
    out = out_dir if out_dir is not None else next_run_dir(RUNS / "bench", name, exist_ok)
    check_output_dir(out, "bench", "--out-dir" if out_dir is not None else "--exist-ok")  # never a user's folder
    result = benchmark(list(models), data=root, dataset=dataset, split=split, prepared=prepared, out=out, crop=crop,
                       threads=threads, compare=compare, limit=limit, tta=tta, refine=refine, video=video,
                       detector_backend=detector_backend, device=device, device_options=phone,
                       progress=logs.show_progress())
    click.echo(result.table)
    click.echo(f"results saved to {result.out}")


@main.command(short_help="Landmarks of every face in an image, a video or a camera stream.")
@click.argument("model", type=click.Path())
@click.argument("source", required=False)
@click.option("--out", type=click.Path(dir_okay=False),
              help="Annotated copy: an image (.png/.jpg) of a still, a video (.mp4/.avi) of a video or camera "
                   "(default: runs/predict/NAME/<source>.png or .mp4).")
@run_dir_options("predict")
@click.option("--pts", type=click.Path(dir_okay=False),
              help="Points. Still image: .pts, one file per face (FILE for one face; FILE_1.pts, FILE_2.pts, ... "
                   "for several), or one .json with every face's box, score and points. Video: .csv or .json, "
                   "every frame.")
@click.option("--detector", type=click.Choice(DETECTOR_RANGES), default="short-range", show_default=True,
              help="MediaPipe BlazeFace short-range (faces within ~2 m of a camera) or full-range (smaller, "
                   "more distant faces); many small faces in a large photo need --tiles.")
@detector_backend_option
@click.option("--min-score", type=float, default=0.5, show_default=True, help="Detector score threshold, 0 to 1.")
@click.option("--tiles", type=int, default=1, show_default=True,
              help="Also detect on NxN overlapping tiles, for small faces in large photos (N*N+1 detector calls); "
                   "1 to 8.")
@click.option("--redetect-every", type=int, default=10, show_default=True,
              help="Video: run the detector every N frames, and whenever a tracked face is lost.")
@click.option("--smooth/--no-smooth", default=True, show_default=True,
              help="Video: One Euro smoothing of the points (the Android demo's constants).")
@click.option("--max-faces", type=int, help="Video: track at most N faces (default: every face found).")
@click.option("--max-frames", type=int, help="Video: stop after N frames (a camera otherwise runs until Ctrl-C).")
@click.option("--threads", type=ThreadCounts(many=False), default=1, show_default=True,
              help="Interpreter threads.")
@click.option("--tta", type=click.Choice(TTA), default="none", show_default=True,
              help="Test-time augmentation: flip = also run the mirrored crop and average (two model runs per face).")
@refine_option
def predict(model, source, out, name, exist_ok, pts, detector, detector_backend, min_score, tiles, redetect_every,
            smooth, max_faces, max_frames, threads, tta, refine):
    """Landmarks of every face in SOURCE: an image, a video file, or a camera index (0, 1, ...), e.g.
    `edgekd predict models/300w/student_qat_int8.tflite group.jpg --pts faces.json`.

    Still images: detector -> crop from the model's metadata -> model -> image points, for every face. Video: faces
    are tracked (each crop from the previous frame's landmarks, the detector every --redetect-every frames or when a
    track is lost) and smoothed. Without SOURCE, scikit-image's astronaut photo (public domain) is used."""
    from edgekd.core.errors import check_range
    from edgekd.core.fileio import (check_no_file_in_the_way, check_output_dir, check_outside_inputs, mark_output_dir,
                               next_run_dir)
    from edgekd.runtime.video import check_points_path, is_video

    check_range("--min-score", min_score, 0, 1)
    check_range("--tiles", tiles, 1, 8, integer=True)
    check_range("--redetect-every", redetect_every, 1, integer=True)
    check_range("--refine", refine, 0, MAX_REFINE, integer=True)
    for option, value in (("--max-faces", max_faces), ("--max-frames", max_frames)):
        if value is not None:
            check_range(option, value, 1, integer=True)
    if source is not None and str(source).strip() == "":
        raise OptionError("SOURCE '': expected an image, a video or a camera index (leave it out for the sample "
                          "photo)")
    video = is_video(source)
    if video and refine:
        raise OptionError("--refine: still images only (a tracked video frame is already cut from the previous "
                          "frame's points)")
    check_points_path(pts, video)
    folder = None
    if out is None:
        stem = f"camera{source}" if video and str(source).isdigit() else Path(source).stem if source else "astronaut"
        folder = check_output_dir(next_run_dir(RUNS / "predict", name, exist_ok), "predict", "--exist-ok")
        out = folder / f"{stem}{'.mp4' if video else '.png'}"
    for option, path in (("--out", out), ("--pts", pts)):
        if path is not None:
            check_outside_inputs(path, option, {"MODEL": model, "SOURCE": source})
            check_no_file_in_the_way(path, option)
    detector_options = {"detector": detector, "min_score": min_score, "backend": detector_backend, "tiles": tiles}
    if video:
        from edgekd.runtime.video import predict_video

        r = predict_video(model, source, out, pts, detector_options, max_frames=max_frames, num_threads=threads,
                          flip=tta == "flip", tracking={"redetect_every": redetect_every, "max_faces": max_faces, "smoothing": smooth})
        if folder is not None and folder.is_dir():
            mark_output_dir(folder, "predict")
        ms = sorted(r.frame_ms)[len(r.frame_ms) // 2]
        click.echo(f"{r.frames} frames of {r.source} ({r.size[0]}x{r.size[1]}, {r.fps:.3g} fps): faces in "
                   f"{sum(n > 0 for n in r.faces_per_frame)} frames, detector on {r.stats.detector_runs}, "
                   f"{ms:.2f} ms per frame (median); wrote {', '.join(map(str, r.written))}")
        return
    from edgekd.runtime import predict_file, write_face_points
    faces = predict_file(model, source, out=out, num_threads=threads, detector=detector_options, flip=tta == "flip",
                         refine=refine)
    label, how = source or "the astronaut sample", f"{detector} detector, score >= {min_score:.2f}"
    try:
        written = write_face_points(pts, faces, str(label)) if pts else []
    except BaseException:  # no picture of this run without its points (e.g. --pts in a read-only folder)
        if faces and out is not None:
            Path(out).unlink(missing_ok=True)
        raise
    if folder is not None and folder.is_dir():
        mark_output_dir(folder, "predict")
    if not faces:
        click.echo(f"no face found in {label} ({how}): nothing written; for small or distant faces try "
                   f"--detector full-range, --tiles 3 or a lower --min-score")
        return
    click.echo(f"{len(faces)} face{'s' if len(faces) > 1 else ''} found in {label} ({how}):")
    for k, f in enumerate(faces, 1):
        x, y, w, h = f.detection.box
        click.echo(f"  face {k}: box x={x:.0f} y={y:.0f} w={w:.0f} h={h:.0f}, score {f.score:.3f}, "
                   f"{len(f.points)} points")
    click.echo(f"wrote {', '.join(map(str, [out, *written]))}")


class NonEmptyPath(click.Path):
    """click.Path that refuses an empty string: ``--out-dir ""`` would otherwise mean the current folder (prepare
    then failed at its end with "Device or resource busy"), ``--out ""`` a file without a name."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip() == "":
            self.fail("an empty path; give the name of a file or folder", param, ctx)
        return super().convert(value, param, ctx)


def _refuse_empty_paths(command: click.Command) -> None:
    """Every path option and argument of every verb refuses an empty string (one rule, not one check per verb)."""
    for param in command.params:
        t = param.type
        if isinstance(t, click.Path) and not isinstance(t, NonEmptyPath):
            param.type = NonEmptyPath(exists=t.exists, file_okay=t.file_okay, dir_okay=t.dir_okay,
                                      writable=t.writable, readable=t.readable, resolve_path=t.resolve_path,
                                      allow_dash=t.allow_dash, path_type=t.type, executable=t.executable)
    for sub in getattr(command, "commands", {}).values():
        _refuse_empty_paths(sub)


_refuse_empty_paths(main)


if __name__ == "__main__":
    main()
