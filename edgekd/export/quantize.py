"""TFLite conversion in every mode (float32, float16, dynamic-range, full-integer int8 by post-training quantization
(PTQ) or from a quantization-aware model (QAT, trained by edgekd.training.qat)), and the checks of what came out: op
input types, the landmark output's precision, latency. Each mode is one ``ExportFormat`` entry of ``FORMATS``, so the
export, its card and a recipe's file names read one table.

Every interpreter comes from ``edgekd.core.interpreter.make_interpreter`` and every timing from
``edgekd.core.timing``, so the numbers on a model card are measured the way the runtime and the bench run the model.
"""
from __future__ import annotations

import tempfile
import typing
from dataclasses import dataclass, field

import numpy as np

from edgekd.core.errors import EdgekdError
from edgekd.core.interpreter import make_interpreter
from edgekd.core.timing import stats, time_calls
from edgekd.runtime.model import dequantize_output, quantize_input

IO_TYPES = ("int8", "uint8", "float32")  # the tensor types a full-integer model can take and give
BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")  # the int8 <-> float/uint8 conversions at the model's input and output


@dataclass(frozen=True)
class QuantizeConfig:
    """How to convert. Values are checked where users give them (export.ExportConfig.validate)."""

    mode: str = "float32"
    input_type: str = "int8"  # full-integer modes: the input tensor's type (float32 adds a QUANTIZE op in front)
    # full-integer modes: the output tensor's type; float32 appends a DEQUANTIZE of the int8 head (same values,
    # float interface), int8 hands out the raw int8 values with their scale and zero point
    output_type: str = "float32"

    @property
    def format(self) -> "ExportFormat":
        return FORMATS[self.mode]

    @property
    def label(self) -> str:
        return self.format.label

    @property
    def full_integer(self) -> bool:
        return self.format.full_integer


# --- the export formats ---------------------------------------------------------------------------------------
# Each function sets a converter up for its format (the entry's ``converter`` says the same in words). TensorFlow
# is imported inside them, as in the rest of this module: reading the registry (ExportConfig.validate, the CLI's
# help) loads no TensorFlow.
def _float32(conv, cfg: QuantizeConfig, calibration) -> None:
    """The graph as it is: no optimization."""


def _float16(conv, cfg: QuantizeConfig, calibration) -> None:
    import tensorflow as tf

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]


def _dynamic(conv, cfg: QuantizeConfig, calibration) -> None:
    import tensorflow as tf

    conv.optimizations = [tf.lite.Optimize.DEFAULT]


def _integer_io(conv, cfg: QuantizeConfig) -> None:
    """A full-integer model's input and output tensor types."""
    import tensorflow as tf

    types = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.inference_input_type = types[cfg.input_type]
    conv.inference_output_type = types[cfg.output_type]


def _int8(conv, cfg: QuantizeConfig, calibration) -> None:
    import tensorflow as tf

    _integer_io(conv, cfg)
    # (for QAT the fake-quant graph already fixes every op's int8 ranges; with this set the converter's
    # up-front check ignores the fake-quant ops and demands a representative dataset)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if calibration is None or not len(calibration):
        raise EdgekdError("int8 post-training quantization needs calibration images")
    conv.representative_dataset = _representative(calibration)


def _qat(conv, cfg: QuantizeConfig, calibration) -> None:
    _integer_io(conv, cfg)


@dataclass(frozen=True)
class ExportFormat:
    """One export mode, everything the export asks of it in one place (as Ultralytics' ``export_formats()``): a new
    mode is one entry of FORMATS and its ``configure`` function, and every step reads the entry instead of testing
    the mode's name."""

    name: str  # ExportConfig.mode
    label: str  # the label written into the model metadata (ModelMetadata.quantization)
    suffix: str  # a recipe's export stage names the file ``<stage>_<suffix>.tflite``
    converter: str  # what ``configure`` tells the converter, in words (the model card's recipe)
    configure: typing.Callable[[object, QuantizeConfig, np.ndarray | None], None] = field(repr=False)
    full_integer: bool = False  # int8 tensors throughout: chosen input/output types, every op checked integer
    io_types: tuple[str, ...] = ("float32",)  # the input and output tensor types it can take and give
    calibration: bool = False  # reads augmented training crops: PTQ's representative data, QAT's initial ranges
    qat: bool = False  # the model is fine-tuned quantization-aware (edgekd.training.qat) before conversion
    retry_hint: str = ""  # what to try when the file loses more than the tolerance (the refusal's message)
    help: str = ""  # `edgekd export --<name>`: the flag's help (float32, the default, has no flag)


