"""Quantization-aware fine-tuning (QAT): the trained float network, wrapped with tfmot's fake-quant ops and trained
a little more with the loss it was trained with, so the int8 ranges the converter reads are learnt, not guessed.

This is training (it sits beside the trainers, below export): export converts what it returns. Choices:
- Calibration crops are augmented training crops (the distribution the network was trained on, so activation
  ranges cover rotated, darkened and occluded faces too), drawn with a seeded generator so an export is
  reproducible. int8 post-training quantization calibrates on the same crops.
- Fake-quant ranges start from the float activations on those crops: tfmot starts every activation range at +-6
  and moves it by an EMA of 0.999 per step, so a short fine-tune would otherwise keep ranges set by the
  initialiser, and the landmark head alone would get ~6 px per int8 step at 128 px.
- BatchNorm is frozen: its statistics were re-estimated after training, and batch statistics of a short fine-tune
  would only add noise.
- The fine-tune fits the float network's own outputs on the same augmented crops (``target="float"``, the
  default), with the run's plain loss: its job is to make the int8-simulated network compute what the float one
  does, and against the ground truth it would also chase the float network's remaining errors. Measured on
  validation over three networks (edgekd 0.8.0, CHANGELOG.md): int8 - float32 +0.031 to +0.041 fitting the
  float network, +0.058 to +0.076 fitting the truth with the same 3 epochs.
  ``target="truth"``: the run's own objective. KD-Loss with the student's frozen teachers (or their cached outputs,
  teacher_targets.py) when they are given; for a blended baseline (``teacher_blend`` > 0, its Tough teacher alone)
  the run's plain loss against its blend of the ground truth and the teacher's outputs (it keeps distilling a
  teacher better than the float network, but measured on the 0.10.0 student and its ensemble teacher it gave the
  worst int8 file of the 0.11.0 runs: 4.093 % against 4.071-4.088 % fitting the float network); else the run's plain
  loss on the hard targets.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from edgekd.core.errors import EdgekdError

TFMOT_INSTALL = "pip install --no-deps tensorflow-model-optimization==0.8.1"
QAT_SCHEDULES = ("cosine", "constant")  # the default first
QAT_TARGETS = ("float", "truth")  # what the fine-tune fits: the float network's outputs, or the run's own targets


@dataclass(frozen=True)
class QATConfig:
    """The fine-tune recipe. Values are checked where users give them (export.ExportConfig.validate)."""

    # the defaults are the recipe measured best (edgekd 0.8.0 and 0.11.0, CHANGELOG.md): 6 epochs at 1e-5, cosine
    # to 0, fitting the float network. For 0.11.0, one network: 12 epochs scored 0.000 and 0.013 below 6 (two
    # seeds), 24 epochs 0.004 above; six such runs spread over 4.071-4.088 %, so 6 is kept for half the time (the
    # file shipped in 0.11.0 is the best of those six, a 12-epoch run); 3e-5 and 1e-4 were worse.
    epochs: int = 6
    steps_per_epoch: int | None = None  # None = one pass over the training split per epoch
    batch_size: int = 32
    learning_rate: float = 1e-5
    schedule: str = "cosine"  # cosine (to 0 over the fine-tune: QAT as the tail of a cosine run) | constant
    target: str = "float"  # float: the float network's own outputs (module docstring); truth: the run's own loss
    freeze_batchnorm: bool = True
    init_ranges: bool = True  # activation ranges from the float model (False: tfmot's +-6, for comparison)
    calibration_samples: int = 300  # crops for the initial ranges when none are handed in
    seed: int = 0
    loss: str = "l2"  # plain students: the loss their run trained with (export reads it from the run's config)
    augment: str = "full"  # augmentation preset of the fine-tuning and calibration crops (the run's, likewise)
    teacher_flip: bool = False  # KD students and blended baselines: teachers' outputs flip-averaged, as in their run
    teacher_blend: float = 0.0  # a blended baseline's blend (train.py): target truth fits it with the Tough teacher
    float_head: bool = False  # the landmark layer left in float (quantize_model)

    def __post_init__(self):
        for name, value, allowed in (("schedule", self.schedule, QAT_SCHEDULES), ("target", self.target, QAT_TARGETS)):
            if value not in allowed:
                raise EdgekdError(f"QAT {name} {value!r}: expected one of {', '.join(allowed)}")


# --- calibration data -------------------------------------------------------------------------------------------
def calibration_images(data, count: int, seed: int = 0, augment: str = "full") -> np.ndarray:
    """``count`` augmented training crops (float32 (count, S, S, 3) in [0, 1]), the same for the same seed;
    ``augment``: the preset the network was trained with, so the ranges cover what it saw and no more."""
    from edgekd.data.augment import AugmentConfig

    rng = np.random.default_rng(seed)
    n = len(data.split("train"))
    order = rng.choice(n, size=count, replace=count > n)
    aug = AugmentConfig.preset(augment)
    crops = [data.sample("train", int(i), rng, aug)[0] for i in order]
    return np.stack(crops).astype(np.float32) / 255.0


# --- wrapping ---------------------------------------------------------------------------------------------------
def _as_depthwise(layer):
    """``Rescaling`` (the in-model input normalisation, models/backbones.py) as the same affine map in a frozen 1x1
    DepthwiseConv2D: tfmot has no quantize config for Rescaling, and an output-only one leaves the converter a float
    MUL and ADD in front of the int8 graph; a depthwise conv with kernel = scale and bias = offset converts to one
    int8 DEPTHWISE_CONV_2D (the scale is exact in int8, the offset an int32 bias), computing the same values."""
    import tf_keras as keras

    conv = keras.layers.DepthwiseConv2D(1, use_bias=True, name=layer.name, trainable=False)
    channels = layer.input_shape[-1]
    conv.build(layer.input_shape)
    conv.set_weights([np.broadcast_to(np.float32(layer.scale), (channels,)).reshape(1, 1, channels, 1),
                      np.broadcast_to(np.float32(layer.offset), (channels,)).copy()])
    return conv


def quantize_model(model, float_head: bool = False):
    """tfmot's default 8-bit QAT wrapping of a flat tf_keras model, its ``Rescaling`` input layer made a frozen
    depthwise conv first (``_as_depthwise``), so the converted model is integer from input to head.

    ``float_head``: the landmark layer (the last layer, a Dense: models.HEAD_NAME in edgekd's networks) is left
    unwrapped, so the converter dequantizes the int8 features before it and runs it in float: the output is no
    longer rounded to an int8 grid (0.45 crop px per step at 128 px), for 0.5 MB of float weights and about 0.02 ms
    (edgekd 0.11.0, CHANGELOG.md)."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    if float_head and not isinstance(model.layers[-1], keras.layers.Dense):
        raise EdgekdError(f"--float-head: the model's last layer {model.layers[-1].name!r} is not the Dense "
                          f"landmark layer")
    rescalings = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Rescaling)]
    if not rescalings and not float_head:
        return tfmot.quantization.keras.quantize_model(model)
    replace = lambda layer: _as_depthwise(layer) if layer.name in rescalings else layer.__class__.from_config(
        layer.get_config())
    flat = keras.models.clone_model(model, clone_function=replace)
    for layer in model.layers:
        if layer.name not in rescalings:
            flat.get_layer(layer.name).set_weights(layer.get_weights())
    for name in rescalings:
        conv = flat.get_layer(name)
        conv.set_weights(_as_depthwise(model.get_layer(name)).get_weights())
    if not float_head:
        return tfmot.quantization.keras.quantize_model(flat)
    head = model.layers[-1].name
    annotate = tfmot.quantization.keras.quantize_annotate_layer
    annotated = keras.models.clone_model(flat, clone_function=lambda l: l if l.name == head else annotate(l))
    with tfmot.quantization.keras.quantize_scope():
        return tfmot.quantization.keras.quantize_apply(annotated)


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


