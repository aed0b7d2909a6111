"""Training settings: ``TrainConfig``, every setting of one stage, and reading it back from a run for ``--resume``.

The settings come in groups (NetworkParams, OptimizerParams, AugmentParams, DistillParams, RunParams), each field
declared once with its default, help, choices and range (core.settings): `edgekd train`'s options are made from them
(cli.app.config_options) and ``validate`` reads their ranges.

A run's ``config.json`` holds ``TrainConfig.to_dict()``; ``TrainConfig.from_dict`` reads it back typed, so resume,
the recipe's stage skip and export read the same fields the run was trained with.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from edgekd.core.checkpoint import BEST
from edgekd.core.errors import EdgekdError, check_range
from edgekd.core.settings import check_ranges, choices_of, option, setting
from edgekd.data.augment import PRESETS as AUGMENT_PRESETS
from edgekd.data.augment import AugmentConfig
from edgekd.models.backbones import HEADS, MODELS, NetworkConfig
from edgekd.models.losses import LOSSES, KDLossConfig

STAGES = ("tough", "tolerant", "student", "baseline")  # what a stage trains (a recipe names its stages: recipes/recipe.py)
TEACHER_ROLES = ("tough", "tolerant")  # KD-Loss's two teachers (losses.kd_loss: A and S)
TARGET = {"tough": "hard", "tolerant": "soft", "student": "hard", "baseline": "hard"}
SCHEDULES = ("cosine", "inverse-time")
MAX_EPOCHS, MAX_BATCH = 100_000, 65_536  # TrainConfig.validate's upper bounds
HEAD_INITS = ("mean-shape", "default")
STRATEGIES = ("default", "mirrored", "multi-worker")
_POSITIVE = {"lo": 0, "lo_open": True}
_FRACTION = {"lo": 0, "hi": 1.0, "hi_open": True}  # [0, 1)
_COUNT = {"lo": 0, "integer": True}


# The settings in groups, as MediaPipe Model Maker groups its hyperparameters; TrainConfig inherits every group, so a
# setting is read flat (cfg.learning_rate) and recorded flat (config.json, recipe keys). Each field is declared here
# once: its default, help, choices and range serve the dataclass, `edgekd train`'s options and validate().
@dataclass
class NetworkParams:
    """What network a stage trains."""

    head_init: str = setting("mean-shape", "mean-shape: the head's bias starts at the mean training shape.",
                             choices=HEAD_INITS)
    head: str = setting("gap", "gap: global average pooling -> Dense (the paper's); spatial: 1x1 conv -> Flatten -> "
                               "Dense, every output sees every position (--init-from a gap checkpoint starts it as "
                               "that network).", choices=HEADS)
    input_norm: bool = setting(True, "Scale [0, 1] pixels to the backbone's input range inside the model.")
    bn_momentum: float | None = setting(0.99, "BatchNorm momentum (null in a recipe: the backbone's own).",
                                        range={"lo": 0, "hi": 1.0, "lo_open": True, "hi_open": True})
    alpha: float = setting(1.0, "MobileNetV2 width (students; mobilenetv2 teachers).",
                           range={"lo": 0, "hi": 4.0, "lo_open": True})
    dropout: float = setting(0.0, "Dropout before the teachers' Dense head.", range=_FRACTION)
    stochastic_depth: float = setting(0.0, "Teachers' EfficientNet drop-connect rate (Keras and paper: 0.2).",
                                      range=_FRACTION)
    teacher_arch: str = setting("mobilenetv2", "Teachers' network (recipe: mobilenetv2 fast-cpu, efficientnet-b3 "
                                               "paper).", choices=lambda: tuple(MODELS))
    # read from the registry when checked, so a backbone registered after this import can be a student or teacher
    student_arch: str = setting("mobilenetv2", "The student's (and baseline's) network: any registered backbone, "
                                               "--alpha its width where it has one.", choices=lambda: tuple(MODELS))


@dataclass
class OptimizerParams:
    """How long and how fast a stage learns."""

    # upper bounds far beyond any real run, below what TensorFlow's step counters and tensors take (a larger value
    # would fail deep inside it, or after minutes of work)
    epochs: int = setting(110, "Epochs (with the whole recipe: each stage's own).",
                          range={"lo": 1, "hi": MAX_EPOCHS, "integer": True})
    batch_size: int = setting(32, "Batch size.", range={"lo": 1, "hi": MAX_BATCH, "integer": True})
    learning_rate: float = setting(1e-3, "Initial (peak) Adam learning rate.", range=_POSITIVE, old=("--lr",))
    schedule: str = setting("cosine", "cosine: to --min-lr over exactly the planned steps; inverse-time: lr / (1 + "
                                      "--lr-decay x step) (the paper's).", choices=SCHEDULES)
    warmup_steps: int = setting(0, "Linear warm-up steps from 0 before the cosine.",
                                range={"lo": 0, "hi": 2**31 - 1, "integer": True})
    min_lr: float = setting(1e-5, "Where the cosine schedule ends (above 0, at most --learning-rate).")
    lr_decay: float = setting(1e-4, "Inverse-time decay per step (the paper's 1e-4).", range={"lo": 0})
    loss: str = setting("l1", "Loss of teachers and plain students (the KD student uses KD-Loss).",
                        choices=lambda: tuple(LOSSES))  # read when checked: a loss registered later counts
    steps_per_epoch: int | None = setting(None, "Limit steps per epoch (default: the whole training split).",
                                          range={"lo": 1, "hi": 2**31 - 1, "integer": True})
    # late epochs of a run at a small constant-ish rate scatter around a basin (validation NME +-0.03 here from one
    # epoch to the next), and their mean sits nearer its centre (Izmailov et al., UAI 2018)
    average_last: int = setting(0, "Also average the weights of the last K epochs (stochastic weight averaging): "
                                   "validated after the last epoch, it becomes best.h5 when it beats every epoch.",
                                range=_COUNT)
    bn_recalibration_samples: int = setting(256, "Training crops for re-estimating BatchNorm statistics after "
                                                 "training; 0 = off.", range=_COUNT)


@dataclass
class AugmentParams:
    """What a stage's training crops go through. The command line spells both as `data show` does."""

    augment: bool = setting(True, "Train on the canonical crops only.", option="--no-augment")
    augment_preset: str = setting(
        "light", "light: geometry, mirror, contrast, brightness; full: also gamma, blur, noise, occlusion; mild: light "
                 "with rotations of at most 10 degrees (the last epochs of a long run); tight: mild with shifts of at "
                 "most 3 % and scales of 0.94-1.06 (for models whose detector crops come from the keypoints).",
        choices=AUGMENT_PRESETS, option="--augment")


