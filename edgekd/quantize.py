"""TFLite conversion in every mode: float32, float16, dynamic-range, full-integer int8 by post-training
quantization (PTQ) and by quantization-aware fine-tuning (QAT), plus the op and output-precision checks.

Full-integer modes calibrate on augmented training crops (the distribution the network was trained on, so the
activation ranges cover rotated, darkened and occluded faces too), drawn with a seeded generator so an export is
reproducible. QAT starts from the trained float network: its fake-quant ranges are initialised from the float
activations on those crops (tfmot starts every activation range at +-6 and moves it by an EMA of 0.999 per step,
so a short fine-tune would otherwise keep ranges set by the initialiser, and the landmark head alone would get
~6 px per int8 step at 128 px), BatchNorm is frozen (its statistics were re-estimated after training; batch
statistics of a short fine-tune would only add noise), and the loss is the one the student was trained with.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass

import numpy as np

import edgekd  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgekd.errors import EdgekdError
from edgekd.runtime.model import dequantize_output, quantize_input

MODES = ("float32", "float16", "dynamic", "int8", "qat")
IO_TYPES = ("int8", "uint8", "float32")
FULL_INTEGER = ("int8", "qat")
# the label written into the model metadata (ModelMetadata.quantization)
LABELS = {"float32": "float32", "float16": "float16", "dynamic": "dynamic", "int8": "int8-ptq", "qat": "int8-qat"}
BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")  # the int8 <-> float/uint8 conversions at the model's input and output


@dataclass
class QuantizeConfig:
    mode: str = "float32"
    input_type: str = "int8"  # full-integer modes: the input tensor's type (float32 adds a QUANTIZE op in front)
    # full-integer modes: the output tensor's type; float32 appends a DEQUANTIZE of the int8 head (same values,
    # float interface), int8 hands out the raw int8 values with their scale and zero point
    output_type: str = "float32"
    calibration_samples: int = 300
    seed: int = 0
    qat_epochs: int = 3
    qat_steps_per_epoch: int | None = None  # None = one pass over the training split per epoch
    qat_batch_size: int = 32
    qat_learning_rate: float = 1e-4
    qat_freeze_batchnorm: bool = True
    qat_init_ranges: bool = True  # activation ranges from the float model (False: tfmot's +-6, for comparison)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise EdgekdError(f"unknown export mode {self.mode!r}; expected one of {', '.join(MODES)}")
        for name in ("input_type", "output_type"):
            if getattr(self, name) not in IO_TYPES:
                raise EdgekdError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: expected one of "
                                  f"{', '.join(IO_TYPES)}")
        if self.mode in FULL_INTEGER and self.calibration_samples < 1:
            raise EdgekdError("--calibration-samples must be at least 1 for an int8 export")
        if self.mode == "qat" and (self.qat_epochs < 1 or self.qat_batch_size < 1 or self.qat_learning_rate <= 0):
            raise EdgekdError("--qat-epochs and the QAT batch size must be at least 1, the learning rate positive")

    @property
    def label(self) -> str:
        return LABELS[self.mode]

    def to_dict(self) -> dict:
        return asdict(self)


# --- calibration data -------------------------------------------------------------------------------------------
def calibration_images(data, count: int, seed: int = 0) -> np.ndarray:
    """``count`` augmented training crops (float32 (count, S, S, 3) in [0, 1]), the same for the same seed."""
    from edgekd.data.augment import AugmentConfig

    rng = np.random.default_rng(seed)
    n = len(data.split("train"))
    order = rng.choice(n, size=count, replace=count > n)
    aug = AugmentConfig()
    crops = [data.sample("train", int(i), rng, aug)[0] for i in order]
    return np.stack(crops).astype(np.float32) / 255.0


def _representative(images: np.ndarray):
    def gen():
        for img in images:
            yield [img[None]]

    return gen


# --- QAT ------------------------------------------------------------------------------------------------------
def _layer_outputs_range(model, names: list[str], images: np.ndarray, batch: int = 32) -> dict:
    """(min, max) of the named layers' outputs over ``images`` (in batches, so 300 crops fit in memory)."""
    import tf_keras as keras

    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    lo = {n: math.inf for n in names}
    hi = {n: -math.inf for n in names}
    for start in range(0, len(images), batch):
        outs = probe(images[start:start + batch], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for n, o in zip(names, outs):
            o = o.numpy()
            lo[n], hi[n] = min(lo[n], float(o.min())), max(hi[n], float(o.max()))
    return {n: (lo[n], hi[n]) for n in names}


def init_quantizer_ranges(qat_model, float_model, images: np.ndarray) -> int:
    """Set every activation fake-quant range of ``qat_model`` to the float model's range on ``images``.

    Wrapper ``quant_<name>`` quantizes the output of float layer ``<name>``; the input QuantizeLayer takes the
    range of the images themselves. Returns the number of ranges set.
    """
    targets = {}  # float layer name -> [(min_var, max_var)]
    input_vars = []
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", None)
        pairs = {}
        for v in layer.weights:
            leaf = v.name.split("/")[-1].split(":")[0]
            for kind in ("output", "post_activation", "quantize_layer"):
                if leaf in (f"{kind}_min", f"{kind}_max"):
                    pairs.setdefault(kind, {})[leaf.rsplit("_", 1)[1]] = v
        for kind, mm in pairs.items():
            if kind == "quantize_layer":
                input_vars.append((mm["min"], mm["max"]))
            elif inner is not None:
                targets.setdefault(inner.name, []).append((mm["min"], mm["max"]))
    ranges = _layer_outputs_range(float_model, sorted(targets), images) if targets else {}
    for name, pairs in targets.items():
        lo, hi = ranges[name]
        for vmin, vmax in pairs:
            vmin.assign(min(lo, 0.0))
            vmax.assign(max(hi, 0.0))
    for vmin, vmax in input_vars:
        vmin.assign(min(float(images.min()), 0.0))
        vmax.assign(max(float(images.max()), 0.0))
    return len(input_vars) + sum(len(p) for p in targets.values())


def _rescaling_config():
    """tfmot has no quantize config for ``Rescaling`` (the in-model input normalisation, models.py): quantize its
    output like any activation (8-bit, moving-average range), so the converter keeps the graph integer-only."""
    import tensorflow_model_optimization as tfmot

    quantizers = tfmot.quantization.keras.quantizers

    class RescalingQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

        def get_config(self):
            return {}

    return RescalingQuantizeConfig


def quantize_model(model):
    """tfmot's default 8-bit QAT wrapping, extended to the ``Rescaling`` input layer of our networks."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    q = tfmot.quantization.keras
    config_cls = _rescaling_config()
    if not any(isinstance(layer, keras.layers.Rescaling) for layer in model.layers):
        return q.quantize_model(model)

    def annotate(layer):
        if isinstance(layer, keras.layers.Rescaling):
            return q.quantize_annotate_layer(layer, quantize_config=config_cls())
        return q.quantize_annotate_layer(layer)

    annotated = keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    with q.quantize_scope({"RescalingQuantizeConfig": config_cls}):
        return q.quantize_apply(annotated)


def quantization_aware_model(model, data, cfg: QuantizeConfig, teachers: dict | None = None, kd=None,
                             calibration: np.ndarray | None = None, progress: bool = True):
    """Wrap the flat tf_keras ``model`` for QAT and fine-tune it. Returns (qat_model, recipe dict).

    With ``teachers`` ({"tough": model, "tolerant": model}) the loss is KD-Loss (``kd``, a KDLossConfig) exactly as
    in the student stage; without them plain L2 against the hard targets.
    """
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError:
        raise EdgekdError("--qat needs tensorflow-model-optimization: "
                          "pip install --no-deps tensorflow-model-optimization==0.8.1") from None
    import tf_keras as keras

    from edgekd.data.pipeline import make_dataset
    from edgekd.trainers import Distiller, LandmarkTrainer

    keras.utils.set_random_seed(cfg.seed)
    try:
        qat = quantize_model(model)
    except ValueError as e:
        raise EdgekdError(f"{model.name}: cannot be wrapped for quantization-aware training "
                          f"({str(e).splitlines()[0]}); only flat tf_keras models can") from None
    if calibration is None:
        calibration = calibration_images(data, cfg.calibration_samples, cfg.seed)
    ranges = init_quantizer_ranges(qat, model, calibration) if cfg.qat_init_ranges else 0
    frozen = 0
    if cfg.qat_freeze_batchnorm:
        for layer in qat.layers:
            if isinstance(getattr(layer, "layer", None), keras.layers.BatchNormalization):
                layer.trainable = False  # inference-mode BatchNorm: moving statistics and gamma/beta stay
                frozen += 1

    nme_pair = data.scheme.nme_pair
    if teachers:
        from edgekd.losses import KDLossConfig

        kd = kd or KDLossConfig()
        trainer = Distiller(qat, teachers["tough"], teachers["tolerant"], kd, nme_pair)
        loss = "KD-Loss with the frozen Tough and Tolerant teachers"
    else:
        trainer = LandmarkTrainer(qat, "hard", nme_pair)
        loss = "plain L2 against the hard targets (no teachers given)"
    trainer.compile(optimizer=keras.optimizers.Adam(cfg.qat_learning_rate))
    steps = cfg.qat_steps_per_epoch or math.ceil(data.manifest.counts["train"] / cfg.qat_batch_size)
    ds = make_dataset(data, "train", cfg.qat_batch_size, augment=True, seed=cfg.seed, shuffle=True, repeat=True)
    history = trainer.fit(ds, epochs=cfg.qat_epochs, steps_per_epoch=steps, verbose=0,
                          callbacks=[_progress_callback(cfg.qat_epochs, steps)] if progress else [])
    recipe = {
        "tool": "tensorflow-model-optimization quantize_model (default 8-bit scheme)",
        "loss": loss, "kd": asdict(kd) if teachers else None,
        "epochs": cfg.qat_epochs, "steps_per_epoch": steps, "batch_size": cfg.qat_batch_size,
        "learning_rate": cfg.qat_learning_rate, "optimizer": "Adam", "augment": True,
        "batchnorm": f"frozen ({frozen} layers, inference mode)" if frozen else "trained",
        "activation_ranges": f"{ranges} ranges initialised from the float model on {len(calibration)} augmented "
                             f"training crops" if ranges else "tfmot default (+-6, EMA 0.999)",
        "final_loss": float(history.history["loss"][-1]), "final_train_nme": float(history.history["nme"][-1]),
    }
    return qat, recipe


def _progress_callback(epochs: int, steps: int):
    import tf_keras as keras
    from tqdm import tqdm

    class Progress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = tqdm(total=epochs * steps, desc="QAT fine-tune", unit="step", leave=False, dynamic_ncols=True)

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{float((logs or {}).get('loss', 0.0)):.4f}")

        def on_train_end(self, logs=None):
            self.bar.close()

    return Progress()


# --- conversion -----------------------------------------------------------------------------------------------
def convert(model, cfg: QuantizeConfig, calibration: np.ndarray | None = None) -> bytes:
    """The .tflite bytes of ``model`` (for ``qat``: the already fine-tuned QAT model) in ``cfg.mode``."""
    import tensorflow as tf

    cfg.validate()
    types = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}
    with tempfile.TemporaryDirectory(prefix="edgekd-export-") as folder:
        conv = tf.lite.TFLiteConverter.from_saved_model(_function_saved_model(model, folder))
        return _run_converter(conv, cfg, types, calibration)


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


def _run_converter(conv, cfg: QuantizeConfig, types: dict, calibration) -> bytes:
    import tensorflow as tf

    if cfg.mode == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif cfg.mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif cfg.mode in FULL_INTEGER:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if cfg.mode == "int8":
            # (for QAT the fake-quant graph already fixes every op's int8 ranges; with this set the converter's
            # up-front check ignores the fake-quant ops and demands a representative dataset)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = types[cfg.input_type]
        conv.inference_output_type = types[cfg.output_type]
        if cfg.mode == "int8":
            if calibration is None or not len(calibration):
                raise EdgekdError("int8 post-training quantization needs calibration images")
            conv.representative_dataset = _representative(calibration)
    try:
        return bytes(conv.convert())
    except Exception as e:  # the converter raises ConverterError/RuntimeError with multi-line MLIR dumps
        raise EdgekdError(f"TFLite conversion ({cfg.mode}) failed: {str(e).strip().splitlines()[0]}") from None


# --- inspection -----------------------------------------------------------------------------------------------
def _interpreter(tflite: bytes, num_threads: int = 1, delegates: bool = True):
    from edgekd.runtime.model import make_interpreter

    return make_interpreter(content=tflite, num_threads=num_threads, delegates=delegates)[0]


def _tensor_info(detail: dict) -> dict:
    scale, zero = detail["quantization"]
    return {"shape": [int(s) for s in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name,
            "scale": float(scale), "zero_point": int(zero)}


def inspect_ops(tflite: bytes) -> dict:
    """Every op with its input types (without XNNPACK, which would hide them in one DELEGATE node).

    An op "falls back to float" when any input is floating point, apart from the QUANTIZE/DEQUANTIZE at the
    model's boundary; for a full-integer export that list must be empty.
    """
    it = _interpreter(tflite, delegates=False)
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in it.get_tensor_details()}
    groups: dict[tuple, int] = {}
    fallback: dict[tuple, int] = {}
    for op in it._get_ops_details():  # private but stable since TF 2.3; STACK.md checked it on LiteRT 2.3.0
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


def output_precision(tflite: bytes, input_size: int) -> dict:
    """Crop pixels per step of the quantized landmark output (int8 head: scale * input_size; float head: 0).

    With a float32 output type the DEQUANTIZE hides the head's int8 tensor, so the scale is read from the
    tensor feeding the final DEQUANTIZE.
    """
    it = _interpreter(tflite, delegates=False)
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
    """Median single-image invoke time on ai-edge-litert (XNNPACK as shipped), after warm-up: the bench's timer."""
    from importlib.metadata import version

    from edgekd.timing import stats, time_calls

    it = _interpreter(tflite, num_threads=num_threads)
    inp = it.get_input_details()[0]
    x = np.zeros(inp["shape"], np.float32) + 0.5 if image is None else np.asarray(image, np.float32)[None]
    it.set_tensor(inp["index"], quantize_input(x, inp))
    s = stats(time_calls(it.invoke, warmup, runs))
    return {"median": s["median"], "p90": s["p90"], "runs": runs, "warmup": warmup, "threads": num_threads,
            "runtime": f"ai-edge-litert {version('ai-edge-litert')}"}


def float_head_outputs(tflite: bytes, kernel: np.ndarray, bias: np.ndarray, images: np.ndarray):
    """(model outputs, outputs if the final FULLY_CONNECTED ran in float on the same int8 features).

    Runs the int8 model with every tensor kept (reference kernels: XNNPACK cannot keep them, and its rounding
    differs slightly, so both outputs come from this one run), dequantizes the head's input and applies the float
    Dense weights; the NME difference of the two is what the int8 landmark output costs.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=tflite, experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
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
