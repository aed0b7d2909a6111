"""`edgekd export`: a trained checkpoint -> a .tflite with edgekd metadata and a model card, or a loud failure.

The export reads as the user's story, one function per step (``export_model`` calls them in order):
1. ``resolve_inputs``: the checkpoint, the prepared data it was trained on (and, for QAT, its teachers), checked
   against each other before any slow work, and the model as it will be converted (BatchNorm statistics re-estimated
   for checkpoints edgekd did not write);
2. ``reference_score``: the Keras model's NME on the canonical validation crops;
3. ``convert_model``: float32, float16, dynamic-range, int8 PTQ (calibrated on augmented training crops) or int8
   after quantization-aware fine-tuning (edgekd.training.qat), with the metadata embedded;
4. ``verify``: the file as shipped, loaded by the runtime's LandmarkModel on ai-edge-litert, scored on the same
   crops; an export that loses more than ``tolerance`` NME points raises EdgekdError and writes nothing (an
   existing file at ``out`` is left as it was), unless ``allow_degradation`` (then its card says it is degraded);
   then its ops, output precision and latency;
5. ``write``: the card (JSON and Markdown, built from the ExportResult) and then the model, each atomically
   (edgekd.core.fileio), so no half-written file is ever left behind and a present .tflite has its card.

Every option lives in one ``ExportConfig`` and is checked in one place, ``ExportConfig.validate``.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

import edgekd
from edgekd.core.errors import EdgekdError, ModelError
from edgekd.core.fileio import check_outside_inputs, remove_stale_temps, write_json, write_text
from edgekd.core.metadata import ModelMetadata, embed
from edgekd.export.config import ExportConfig
from edgekd.export.quantize import (CONVERTER_SETTINGS, FULL_INTEGER, QuantizeConfig, convert, delegate_support, float_head_outputs, inspect_ops, latency_ms, output_precision)
from edgekd.training.qat import QATConfig, calibration_images, quantization_aware_model

log = logging.getLogger(__name__)

def card_paths(out) -> tuple[Path, Path]:
    out = Path(out)
    return out.with_name(out.stem + ".card.md"), out.with_name(out.stem + ".card.json")


# --- 1. inputs --------------------------------------------------------------------------------------------------
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


def resolve_inputs(cfg: ExportConfig) -> ExportInputs:
    """Load and cross-check everything before the slow steps, so a wrong folder fails in seconds, not minutes."""
    from edgekd.core.checkpoint import check_network, load_model

    check_network(cfg.checkpoint)  # not a checkpoint, or one that could run code: said before anything else
    info = _checkpoint_info(cfg.checkpoint)
    data = _resolve_data(cfg, info)
    model = load_model(cfg.checkpoint)
    _check_match(cfg.checkpoint, model, info, data)
    if data.manifest.counts.get("val", 0) < 1:
        raise EdgekdError(f"{data.root}: no validation split to check the export on")
    if cfg.mode in ("int8", "qat"):  # calibration and QAT read the training split: a damaged one is said now
        data.split("train")
    with_teachers = cfg.mode == "qat" and cfg.qat_target == "truth"
    teachers, teacher_paths = _load_teachers(cfg, data) if with_teachers else (None, {})
    recal = _recalibrate_batchnorm(model, data, cfg, info)
    images, hard = data.arrays("val", limit=cfg.val_limit)
    return ExportInputs(cfg.checkpoint, info, data, model, recal, images, hard, teachers, teacher_paths)


def _stage_dir(checkpoint: Path) -> Path:
    return checkpoint if checkpoint.is_dir() else checkpoint.parent


def _checkpoint_info(checkpoint: Path) -> dict:
    from edgekd.core.checkpoint import checkpoint_info

    try:
        return checkpoint_info(checkpoint)
    except ModelError:
        return {}  # not HDF5 (e.g. a .keras file): load_model reports real problems


def _run_config(checkpoint: Path) -> dict:
    path = _stage_dir(checkpoint) / "config.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


def _resolve_data(cfg: ExportConfig, info: dict):
    from edgekd.data.pipeline import PreparedData

    prepared = cfg.prepared
    if prepared is None:
        recorded = info.get("prepared") or _run_config(cfg.checkpoint).get("prepared")
        if not recorded or not (Path(recorded) / "manifest.json").is_file():
            raise EdgekdError(f"{cfg.checkpoint}: give the prepared data it was trained on with --prepared "
                              "PREPARED_DIR (needed for calibration and the validation check)")
        prepared = Path(recorded)
        check_outside_inputs(cfg.out, "--out", {"PREPARED (recorded in the checkpoint)": prepared})
    return PreparedData.open(prepared)


def _check_match(checkpoint: Path, model, info: dict, data) -> None:
    from edgekd.core.checkpoint import check_loaded, check_matches_data

    check_loaded(checkpoint, "the model", model, data)
    if info.get("scheme") and info["scheme"] != data.scheme.name:
        raise ModelError(f"{checkpoint}: trained on {info['scheme']} landmarks, but {data.root} is {data.scheme.name}")
    check_matches_data(checkpoint, "the model", data, info)  # input size and margin; the mapping comes from the data


def _load_teachers(cfg: ExportConfig, data) -> tuple[dict | None, dict]:
    """Frozen teachers for QAT: --teachers-dir, else the ones the student's run config names, or its teacher-targets
    file (attached to ``data``, teachers None); (None, {}) if none. A blended baseline's run reads its Tough
    teacher alone, as in training."""
    from edgekd.training.train import load_teachers, teacher_paths

    roles = {"tough"} if _baseline_blend(_run_config(cfg.checkpoint).get("train", {})) else {"tough", "tolerant"}
    if cfg.teachers_dir is not None:
        paths = {k: v for k, v in teacher_paths(cfg.teachers_dir).items() if k in roles}
    else:
        cached = (_run_config(cfg.checkpoint).get("teacher_targets") or {}).get("file")
        if cached and Path(cached).is_file():
            from edgekd.training import teacher_targets

            data.attach_guides(teacher_targets.load(cached, data))
            return {"tough": None, "tolerant": None}, {"teacher_targets": cached}
        if cached:
            log.warning("%s: the teacher-targets file its run recorded, %s, is gone; QAT uses the run's plain loss "
                        "(--teachers-dir gives it teachers)", cfg.checkpoint, cached)
        recorded = _run_config(cfg.checkpoint).get("teachers") or {}
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
        from edgekd.data.pipeline import make_dataset
        from edgekd.models.backbones import recalibrate_batchnorm

        ds = make_dataset(data, "train", 32, augment=True, seed=cfg.seed, shuffle=True)
        recalibrate_batchnorm(model, ds, -(-samples // 32))
    return samples


# --- 2. the reference -------------------------------------------------------------------------------------------
def _nme(inputs: ExportInputs, predicted_px: np.ndarray) -> float:
    from edgekd.core.metrics import batch_nme

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
    qat_cfg = _trained_like(cfg.qat_config, inputs.checkpoint)
    calibration = (calibration_images(inputs.data, cfg.calibration_samples, cfg.seed, qat_cfg.augment)
                   if qcfg.full_integer else None)
    model, recipe, nme_qat = inputs.model, None, None
    if cfg.mode == "qat":
        model, recipe = quantization_aware_model(inputs.model, inputs.data, qat_cfg, inputs.teachers,
                                                 _kd_config(inputs.checkpoint), calibration, cfg.progress)
        recipe["teachers"] = inputs.teacher_paths or None
        nme_qat = keras_score(model, inputs)
    meta = _metadata(inputs.data, qcfg, inputs.checkpoint)
    return Converted(model, embed(convert(model, qcfg, calibration), meta), meta, recipe, nme_qat)


def _trained_like(qat: QATConfig, checkpoint: Path) -> QATConfig:
    """The QAT recipe with the run's own loss, augmentation preset, teacher mirroring and (a blended baseline) teacher
    blend, so fine-tuning and calibration continue what training did (a checkpoint without a run config: L2 and
    the full preset)."""
    train = _run_config(checkpoint).get("train", {})
    augment = train.get("augment_preset", "full") if train.get("augment", True) else "none"
    return replace(qat, loss=train.get("loss", qat.loss), augment=augment,
                   teacher_flip=bool(train.get("teacher_flip", False)), teacher_blend=_baseline_blend(train))


def _baseline_blend(train: dict) -> float:
    """A blended baseline's teacher blend (its Tough teacher alone taught it), 0.0 for any other run."""
    return float((train.get("kd") or {}).get("teacher_blend") or 0.0) if train.get("stage") == "baseline" else 0.0


