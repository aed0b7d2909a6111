"""Landmark networks: a registry of backbones (``MODELS``), each a flat tf_keras functional model.

Every network maps (B, S, S, 3) RGB in [0, 1] to (B, 2N) normalised crop coordinates through a Dense layer named
``landmarks``. Models are flat (one Model, no nested sub-model) so that tfmot quantization-aware training can wrap
them, and built from scratch (``weights=None``: nothing is downloaded).

Three choices made here decide whether a from-scratch run on 2 CPU cores learns at all (benchmarks/README.md, "What we tried"):
- the input scaling each backbone was designed for is a layer inside the model (``Rescaling``), so the model's
  contract stays [0, 1] pixels everywhere (training data, .tflite metadata, runtime, Android) whatever the backbone;
- the head can start at the mean training shape (bias) with a tiny kernel: the network then predicts a plausible
  face from step one instead of spending its first epochs (or, for EfficientNet-B3, every epoch) at the origin;
- BatchNorm momentum 0.99 instead of Keras's 0.999, whose moving statistics lag far behind fast-changing weights.

Adding a backbone = a builder function and one ``ModelSpec`` entry; the CLI's choices are read from ``MODELS``,
and any entry can be the student (``TrainConfig.student_arch``) or a teacher (``--teacher-arch``): its step cost
for run-time planning is counted on the built network (``network_macs``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Callable

from edgekd.core.crop import check_input_size
from edgekd.core.errors import ModelError, OptionError

HEAD_NAME = "landmarks"
REDUCE_NAME = "head_reduce"  # the spatial head's 1x1 convolution


@dataclass(frozen=True)
class ModelSpec:
    """One backbone: how to build it and which input scaling it was designed for."""

    name: str
    backbone: Callable  # (input tensor, alpha, stochastic_depth) -> tf_keras Model without top, built on that tensor
    input_range: tuple[float, float]  # what the backbone's first layer should see; [0, 1] pixels are mapped to it
    notes: str
    width: bool = False  # whether ``alpha`` (NetworkConfig.alpha, --alpha) scales it; recorded in checkpoints if so


def _mobilenetv2(x, alpha: float, stochastic_depth: float):
    import tf_keras as keras

    return keras.applications.MobileNetV2(include_top=False, weights=None, alpha=alpha, input_tensor=x,
                                          input_shape=tuple(x.shape[1:]))


def _efficientnet_b3(x, alpha: float, stochastic_depth: float):
    """Keras's EfficientNet starts with Rescaling(1/255) and an (un-adapted, identity) Normalization because it
    expects 0-255 pixels; tf_keras has no ``include_preprocessing`` switch, so that Rescaling is rebuilt with scale 1
    (feeding 1/255-scaled pixels would drown the stem BatchNorm in its epsilon). ``stochastic_depth`` is its
    drop-connect rate (0.2 in Keras and the paper): it slows short runs (29.7 % vs 11.2 % train NME after 80 steps
    on 64 fixed crops)."""
    import tf_keras as keras

    base = keras.applications.EfficientNetB3(include_top=False, weights=None, input_tensor=x,
                                             input_shape=tuple(x.shape[1:]), drop_connect_rate=stochastic_depth)
    config = base.get_config()
    rescalings = [layer for layer in config["layers"]
                  if layer["class_name"] == "Rescaling" and layer["config"]["name"] != "input_norm"]
    if len(rescalings) != 1:  # a future Keras changed the stem: fail loudly rather than train on mis-scaled input
        raise RuntimeError(f"expected one Rescaling layer in EfficientNetB3, found {len(rescalings)}")
    rescalings[0]["config"]["scale"] = 1.0
    return keras.Model.from_config(config)


MODELS: dict[str, ModelSpec] = {
    "mobilenetv2": ModelSpec("mobilenetv2", _mobilenetv2, (-1.0, 1.0),
                             "the default student (width --alpha); also a fast teacher", width=True),
    "efficientnet-b3": ModelSpec("efficientnet-b3", _efficientnet_b3, (-1.0, 1.0),
                                 "the paper's teachers; about 4x the step time of MobileNetV2 on a CPU"),
}


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown network {name!r}; expected one of {', '.join(MODELS)}") from None


@dataclass(frozen=True)
class NetworkConfig:
    """Everything that shapes a landmark network, recorded in each run's config."""

    arch: str = "mobilenetv2"
    alpha: float = 1.0  # width, for a backbone whose ModelSpec.width says it takes one (MobileNetV2)
    dropout: float = 0.0  # before the head
    stochastic_depth: float = 0.0  # EfficientNet drop-connect
    input_norm: bool = True  # scale [0, 1] pixels to the backbone's input range inside the model
    bn_momentum: float | None = 0.99  # None = the backbone's own (0.999 for MobileNetV2, 0.99 for EfficientNet)
    head_init: str = "mean-shape"  # mean-shape | default (Glorot kernel, zero bias)
    head: str = "gap"  # gap (the paper's: global average pooling -> Dense) | spatial (see build_network)


