"""Keras checkpoints: the HDF5 files training writes and export, runtime and bench read.

A checkpoint is a plain tf_keras full-model HDF5 file (``keras.models.load_model(path, compile=False)`` works) with
JSON under the HDF5 attribute ``edgekd`` (stage, scheme, num_points, input_size, crop, epoch, val NME; read it with
``checkpoint_info``); ``last.h5`` also holds the optimizer variables in the group ``edgekd_optimizer``.
This module needs tf_keras and h5py only, never the training code, so inference can load a checkpoint too.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import edgekd  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgekd.errors import ModelError
from edgekd.fileio import remove_stale_temps

BEST, LAST, SUMMARY = "best.h5", "last.h5", "summary.json"
AVERAGE = "average.h5"  # the running mean of the last epochs' weights (train --average-last)
INFO_ATTR, OPTIMIZER_GROUP = "edgekd", "edgekd_optimizer"


def load_model(checkpoint_path):
    """A trained network (teacher or student) from ``best.h5``/``last.h5``, or from a stage folder (its best.h5)."""
    import tf_keras as keras

    path = Path(checkpoint_path)
    if path.is_dir():
        path = path / BEST
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"{path}: not a Keras model checkpoint ({str(e).splitlines()[0]})") from None


def checkpoint_info(checkpoint_path) -> dict:
    """The edgekd JSON of a checkpoint (stage, scheme, num_points, input_size, crop, epoch, val_nme, ...)."""
    import h5py

    path = Path(checkpoint_path)
    if path.is_dir():
        path = path / BEST
    try:
        with h5py.File(path, "r") as f:
            return json.loads(f.attrs[INFO_ATTR]) if INFO_ATTR in f.attrs else {}
    except OSError:
        raise ModelError(f"{path}: checkpoint not found or not an HDF5 file") from None


def save_checkpoint(net, path, info: dict, optimizer=None) -> None:
    """Full model (+ optimizer state) into one HDF5 file, written next to ``path`` and renamed into place."""
    import warnings

    import h5py
    import tensorflow as tf

    path = Path(path)
    remove_stale_temps(path)  # what a kill -9 of an earlier run left beside this checkpoint
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.h5")
    level = tf.get_logger().level
    try:
        # HDF5 is "legacy" to Keras and an uncompiled model logs a metrics warning: both are noise here
        tf.get_logger().setLevel("ERROR")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            net.save(tmp, save_format="h5", include_optimizer=False)
        with h5py.File(tmp, "a") as f:
            f.attrs[INFO_ATTR] = json.dumps(info)
            if optimizer is not None:
                group = f.create_group(OPTIMIZER_GROUP)
                for i, v in enumerate(optimizer.variables):
                    group.create_dataset(f"{i:05d}", data=v.numpy())
        os.replace(tmp, path)
    finally:
        tf.get_logger().setLevel(level)
        tmp.unlink(missing_ok=True)


def load_weights(path: Path, net) -> None:
    try:
        net.load_weights(path)
    except ValueError as e:
        raise ModelError(f"{path}: does not fit this run's network (was --alpha, --head or --stage changed?): "
                         f"{str(e).splitlines()[0]}") from None


def restore(path: Path, net, optimizer) -> dict:
    """Weights and optimizer state of ``last.h5`` into freshly built objects; returns the checkpoint info."""
    import h5py

    load_weights(path, net)
    optimizer.build(net.trainable_variables)
    with h5py.File(path, "r") as f:
        group = f.get(OPTIMIZER_GROUP)
        saved = [group[k][()] for k in sorted(group)] if group is not None else []
        info = json.loads(f.attrs[INFO_ATTR])
    if len(saved) != len(optimizer.variables):
        raise ModelError(f"{path}: optimizer state has {len(saved)} variables, expected {len(optimizer.variables)}")
    for var, value in zip(optimizer.variables, saved):
        var.assign(value)
    return info


def check_matches_data(path: Path, what: str, data, info: dict | None = None, any_size: bool = False) -> None:
    """Compare a checkpoint's recorded landmark count, input size and crop with the prepared data.

    ``any_size``: the input size may differ (a start for fine-tuning at another resolution: MobileNetV2's
    convolutions and global pooling have the same weights at any input size); the crop's margin must still match,
    since it defines what the landmarks' coordinates mean. The detector mapping is not compared: it says where a
    detector's box puts the crop at run time and is no part of what the network learnt (training crops come from
    the landmarks), so a prepared folder whose mapping was refitted still exports the networks trained on it, with
    the new mapping in their metadata.
    """
    info = checkpoint_info(path) if info is None else info
    checked = {"num_points": data.num_points} if any_size else {"num_points": data.num_points,
                                                                 "input_size": data.input_size}
    for key, value in checked.items():
        if key in info and info[key] != value:
            raise ModelError(f"{path}: {what} has {key} {info[key]}, but the data has {value}")
    crop = info.get("crop") or {}
    if "margin" in crop and crop["margin"] != data.crop.margin:
        raise ModelError(f"{path}: {what} was trained on another crop (margin {crop['margin']}) than the data "
                         f"(margin {data.crop.margin})")


def check_loaded(path: Path, what: str, model, data, any_size: bool = False) -> None:
    """Compare a loaded network's output count and input size with the prepared data (checkpoints without info);
    ``any_size``: the input size may differ (a teacher fed the batch resized, trainers.Ensemble)."""
    size, outputs = model.input_shape[1], model.output_shape[-1]
    if outputs != 2 * data.num_points:
        raise ModelError(f"{path}: {what} predicts {outputs // 2} landmarks, but {data.root} holds "
                         f"{data.num_points}-point {data.scheme.name} data")
    if size != data.input_size and not any_size:
        raise ModelError(f"{path}: {what} takes {size} px input, but {data.root} is prepared at {data.input_size} px")