def _freeze_batchnorm(qat) -> int:
    """Inference-mode BatchNorm (moving statistics and gamma/beta stay); returns how many layers were frozen."""
    import tf_keras as keras

    frozen = 0
    for layer in qat.layers:
        if isinstance(getattr(layer, "layer", None), keras.layers.BatchNormalization):
            layer.trainable = False
            frozen += 1
    return frozen


# --- fine-tuning ------------------------------------------------------------------------------------------------
def _trainer(qat, data, teachers: dict | None, kd, cfg: QATConfig, model=None):
    """(trainer, loss description): with target "float" the run's plain loss against the float ``model``'s outputs;
    else KD-Loss as in the student stage when both teachers are given, the run's blend with its Tough teacher when
    that one alone is (a blended baseline), else the run's plain loss."""
    from edgekd.training.trainers import Distiller, LandmarkTrainer, Mimic

    nme_pair = data.scheme.nme_pair
    if cfg.target == "float":
        if model is None:
            raise ValueError("QAT target 'float' needs the float model")
        return (Mimic(qat, model, nme_pair, cfg.loss),
                f"plain {cfg.loss.upper()} against the float network's own outputs on the same crops")
    if teachers and teachers["tough"] is None:  # their outputs come with the batches (data's attached guides)
        return (Distiller(qat, None, None, kd, nme_pair),
                "KD-Loss with the teachers' outputs computed once (edgekd data teach)")
    flip = data.scheme.flip_permutation if cfg.teacher_flip else None
    if teachers and "tolerant" not in teachers:  # a blended baseline's Tough teacher (one network or an ensemble)
        if cfg.teacher_blend <= 0:
            raise ValueError("QAT with the Tough teacher alone needs the run's teacher_blend")
        blend = "" if cfg.teacher_blend == 1 else f"{cfg.teacher_blend:g} x "
        return (Mimic(qat, teachers["tough"], nme_pair, cfg.loss, cfg.teacher_blend, flip),
                f"plain {cfg.loss.upper()} against {blend}the Tough teacher's outputs"
                + (" (flip-averaged)" if flip else "")
                + (f" + {1 - cfg.teacher_blend:g} x the hard targets" if blend else ""))
    if teachers:
        return (Distiller(qat, teachers["tough"], teachers["tolerant"], kd, nme_pair, flip),
                "KD-Loss with the frozen Tough and Tolerant teachers" + (" (flip-averaged)" if flip else ""))
    return (LandmarkTrainer(qat, "hard", nme_pair, cfg.loss),
            f"plain {cfg.loss.upper()} against the hard targets (no teachers given)")


