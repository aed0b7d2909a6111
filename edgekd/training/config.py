"""Training settings: ``TrainConfig``, every setting of one stage, and reading it back from a run for ``--resume``.

A run's ``config.json`` holds ``TrainConfig.to_dict()``; ``TrainConfig.from_dict`` reads it back typed, so resume,
the recipe's stage skip and export read the same fields the run was trained with.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edgekd.core.checkpoint import BEST
from edgekd.core.errors import EdgekdError, check_range
from edgekd.models.losses import LOSSES, KDLossConfig

STAGES = ("tough", "tolerant", "student", "baseline")  # what a stage trains (a recipe names its stages: recipe.py)
TARGET = {"tough": "hard", "tolerant": "soft", "student": "hard", "baseline": "hard"}
SCHEDULES = ("cosine", "inverse-time")
MAX_EPOCHS, MAX_BATCH = 100_000, 65_536  # TrainConfig.validate's upper bounds
@dataclass
class TrainConfig:
    stage: str = "student"  # tough | tolerant | student | baseline
    recipe: str = "default"  # the recipe (edgekd/recipes/) whose settings the fields below were taken from
    epochs: int = 110
    batch_size: int = 32
    learning_rate: float = 1e-3
    schedule: str = "cosine"  # cosine (to min_lr over exactly the planned steps) | inverse-time (the paper's)
    warmup_steps: int = 0  # linear warm-up from 0 before the cosine
    min_lr: float = 1e-5  # where the cosine ends
    lr_decay: float = 1e-4  # inverse-time only: lr / (1 + lr_decay * step)  (the paper's)
    loss: str = "l1"  # teachers' and plain students' loss (losses.LOSSES); the KD student uses KD-Loss
    head_init: str = "mean-shape"  # mean-shape | default
    head: str = "gap"  # gap (the paper's) | spatial (models.build_network)
    input_norm: bool = True  # [0, 1] pixels scaled to the backbone's range inside the model
    bn_momentum: float | None = 0.99  # None = the backbone's own
    alpha: float = 1.0  # MobileNetV2 width (students; mobilenetv2 teachers)
    dropout: float = 0.0  # teacher head
    stochastic_depth: float = 0.0  # teachers' EfficientNet drop-connect rate (Keras and paper: 0.2)
    teacher_arch: str = "mobilenetv2"  # the paper's is efficientnet-b3 (see models.MODELS)
    teacher_flip: bool = False  # teachers' outputs averaged over the image and its mirror (student; blended baseline)
    seed: int = 0
    augment: bool = True
    augment_preset: str = "light"  # light | full (AugmentConfig presets)
    strategy: str = "default"  # default (one device) | mirrored (all local GPUs)
    bn_recalibration_samples: int = 256  # training crops for re-estimating BatchNorm statistics; 0 = off
    steps_per_epoch: int | None = None  # None = the whole training split each epoch
    # the mean of the last K epochs' weights is also validated, and becomes best.h5 when it beats every epoch:
    # late epochs of a run at a small constant-ish rate scatter around a basin (validation NME +-0.03 here from one
    # epoch to the next), and their mean sits nearer its centre (Izmailov et al., UAI 2018)
    average_last: int = 0
    # folders with tough/ and tolerant/ (default: the run folder); with several, each teacher is the ensemble of
    # that role's networks in every folder (trainers.Ensemble)
    teachers_dir: list[str] | None = None
    teacher_targets: str | None = None  # KD student: the teachers' outputs from `edgekd data teach` instead
    init_from: str | None = None  # start from these weights (same network) instead of random: fine-tuning
    kd: KDLossConfig = field(default_factory=KDLossConfig)
    progress: bool = True

    def __post_init__(self):
        if isinstance(self.teachers_dir, (str, Path)):  # one folder, as recorded before ensembles
            self.teachers_dir = [str(self.teachers_dir)]
        elif self.teachers_dir is not None:
            self.teachers_dir = [str(d) for d in self.teachers_dir] or None

    def network(self, stage: str | None = None):
        """The NetworkConfig this stage trains."""
        from edgekd.models.backbones import NetworkConfig

        stage = stage or self.stage
        teacher = stage in ("tough", "tolerant")
        return NetworkConfig(arch=self.teacher_arch if teacher else "mobilenetv2", alpha=self.alpha,
                             dropout=self.dropout if teacher else 0.0,
                             stochastic_depth=self.stochastic_depth if teacher else 0.0,
                             input_norm=self.input_norm, bn_momentum=self.bn_momentum, head_init=self.head_init,
                             head=self.head)

    def augmentation(self):
        from edgekd.data.augment import AugmentConfig

        return AugmentConfig.preset(self.augment_preset) if self.augment else None

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise EdgekdError(f"unknown loss {self.loss!r}; expected one of {', '.join(LOSSES)}")
        if self.schedule not in SCHEDULES:
            raise EdgekdError(f"unknown schedule {self.schedule!r}; expected one of {', '.join(SCHEDULES)}")
        if self.stage not in STAGES:
            raise EdgekdError(f"unknown stage {self.stage!r}; expected one of {', '.join(STAGES)}")
        from edgekd.models.backbones import HEADS, MODELS

        if self.head not in HEADS:
            raise EdgekdError(f"unknown head {self.head!r}; expected one of {', '.join(HEADS)}")
        if self.teacher_arch not in MODELS:
            raise EdgekdError(f"unknown teacher architecture {self.teacher_arch!r}; expected one of "
                              f"{', '.join(MODELS)}")
        if self.strategy not in ("default", "mirrored"):
            raise EdgekdError(f"unknown strategy {self.strategy!r}; expected default or mirrored")
        # upper bounds far beyond any real run, below what TensorFlow's step counters and tensors take (a larger
        # value would fail deep inside it, or after minutes of work)
        check_range("--epochs", self.epochs, 1, MAX_EPOCHS, integer=True)
        check_range("--batch-size", self.batch_size, 1, MAX_BATCH, integer=True)
        check_range("--lr", self.learning_rate, 0, lo_open=True)
        check_range("--lr-decay", self.lr_decay, 0)
        if self.schedule == "cosine":
            check_range("--min-lr", self.min_lr, 0, self.learning_rate, lo_open=True)
        check_range("--warmup-steps", self.warmup_steps, 0, 2**31 - 1, integer=True)
        check_range("--seed", self.seed, 0, 2**32 - 1, integer=True)  # what keras.utils.set_random_seed takes
        check_range("--alpha", self.alpha, 0, 4.0, lo_open=True)
        check_range("--dropout", self.dropout, 0, 1.0, hi_open=True)
        check_range("--stochastic-depth", self.stochastic_depth, 0, 1.0, hi_open=True)
        if self.bn_momentum is not None:
            check_range(option_name("bn_momentum"), self.bn_momentum, 0, 1.0, lo_open=True, hi_open=True)
        if self.steps_per_epoch is not None:
            check_range("--steps-per-epoch", self.steps_per_epoch, 1, 2**31 - 1, integer=True)
            if self.epochs * self.steps_per_epoch > 2**31 - 1:  # TensorFlow counts steps in 32 bits here and there
                raise EdgekdError(f"--epochs {self.epochs} x --steps-per-epoch {self.steps_per_epoch}: "
                                  f"{self.epochs * self.steps_per_epoch} steps; at most {2**31 - 1} in one run")
        check_range("--average-last", self.average_last, 0, integer=True)
        if self.average_last > self.epochs:
            raise EdgekdError(f"--average-last {self.average_last}: at most --epochs ({self.epochs})")
        check_range(option_name("bn_recalibration_samples"), self.bn_recalibration_samples, 0, integer=True)
        for name in ("c", "w_main", "w_tough", "w_tol", "main_slope"):
            check_range(f"KD-Loss {name}", getattr(self.kd, name), 0, lo_open=True)
        from edgekd.data.augment import AugmentConfig

        AugmentConfig.preset(self.augment_preset)
        if self.teacher_targets is not None:
            if self.stage != "student":
                raise EdgekdError(f"--teacher-targets: only the student stage learns from teachers (--stage student), "
                                  f"not {self.stage}")
            for name in ("teachers_dir", "teacher_flip"):
                if getattr(self, name):
                    raise EdgekdError(f"--teacher-targets and {option_name(name)}: choose one (the mirror averaging "
                                      f"of cached targets is chosen by `edgekd data teach --teacher-flip`)")
        if self.teachers_dir and len({str(Path(d).resolve()) for d in self.teachers_dir}) < len(self.teachers_dir):
            raise EdgekdError(f"--teachers-dir: a folder is given twice ({', '.join(self.teachers_dir)}); an "
                              f"ensemble needs different networks")
        if self.stage == "student" and self.kd.teacher_blend and self.kd.main == "paper":
            raise EdgekdError("--teacher-blend: needs a plain main term (--main-loss l1, l2 or wing); Loss_Main as "
                              "published is defined around the ground truth")
        # the teacher stages ignore the student's options (a stage may carry settings meant for others); a plain
        # baseline that was asked to mirror a teacher it does not run is refused
        if self.stage == "baseline" and self.teacher_flip and not self.blended_baseline:
            raise EdgekdError("--teacher-flip: the baseline stage runs no teacher without --teacher-blend (or use "
                              "--stage student)")

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


# TrainConfig fields whose `edgekd train` option has another name (the rest: --field-name)
OPTION_NAMES = {"learning_rate": "--lr", "augment": "--no-augment", "augment_preset": "--augment",
                "kd": "--loss-variant/--main-loss/--teacher-blend", "bn_momentum": "TrainConfig.bn_momentum",
                "bn_recalibration_samples": "TrainConfig.bn_recalibration_samples", "progress": "-q"}


def option_name(field: str) -> str:
    """How a user names a TrainConfig field: its CLI option (or the dataclass field, where the CLI has none)."""
    return OPTION_NAMES.get(field, "--" + field.replace("_", "-"))


# settings that may differ between the first run of a stage and its --resume without changing what it trains
RESUMABLE_CHANGES = ("progress", "strategy", "teachers_dir", "init_from")


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
        if name in RESUMABLE_CHANGES or mine == theirs:
            continue
        if name == "epochs" and recorded.schedule == "inverse-time":
            continue  # the paper's schedule does not depend on the planned length: more epochs just continue
        if name == "epochs":
            raise EdgekdError(f"{stage_dir}: planned {theirs} epochs with a cosine schedule (it ends at --min-lr); "
                              f"to train longer, start a new run from it: --init-from {stage_dir / BEST} "
                              f"--run-dir <new folder>")
        raise EdgekdError(f"{stage_dir}: {option_name(name)} {mine} contradicts the run's recorded {theirs}; "
                          f"leave it out to resume with the recorded settings, or use another --run-dir")
    keep = {k: getattr(cfg, k) for k in RESUMABLE_CHANGES}
    if "teachers_dir" not in explicit:  # the folders the run started with, not the run folder's own teachers
        keep["teachers_dir"] = recorded.teachers_dir
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


def check_finished_matches(stage_dir: Path, cfg: TrainConfig) -> None:
    """A finished stage is only skipped by a recipe run when it was trained with these settings."""
    path = stage_dir / "config.json"
    if not path.is_file():
        return
    recorded = TrainConfig.from_dict(json.loads(path.read_text())["train"])
    _check_same_teacher_count(stage_dir, cfg.teachers_dir, recorded.teachers_dir)
    differ = [k for k in cfg.__dataclass_fields__ if k not in (*RESUMABLE_CHANGES, "stage")
              and getattr(recorded, k) != getattr(cfg, k)]
    if differ:
        shown = ", ".join(f"{k} {getattr(recorded, k)} (asked {getattr(cfg, k)})" for k in differ[:3])
        raise EdgekdError(f"{stage_dir}: finished with other settings: {shown}; use another --run-dir")
