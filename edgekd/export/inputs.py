"""Step 1 of an export (exporter.export_model): what it reads, resolved and checked against each other before any
slow work, so a wrong folder fails in seconds, not minutes. The checkpoint, the prepared data it was trained on, the
run's record beside it (its training settings read typed, as TrainConfig), for QAT its teachers, and the model as it
will be converted (BatchNorm statistics re-estimated for checkpoints edgekd did not write).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.core.checkpoint import check_loaded, check_matches_data, check_network, checkpoint_info, load_model
from edgekd.core.errors import EdgekdError, ModelError
from edgekd.core.fileio import check_outside_inputs
from edgekd.data.pipeline import PreparedData, make_dataset
from edgekd.export.config import ExportConfig
from edgekd.models.backbones import recalibrate_batchnorm
from edgekd.training import teacher_targets
from edgekd.training.config import TrainConfig
from edgekd.training.teachers import load_teachers, teacher_paths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecord:
    """What the checkpoint's training run recorded beside it (its stage folder's config.json), read once, its training
    settings as the TrainConfig they were (TrainConfig's defaults, not defaults of the export's own), so QAT and
    calibration continue what training did. Empty for a Keras file edgekd did not write (or an unreadable record):
    QATConfig's defaults then apply."""

    train: TrainConfig | None = None
    prepared: str | None = None  # the prepared folder it trained on
    teachers: dict = field(default_factory=dict)  # role -> its networks (one path, as recorded before ensembles)
    teacher_targets: str | None = None  # the teacher-targets file a KD student learned from

    @property
    def blended_baseline(self) -> bool:
        return self.train is not None and self.train.blended_baseline


def read_run(checkpoint: Path) -> RunRecord:
    """The checkpoint's RunRecord; an unknown training setting (a newer edgekd's run) is refused, naming the file."""
    path = _stage_dir(checkpoint) / "config.json"
    try:
        recorded = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        recorded = {}
    try:
        train = TrainConfig.from_dict(recorded["train"]) if recorded.get("train") else None
    except EdgekdError as e:
        raise EdgekdError(f"{path}: {e}") from None
    return RunRecord(train, recorded.get("prepared"), recorded.get("teachers") or {},
                     (recorded.get("teacher_targets") or {}).get("file"))


@dataclass
class ExportInputs:
    """What the export reads, resolved and checked against each other."""

    checkpoint: Path
    info: dict  # the checkpoint's edgekd JSON ({} for Keras files edgekd did not write)
    data: object  # PreparedData
    model: object  # the tf_keras model, its BatchNorm statistics re-estimated when asked
    batchnorm_samples: int
    val_images: np.ndarray  # canonical validation crops, uint8 (N, S, S, 3)
    val_hard: np.ndarray  # their ground-truth landmarks in crop pixels
    # QAT: {"tough": model, "tolerant": model}; both None when their outputs come from the run's teacher-targets
    # file (attached to ``data``); or None for the run's plain loss
    teachers: dict | None = None
    teacher_paths: dict = field(default_factory=dict)
    run: RunRecord = field(default_factory=RunRecord)


def resolve_inputs(cfg: ExportConfig) -> ExportInputs:
    """Load and cross-check everything before the slow steps, so a wrong folder fails in seconds, not minutes."""
    check_network(cfg.checkpoint)  # not a checkpoint, or one that could run code: said before anything else
    info = _checkpoint_info(cfg.checkpoint)
    run = read_run(cfg.checkpoint)
    data = _resolve_data(cfg, info, run)
    model = load_model(cfg.checkpoint)
    _check_match(cfg.checkpoint, model, info, data)
    if data.manifest.counts.get("val", 0) < 1:
        raise EdgekdError(f"{data.root}: no validation split to check the export on")
    fmt = cfg.quantize_config.format
    if fmt.calibration or fmt.qat:  # calibration and QAT read the training split: a damaged one is said now
        data.split("train")
    with_teachers = fmt.qat and cfg.qat_target == "truth"
    teachers, paths = _load_teachers(cfg, data, run) if with_teachers else (None, {})
    recal = _recalibrate_batchnorm(model, data, cfg, info)
    images, hard = data.arrays("val", limit=cfg.val_limit)
    return ExportInputs(cfg.checkpoint, info, data, model, recal, images, hard, teachers, paths, run)