@dataclass
class DistillParams:
    """What a stage learns from besides the landmarks: its teachers and KD-Loss."""

    teacher_flip: bool = setting(False, "Average each teacher's output with its output on the mirrored image (KD "
                                        "student; baseline with --kd-teacher-blend).")
    # with several folders, each teacher is the ensemble of that role's networks in every folder (trainers.Ensemble)
    teachers_dir: list[str] | None = setting(
        None, "Folder with tough/ and tolerant/ teacher runs (default: --run-dir); a baseline with --kd-teacher-blend "
              "reads tough/ alone. Repeat it for ensembles: each teacher is then the mean of its role's networks in "
              "every folder, each fed the batch resized to its own input size.", path="dir")
    teacher_checkpoints: dict[str, list[str]] | None = setting(
        None, "Each teacher role's checkpoints ({'tough': [...], 'tolerant': [...]}), instead of --teachers-dir's "
              "folders: a role with several is the ensemble of them. A recipe's student stage sets it from its "
              "`teachers:` (stage names).")
    teacher_targets: str | None = setting(
        None, "KD student: the teachers' outputs computed once by `edgekd data teach` instead of --teachers-dir (a KD "
              "step then costs a plain one; the teachers saw canonical crops, not augmented ones, which made KD-Loss "
              "worse here: benchmarks/README.md).", path="file")
    kd: KDLossConfig = setting(help="KD-Loss's constants (models.losses.KDLossConfig).", factory=KDLossConfig)