FORMATS = {f.name: f for f in (
    ExportFormat("float32", "float32", "float32",
                 "TFLiteConverter.from_saved_model of the inference function, no optimization", _float32,
                 help="float32 (the default)."),
    ExportFormat("float16", "float16", "float16",
                 "optimizations=[DEFAULT], supported_types=[float16] (float16 weights, float32 compute)", _float16,
                 help="float16 weights."),
    ExportFormat("dynamic", "dynamic", "dynamic",
                 "optimizations=[DEFAULT] (int8 weights, float activations, dynamic-range kernels)", _dynamic,
                 help="Dynamic-range: int8 weights, float activations."),
    ExportFormat("int8", "int8-ptq", "int8",
                 "optimizations=[DEFAULT], supported_ops=[TFLITE_BUILTINS_INT8], representative_dataset", _int8,
                 full_integer=True, io_types=IO_TYPES, calibration=True,
                 retry_hint="try --qat or more --calibration-samples, or ",
                 help="Full-integer int8 by post-training quantization."),
    ExportFormat("qat", "int8-qat", "qat_int8",
                 "optimizations=[DEFAULT] on the fake-quantized QAT model (its trained ranges fix every op's int8 "
                 "parameters; no representative dataset)", _qat,
                 full_integer=True, io_types=IO_TYPES, calibration=True, qat=True,
                 retry_hint="try more --qat-epochs, or ",
                 help="Full-integer int8 after quantization-aware fine-tuning (the landmark layer in float with "
                      "--float-head)."),
)}
MODES = tuple(FORMATS)


def _representative(images: np.ndarray):
    def gen():
        for img in images:
            yield [img[None]]

    return gen


# --- conversion -----------------------------------------------------------------------------------------------
def convert(model, cfg: QuantizeConfig, calibration: np.ndarray | None = None) -> bytes:
    """The .tflite bytes of ``model`` (for ``qat``: the already fine-tuned QAT model) in ``cfg.mode``.

    ``calibration``: float [0, 1] crops for int8 post-training quantization (edgekd.training.qat.calibration_images).
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="edgekd-export-") as folder:
        conv = tf.lite.TFLiteConverter.from_saved_model(_function_saved_model(model, folder))
        _configure(conv, cfg, calibration)
        try:
            return bytes(conv.convert())
        except Exception as e:  # the converter raises ConverterError/RuntimeError with multi-line MLIR dumps
            raise EdgekdError(f"TFLite conversion ({cfg.mode}) failed: {str(e).strip().splitlines()[0]}") from None


def _function_saved_model(model, folder: str) -> str:
    """The model's inference function alone as a SavedModel (batch 1).

    from_keras_model saves the full Keras SavedModel, tracing every layer: 5x slower (40 s against 7 s for
    the 64 px test student) for the same graph.
    """
    import tensorflow as tf

    module = tf.Module()
    module.model_variables = list(model.variables)
    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32, name="image")

    def serve(image):
        return {"landmarks": model(image, training=False)}

    module.serve = tf.function(serve, input_signature=[spec], autograph=False)
    tf.saved_model.save(module, folder, signatures={"serving_default": module.serve})
    return folder


def _configure(conv, cfg: QuantizeConfig, calibration) -> None:
    """Set the converter up for ``cfg.mode``: its registry entry's ``configure``."""
    if cfg.mode not in FORMATS:
        raise ValueError(f"unknown conversion mode {cfg.mode!r}")  # users get EdgekdError from ExportConfig first
    FORMATS[cfg.mode].configure(conv, cfg, calibration)


# --- inspection -----------------------------------------------------------------------------------------------
def _tensor_info(detail: dict) -> dict:
    scale, zero = detail["quantization"]
    return {"shape": [int(s) for s in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name,
            "scale": float(scale), "zero_point": int(zero)}


def inspect_ops(tflite: bytes) -> dict:
    """Every op with its input types (without XNNPACK, which would hide them in one DELEGATE node).

    An op "falls back to float" when any input is floating point, apart from the QUANTIZE/DEQUANTIZE at the
    model's boundary; for a full-integer export that list must be empty.
    """
    it, _ = make_interpreter(content=tflite, delegates=False)
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in it.get_tensor_details()}
    groups: dict[tuple, int] = {}
    fallback: dict[tuple, int] = {}
    for op in it._get_ops_details():  # private but stable since TF 2.3; checked on LiteRT 2.3.0
        ins = tuple(dtypes[i] for i in op["inputs"] if i >= 0)
        outs = tuple(dtypes[i] for i in op["outputs"] if i >= 0)
        key = (op["op_name"], ins, outs)
        groups[key] = groups.get(key, 0) + 1
        if op["op_name"] not in BOUNDARY_OPS and any(t.startswith("float") for t in ins):
            fallback[key] = fallback.get(key, 0) + 1
    rows = lambda d: [{"op": k[0], "count": n, "input_types": list(k[1]), "output_types": list(k[2])}
                      for k, n in sorted(d.items())]
    return {"total": sum(groups.values()), "ops": rows(groups), "float_ops": rows(fallback),
            "all_integer": not fallback,
            "input": _tensor_info(it.get_input_details()[0]), "output": _tensor_info(it.get_output_details()[0])}