def _kd_config(checkpoint: Path):
    """The KD-Loss the student was trained with (its run config), so QAT fine-tunes under the same objective (a
    blended baseline's blend goes to trainers.Mimic instead, through ``_trained_like``)."""
    from edgekd.models.losses import KDLossConfig

    train = _run_config(checkpoint).get("train", {})
    return KDLossConfig(**train["kd"]) if train.get("kd") else KDLossConfig()


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
    from edgekd.runtime.model import LandmarkModel

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
    label = cfg.quantize_config.label
    hint = {"int8": "try --qat or more --calibration-samples, or ", "qat": "try more --qat-epochs, or "}.get(
        cfg.mode, "")
    raise EdgekdError(f"{cfg.out}: not written: the {label} model's validation NME is {scores.tflite:.3f}% "
                      f"against {scores.keras:.3f}% for the Keras model ({scores.delta:+.3f} > tolerance "
                      f"{cfg.tolerance:g}); {hint}pass --allow-degradation to write it anyway")


def _head_cost(tflite: bytes, model, inputs: ExportInputs) -> dict:
    """NME of the int8 model against the same model with its landmark head in float (reference kernels)."""
    from edgekd.models.backbones import HEAD_NAME

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
    import os

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
    from tqdm import tqdm

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


# --- the model card ---------------------------------------------------------------------------------------------
def build_card(result: ExportResult) -> dict:
    """The model card as JSON: what was converted, how, and what the file as shipped measured."""
    cfg, nme = result.config, result.nme
    return {
        "model": result.path.name, "created": result.created, "sha256": result.sha256,
        "size_bytes": result.size_bytes, "size_mb": result.size_mb,
        "checkpoint": str(Path(cfg.checkpoint).resolve()),  # where it came from, wherever export ran
        "checkpoint_info": {k: result.checkpoint_info[k] for k in ("stage", "epoch", "val_nme", "alpha")
                            if k in result.checkpoint_info},
        "prepared": str(result.prepared),
        "nme": {"split": "val", "faces": nme.faces, "crops": "canonical (ground-truth box)", "keras": nme.keras,
                "tflite": nme.tflite, "delta": nme.delta,
                **({"keras_qat": nme.keras_qat} if nme.keras_qat is not None else {}),
                "tolerance": cfg.tolerance, "degraded": bool(result.degraded)},
        "latency_ms": result.latency,
        "input": result.ops["input"], "output": result.ops["output"], "output_precision": result.precision,
        "ops": {"total": result.ops["total"], "all_integer": result.ops["all_integer"],
                "float_ops": result.ops["float_ops"], "by_type": result.ops["ops"],
                "delegates": result.ops.get("delegates")},
        "quantization": _card_quantization(result),
        "metadata": json.loads(result.metadata.to_json()),
        "training": cfg.recipe,  # the recipe run that trained the checkpoint (None: trained stage by stage)
        "config": {k: v for k, v in cfg.to_dict().items() if k != "recipe"},  # every export option, to redo it
    }


