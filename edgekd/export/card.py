"""The model card of an export: ``build_card`` makes it (JSON) from the ExportResult, ``render_card`` writes it for
people (Markdown). Apart from the export's steps because a card is also re-rendered without an export: a plain
control's run adds its NME to the cards of its KD recipe's exports (recipes.runner), and benchmarks/ship_model.py
renders stored cards.
"""
from __future__ import annotations

import json
import typing
from pathlib import Path

from edgekd.export.quantize import FORMATS

if typing.TYPE_CHECKING:  # for the annotation only: the exporter imports this module
    from edgekd.export.exporter import ExportResult


def card_paths(out) -> tuple[Path, Path]:
    """Where the card of the model ``out`` goes: ``<stem>.card.md`` and ``<stem>.card.json`` beside it."""
    out = Path(out)
    return out.with_name(out.stem + ".card.md"), out.with_name(out.stem + ".card.json")


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
    fmt = FORMATS[cfg.mode]
    quant = {"mode": cfg.mode, "label": fmt.label, "converter": fmt.converter,
             "batchnorm_recalibration": f"{recal} augmented training crops" if recal else
             "none (the checkpoint's statistics were re-estimated by edgekd training before it was saved)"}
    if fmt.full_integer:
        quant.update(input_type=cfg.input_type, output_type=cfg.output_type)
    if fmt.calibration:
        quant["calibration"] = (f"{cfg.calibration_samples} augmented training crops (seed {cfg.seed})"
                                + (", used for the initial fake-quant ranges" if fmt.qat else ""))
    if fmt.qat:
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
    if ops["float_ops"] and FORMATS[card["quantization"]["mode"]].full_integer:
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
