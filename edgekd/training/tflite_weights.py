"""A float32 edgekd ``.tflite`` back into a trainable Keras network: ``edgekd train --init-from model.tflite``.

Why: the shipped models are .tflite files. Fine-tuning the shipped student on one's own faces (or continuing it on
a machine where its Keras checkpoints are gone) needs Keras weights, and a float32 export holds all of them, only with
every BatchNorm folded into the convolution before it (W' = W * g / s, b' = beta - mean * g / s).

Folding loses the split between W and BatchNorm, and any split computes the same function in inference mode. The
one chosen here also keeps training mode, where BatchNorm normalises by the batch's own statistics, close to that
function: with z = W' * x and (m, v) the per-channel mean and variance of z over augmented training crops,

    BatchNorm(z) = (z - m) / sqrt(v + eps) * gamma + beta   with gamma = sqrt(v + eps), beta = m + b'

is exactly z + b' with the moving statistics (m, v), and about z + b' with a batch's statistics, which are close to
(m, v): inference mode starts exactly at the exported function, training mode near it (a split with gamma = 1,
mean = 0 would start training from a different network: tests/test_init_from.py measures both). The statistics come
from one pass of the network with those (exact) moving statistics. The rebuilt network is checked against the
.tflite on the same crops before it is used.

Only float32 exports carry the weights exactly; int8, dynamic-range and float16 files are refused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.core.errors import ModelError

WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
MAX_OUTPUT_DIFF = 1e-3  # normalised crop coordinates (0.13 px at 128 px): float32 round-off is ~1e-6


def is_tflite(path) -> bool:
    return Path(path).suffix.lower() == ".tflite"


def check_float32(path) -> None:
    """Refuse, in one line, a file that is not a float32 edgekd export: int8 and dynamic-range files hold rounded
    weights, float16 files compute their float32 weights at run time (a DEQUANTIZE in front of each op)."""
    from edgekd.core import metadata

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint to start from (--init-from) not found")
    label = metadata.read(path).quantization
    if label != "float32":
        raise ModelError(f"{path}: its weights are {label} (edgekd metadata); --init-from needs a float32 export")


def has_spatial_head(path) -> bool:
    """Whether the exported network has the spatial head: its 1x1 reduction (``models.REDUCE_NAME``) names tensors
    of the file, as every Keras layer does through the converter."""
    from edgekd.core.interpreter import make_interpreter
    from edgekd.models.backbones import REDUCE_NAME

    interp, _ = make_interpreter(path, delegates=False)
    return any(f"/{REDUCE_NAME}/" in t["name"] for t in interp.get_tensor_details())


def read_weights(path) -> list[dict]:
    """The weighted ops of a float32 .tflite in execution order: [{op, index, kernel, bias}], kernels in Keras
    layout (depthwise kernels as (h, w, in * multiplier, 1): ``load_into`` gives them the layer's own shape)."""
    from edgekd.core.interpreter import make_interpreter

    path = Path(path)
    check_float32(path)
    interp, _ = make_interpreter(path, delegates=False)
    details = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # noqa: SLF001  (the only op-level view the interpreter offers)
    computed = {i for op in ops for i in op["outputs"]}  # tensors an op writes: not weights stored in the file
    found = []
    for index, op in enumerate(ops):
        if op["op_name"] not in WEIGHT_OPS:
            continue
        inputs = [i for i in op["inputs"] if i >= 0]
        if inputs[1] in computed or details[inputs[1]]["dtype"] != np.float32:
            raise ModelError(f"{path}: op {index} ({op['op_name']}) has no stored float32 weights; --init-from "
                             f"needs a float32 export")
        kernel = interp.get_tensor(inputs[1])
        if op["op_name"] == "CONV_2D":  # (out, h, w, in) -> (h, w, in, out)
            kernel = kernel.transpose(1, 2, 3, 0)
        elif op["op_name"] == "DEPTHWISE_CONV_2D":  # (1, h, w, in * mult) -> (h, w, in * mult, 1)
            kernel = kernel[0][..., None]
        else:  # (out, in) -> (in, out)
            kernel = kernel.T
        outputs = kernel.shape[-1] if op["op_name"] != "DEPTHWISE_CONV_2D" else kernel.shape[-2]
        bias = interp.get_tensor(inputs[2]) if len(inputs) > 2 else np.zeros(outputs, np.float32)
        found.append({"op": op["op_name"], "index": index, "kernel": np.ascontiguousarray(kernel),
                      "bias": np.asarray(bias, np.float32)})
    return found


def _weighted_layers(net) -> list[tuple]:
    """[(layer, its BatchNorm or None)] for every Conv2D / DepthwiseConv2D / Dense of ``net``, in graph order; a
    BatchNorm belongs to the layer that produces its input (and must be that layer's only reader)."""
    import tf_keras as keras

    weighted = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    readers: dict[str, list] = {}
    for layer in net.layers:
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        for tensor in inputs:
            producer = tensor._keras_history.layer  # noqa: SLF001  (functional graph: who made this tensor)
            readers.setdefault(producer.name, []).append(layer)
    found = []
    for layer in net.layers:
        if isinstance(layer, weighted):
            after = readers.get(layer.name, [])
            bn = after[0] if len(after) == 1 and isinstance(after[0], keras.layers.BatchNormalization) else None
            found.append((layer, bn))
    return found


def load_into(net, path, images: np.ndarray, batch: int = 32) -> dict:
    """Set ``net``'s weights from the float32 .tflite at ``path`` (BatchNorm split as in the module docstring, with
    statistics over ``images``, float32 (n, S, S, 3) in [0, 1]). Returns {"layers", "batchnorms",
    "max_output_diff"} (the largest |Keras - .tflite| output on the first batch; None if the file could not be run
    at the images' size)."""
    import tf_keras as keras

    path = Path(path)
    ops = read_weights(path)
    layers = _weighted_layers(net)
    if len(ops) != len(layers):
        raise ModelError(f"{path}: has {len(ops)} weighted ops, this run's network {len(layers)} weighted layers "
                         f"(was --alpha, --head or the network changed?)")
    batchnorms = []
    for (layer, bn), op in zip(layers, ops):
        expected = tuple(layer.weights[0].shape)
        kernel = op["kernel"]
        if isinstance(layer, keras.layers.DepthwiseConv2D) and kernel.size == np.prod(expected):
            kernel = kernel.reshape(expected)  # (h, w, in * mult, 1) -> (h, w, in, mult): TFLite's channel order
        if kernel.shape != expected:
            raise ModelError(f"{path}: op {op['index']} ({op['op']}) has "
                             f"weights {kernel.shape}, this run's layer {layer.name} {expected} (was --alpha, "
                             f"--head or the network changed?)")
        if bn is None:
            if not layer.use_bias and np.any(op["bias"]):
                raise ModelError(f"{path}: op {op['index']} has a bias that layer {layer.name} cannot hold")
            layer.set_weights([kernel, op["bias"]] if layer.use_bias else [kernel])
            continue
        layer.set_weights([kernel] + ([np.zeros_like(op["bias"])] if layer.use_bias else []))
        ones = np.ones_like(op["bias"])  # moving variance 1 - eps: BatchNorm(z) = z + b' exactly
        bn.set_weights([ones, op["bias"], np.zeros_like(op["bias"]), ones - bn.epsilon])
        batchnorms.append((layer, bn, op["bias"]))

    probe = keras.Model(net.input, [layer.output for layer, _, _ in batchnorms]) if batchnorms else None
    sums = [0.0] * len(batchnorms)
    squares = [0.0] * len(batchnorms)
    counts = [0] * len(batchnorms)  # values per channel: images x positions (each layer its own size)
    for start in range(0, len(images) if probe is not None else 0, batch):
        outs = probe(images[start:start + batch], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]  # one BatchNorm: Keras returns the tensor
        for i, z in enumerate(outs):
            z = z.numpy().astype(np.float64).reshape(-1, z.shape[-1])
            sums[i] = sums[i] + z.sum(0)
            squares[i] = squares[i] + (z * z).sum(0)
            counts[i] += z.shape[0]
    for i, (_, bn, bias) in enumerate(batchnorms):
        mean = sums[i] / counts[i]
        var = np.maximum(squares[i] / counts[i] - mean * mean, 0.0)
        gamma = np.sqrt(var + bn.epsilon)
        bn.set_weights([gamma.astype(np.float32), (mean + bias).astype(np.float32), mean.astype(np.float32),
                        var.astype(np.float32)])
    diff = _max_output_diff(net, path, images[:batch])
    if diff is not None and diff > MAX_OUTPUT_DIFF:
        raise ModelError(f"{path}: the rebuilt network differs from the .tflite by {diff:.2g} (tolerance "
                         f"{MAX_OUTPUT_DIFF:g}); is it an edgekd export of this network?")
    return {"layers": len(layers), "batchnorms": len(batchnorms), "max_output_diff": diff}


def _max_output_diff(net, path: Path, images: np.ndarray) -> float | None:
    """Largest |Keras - .tflite| output over ``images``, the .tflite resized to their size if it was exported at
    another (a GAP network's weights fit any size); None if the runtime cannot resize it."""
    from edgekd.core.interpreter import make_interpreter

    interp, _ = make_interpreter(path, delegates=False)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    shape = [1, *images.shape[1:]]
    if list(inp["shape"]) != shape:
        try:
            interp.resize_tensor_input(inp["index"], shape)
            interp.allocate_tensors()
        except (ValueError, RuntimeError):
            return None
    want = []
    for image in images:
        interp.set_tensor(inp["index"], image[None].astype(np.float32))
        interp.invoke()
        want.append(interp.get_tensor(out["index"])[0].copy())
    got = net(images, training=False).numpy()
    return float(np.abs(got - np.stack(want)).max())