def _card_quantization(result: ExportResult) -> dict:
    cfg, recal = result.config, result.batchnorm_samples
    quant = {"mode": cfg.mode, "label": cfg.quantize_config.label, "converter": CONVERTER_SETTINGS[cfg.mode],
             "batchnorm_recalibration": f"{recal} augmented training crops" if recal else
             "none (the checkpoint's statistics were re-estimated by edgekd training before it was saved)"}
    if cfg.mode in FULL_INTEGER:
        quant.update(input_type=cfg.input_type, output_type=cfg.output_type,
                     calibration=f"{cfg.calibration_samples} augmented training crops (seed {cfg.seed})"
                     + (", used for the initial fake-quant ranges" if cfg.mode == "qat" else ""))
    if cfg.mode == "qat":
        quant["qat"] = result.qat_recipe
    return quant


def render_card(card: dict) -> str:
    """The card as Markdown, for people: summary table, output precision, ops, quantization recipe."""
    lines = [f"# {card['model']}", ""]
    nme = card["nme"]
    if nme["degraded"]:
        lines += [f"> **Degraded export** (written with --allow-degradation): the validation NME rose by "
                  f"{nme['delta']:.3f} points, more than the tolerance of {nme['tolerance']:g}.", ""]
    lines += _summary_table(card)
    lines += _precision_section(card)
    lines += _ops_section(card)
    lines += ["", "## Quantization recipe", ""]
    for k, v in card["quantization"].items():
        if k == "qat":
            lines.append("- QAT fine-tune:")
            lines += [f"  - {kk}: {vv}" for kk, vv in v.items() if vv is not None and kk != "kd"]
        else:
            lines.append(f"- {k}: {v}")
    lines += _training_section(card.get("training"))
    lines += ["", f"sha256 `{card['sha256']}`, created {card['created']}.", ""]
    return "\n".join(lines)