HEADS = ("gap", "spatial")


def build_network(num_points: int, input_size: int, net: NetworkConfig = NetworkConfig(), mean_shape=None,
                  name: str | None = None):
    """backbone -> head -> Dense(2N) named ``landmarks``; ``mean_shape`` (2N,) seeds the head's bias.

    Heads: ``gap`` = GlobalAveragePooling -> [Dropout] -> Dense, the paper's, where a landmark's position must be
    coded in channels alone; ``spatial`` = a 1x1 convolution to 2N channels (``head_reduce``) -> Flatten ->
    [Dropout] -> Dense, which lets every output read every position of the last feature map (4x4 at 128 px, 5x5 at
    160), at h*w*(2N)^2 more weights: +0.30 M at 128 px, +0.46 M at 160 px for 68 points. ``gap_to_spatial``
    starts a spatial head as the same function as a trained GAP head.
    """
    import numpy as np
    import tf_keras as keras

    check_input_size(input_size)
    spec = get_spec(net.arch)
    inp = keras.Input((input_size, input_size, 3), name="image")
    x = inp
    lo, hi = spec.input_range
    if net.input_norm and (lo, hi) != (0.0, 1.0):
        x = keras.layers.Rescaling(hi - lo, offset=lo, name="input_norm")(x)
    base = spec.backbone(x, net.alpha, net.stochastic_depth)  # built on our tensor: one flat graph
    if net.bn_momentum is not None:
        config = base.get_config()
        for layer in config["layers"]:
            if layer["class_name"] == "BatchNormalization":
                layer["config"]["momentum"] = net.bn_momentum
        base = keras.Model.from_config(config)
    if net.head == "gap":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
    elif net.head == "spatial":
        x = keras.layers.Conv2D(2 * num_points, 1, name=REDUCE_NAME)(base.output)
        x = keras.layers.Flatten(name="head_flatten")(x)
    else:
        raise ModelError(f"unknown head {net.head!r}; expected one of {', '.join(HEADS)}")
    if net.dropout:
        x = keras.layers.Dropout(net.dropout, name="head_dropout")(x)
    kernel_init = "glorot_uniform" if net.head_init == "default" else keras.initializers.RandomNormal(0.0, 1e-3)
    out = keras.layers.Dense(2 * num_points, name=HEAD_NAME, kernel_initializer=kernel_init)(x)
    role = "student" if net.arch == "mobilenetv2" else "teacher"
    model = keras.Model(base.input, out, name=name or f"{role}_{net.arch.replace('-', '')}_{net.alpha:g}")
    if net.head_init == "mean-shape":
        if mean_shape is None:
            raise ModelError("head_init 'mean-shape' needs the mean training shape")
        head = model.get_layer(HEAD_NAME)
        head.bias.assign(np.asarray(mean_shape, np.float32).reshape(-1))
    elif net.head_init != "default":
        raise ModelError(f"unknown head init {net.head_init!r}; expected mean-shape or default")
    return model


@functools.lru_cache(maxsize=None)
def _network_macs(spec: ModelSpec, net: NetworkConfig, input_size: int, num_points: int) -> int:
    import tensorflow as tf

    # a throwaway graph: no variable is initialised, and no layer name is taken from the networks that train in this
    # process; its BatchNorm layers log a deprecation warning that eager training never does, kept off the console
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        with tf.Graph().as_default():
            return count_macs(build_network(num_points, input_size, replace(net, head_init="default")))
    finally:
        logger.setLevel(level)


def network_macs(net: NetworkConfig, input_size: int, num_points: int = 68) -> int:
    """Multiply-adds of one forward pass of the network ``net`` describes at ``input_size``, counted on the network
    itself (built once per process and setting, then forgotten): what a training step of any registered backbone
    costs, relative to another's, without a table to keep up to date. Building draws initializer seeds from Keras's
    generator: count before ``keras.utils.set_random_seed``, as ``train`` seeds right before it builds."""
    return _network_macs(get_spec(net.arch), net, int(input_size), int(num_points))


def head_of(model) -> str:
    """The head of a built network: spatial if it has the 1x1 reduction, else gap."""
    return "spatial" if any(layer.name == REDUCE_NAME for layer in model.layers) else "gap"


