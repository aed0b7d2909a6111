"""`edgekd export`: a trained checkpoint -> a .tflite with edgekd metadata and a model card, or a loud failure.

The export reads as the user's story, one function per step (``export_model`` calls them in order):
1. ``resolve_inputs`` (export/inputs.py): the checkpoint, the prepared data it was trained on, its run's training
   settings (and, for QAT, its teachers), checked against each other before any slow work, and the model as it will
   be converted (BatchNorm statistics re-estimated for checkpoints edgekd did not write);
2. ``reference_score``: the Keras model's NME on the canonical validation crops;
3. ``convert_model``: float32, float16, dynamic-range, int8 PTQ (calibrated on augmented training crops) or int8
   after quantization-aware fine-tuning (edgekd.training.qat), with the metadata embedded;
4. ``verify``: the file as shipped, loaded by the runtime's LandmarkModel on ai-edge-litert, scored on the same
   crops; an export that loses more than ``tolerance`` NME points raises EdgekdError and writes nothing (an
   existing file at ``out`` is left as it was), unless ``allow_degradation`` (then its card says it is degraded);
   then its ops, output precision and latency;
5. ``write``: the card (JSON and Markdown, built from the ExportResult by export/card.py) and then the model, each
   atomically (edgekd.core.fileio), so no half-written file is ever left behind and a present .tflite has its card.

Every option lives in one ``ExportConfig`` and is checked in one place, ``ExportConfig.validate``.
"""
from __future__ import annotations

import datetime
import hashlib
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

import edgekd
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import remove_stale_temps, write_json, write_text
from edgekd.core.metadata import ModelMetadata, embed
from edgekd.core.metrics import batch_nme
from edgekd.export.card import build_card, card_paths, render_card
from edgekd.export.config import ExportConfig
from edgekd.export.inputs import ExportInputs, resolve_inputs
from edgekd.export.quantize import (QuantizeConfig, convert, delegate_support, float_head_outputs, inspect_ops,
                                    latency_ms, output_precision)
from edgekd.models.backbones import HEAD_NAME
from edgekd.models.losses import KDLossConfig
from edgekd.runtime.model import LandmarkModel
from edgekd.training.config import TrainConfig
from edgekd.training.qat import QATConfig, calibration_images, quantization_aware_model


# --- 2. the reference -------------------------------------------------------------------------------------------
def _nme(inputs: ExportInputs, predicted_px: np.ndarray) -> float:
    data = inputs.data
    return float(100 * batch_nme(predicted_px, inputs.val_hard, data.scheme.nme_pair).mean())


def keras_score(model, inputs: ExportInputs) -> float:
    """Validation NME (percent) of a Keras model on the canonical crops."""
    images = inputs.val_images
    preds = [np.asarray(model(images[i:i + 64].astype(np.float32) / 255.0, training=False))
             for i in range(0, len(images), 64)]
    return _nme(inputs, inputs.data.crop.denormalize(np.concatenate(preds)))


def reference_score(inputs: ExportInputs) -> float:
    """What the export is held to: the Keras model's validation NME, before any conversion."""
    return keras_score(inputs.model, inputs)


# --- 3. conversion ----------------------------------------------------------------------------------------------
@dataclass
class Converted:
    """The converted model and how it came about."""

    model: object  # the Keras model that was converted (for QAT the fine-tuned, fake-quantized one)
    tflite: bytes = field(repr=False)  # metadata embedded
    metadata: ModelMetadata
    qat_recipe: dict | None = None
    nme_keras_qat: float | None = None  # the QAT Keras model's validation NME


def convert_model(cfg: ExportConfig, inputs: ExportInputs) -> Converted:
    """Convert in ``cfg.mode``; full-integer modes calibrate on augmented training crops, QAT fine-tunes first."""
    qcfg = cfg.quantize_config
    trained = inputs.run.train
    qat_cfg = _trained_like(cfg.qat_config, trained)
    calibration = (calibration_images(inputs.data, cfg.calibration_samples, cfg.seed, qat_cfg.augment)
                   if qcfg.format.calibration else None)
    model, recipe, nme_qat = inputs.model, None, None
    if qcfg.format.qat:
        # the KD-Loss the student was trained with, so QAT fine-tunes under the same objective (a blended
        # baseline's blend goes to trainers.Mimic instead, through ``_trained_like``)
        kd = trained.kd if trained is not None else KDLossConfig()
        model, recipe = quantization_aware_model(inputs.model, inputs.data, qat_cfg, inputs.teachers, kd,
                                                 calibration, cfg.progress)
        recipe["teachers"] = inputs.teacher_paths or None
        nme_qat = keras_score(model, inputs)
    meta = _metadata(inputs.data, qcfg, inputs.checkpoint)
    return Converted(model, embed(convert(model, qcfg, calibration), meta), meta, recipe, nme_qat)