def quantization_aware_model(model, data, cfg: QATConfig = QATConfig(), teachers: dict | None = None, kd=None,
                             calibration: np.ndarray | None = None, progress: bool = True):
    """Wrap the flat tf_keras ``model`` for QAT and fine-tune it. Returns (qat_model, recipe dict for the card).

    ``teachers``: {"tough": model, "tolerant": model} for KD-Loss (``kd``, a KDLossConfig; default KDLossConfig()),
    or {"tough": model} alone for a blended baseline (``cfg.teacher_blend``); ``calibration``: crops for the initial
    ranges (drawn with ``calibration_images`` when None).
    """
    try:
        import tensorflow_model_optimization  # noqa: F401
    except ImportError:
        raise EdgekdError(f"--qat needs tensorflow-model-optimization: {TFMOT_INSTALL}") from None
    import tf_keras as keras

    from edgekd.data.pipeline import make_dataset
    from edgekd.models.losses import KDLossConfig

    keras.utils.set_random_seed(cfg.seed)
    try:
        qat = quantize_model(model, cfg.float_head)
    except ValueError as e:
        raise EdgekdError(f"{model.name}: cannot be wrapped for quantization-aware training "
                          f"({str(e).splitlines()[0]}); only flat tf_keras models can") from None
    if calibration is None:
        calibration = calibration_images(data, cfg.calibration_samples, cfg.seed, cfg.augment)
    ranges = init_quantizer_ranges(qat, model, calibration) if cfg.init_ranges else 0
    frozen = _freeze_batchnorm(qat) if cfg.freeze_batchnorm else 0
    if cfg.target == "float":
        teachers = None  # the float network is the one reference
    blended = bool(teachers) and "tolerant" not in teachers  # a blended baseline: Mimic, not KD-Loss
    kd = (kd or KDLossConfig()) if teachers and not blended else None
    trainer, loss = _trainer(qat, data, teachers, kd, cfg, model)
    steps = cfg.steps_per_epoch or math.ceil(data.manifest.counts["train"] / cfg.batch_size)
    rate = cfg.learning_rate if cfg.schedule == "constant" else keras.optimizers.schedules.CosineDecay(
        cfg.learning_rate, cfg.epochs * steps)
    trainer.compile(optimizer=keras.optimizers.Adam(rate))
    from edgekd.data.augment import AugmentConfig

    ds = make_dataset(data, "train", cfg.batch_size, augment=AugmentConfig.preset(cfg.augment) or False,
                      seed=cfg.seed, shuffle=True, repeat=True)
    history = trainer.fit(ds, epochs=cfg.epochs, steps_per_epoch=steps, verbose=0,
                          callbacks=[_progress_callback(cfg.epochs, steps)] if progress else [])
    recipe = {
        "tool": "tensorflow-model-optimization quantize_model (default 8-bit scheme)" if not cfg.float_head else
                "tensorflow-model-optimization quantize_apply (default 8-bit scheme), the landmark layer left out",
        "loss": loss, "kd": asdict(kd) if kd else None,
        **({"teacher_blend": cfg.teacher_blend, "teacher_flip": cfg.teacher_flip} if blended else {}),
        "epochs": cfg.epochs, "steps_per_epoch": steps, "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate, "schedule": cfg.schedule, "target": cfg.target, "optimizer": "Adam",
        "landmark_head": "float" if cfg.float_head else "int8",
        "augment": cfg.augment,
        "batchnorm": f"frozen ({frozen} layers, inference mode)" if frozen else "trained",
        "activation_ranges": f"{ranges} ranges initialised from the float model on {len(calibration)} augmented "
                             f"training crops" if ranges else "tfmot default (+-6, EMA 0.999)",
        "last_step_learning_rate": float(trainer.optimizer.learning_rate.numpy()),  # the one its last step applied
        "final_loss": float(history.history["loss"][-1]), "final_train_nme": float(history.history["nme"][-1]),
    }
    if any(isinstance(layer, keras.layers.Rescaling) for layer in model.layers):
        recipe["input_normalisation"] = "Rescaling run as a frozen 1x1 depthwise conv (int8 from the input on)"
    return qat, recipe


def _progress_callback(epochs: int, steps: int):
    import tf_keras as keras
    from tqdm import tqdm

    class Progress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = tqdm(total=epochs * steps, desc="QAT fine-tune", unit="step", leave=False, dynamic_ncols=True,
                            disable=None)

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{float((logs or {}).get('loss', 0.0)):.4f}")

        def on_train_end(self, logs=None):
            self.bar.close()

    return Progress()