def delegate_support(tflite: bytes) -> dict:
    """Which LiteRT delegates take every op of the file.

    XNNPACK (the CPU delegate LiteRT applies by default), measured: the interpreter, once its tensors are allocated,
    holds one DELEGATE node that reads the model's input and writes its output, so no op is left to the reference
    kernels. GPU: TensorFlow Lite's model analyzer with ``gpu_compatibility``, a static check that cannot promise
    runtime behaviour on a given phone, and a lenient one: in TF 2.21 it flagged no op of test graphs holding TOPK_V2
    or GATHER_ND either (tests/test_delegates.py), so its "compatible" is recorded as what the analyzer said.
    """
    import contextlib
    import io

    import tensorflow as tf

    it, _ = make_interpreter(content=tflite)
    delegated = [op for op in it._get_ops_details() if op["op_name"] == "DELEGATE"]
    ins = {int(d["index"]) for d in it.get_input_details()}
    outs = {int(d["index"]) for d in it.get_output_details()}
    whole = (len(delegated) == 1 and ins <= {int(i) for i in delegated[0]["inputs"]}
             and outs == {int(i) for i in delegated[0]["outputs"]})
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        tf.lite.experimental.Analyzer.analyze(model_content=tflite, gpu_compatibility=True)
    text = report.getvalue()
    warnings = sorted({line.split("GPU COMPATIBILITY WARNING:", 1)[1].strip() for line in text.splitlines()
                       if "GPU COMPATIBILITY WARNING:" in line})
    compatible = "looks compatible with GPU delegate" in text and not warnings
    return {"xnnpack": {"every_op": whole, "partitions": len(delegated)},
            "gpu": {"analyzer_compatible": compatible, "analyzer_warnings": warnings,
                    "by": f"tf.lite.experimental.Analyzer (gpu_compatibility), TF {tf.__version__}, static"}}


def output_precision(tflite: bytes, input_size: int) -> dict:
    """Crop pixels per step of the quantized landmark output (int8 head: scale * input_size; float head: 0).

    With a float32 output type the DEQUANTIZE hides the head's int8 tensor, so the scale is read from the
    tensor feeding the final DEQUANTIZE.
    """
    it, _ = make_interpreter(content=tflite, delegates=False)
    out = it.get_output_details()[0]
    scale = float(out["quantization"][0])
    source = "output tensor"
    if not scale:
        details = {t["index"]: t for t in it.get_tensor_details()}
        for op in it._get_ops_details():
            if op["op_name"] == "DEQUANTIZE" and out["index"] in op["outputs"]:
                feed = details[op["inputs"][0]]
                scale = float(feed["quantization"][0])
                source = f"int8 tensor before the final DEQUANTIZE ({feed['name']})"
    px = scale * input_size
    return {"scale": scale, "pixels_per_step": px, "max_rounding_error_px": px / 2, "source": source}


def latency_ms(tflite: bytes, image: np.ndarray | None = None, runs: int = 50, warmup: int = 10,
               num_threads: int = 1) -> dict:
    """Median single-image invoke time with the runtime's default delegates (XNNPACK), after warm-up: the bench's
    timer on the runtime's interpreter, so the card's number is comparable with `edgekd bench`."""
    it, label = make_interpreter(content=tflite, num_threads=num_threads)
    inp = it.get_input_details()[0]
    x = np.zeros(inp["shape"], np.float32) + 0.5 if image is None else np.asarray(image, np.float32)[None]
    it.set_tensor(inp["index"], quantize_input(x, inp))
    s = stats(time_calls(it.invoke, warmup, runs))
    return {"median": s["median"], "p90": s["p90"], "runs": runs, "warmup": warmup, "threads": num_threads,
            "runtime": label}


def float_head_outputs(tflite: bytes, kernel: np.ndarray, bias: np.ndarray, images: np.ndarray):
    """(model outputs, outputs if the final FULLY_CONNECTED ran in float on the same int8 features).

    Runs the int8 model with every tensor kept (reference kernels: XNNPACK cannot keep them, and its rounding
    differs slightly, so both outputs come from this one run), dequantizes the head's input and applies the float
    Dense weights; the NME difference of the two is what the int8 landmark output costs.
    """
    it, _ = make_interpreter(content=tflite, delegates=False, preserve_all_tensors=True)
    fc = [op for op in it._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"][-1]
    feature = next(t for t in it.get_tensor_details() if t["index"] == fc["inputs"][0])
    inp = it.get_input_details()[0]
    out = it.get_output_details()[0]
    model_outs, outs = [], []
    for img in images:
        it.set_tensor(inp["index"], quantize_input(img[None].astype(np.float32), inp))
        it.invoke()
        f = dequantize_output(it.get_tensor(feature["index"]), feature)
        outs.append(f.reshape(-1) @ kernel + bias)
        model_outs.append(dequantize_output(it.get_tensor(out["index"]), out).reshape(-1))
    return np.stack(model_outs), np.stack(outs)