def _training_section(training: dict | None) -> list[str]:
    """How the checkpoint was made: the recipe file (sha256) and each stage's validation NME and time."""
    if not training:
        return []
    lines = ["", "## Training", "",
             f"Recipe `{training['recipe']}` (`{Path(training['recipe_file']).name}`, sha256 "
             f"`{training['recipe_sha256']}`)" + (f", overrides `{' '.join(training['overrides'])}`"
                                                    if training["overrides"] else "")
             + (", plain control" if training.get("control") else "") + ".", "",
             "| stage | kind | validation NME % | minutes |", "|---|---|---|---|"]
    for name, s in training["stages"].items():
        nme = "–" if s.get("val_nme") is None else f"{s['val_nme']:.3f}"
        minutes = "–" if s.get("seconds") is None else f"{s['seconds'] / 60:.1f}"
        lines.append(f"| {name} | {s['kind']} | {nme} | {minutes} |")
    for name, nme in (training.get("plain_control_val_nme") or {}).items():
        lines.append(f"| {name} | plain control | {nme:.3f} | |")
    return lines


def _summary_table(card: dict) -> list[str]:
    nme, lat, meta, inp = card["nme"], card["latency_ms"], card["metadata"], card["input"]
    crop = meta["crop"]
    rows = [
        ("quantization", card["quantization"]["label"]),
        ("size", f"{card['size_mb']:.3f} MB ({card['size_bytes']:,} bytes)"),
        ("validation NME (tflite, ai-edge-litert)", f"{nme['tflite']:.3f} %"),
        ("validation NME (Keras checkpoint)", f"{nme['keras']:.3f} %"),
    ]
    if "keras_qat" in nme:
        rows.append(("validation NME (Keras QAT model)", f"{nme['keras_qat']:.3f} %"))
    rows += [
        ("difference", f"{nme['delta']:+.3f} points (tolerance {nme['tolerance']:g})"),
        ("latency, 1 thread", f"{lat['median']:.2f} ms median ({lat['runs']} runs after {lat['warmup']} warm-up, "
                              f"{lat['runtime']})"),
        ("input", f"{inp['dtype']} {inp['shape']}, RGB, pixel/255"
                  + (f", scale {inp['scale']:.6g} zero point {inp['zero_point']}" if inp["scale"] else "")),
        ("output", f"{card['output']['dtype']} {card['output']['shape']}, x0,y0,x1,y1,... crop_px = (v + 0.5) * "
                   f"{crop['input_size']}"),
        ("landmarks", f"{meta['scheme']}, {meta['num_points']} points"),
        ("crop", f"margin {crop['margin']}, input {crop['input_size']} px, detector offset "
                 f"{crop['detector_offset']}, scale {crop['detector_scale']}"
                 + ("; where the detector gives its 6 keypoints, the keypoint mapping (3 x 15 weights)"
                    if crop.get("detector_keypoint_weights") else "")),
        ("training data", meta["training_data"]),
        ("data licence", meta["data_license"]),
        ("checkpoint", card["checkpoint"]),
        ("edgekd", meta["edgekd_version"]),
    ]
    return (["| | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows]
            + ["", f"Validation: {nme['faces']} faces of the `val` split of `{card['prepared']}`, {nme['crops']} "
                   "crops.", ""])


def _precision_section(card: dict) -> list[str]:
    prec = card["output_precision"]
    if not prec["scale"]:
        if _float_head(card):
            return ["## Output precision", "", "The landmark layer runs in float (`--float-head`): the int8 features "
                    "are dequantized before it, so the output is not rounded to an int8 grid.", ""]
        return []
    lines = ["## Output precision", "",
             f"The landmark head is quantized with scale {prec['scale']:.6g} ({prec['source']}): "
             f"{prec['pixels_per_step']:.3f} crop pixels per int8 step, at most "
             f"{prec['max_rounding_error_px']:.3f} px rounding error per coordinate. "
             + ("The model hands out float32 (a DEQUANTIZE after the int8 head)."
                if card["output"]["dtype"] == "float32" else
                "The model hands out the raw int8 values; dequantize with the output scale and zero point.")]
    if "nme_cost" in prec:
        lines += ["", f"Measured on the validation crops: {prec['nme_int8_head']:.3f} % with the int8 head, "
                      f"{prec['nme_float_head']:.3f} % with the same int8 features through the head in float "
                      f"(cost of the int8 output: {prec['nme_cost']:+.3f} NME points; {prec['measured_with']})."]
    return lines + [""]


def _float_head(card: dict) -> bool:
    """Whether the export kept the landmark layer in float on purpose (`--float-head`)."""
    return ((card.get("quantization") or {}).get("qat") or {}).get("landmark_head") == "float"


def _ops_section(card: dict) -> list[str]:
    ops = card["ops"]
    n_float = sum(r["count"] for r in ops["float_ops"])
    lines = ["## Ops", "", f"{ops['total']} ops; "
             + ("every op computes on integer inputs (QUANTIZE/DEQUANTIZE only at the boundary)."
                if ops["all_integer"] else f"{n_float} {'op takes' if n_float == 1 else 'ops take'} float inputs."),
             "", "| op | count | input types | output types |", "| --- | --- | --- | --- |"]
    for r in ops["by_type"]:
        lines.append(f"| {r['op']} | {r['count']} | {', '.join(r['input_types'])} | {', '.join(r['output_types'])} |")
    if ops["float_ops"] and card["quantization"]["mode"] in FULL_INTEGER:
        # `--float-head` asks for one float FULLY_CONNECTED (the landmark layer); any other float op is the
        # converter's fallback, which a full-integer accelerator cannot run: listed apart, as a warning
        head = [r for r in ops["float_ops"] if _float_head(card) and r["op"] == "FULLY_CONNECTED" and r["count"] == 1]
        rest = [r for r in ops["float_ops"] if r not in head]
        if head:
            lines += ["", "Ops in float (the landmark layer, `--float-head`): FULLY_CONNECTED x1"]
        if rest:
            lines += ["", "Ops that fall back to float: " + ", ".join(f"{r['op']} x{r['count']}" for r in rest)]
    delegates = ops.get("delegates")
    if delegates:
        xnn, gpu = delegates["xnnpack"], delegates["gpu"]
        lines += ["", "Delegates: XNNPACK takes " + ("every op (one partition, measured)" if xnn["every_op"] else
                                                     f"part of the graph ({xnn['partitions']} partitions)")
                  + "; GPU delegate: " + ("TensorFlow Lite's model analyzer flags no op (a static, lenient check)"
                                          if gpu["analyzer_compatible"] else "TensorFlow Lite's model analyzer flags "
                                          + "; ".join(gpu["analyzer_warnings"] or ["the model"]))]
    return lines