def gap_to_spatial(source, net) -> None:
    """Weights of a GAP-head network into a spatial-head one so that both compute the same function.

    The backbone is copied layer by layer. GAP -> Dense(K, b) equals 1x1 conv (kernel K, no bias) -> Flatten ->
    Dense whose kernel holds I / (H*W) at every position, bias b: both average the per-position K-projections. So
    a fine-tuning run starts exactly where the trained network is and can only add what positions tell.
    """
    import numpy as np

    if head_of(source) != "gap" or head_of(net) != "spatial":
        raise ModelError("gap_to_spatial needs a GAP-head source and a spatial-head target")
    layers = {layer.name: layer for layer in source.layers}
    for layer in net.layers:
        if layer.name in (REDUCE_NAME, HEAD_NAME) or not layer.weights:
            continue
        if layer.name not in layers:
            raise ModelError(f"layer {layer.name!r} of the spatial network is not in the GAP network")
        layer.set_weights(layers[layer.name].get_weights())
    kernel, bias = layers[HEAD_NAME].get_weights()
    reduce = net.get_layer(REDUCE_NAME)
    reduce.set_weights([kernel.reshape(1, 1, *kernel.shape), np.zeros(kernel.shape[1], np.float32)])
    h, w, outputs = reduce.output_shape[1:]
    tiled = np.tile(np.eye(outputs, dtype=np.float32) / (h * w), (h * w, 1))  # Flatten order: (y, x, channel)
    net.get_layer(HEAD_NAME).set_weights([tiled, bias])


def build_student(num_points: int, input_size: int, alpha: float = 1.0, mean_shape=None):
    """The paper's student, MobileNetV2(alpha) -> GAP -> Dense(2N), with this project's defaults."""
    head = "mean-shape" if mean_shape is not None else "default"
    return build_network(num_points, input_size, NetworkConfig(alpha=alpha, head_init=head), mean_shape)


def build_teacher(num_points: int, input_size: int, dropout: float = 0.5, stochastic_depth: float = 0.2,
                  mean_shape=None):
    """The paper's teacher, EfficientNet-B3 -> GAP -> Dropout -> Dense(2N)."""
    head = "mean-shape" if mean_shape is not None else "default"
    return build_network(num_points, input_size, NetworkConfig("efficientnet-b3", dropout=dropout,
                                                               stochastic_depth=stochastic_depth, head_init=head),
                         mean_shape, name="teacher_efficientnetb3")


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


# every layer's output elements per input pixel (one crop, forward pass): measured on built networks (MobileNetV2:
# 190.6 at alpha 0.35, 435.8 at alpha 1.0; EfficientNet-B3: 941.8), tests/test_bad_input.py checks one
ACTIVATIONS_PER_PIXEL = {"mobilenetv2": lambda alpha: 58.6 + 377.2 * alpha, "efficientnet-b3": lambda alpha: 942.0}


def training_bytes_per_sample(net: NetworkConfig, input_size: int) -> int:
    """Memory one crop takes in a training step, estimated low: every layer's float32 output kept for the backward
    pass, and as much again for its gradient (TensorFlow's own buffers come on top)."""
    per_pixel = ACTIVATIONS_PER_PIXEL.get(net.arch, ACTIVATIONS_PER_PIXEL["mobilenetv2"])(net.alpha)
    return int(2 * 4 * per_pixel * input_size * input_size)


def machine_memory() -> int | None:
    """Bytes of memory this process may use: the machine's, or its control group's limit when lower (None when
    neither can be read)."""
    import os

    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            limits.append(int(text))
    return min(limits) if limits else None


def check_batch_fits(net: NetworkConfig, input_size: int, batch_size: int, train_faces: int) -> None:
    """Refuse, before anything is built, a training batch that cannot fit in this machine's memory (a batch larger
    than the training split holds the whole split), with the estimate: TensorFlow would otherwise fail after minutes,
    often without a message."""
    batch = min(batch_size, train_faces) if train_faces > 0 else batch_size
    per_crop = training_bytes_per_sample(net, input_size)
    have = machine_memory()
    if not have or batch * per_crop <= have:
        return
    fits = 1
    while 2 * fits * per_crop <= have:
        fits *= 2
    whole = f" (the whole training split of {batch} faces)" if batch < batch_size else ""

    def size(n: float) -> str:
        return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"

    raise OptionError(f"--batch-size {batch_size}: a training batch{whole} of {input_size} px crops needs about "
                      f"{size(batch * per_crop)} of memory ({size(per_crop)} per crop for {net.arch}"
                      f"{f' alpha {net.alpha:g}' if net.arch == 'mobilenetv2' else ''}, estimated), more than this "
                      f"machine's {size(have)}; try --batch-size {fits} or less")


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
    from-scratch run, and validation then looks far worse than the network is (the BatchNorm trap). Running
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