def _trained_like(qat: QATConfig, train: TrainConfig | None) -> QATConfig:
    """The QAT recipe with the run's own loss, augmentation preset, teacher mirroring and (a blended baseline) teacher
    blend, so fine-tuning and calibration continue what training did (a checkpoint without a run config: QATConfig's
    L2 and full preset)."""
    if train is None:
        return qat
    return replace(qat, loss=train.loss, augment=train.augment_preset if train.augment else "none",
                   teacher_flip=train.teacher_flip,
                   teacher_blend=float(train.kd.teacher_blend) if train.blended_baseline else 0.0)


def _metadata(data, cfg: QuantizeConfig, checkpoint: Path) -> ModelMetadata:
    m = data.manifest
    counts = m.counts
    training = (f"{m.scheme} ({counts.get('train', 0)} train + {counts.get('val', 0)} val faces, prepared at "
                f"{m.crop['input_size']} px from {Path(m.sources.get('root', '?')).name})")
    extra = {"checkpoint": checkpoint.name}
    if cfg.full_integer:
        extra.update(input_type=cfg.input_type, output_type=cfg.output_type)
    return ModelMetadata(scheme=data.scheme.name, num_points=data.num_points,
                         flip_permutation=list(data.scheme.flip_permutation), nme_pair=list(data.scheme.nme_pair),
                         crop=data.crop, quantization=cfg.label, training_data=training, data_license=m.license,
                         edgekd_version=edgekd.__version__, extra=extra)


# --- 4. verification --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scores:
    """Validation NME (percent) of the Keras reference and of the file as shipped, on the same canonical crops."""

    keras: float
    tflite: float
    faces: int
    keras_qat: float | None = None

    @property
    def delta(self) -> float:
        return self.tflite - self.keras


@dataclass
class ExportResult:
    """What an export produced and measured; the model card is built from it (``card``)."""

    config: ExportConfig
    metadata: ModelMetadata
    nme: Scores
    sha256: str
    size_bytes: int
    checkpoint_info: dict
    prepared: Path
    batchnorm_samples: int
    ops: dict
    precision: dict
    latency: dict
    qat_recipe: dict | None = None
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"))

    path = property(lambda self: self.config.out)
    card_md = property(lambda self: card_paths(self.config.out)[0])
    card_json = property(lambda self: card_paths(self.config.out)[1])
    nme_keras = property(lambda self: self.nme.keras)
    nme_tflite = property(lambda self: self.nme.tflite)
    size_mb = property(lambda self: round(self.size_bytes / 1e6, 3))
    degraded = property(lambda self: self.nme.delta > self.config.tolerance)

    @property
    def card(self) -> dict:
        return build_card(self)


def verify(cfg: ExportConfig, inputs: ExportInputs, reference: float, converted: Converted) -> ExportResult:
    """The file as shipped: its NME through the runtime (the tolerance guard comes first, so a failing export
    stops there), then its ops, output precision and latency."""
    scores = Scores(reference, _tflite_score(converted.tflite, cfg.out.name, inputs), len(inputs.val_images),
                    converted.nme_keras_qat)
    check_tolerance(cfg, scores)
    tflite = converted.tflite
    precision = output_precision(tflite, inputs.data.input_size)
    if cfg.quantize_config.full_integer and precision["scale"]:  # an int8 head (a float one has no grid)
        precision.update(_head_cost(tflite, converted.model, inputs))
    latency = latency_ms(tflite, inputs.val_images[0].astype(np.float32) / 255.0, runs=cfg.latency_runs)
    return ExportResult(cfg, converted.metadata, scores, hashlib.sha256(tflite).hexdigest(), len(tflite),
                        inputs.info, inputs.data.root, inputs.batchnorm_samples,
                        {**inspect_ops(tflite), "delegates": delegate_support(tflite)}, precision, latency,
                        converted.qat_recipe)


