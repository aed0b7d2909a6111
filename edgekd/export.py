"""`edgekd export`: a trained checkpoint -> a .tflite with edgekd metadata and a model card, or a loud failure.

The exported model is checked the way it will be used: the file (metadata embedded) is loaded by the runtime's
LandmarkModel on ai-edge-litert and run on the canonical validation crops of the prepared data; its NME is
compared with the Keras model's. An export that loses more than ``tolerance`` NME points raises EdgekdError and
writes nothing (an existing file at ``out`` is left as it was); with ``allow_degradation`` it is written and its
card says it is degraded. The model is written last, after its card, each through a temporary file in the same
folder and ``os.replace``, so no half-written file is ever left behind and a present .tflite has its card.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import edgekd
from edgekd.errors import EdgekdError, ModelError
from edgekd.metadata import ModelMetadata, embed
from edgekd.quantize import FULL_INTEGER, QuantizeConfig

DEFAULT_TOLERANCE = 0.1  # NME points (percent of the outer-eye-corner distance)


@dataclass
class ExportResult:
    path: Path
    card_md: Path
    card_json: Path
    metadata: ModelMetadata
    card: dict = field(default_factory=dict)

    @property
    def nme_keras(self) -> float:
        return self.card["nme"]["keras"]

    @property
    def nme_tflite(self) -> float:
        return self.card["nme"]["tflite"]

    @property
    def size_mb(self) -> float:
        return self.card["size_mb"]

    @property
    def degraded(self) -> bool:
        return self.card["nme"]["degraded"]


def card_paths(out) -> tuple[Path, Path]:
    out = Path(out)
    return out.with_name(out.stem + ".card.md"), out.with_name(out.stem + ".card.json")


# --- inputs ---------------------------------------------------------------------------------------------------
def _stage_dir(checkpoint: Path) -> Path:
    return checkpoint if checkpoint.is_dir() else checkpoint.parent


def _checkpoint_info(checkpoint: Path) -> dict:
    from edgekd.checkpoint import checkpoint_info

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


def _resolve_data(checkpoint: Path, prepared_dir, info: dict):
    from edgekd.data.pipeline import PreparedData

    if prepared_dir is None:
        recorded = info.get("prepared") or _run_config(checkpoint).get("prepared")
        if not recorded or not (Path(recorded) / "manifest.json").is_file():
            raise EdgekdError(f"{checkpoint}: give the prepared data it was trained on with --prepared PREPARED_DIR "
                              "(needed for calibration and the validation check)")
        prepared_dir = recorded
    return PreparedData.open(prepared_dir)


def _check_match(checkpoint: Path, model, info: dict, data) -> None:
    from edgekd.checkpoint import check_loaded, check_matches_data

    check_loaded(checkpoint, "the model", model, data)
    if info.get("scheme") and info["scheme"] != data.scheme.name:
        raise ModelError(f"{checkpoint}: trained on {info['scheme']} landmarks, but {data.root} is {data.scheme.name}")
    check_matches_data(checkpoint, "the model", data, info)  # the whole CropSpec, as training checks it


def _load_teachers(checkpoint: Path, teachers_dir, data) -> tuple[dict | None, dict]:
    """Frozen teachers for QAT: --teachers-dir, else the ones the student's run config names; (None, {}) if none."""
    from edgekd.checkpoint import check_loaded, load_model
    from edgekd.train import check_teacher, teacher_paths

    if teachers_dir is not None:
        paths = teacher_paths(teachers_dir)
    else:
        recorded = _run_config(checkpoint).get("teachers") or {}
        paths = {k: Path(v) for k, v in recorded.items()}
        if set(paths) != {"tough", "tolerant"} or not all(p.is_file() for p in paths.values()):
            return None, {}
    teachers = {}
    for name, path in paths.items():
        check_teacher(name, path, data)
        teachers[name] = load_model(path)
        check_loaded(path, f"{name} teacher", teachers[name], data)
    return teachers, {k: str(v) for k, v in paths.items()}