@dataclass
class RunParams:
    """What a stage is and how it runs, apart from what it learns."""

    stage: str = setting("student", "What the stage trains.", choices=STAGES)
    recipe: str = setting("default", "The recipe (edgekd/recipes/) whose settings the other fields were taken from.")
    seed: int = setting(0, "Random seed of weights, data order and augmentation.",
                        range={"lo": 0, "hi": 2**32 - 1, "integer": True})  # what keras.utils.set_random_seed takes
    strategy: str = setting("default", "mirrored = data-parallel over all local GPUs; multi-worker = over the machines "
                                       "that the TF_CONFIG environment variable names (docs/distributed.md).",
                            choices=STRATEGIES)
    init_from: str | None = setting(
        None, "Start from this checkpoint's weights (same network; any input size, for fine-tuning at another "
              "resolution) instead of random ones; a float32 .tflite export works too (e.g. "
              "models/300w/kd_student_float32.tflite, to fine-tune the shipped student).", path="file")
    progress: bool = setting(True, "Progress bars (the command line's -q turns them off).")


@dataclass
class TrainConfig(RunParams, DistillParams, AugmentParams, NetworkParams, OptimizerParams):
    """Every setting of one training stage (the groups above, flat; fields in the order optimizer, network, augment,
    distill, run: the order of `edgekd train --help`)."""

    def __post_init__(self):
        if isinstance(self.teachers_dir, (str, Path)):  # one folder, as recorded before ensembles
            self.teachers_dir = [str(self.teachers_dir)]
        elif self.teachers_dir is not None:
            self.teachers_dir = [str(d) for d in self.teachers_dir] or None
        if self.teacher_checkpoints is not None:
            self.teacher_checkpoints = {str(k): [str(p) for p in v] for k, v in dict(self.teacher_checkpoints).items()}

    def network(self, stage: str | None = None):
        """The NetworkConfig this stage trains."""
        stage = stage or self.stage
        teacher = stage in ("tough", "tolerant")
        return NetworkConfig(arch=self.teacher_arch if teacher else self.student_arch, alpha=self.alpha,
                             dropout=self.dropout if teacher else 0.0,
                             stochastic_depth=self.stochastic_depth if teacher else 0.0,
                             input_norm=self.input_norm, bn_momentum=self.bn_momentum, head_init=self.head_init,
                             head=self.head)

    def augmentation(self):
        return AugmentConfig.preset(self.augment_preset) if self.augment else None

    def validate(self) -> None:
        """Every setting's check, one line naming its option: choices and ranges from the fields, then the checks
        that involve several settings."""
        for f in fields(self):
            allowed = choices_of(f)
            value = getattr(self, f.name)
            if allowed is not None and f.name != "augment_preset" and value not in allowed:  # (preset: below)
                noun = "teacher architecture" if f.name == "teacher_arch" else f.name.replace("_", " ")
                raise EdgekdError(f"unknown {noun} {value!r}; expected one of {', '.join(allowed)}")
        check_ranges(self)
        if self.schedule == "cosine":
            check_range(option("min_lr"), self.min_lr, 0, self.learning_rate, lo_open=True)
        if self.steps_per_epoch is not None and self.epochs * self.steps_per_epoch > 2**31 - 1:
            # TensorFlow counts steps in 32 bits here and there
            raise EdgekdError(f"--epochs {self.epochs} x --steps-per-epoch {self.steps_per_epoch}: "
                              f"{self.epochs * self.steps_per_epoch} steps; at most {2**31 - 1} in one run")
        if self.average_last > self.epochs:
            raise EdgekdError(f"--average-last {self.average_last}: at most --epochs ({self.epochs})")
        check_ranges(self.kd, "kd.")
        AugmentConfig.preset(self.augment_preset)
        if self.teacher_targets is not None:
            if self.stage != "student":
                raise EdgekdError(f"--teacher-targets: only the student stage learns from teachers (--stage student), "
                                  f"not {self.stage}")
            for name in ("teachers_dir", "teacher_flip"):
                if getattr(self, name):
                    raise EdgekdError(f"--teacher-targets and {option(name)}: choose one (the flip averaging "
                                      f"of cached targets is chosen by `edgekd data teach --teacher-flip`)")
        if self.teacher_checkpoints is not None:
            if self.teachers_dir or self.teacher_targets:
                raise EdgekdError("teacher_checkpoints and --teachers-dir / --teacher-targets: choose one")
            roles = ("tough",) if self.blended_baseline else TEACHER_ROLES
            if set(self.teacher_checkpoints) - set(TEACHER_ROLES) or \
                    not all(self.teacher_checkpoints.get(role) for role in roles):
                raise EdgekdError(f"teacher_checkpoints {self.teacher_checkpoints}: expected one or more checkpoints "
                                  f"for each of {', '.join(roles)}")
        if self.teachers_dir and len({str(Path(d).resolve()) for d in self.teachers_dir}) < len(self.teachers_dir):
            raise EdgekdError(f"--teachers-dir: a folder is given twice ({', '.join(self.teachers_dir)}); an "
                              f"ensemble needs different networks")
        if self.stage == "student" and self.kd.teacher_blend and self.kd.main == "paper":
            raise EdgekdError(f"{option('kd.teacher_blend')}: needs a plain main term ({option('kd.main')} l1, l2 or "
                              f"wing); Loss_Main as published is defined around the ground truth")
        # the teacher stages ignore the student's options (a stage may carry settings meant for others); a plain
        # baseline that was asked to mirror a teacher it does not run is refused
        if self.stage == "baseline" and self.teacher_flip and not self.blended_baseline:
            raise EdgekdError(f"--teacher-flip: the baseline stage runs no teacher without "
                              f"{option('kd.teacher_blend')} (or use --stage student)")

    @property
    def blended_baseline(self) -> bool:
        """A plain student whose target blends the ground truth with the Tough teacher's outputs (trainers.Mimic)."""
        return self.stage == "baseline" and self.kd.teacher_blend > 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config recorded in a run's config.json; keys this version does not know are refused, not dropped."""
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise EdgekdError(f"recorded training settings hold unknown keys {unknown}; written by another edgekd?")
        kd = KDLossConfig(**d["kd"]) if isinstance(d.get("kd"), dict) else KDLossConfig()
        return cls(**{**d, "kd": kd})