def _tflite_score(tflite: bytes, name: str, inputs: ExportInputs) -> float:
    """NME of the file through the runtime's own loader (metadata, input/output quantization and all), run from a
    temporary copy: nothing appears at ``out`` before the export has passed."""
    with tempfile.TemporaryDirectory(prefix="edgekd-verify-") as folder:
        path = Path(folder) / name
        path.write_bytes(tflite)
        with LandmarkModel(path, num_threads=1, runtime="litert") as model:
            preds = np.stack([model.predict(img) for img in inputs.val_images])
    return _nme(inputs, preds)


def check_tolerance(cfg: ExportConfig, scores: Scores) -> None:
    """Refuse an export that loses more than ``cfg.tolerance`` NME points, unless degradation is allowed."""
    if scores.delta <= cfg.tolerance or cfg.allow_degradation:
        return
    label, hint = cfg.quantize_config.label, cfg.quantize_config.format.retry_hint
    raise EdgekdError(f"{cfg.out}: not written: the {label} model's validation NME is {scores.tflite:.3f}% "
                      f"against {scores.keras:.3f}% for the Keras model ({scores.delta:+.3f} > tolerance "
                      f"{cfg.tolerance:g}); {hint}pass --allow-degradation to write it anyway")


def _head_cost(tflite: bytes, model, inputs: ExportInputs) -> dict:
    """NME of the int8 model against the same model with its landmark head in float (reference kernels)."""
    # by variable name: inside a QAT wrapper the Dense's ``kernel`` attribute is the fake-quantized tensor
    found = {v.name.split(":")[0]: v for v in model.weights}
    if f"{HEAD_NAME}/kernel" not in found or f"{HEAD_NAME}/bias" not in found:
        return {}
    kernel, bias = found[f"{HEAD_NAME}/kernel"].numpy(), found[f"{HEAD_NAME}/bias"].numpy()
    own, floated = float_head_outputs(tflite, kernel, bias, inputs.val_images.astype(np.float32) / 255.0)
    int8_head, float_head = (_nme(inputs, inputs.data.crop.denormalize(out)) for out in (own, floated))
    return {"nme_int8_head": int8_head, "nme_float_head": float_head, "nme_cost": int8_head - float_head,
            "measured_with": "reference kernels (no XNNPACK), preserved int8 features x float head weights"}


# --- 5. writing -------------------------------------------------------------------------------------------------
def write(result: ExportResult, tflite: bytes) -> None:
    """The model's bytes go to a temporary file first (a full disk fails there, before anything is replaced),
    then the card, then the model is renamed into place: a new card never sits beside an old model for longer
    than one rename, and a .tflite that is present always has its card beside it."""
    path = result.path
    remove_stale_temps(path)  # what a kill -9 of an earlier export left beside this model
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")  # fileio.temp_names knows this form
    try:
        try:  # written directly (not through write_bytes, whose own temporary name a kill -9 would strand)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(tflite)
        except OSError as e:  # a read-only folder or a full disk: name the model asked for, not its temporary
            raise OSError(e.errno, e.strerror, str(path)) from None
        card = result.card
        write_json(result.card_json, card)
        write_text(result.card_md, render_card(card))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --- the export -------------------------------------------------------------------------------------------------
STEPS = ("reference", "convert", "verify", "write")  # the slow part, behind a progress bar


def export_model(cfg: ExportConfig) -> ExportResult:
    """Convert ``cfg.checkpoint`` (best.h5, last.h5 or a stage folder) into ``cfg.out`` (.tflite) with metadata
    and card, e.g. ``export_model(ExportConfig("runs/kd/student/best.h5", "student.tflite", "int8"))``.

    The progress bar starts once the inputs are resolved, so a refused export prints its one-line error alone.
    """
    cfg.validate()
    inputs = resolve_inputs(cfg)
    with tqdm(total=len(STEPS), desc=f"export {cfg.mode}", unit="step", disable=not cfg.progress,
              leave=False) as bar:
        def step(name: str):
            bar.set_postfix_str(name)
            bar.update(1)

        reference = reference_score(inputs)
        step("reference")
        converted = convert_model(cfg, inputs)
        step("convert")
        result = verify(cfg, inputs, reference, converted)
        step("verify")
        write(result, converted.tflite)
        step("write")
    return result