def _kd_config(checkpoint: Path):
    from edgekd.losses import KDLossConfig

    kd = _run_config(checkpoint).get("train", {}).get("kd")
    return KDLossConfig(**kd) if kd else KDLossConfig()


# --- evaluation -----------------------------------------------------------------------------------------------
def _keras_nme(model, images: np.ndarray, hard_px: np.ndarray, data) -> float:
    from edgekd.metrics import batch_nme as nme

    preds = []
    for start in range(0, len(images), 64):
        preds.append(np.asarray(model(images[start:start + 64].astype(np.float32) / 255.0, training=False)))
    return float(100 * nme(data.crop.denormalize(np.concatenate(preds)), hard_px, data.scheme.nme_pair).mean())


def _tflite_nme(path: Path, images: np.ndarray, hard_px: np.ndarray, data) -> float:
    """NME of the written file through the runtime's own loader (metadata, input/output quantization and all)."""
    from edgekd.runtime.model import LandmarkModel
    from edgekd.metrics import batch_nme as nme

    with LandmarkModel(path, num_threads=1, runtime="litert") as model:
        preds = np.stack([model.predict(img) for img in images])
    return float(100 * nme(preds, hard_px, data.scheme.nme_pair).mean())


def _head_cost(tflite: bytes, model, images, hard_px, data) -> dict:
    """NME of the int8 model against the same model with its landmark head in float (reference kernels)."""
    from edgekd import quantize as q
    from edgekd.models import HEAD_NAME
    from edgekd.metrics import batch_nme as nme

    # by variable name: inside a QAT wrapper the Dense's ``kernel`` attribute is the fake-quantized tensor
    found = {v.name.split(":")[0]: v for v in model.weights}
    if f"{HEAD_NAME}/kernel" not in found or f"{HEAD_NAME}/bias" not in found:
        return {}
    kernel, bias = found[f"{HEAD_NAME}/kernel"].numpy(), found[f"{HEAD_NAME}/bias"].numpy()
    own, floated = q.float_head_outputs(tflite, kernel, bias, images.astype(np.float32) / 255.0)
    score = lambda out: float(100 * nme(data.crop.denormalize(out), hard_px, data.scheme.nme_pair).mean())
    int8_head, float_head = score(own), score(floated)
    return {"nme_int8_head": int8_head, "nme_float_head": float_head, "nme_cost": int8_head - float_head,
            "measured_with": "reference kernels (no XNNPACK), preserved int8 features x float head weights"}


def _metadata(data, cfg: QuantizeConfig, checkpoint: Path) -> ModelMetadata:
    m = data.manifest
    counts = m.counts
    training = (f"{m.scheme} ({counts.get('train', 0)} train + {counts.get('val', 0)} val faces, prepared at "
                f"{m.crop['input_size']} px from {Path(m.sources.get('root', '?')).name})")
    extra = {"checkpoint": checkpoint.name}
    if cfg.mode in FULL_INTEGER:
        extra.update(input_type=cfg.input_type, output_type=cfg.output_type)
    return ModelMetadata(scheme=data.scheme.name, num_points=data.num_points,
                         flip_permutation=list(data.scheme.flip_permutation), nme_pair=list(data.scheme.nme_pair),
                         crop=data.crop, quantization=cfg.label, training_data=training, data_license=m.license,
                         edgekd_version=edgekd.__version__, extra=extra)


