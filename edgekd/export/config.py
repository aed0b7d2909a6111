"""Export settings: ``ExportConfig``, every option of one export, checked in one place (``validate``)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from edgekd.core.errors import ModelError, OptionError, check_range
from edgekd.core.fileio import check_no_file_in_the_way, check_outside_inputs
from edgekd.export.quantize import IO_TYPES, MODES, QuantizeConfig
from edgekd.training.qat import QAT_SCHEDULES, QAT_TARGETS, QATConfig

DEFAULT_TOLERANCE = 0.1  # NME points (percent of the outer-eye-corner distance)


# ----------------------------------------------------------------------------------------------
@dataclass
class ExportConfig:
    """Everything one export needs: `edgekd export`'s options and the Python API's extras (the last four fields),
    so the CLI and the API build the same object and one ``validate`` serves both.

    ``prepared``: the prepared folder the checkpoint was trained on (default: the one its run recorded).
    ``bn_recalibration_samples``: training crops for re-estimating BatchNorm statistics before conversion
    (the BatchNorm trap of a from-scratch run: models.py); None = 0 for edgekd checkpoints (training re-estimates them before saving) and 256
    for any other Keras file. ``val_limit`` caps the validation faces (tests).
    """

    checkpoint: Path
    out: Path
    mode: str = "float32"
    prepared: Path | None = None
    input_type: str = "int8"
    output_type: str = "float32"
    calibration_samples: int = 300
    qat_epochs: int = QATConfig.epochs
    qat_steps_per_epoch: int | None = None
    qat_learning_rate: float = QATConfig.learning_rate
    qat_schedule: str = QATConfig.schedule
    qat_target: str = "float"
    teachers_dir: Path | None = None
    float_head: bool = False  # QAT: the landmark layer in float (qat.quantize_model)
    tolerance: float = DEFAULT_TOLERANCE
    allow_degradation: bool = False
    seed: int = 0
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
        _choice("--input-type", self.input_type, IO_TYPES)
        _choice("--output-type", self.output_type, IO_TYPES)
        check_range("--calibration-samples", self.calibration_samples, 1, integer=True)
        check_range("--qat-epochs", self.qat_epochs, 1, integer=True)
        if self.qat_steps_per_epoch is not None:
            check_range("--qat-steps", self.qat_steps_per_epoch, 1, integer=True)
        check_range("--qat-lr", self.qat_learning_rate, 0, lo_open=True)
        _choice("--qat-schedule", self.qat_schedule, QAT_SCHEDULES)
        _choice("--qat-target", self.qat_target, QAT_TARGETS)
        if self.teachers_dir is not None and (self.mode != "qat" or self.qat_target != "truth"):
            raise OptionError(f"--teachers-dir {self.teachers_dir}: teachers are used only by --qat with "
                              f"--qat-target truth")
        if self.mode not in ("int8", "qat"):  # a float export has float32 tensors: another type would be ignored
            for option, value, default in (("--input-type", self.input_type, "int8"),
                                           ("--output-type", self.output_type, "float32")):
                if value not in (default, "float32"):
                    raise OptionError(f"{option} {value}: only for an int8 export (--int8 or --qat); a {self.mode} "
                                      f"export takes and gives float32")
        if self.float_head and self.mode != "qat":
            raise OptionError("--float-head: only with --qat (the landmark layer is left out of quantization-aware "
                              "training)")
        if self.float_head and self.output_type != "float32":
            raise OptionError(f"--float-head: the float landmark layer outputs float32, not --output-type "
                              f"{self.output_type}")
        check_range("--tolerance", self.tolerance, 0)
        check_range("--seed", self.seed, 0, 2**32 - 1, integer=True)
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