# settings that may differ between the first run of a stage and its --resume without changing what it trains
RESUMABLE_CHANGES = ("progress", "strategy", "teachers_dir", "teacher_checkpoints", "init_from")


def resumed_config(stage_dir: Path, cfg: TrainConfig, explicit=None) -> TrainConfig:
    """The settings a stage was started with, for ``--resume``; explicit options that contradict them are refused.

    ``explicit`` names the TrainConfig fields the user set on this command line (the rest are defaults and give way
    to the recorded values; None, as from the Python API, counts every field that differs from the defaults).
    A cosine run's schedule is planned over its epochs, so asking a resumed cosine run for
    other epochs would bend its learning rate mid-way: refused with the command that trains longer instead.
    """
    path = stage_dir / "config.json"
    if not path.is_file():
        return cfg
    try:
        recorded = TrainConfig.from_dict(json.loads(path.read_text())["train"])
    except (ValueError, KeyError, TypeError) as e:
        raise EdgekdError(f"{path}: unreadable training settings ({e}); cannot resume") from None
    if explicit is None:
        default = TrainConfig()
        explicit = {k for k in cfg.__dataclass_fields__ if getattr(cfg, k) != getattr(default, k)}
    for name in sorted(explicit):
        mine, theirs = getattr(cfg, name), getattr(recorded, name)
        if name == "teachers_dir":
            _check_same_teacher_count(stage_dir, mine, theirs)
        if name == "teacher_checkpoints":
            _check_same_members(stage_dir, mine, theirs)
        if name in RESUMABLE_CHANGES or mine == theirs:
            continue
        if name == "epochs" and recorded.schedule == "inverse-time":
            continue  # the paper's schedule does not depend on the planned length: more epochs just continue
        if name == "epochs":
            raise EdgekdError(f"{stage_dir}: planned {theirs} epochs with a cosine schedule (it ends at --min-lr); "
                              f"to train longer, start a new run from it: --init-from {stage_dir / BEST} "
                              f"--run-dir <new folder>")
        if name == "kd":  # the first KD-Loss constant that differs, by its own option
            sub = next(k for k in KDLossConfig.__dataclass_fields__ if getattr(mine, k) != getattr(theirs, k))
            name, mine, theirs = f"kd.{sub}", getattr(mine, sub), getattr(theirs, sub)
        raise EdgekdError(f"{stage_dir}: {option(name, TrainConfig)} {mine} contradicts the run's recorded "
                          f"{theirs}; leave it out to resume with the recorded settings, or use another --run-dir")
    keep = {k: getattr(cfg, k) for k in RESUMABLE_CHANGES}
    if "teachers_dir" not in explicit:  # the folders the run started with, not the run folder's own teachers
        keep["teachers_dir"] = recorded.teachers_dir
    if "teacher_checkpoints" not in explicit:
        keep["teacher_checkpoints"] = recorded.teacher_checkpoints
    if "epochs" in explicit:
        keep["epochs"] = cfg.epochs
    return replace(recorded, stage=cfg.stage, **keep)