# --- the export -----------------------------------------------------------------------------------------------
def export_model(checkpoint, out, mode: str = "float32", prepared_dir=None, *, input_type: str = "int8",
                 output_type: str = "float32", calibration_samples: int = 300, qat_epochs: int = 3,
                 qat_steps_per_epoch: int | None = None, qat_learning_rate: float = 1e-4, teachers_dir=None,
                 tolerance: float = DEFAULT_TOLERANCE, allow_degradation: bool = False, seed: int = 0,
                 bn_recalibration_samples: int | None = None, latency_runs: int = 50, val_limit: int | None = None,
                 progress: bool = True) -> ExportResult:
    """Convert ``checkpoint`` (best.h5, last.h5 or a stage folder) into ``out`` (.tflite) with metadata and card.

    ``bn_recalibration_samples``: training crops for re-estimating BatchNorm statistics before conversion
    (STACK.md, BatchNorm trap); None = 0 for edgekd checkpoints (training re-estimates them before saving) and
    256 for any other Keras file. ``val_limit`` caps the validation faces (tests).
    """
    from tqdm import tqdm

    from edgekd import quantize as q
    from edgekd.checkpoint import load_model

    cfg = QuantizeConfig(mode=mode, input_type=input_type, output_type=output_type,
                         calibration_samples=calibration_samples, seed=seed, qat_epochs=qat_epochs,
                         qat_steps_per_epoch=qat_steps_per_epoch, qat_learning_rate=qat_learning_rate)
    cfg.validate()
    checkpoint, out = Path(checkpoint), Path(out)
    if out.suffix.lower() != ".tflite":
        raise EdgekdError(f"{out}: the output file must end in .tflite")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not checkpoint.exists():
        raise ModelError(f"{checkpoint}: checkpoint not found")
    info = _checkpoint_info(checkpoint)
    data = _resolve_data(checkpoint, prepared_dir, info)
    model = load_model(checkpoint)
    _check_match(checkpoint, model, info, data)
    if data.manifest.counts.get("val", 0) < 1:
        raise EdgekdError(f"{data.root}: no validation split to check the export on")
    steps = ["batchnorm", "keras NME", "calibration", "convert", "check"]
    bar = tqdm(total=len(steps), desc=f"export {cfg.mode}", unit="step", disable=not progress, leave=False)

    def step(name):
        bar.set_postfix_str(name)
        bar.update(1)

    # 1. BatchNorm statistics of the model that is converted
    recal = bn_recalibration_samples
    if recal is None:
        recal = 0 if info.get("stage") else 256
    if recal > 0:
        from edgekd.data.pipeline import make_dataset
        from edgekd.models import recalibrate_batchnorm

        ds = make_dataset(data, "train", 32, augment=True, seed=seed, shuffle=True)
        recalibrate_batchnorm(model, ds, -(-recal // 32))
    step(steps[0])

    # 2. the Keras reference on the canonical validation crops
    val_images, val_hard = data.arrays("val", limit=val_limit)
    keras_nme = _keras_nme(model, val_images, val_hard, data)
    step(steps[1])

    # 3. calibration crops (full-integer modes) and, for QAT, the fine-tune
    calibration, recipe = None, {}
    to_convert = model
    if cfg.mode in FULL_INTEGER:
        calibration = q.calibration_images(data, cfg.calibration_samples, cfg.seed)
    extra_nme = {}
    if cfg.mode == "qat":
        teachers, teacher_paths = _load_teachers(checkpoint, teachers_dir, data)
        to_convert, recipe = q.quantization_aware_model(model, data, cfg, teachers, _kd_config(checkpoint),
                                                        calibration, progress)
        recipe["teachers"] = teacher_paths or None
        extra_nme["keras_qat"] = _keras_nme(to_convert, val_images, val_hard, data)
    step(steps[2])

    # 4. conversion and metadata
    meta = _metadata(data, cfg, checkpoint)
    tflite = embed(q.convert(to_convert, cfg, calibration), meta)
    step(steps[3])

    # 5. the file as shipped: NME, ops, output precision, latency; then the guard
    card_md, card_json = card_paths(out)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.tflite")
    tmps = [tmp, card_md.with_name(card_md.name + ".tmp"), card_json.with_name(card_json.name + ".tmp")]
    try:
        tmp.write_bytes(tflite)
        tflite_nme = _tflite_nme(tmp, val_images, val_hard, data)
        ops = q.inspect_ops(tflite)
        precision = q.output_precision(tflite, data.input_size)
        if cfg.mode in FULL_INTEGER:
            precision.update(_head_cost(tflite, to_convert, val_images, val_hard, data))
        latency = q.latency_ms(tflite, val_images[0].astype(np.float32) / 255.0, runs=latency_runs)
        step(steps[4])
        delta = tflite_nme - keras_nme
        degraded = delta > tolerance
        if degraded and not allow_degradation:
            hint = {"int8": "try --qat or more --calibration-samples, or ", "qat": "try more --qat-epochs, or "}.get(
                cfg.mode, "")
            raise EdgekdError(f"{out}: not written: the {cfg.label} model's validation NME is {tflite_nme:.3f}% "
                              f"against {keras_nme:.3f}% for the Keras model ({delta:+.3f} > tolerance "
                              f"{tolerance:g}); {hint}pass --allow-degradation to write it anyway")
        card = _card(out, tflite, meta, cfg, checkpoint, data, info, recal, keras_nme, tflite_nme, extra_nme,
                     len(val_images), tolerance, degraded, ops, precision, latency, recipe)
        tmps[2].write_text(json.dumps(card, indent=1) + "\n")
        tmps[1].write_text(render_card(card))
        os.replace(tmps[2], card_json)
        os.replace(tmps[1], card_md)
        os.replace(tmp, out)
    finally:
        bar.close()
        for t in tmps:
            t.unlink(missing_ok=True)
    return ExportResult(out, card_md, card_json, meta, card)


# --- the model card -------------------------------------------------------------------------------------------
def _card(out, tflite, meta, cfg, checkpoint, data, info, recal, keras_nme, tflite_nme, extra_nme, n_val,
          tolerance, degraded, ops, precision, latency, recipe) -> dict:
    conversion = {"float32": "TFLiteConverter.from_keras_model, no optimization",
                  "float16": "optimizations=[DEFAULT], supported_types=[float16] (float16 weights, float32 compute)",
                  "dynamic": "optimizations=[DEFAULT] (int8 weights, float activations, dynamic-range kernels)",
                  "int8": "optimizations=[DEFAULT], supported_ops=[TFLITE_BUILTINS_INT8], representative_dataset",
                  "qat": "optimizations=[DEFAULT] on the fake-quantized QAT model (its trained ranges fix every "
                         "op's int8 parameters; no representative dataset)"}[cfg.mode]
    quant = {"mode": cfg.mode, "label": cfg.label, "converter": conversion,
             "batchnorm_recalibration": f"{recal} augmented training crops" if recal else
             "none (the checkpoint's statistics were re-estimated by edgekd training before it was saved)"}
    if cfg.mode in FULL_INTEGER:
        quant.update(input_type=cfg.input_type, output_type=cfg.output_type,
                     calibration=f"{cfg.calibration_samples} augmented training crops (seed {cfg.seed})"
                     + (", used for the initial fake-quant ranges" if cfg.mode == "qat" else ""))
    if cfg.mode == "qat":
        quant["qat"] = recipe
    return {
        "model": out.name, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "sha256": hashlib.sha256(tflite).hexdigest(), "size_bytes": len(tflite),
        "size_mb": round(len(tflite) / 1e6, 3),
        "checkpoint": str(checkpoint), "checkpoint_info": {k: info[k] for k in ("stage", "epoch", "val_nme", "alpha")
                                                           if k in info},
        "prepared": str(data.root),
        "nme": {"split": "val", "faces": n_val, "crops": "canonical (ground-truth box)", "keras": keras_nme,
                "tflite": tflite_nme, "delta": tflite_nme - keras_nme, **extra_nme, "tolerance": tolerance,
                "degraded": bool(degraded)},
        "latency_ms": latency,
        "input": ops["input"], "output": ops["output"], "output_precision": precision,
        "ops": {"total": ops["total"], "all_integer": ops["all_integer"], "float_ops": ops["float_ops"],
                "by_type": ops["ops"]},
        "quantization": quant,
        "metadata": json.loads(meta.to_json()),
    }


def render_card(card: dict) -> str:
    nme, lat, meta, quant = card["nme"], card["latency_ms"], card["metadata"], card["quantization"]
    prec = card["output_precision"]
    lines = [f"# {card['model']}", ""]
    if nme["degraded"]:
        lines += [f"> **Degraded export** (written with --allow-degradation): the validation NME rose by "
                  f"{nme['delta']:.3f} points, more than the tolerance of {nme['tolerance']:g}.", ""]
    lines += [
        "| | |", "| --- | --- |",
        f"| quantization | {quant['label']} |",
        f"| size | {card['size_mb']:.3f} MB ({card['size_bytes']:,} bytes) |",
        f"| validation NME (tflite, ai-edge-litert) | {nme['tflite']:.3f} % |",
        f"| validation NME (Keras checkpoint) | {nme['keras']:.3f} % |",
    ]
    if "keras_qat" in nme:
        lines.append(f"| validation NME (Keras QAT model) | {nme['keras_qat']:.3f} % |")
    lines += [
        f"| difference | {nme['delta']:+.3f} points (tolerance {nme['tolerance']:g}) |",
        f"| latency, 1 thread | {lat['median']:.2f} ms median ({lat['runs']} runs after {lat['warmup']} warm-up, "
        f"{lat['runtime']}) |",
        f"| input | {card['input']['dtype']} {card['input']['shape']}, RGB, pixel/255"
        + (f", scale {card['input']['scale']:.6g} zero point {card['input']['zero_point']}" if card['input']['scale']
           else "") + " |",
        f"| output | {card['output']['dtype']} {card['output']['shape']}, x0,y0,x1,y1,... crop_px = (v + 0.5) * "
        f"{meta['crop']['input_size']} |",
        f"| landmarks | {meta['scheme']}, {meta['num_points']} points |",
        f"| crop | margin {meta['crop']['margin']}, input {meta['crop']['input_size']} px, detector offset "
        f"{meta['crop']['detector_offset']}, scale {meta['crop']['detector_scale']} |",
        f"| training data | {meta['training_data']} |",
        f"| data licence | {meta['data_license']} |",
        f"| checkpoint | {card['checkpoint']} |",
        f"| edgekd | {meta['edgekd_version']} |",
        "",
        f"Validation: {nme['faces']} faces of the `val` split of `{card['prepared']}`, {nme['crops']} crops.",
        "",
    ]
    if prec["scale"]:
        lines += ["## Output precision", "",
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
        lines.append("")
    lines += ["## Ops", "", f"{card['ops']['total']} ops; "
              + ("every op computes on integer inputs (QUANTIZE/DEQUANTIZE only at the boundary)."
                 if card["ops"]["all_integer"] else
                 f"{sum(r['count'] for r in card['ops']['float_ops'])} ops take float inputs."), "",
              "| op | count | input types | output types |", "| --- | --- | --- | --- |"]
    for r in card["ops"]["by_type"]:
        lines.append(f"| {r['op']} | {r['count']} | {', '.join(r['input_types'])} | {', '.join(r['output_types'])} |")
    if card["ops"]["float_ops"] and quant["mode"] in FULL_INTEGER:
        lines += ["", "Ops that fall back to float: "
                  + ", ".join(f"{r['op']} x{r['count']}" for r in card["ops"]["float_ops"])]
    lines += ["", "## Quantization recipe", ""]
    for k, v in quant.items():
        if k == "qat":
            lines.append("- QAT fine-tune:")
            lines += [f"  - {kk}: {vv}" for kk, vv in v.items() if vv is not None and kk != "kd"]
        else:
            lines.append(f"- {k}: {v}")
    lines += ["", f"sha256 `{card['sha256']}`, created {card['created']}.", ""]
    return "\n".join(lines)
