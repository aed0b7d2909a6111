"""Export settings: ``ExportConfig``, every option of one export, checked in one place (``validate``)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from edgekd.core.errors import ModelError, OptionError, check_range
from edgekd.core.fileio import check_no_file_in_the_way, check_outside_inputs
from edgekd.core.settings import check_ranges, choices_of, option, setting
from edgekd.export.quantize import FORMATS, IO_TYPES, MODES, QuantizeConfig
from edgekd.training.qat import QAT_SCHEDULES, QAT_TARGETS, QATConfig

DEFAULT_TOLERANCE = 0.1  # NME points (percent of the outer-eye-corner distance)
_AT_LEAST_ONE = {"lo": 1, "integer": True}


# ----------------------------------------------------------------------------------------------
@dataclass
class ExportConfig:
    """Everything one export needs: `edgekd export`'s options and the Python API's extras (the last four fields),
    so the CLI and the API build the same object and one ``validate`` serves both.

    ``prepared``: the prepared folder the checkpoint was trained on (default: the one its run recorded).
    ``bn_recalibration_samples``: training crops for re-estimating BatchNorm statistics before conversion
    (the BatchNorm trap of a from-scratch run: models/backbones.py); None = 0 for edgekd checkpoints (training
    re-estimates them before saving) and 256 for any other Keras file. ``val_limit`` caps the validation faces (tests).
    """

    checkpoint: Path
    out: Path = setting(help="The .tflite to write (its card goes beside it).", path="file")
    mode: str = setting("float32", "float32, float16, dynamic, int8 or qat (the command line: --int8, --qat, "
                                   "--float16, --dynamic).", choices=MODES)
    prepared: Path | None = setting(None, "Prepared folder the checkpoint was trained on (default: the one its run "
                                          "recorded).", path="dir", old=("--data",))
    input_type: str = setting("int8", "Input tensor type of an int8/QAT export.", choices=IO_TYPES)
    output_type: str = setting("float32", "Output tensor type of an int8/QAT export (float32 = dequantized int8 "
                                          "head).", choices=IO_TYPES)
    calibration_samples: int = setting(300, "Augmented training crops to calibrate on.", range=_AT_LEAST_ONE)
    qat_epochs: int = setting(QATConfig.epochs, "Quantization-aware fine-tuning epochs.", range=_AT_LEAST_ONE)
    qat_steps_per_epoch: int | None = setting(None, "Steps per QAT epoch (default: the whole training split).",
                                              range=_AT_LEAST_ONE, old=("--qat-steps",))
    qat_learning_rate: float = setting(
        QATConfig.learning_rate, "QAT Adam learning rate; keep it near the rate the checkpoint's training ended on "
                                 "(measured best: 1e-5 after a cosine run to 1e-6; 3e-5 and 1e-4 were worse).",
        range={"lo": 0, "lo_open": True}, old=("--qat-lr",))
    qat_schedule: str = setting(QATConfig.schedule, "QAT learning rate: cosine-decayed to 0 over the fine-tune, or "
                                                    "constant.", choices=QAT_SCHEDULES)
    qat_target: str = setting(
        QAT_TARGETS[0], "What QAT fits: the float network's own outputs on the same crops (it then only learns to "
                        "undo the rounding; measured best), or the run's own targets and loss (KD-Loss with the "
                        "student's teachers; a --kd-teacher-blend baseline's blend with its Tough teacher).",
        choices=QAT_TARGETS)
    teachers_dir: Path | None = setting(
        None, "QAT with --qat-target truth: folder with tough/best.h5 and tolerant/best.h5 (tough alone for a "
              "--kd-teacher-blend baseline; default: the run's teachers, all of an ensemble's networks).", path="dir")
    float_head: bool = setting(
        False, "QAT: keep the landmark layer in float (int8 up to its input): no int8 rounding of the output. For the "
               "shipped 128 px student: +0.5 MB, about +0.02 ms, and 0.003-0.006 lower validation NME in two paired "
               "runs (within one QAT run's spread).")
    tolerance: float = setting(DEFAULT_TOLERANCE, "Largest NME increase (points) over the Keras model.",
                               range={"lo": 0})
    allow_degradation: bool = setting(False, "Write the model even if it loses more than --tolerance.")
    seed: int = setting(0, "Random seed of calibration and QAT.", range={"lo": 0, "hi": 2**32 - 1, "integer": True})
    bn_recalibration_samples: int | None = None
    latency_runs: int = 50
    val_limit: int | None = None
    progress: bool = True
    # the training run that made the checkpoint, recorded in the card: its recipe file and sha256, every stage's
    # validation NME and time, the plain control's (recipe.run fills it for the export stage of a recipe)
    recipe: dict | None = None

    def __post_init__(self):
        for name in ("checkpoint", "out", "prepared", "teachers_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(value))

    def validate(self) -> None:
        """The one check of every option, before anything is read: each problem is one line naming the option as
        the command line spells it (the API-only fields by their own names)."""
        _choice("the export mode", self.mode, MODES)
        fmt = FORMATS[self.mode]
        for name in ("input_type", "output_type", "qat_schedule", "qat_target"):
            _choice(option(name), getattr(self, name), choices_of(self.__dataclass_fields__[name]))
        check_ranges(self)
        if self.teachers_dir is not None and (not fmt.qat or self.qat_target != "truth"):
            raise OptionError(f"--teachers-dir {self.teachers_dir}: teachers are used only by --qat with "
                              f"--qat-target truth")
        if not fmt.full_integer:  # a float export has float32 tensors: another type would be ignored
            for flag, value, default in (("--input-type", self.input_type, "int8"),
                                         ("--output-type", self.output_type, "float32")):
                if value not in (default, *fmt.io_types):
                    raise OptionError(f"{flag} {value}: only for an int8 export (--int8 or --qat); a {self.mode} "
                                      f"export takes and gives float32")
        if self.float_head and not fmt.qat:
            raise OptionError("--float-head: only with --qat (the landmark layer is left out of quantization-aware "
                              "training)")
        if self.float_head and self.output_type != "float32":
            raise OptionError(f"--float-head: the float landmark layer outputs float32, not --output-type "
                              f"{self.output_type}")
        if self.bn_recalibration_samples is not None:
            check_range("bn_recalibration_samples", self.bn_recalibration_samples, 0, integer=True)
        check_range("latency_runs", self.latency_runs, 1, integer=True)
        if self.val_limit is not None:
            check_range("val_limit", self.val_limit, 1, integer=True)
        self._check_paths()

    def _check_paths(self) -> None:
        if self.out.suffix.lower() != ".tflite":
            raise OptionError(f"--out {self.out}: the output file must end in .tflite")
        if self.checkpoint.suffix.lower() == ".tflite":
            raise ModelError(f"{self.checkpoint}: is already a .tflite; export expects the Keras checkpoint (.h5) "
                             f"it was converted from, or its stage folder")
        check_outside_inputs(self.out, "--out", {"CHECKPOINT": self.checkpoint, "--prepared": self.prepared,
                                                 "--teachers-dir": self.teachers_dir})
        if self.out.is_dir():
            raise OptionError(f"--out {self.out}: is a folder; expected the path of the .tflite file to write")
        check_no_file_in_the_way(self.out, "--out")  # now, not after the conversion
        if not self.checkpoint.exists():
            raise ModelError(f"{self.checkpoint}: checkpoint not found")

    @property
    def quantize_config(self) -> QuantizeConfig:
        return QuantizeConfig(self.mode, self.input_type, self.output_type)

    @property
    def qat_config(self) -> QATConfig:
        return QATConfig(epochs=self.qat_epochs, steps_per_epoch=self.qat_steps_per_epoch,
                         learning_rate=self.qat_learning_rate, schedule=self.qat_schedule,
                         target=self.qat_target, calibration_samples=self.calibration_samples, seed=self.seed,
                         float_head=self.float_head)

    def to_dict(self) -> dict:
        return {f.name: str(v) if isinstance(v := getattr(self, f.name), Path) else v for f in fields(self)}


def _choice(option: str, value, allowed) -> None:
    if value not in allowed:
        raise OptionError(f"{option} {value!r}: expected one of {', '.join(allowed)}")
