"""The two networks of KD-Loss (METHOD.md §3): an EfficientNet-B3 teacher and a MobileNetV2 student.

Both are flat tf_keras functional models (one Model, no nested sub-model) so that tfmot quantization-aware
training can wrap the student, both are built from scratch (``weights=None``: nothing is downloaded), and both map
(B, S, S, 3) RGB in [0, 1] to (B, 2N) normalised crop coordinates through a Dense layer named ``landmarks``.
"""
from __future__ import annotations

import edgekd  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgekd.errors import ModelError

HEAD_NAME = "landmarks"
MIN_INPUT, MAX_INPUT = 64, 224  # 64 only for fast tests; prepared data uses 96-224


def check_input_size(input_size: int) -> None:
    if input_size % 32 or not MIN_INPUT <= input_size <= MAX_INPUT:
        raise ModelError(f"input size {input_size}: expected a multiple of 32 from {MIN_INPUT} to {MAX_INPUT}")


def build_teacher(num_points: int, input_size: int, dropout: float = 0.5, stochastic_depth: float = 0.2):
    """EfficientNet-B3 -> GAP -> Dropout -> Dense(2N).

    ``stochastic_depth`` is EfficientNet's drop-connect rate (0.2 in Keras and in the paper's qubvel package). It
    regularises long runs but slows a short one: fitting 64 fixed 300-W crops at 128 px, the train NME after 80
    Adam steps was 29.7 % with it (and head dropout 0.2) against 11.2 % with both off. It does not explain all of
    B3's trouble on this machine, though: on the full augmented training set, from scratch, three runs (with it,
    and without it or head dropout) stayed at the mean-shape NME (18.4-18.6 % on validation, 26 % training) for
    8-14 epochs, where MobileNetV2 leaves it after 6-8 (benchmarks/README.md).

    Keras's EfficientNet starts with Rescaling(1/255) and an (un-adapted, identity) Normalization because it expects
    0-255 pixels; tf_keras has no ``include_preprocessing`` switch, so the Rescaling is rebuilt with scale 1 to take
    our [0, 1] input as is (feeding 1/255-scaled pixels would drown the stem BatchNorm in its epsilon).
    """
    import tf_keras as keras

    check_input_size(input_size)
    base = keras.applications.EfficientNetB3(include_top=False, weights=None, input_shape=(input_size, input_size, 3),
                                             drop_connect_rate=stochastic_depth)
    config = base.get_config()
    rescalings = [layer for layer in config["layers"] if layer["class_name"] == "Rescaling"]
    if len(rescalings) != 1:  # a future Keras changed the stem: fail loudly rather than train on mis-scaled input
        raise RuntimeError(f"expected one Rescaling layer in EfficientNetB3, found {len(rescalings)}")
    rescalings[0]["config"]["scale"] = 1.0
    base = keras.Model.from_config(config)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    out = keras.layers.Dense(2 * num_points, name=HEAD_NAME)(x)
    return keras.Model(base.input, out, name="teacher_efficientnetb3")


def build_student(num_points: int, input_size: int, alpha: float = 1.0):
    """MobileNetV2(alpha) -> GAP -> Dense(2N) (the head of METHOD.md §3, no dropout)."""
    import tf_keras as keras

    check_input_size(input_size)
    base = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=alpha,
                                          input_shape=(input_size, input_size, 3))
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
    out = keras.layers.Dense(2 * num_points, name=HEAD_NAME)(x)
    return keras.Model(base.input, out, name=f"student_mobilenetv2_{alpha:g}")


def count_macs(model) -> int:
    """Multiply-adds of one forward pass (batch 1) in convolutions and dense layers.

    Element-wise ops, pooling and BatchNorm (folded into convolutions at export) are left out, as is usual for
    MAC counts of mobile networks.
    """
    import tf_keras as keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
            continue
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            out_shape = layer.output_shape
            kernel = layer.weights[0].shape  # Conv2D (kh, kw, cin/groups, cout); Depthwise (kh, kw, cin, mult)
            if isinstance(layer, keras.layers.Dense):
                total += int(kernel[0]) * int(kernel[1])
            elif isinstance(layer, keras.layers.DepthwiseConv2D):
                _, h, w, c = out_shape
                total += h * w * c * int(kernel[0]) * int(kernel[1])
            else:
                _, h, w, c = out_shape
                total += h * w * c * int(kernel[0]) * int(kernel[1]) * int(kernel[2])
    return int(total)


def model_info(model) -> dict:
    """Size and compute of a model, as recorded in every run folder (``model_info.json``)."""
    import numpy as np

    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return {
        "name": model.name,
        "input_shape": list(model.input_shape[1:]),
        "outputs": int(model.output_shape[-1]),
        "params": int(model.count_params()),
        "trainable_params": trainable,
        "macs": count_macs(model),
    }


def recalibrate_batchnorm(model, dataset, steps: int) -> int:
    """Re-estimate every BatchNorm's moving mean/variance as the plain average over ``steps`` batches.

    Keras's momentum (0.99-0.999) lets the moving statistics lag far behind weights that change fast in a
    from-scratch run, and validation then looks far worse than the network is (STACK.md, BatchNorm trap). Running
    the batches in training mode with momentum k/(k+1) for the k-th batch (0-based) makes the stored statistics the
    cumulative mean of the per-batch statistics. Runs eagerly so the changing momentum takes effect; only the
    moving statistics change (no weights, no optimizer). ``dataset`` yields images or (images, targets) tuples.
    Dropout layers (EfficientNet's stochastic depth among them) are switched off meanwhile: statistics gathered
    with randomly dropped residual branches would not match the inference-mode network they are for.
    Returns the number of batches used.
    """
    import tf_keras as keras

    all_layers = list(_all_layers(model))
    layers = [layer for layer in all_layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers or steps <= 0:
        return 0
    saved = [layer.momentum for layer in layers]
    dropouts = [layer for layer in all_layers if isinstance(layer, keras.layers.Dropout)]
    rates = [layer.rate for layer in dropouts]
    for layer in dropouts:
        layer.rate = 0.0
    used = 0
    try:
        for batch in dataset.take(steps):
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            for layer in layers:
                layer.momentum = used / (used + 1.0)
            model(images, training=True)
            used += 1
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
        for layer, rate in zip(dropouts, rates):
            layer.rate = rate
    return used


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
        else:
            yield layer