def _stage_dir(checkpoint: Path) -> Path:
    return checkpoint if checkpoint.is_dir() else checkpoint.parent


def _checkpoint_info(checkpoint: Path) -> dict:
    try:
        return checkpoint_info(checkpoint)
    except ModelError:
        return {}  # not HDF5 (e.g. a .keras file): load_model reports real problems


def _resolve_data(cfg: ExportConfig, info: dict, run: RunRecord):
    prepared = cfg.prepared
    if prepared is None:
        recorded = info.get("prepared") or run.prepared
        if not recorded or not (Path(recorded) / "manifest.json").is_file():
            raise EdgekdError(f"{cfg.checkpoint}: give the prepared data it was trained on with --prepared "
                              "PREPARED_DIR (needed for calibration and the validation check)")
        prepared = Path(recorded)
        check_outside_inputs(cfg.out, "--out", {"PREPARED (recorded in the checkpoint)": prepared})
    return PreparedData.open(prepared)


def _check_match(checkpoint: Path, model, info: dict, data) -> None:
    check_loaded(checkpoint, "the model", model, data)
    if info.get("scheme") and info["scheme"] != data.scheme.name:
        raise ModelError(f"{checkpoint}: trained on {info['scheme']} landmarks, but {data.root} is {data.scheme.name}")
    check_matches_data(checkpoint, "the model", data, info)  # input size and margin; the mapping comes from the data


def _load_teachers(cfg: ExportConfig, data, run: RunRecord | None = None) -> tuple[dict | None, dict]:
    """Frozen teachers for QAT: --teachers-dir, else the ones the student's run config names, or its teacher-targets
    file (attached to ``data``, teachers None); (None, {}) if none. A blended baseline's run reads its Tough
    teacher alone, as in training. ``run``: the checkpoint's RunRecord (default: read here)."""
    run = read_run(cfg.checkpoint) if run is None else run
    roles = {"tough"} if run.blended_baseline else {"tough", "tolerant"}
    if cfg.teachers_dir is not None:
        paths = {k: v for k, v in teacher_paths(cfg.teachers_dir).items() if k in roles}
    else:
        cached = run.teacher_targets
        if cached and Path(cached).is_file():
            data.attach_guides(teacher_targets.load(cached, data))
            return {"tough": None, "tolerant": None}, {"teacher_targets": cached}
        if cached:
            log.warning("%s: the teacher-targets file its run recorded, %s, is gone; QAT uses the run's plain loss "
                        "(--teachers-dir gives it teachers)", cfg.checkpoint, cached)
        recorded = run.teachers
        # a list of networks per role (an ensemble), or one path as recorded before ensembles
        paths = {k: [Path(p) for p in ([v] if isinstance(v, str) else v)] for k, v in recorded.items()}
        if set(paths) != roles:
            return None, {}
        missing = [str(p) for v in paths.values() for p in v if not p.is_file()]
        if missing:
            log.warning("%s: the teachers its run recorded are gone (%s); QAT uses the run's plain loss "
                        "(--teachers-dir gives it teachers)", cfg.checkpoint, ", ".join(missing))
            return None, {}
    return load_teachers(paths, data), {k: [str(p) for p in v] for k, v in paths.items()}


def _recalibrate_batchnorm(model, data, cfg: ExportConfig, info: dict) -> int:
    """Re-estimate BatchNorm statistics on augmented training crops; returns how many crops were used."""
    samples = cfg.bn_recalibration_samples
    if samples is None:
        samples = 0 if info.get("stage") else 256
    if samples > 0:
        ds = make_dataset(data, "train", 32, augment=True, seed=cfg.seed, shuffle=True)
        recalibrate_batchnorm(model, ds, -(-samples // 32))
    return samples