def _check_same_teacher_count(stage_dir: Path, mine, theirs) -> None:
    """Teacher folders may move between runs of a stage, but their number makes the teacher (an ensemble of as many
    networks per role): a different number would change what the stage learns from mid-way."""
    if len(mine or [None]) != len(theirs or [None]):
        started = ", ".join(theirs or ["the run folder"])
        raise EdgekdError(f"{stage_dir}: --teachers-dir given {len(mine or [None])} time(s), but the run was "
                          f"started with {len(theirs or [None])} teacher folder(s) ({started}); give the same number, "
                          f"or use another --run-dir")


def _check_same_members(stage_dir: Path, mine, theirs) -> None:
    """Teacher checkpoints may move with their run folder, but each role's number of networks makes its teacher."""
    count = {role: len(paths) for role, paths in (mine or {}).items()}
    recorded = {role: len(paths) for role, paths in (theirs or {}).items()}
    if count != recorded:
        raise EdgekdError(f"{stage_dir}: teachers of {count or 'the run folder'} networks per role, but the run was "
                          f"started with {recorded or 'the run folder'}; use another --run-dir")


def check_finished_matches(stage_dir: Path, cfg: TrainConfig) -> None:
    """A finished stage is only skipped by a recipe run when it was trained with these settings."""
    path = stage_dir / "config.json"
    if not path.is_file():
        return
    recorded = TrainConfig.from_dict(json.loads(path.read_text())["train"])
    _check_same_teacher_count(stage_dir, cfg.teachers_dir, recorded.teachers_dir)
    _check_same_members(stage_dir, cfg.teacher_checkpoints, recorded.teacher_checkpoints)
    differ = [k for k in cfg.__dataclass_fields__ if k not in (*RESUMABLE_CHANGES, "stage")
              and getattr(recorded, k) != getattr(cfg, k)]
    if differ:
        shown = ", ".join(f"{k} {getattr(recorded, k)} (asked {getattr(cfg, k)})" for k in differ[:3])
        raise EdgekdError(f"{stage_dir}: finished with other settings: {shown}; use another --run-dir")
