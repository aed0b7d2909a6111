"""What one stage trains with: its prepared data, network, trainer, optimizer and learning-rate schedule.

Apart from train.py because the dry run (projection.py) builds the very same network and trainer to time them, and
apart from the callbacks because these are made once, before ``fit``. TensorFlow is imported inside the functions:
``train`` and the recipes import this module, and reading a recipe or `edgekd --help` should not load TensorFlow.
"""
from __future__ import annotations

import math

import numpy as np

from edgekd.core.errors import EdgekdError
from edgekd.models.backbones import build_network
from edgekd.training.config import TARGET, TrainConfig
from edgekd.training.distributed import placement
from edgekd.training.teachers import load_teachers


def open_data(prepared_dir):
    """The prepared data of a stage, refused in one line when it has no validation split or a damaged array."""
    from edgekd.data.pipeline import PreparedData  # loads TensorFlow

    data = PreparedData.open(prepared_dir)
    if data.manifest.counts.get("val", 0) < 1:
        raise EdgekdError(f"{prepared_dir}: no validation split; prepare the data with --val-fraction > 0")
    for split in ("train", "val"):  # a missing, damaged or NaN array is said now, before a run folder is made
        data.split(split)
    return data


def steps_per_epoch(cfg: TrainConfig, data) -> int:
    return cfg.steps_per_epoch or math.ceil(data.manifest.counts["train"] / cfg.batch_size)


def mean_shape(data) -> np.ndarray:
    """Mean hard landmarks of the training split in normalised crop coordinates, (2N,): the head's starting bias."""
    _, hard = data.arrays("train")
    return data.crop.normalize(hard).mean(axis=0).reshape(-1)


def strategy(name: str):
    """The distribution strategy whose scope the network, trainer and optimizer are built in (distributed.py)."""
    return placement(name).strategy


def make_schedule(cfg: TrainConfig, total_steps: int):
    """The learning-rate schedule: cosine from lr to min_lr over exactly ``total_steps`` (after a linear warm-up),
    or the paper's inverse-time decay, which barely decays within a CPU-sized run."""
    import tensorflow as tf
    import tf_keras as keras

    if cfg.schedule == "inverse-time":
        return keras.optimizers.schedules.InverseTimeDecay(cfg.learning_rate, decay_steps=1, decay_rate=cfg.lr_decay)
    decay_steps = max(1, total_steps - cfg.warmup_steps)
    cosine = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps, alpha=cfg.min_lr / cfg.learning_rate)
    if not cfg.warmup_steps:
        return cosine

    class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            warm = cfg.learning_rate * (step + 1.0) / cfg.warmup_steps
            return tf.where(step < cfg.warmup_steps, warm, cosine(step - cfg.warmup_steps))

        def get_config(self):
            return {}

    return WarmupCosine()


def build_stage(cfg: TrainConfig, data, teachers: dict, steps: int):
    """(network, trainer, optimizer) of a stage, with ``teachers`` (role -> checkpoint paths) loaded; call it in the
    distribution strategy's scope."""
    netcfg = cfg.network()
    shape = mean_shape(data) if netcfg.head_init == "mean-shape" else None
    net = build_network(data.num_points, data.input_size, netcfg, shape)
    trainer, optimizer = make_trainer(cfg, data, net, load_teachers(teachers, data) if teachers else {}, steps)
    return net, trainer, optimizer


def make_trainer(cfg: TrainConfig, data, net, teachers: dict, steps: int):
    """(trainer, optimizer) that train ``net`` as the stage asks, with ``teachers`` (role -> network) where it has
    any; the optimizer's variables made now, as restore() makes them for --resume: fit's train function is then
    traced once, not twice (a tf.function that creates variables is traced again), which is seconds at every
    start."""
    import tf_keras as keras

    from edgekd.training.trainers import Distiller, LandmarkTrainer, Mimic  # loads TensorFlow

    flip = data.scheme.flip_permutation if cfg.teacher_flip else None
    if cfg.stage == "student" and cfg.teacher_targets:
        trainer = Distiller(net, None, None, cfg.kd, data.scheme.nme_pair)  # outputs come with the batches
    elif teachers and cfg.blended_baseline:
        trainer = Mimic(net, teachers["tough"], data.scheme.nme_pair, cfg.loss, cfg.kd.teacher_blend, flip)
    elif teachers:
        trainer = Distiller(net, teachers["tough"], teachers["tolerant"], cfg.kd, data.scheme.nme_pair, flip)
    else:
        trainer = LandmarkTrainer(net, TARGET[cfg.stage], data.scheme.nme_pair, cfg.loss)
    optimizer = keras.optimizers.Adam(learning_rate=make_schedule(cfg, steps * cfg.epochs))
    trainer.compile(optimizer=optimizer)
    optimizer.build(net.trainable_variables)
    return trainer, optimizer
