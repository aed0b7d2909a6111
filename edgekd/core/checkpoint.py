"""Keras checkpoints: the HDF5 files training writes and export, runtime and bench read.

A checkpoint is a plain tf_keras full-model HDF5 file (``keras.models.load_model(path, compile=False)`` works) with
JSON under the HDF5 attribute ``edgekd`` (stage, scheme, num_points, input_size, crop, epoch, val NME; read it with
``checkpoint_info``); ``last.h5`` also holds the optimizer variables in the group ``edgekd_optimizer``.
This module needs tf_keras and h5py only, never the training code, so inference can load a checkpoint too.

Opening a checkpoint never runs code from it. Keras rebuilds whatever layers a file describes, and some layers
carry code: a ``Lambda`` layer holds marshalled Python, a ``TFOpLambda`` names any TensorFlow operation (writing
files among them), a class name with a ``module`` makes Keras import that module. So every loader here
(``load_model``, ``load_weights``, ``restore``) first reads the file's network description as plain JSON
(``check_network``) and refuses, in one line, anything but the layer classes edgekd's own networks are built from
(``ALLOWED_CLASSES``: every backbone of ``models.MODELS`` with either head, tests/test_bad_input.py keeps it so); only
then does Keras build it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from edgekd.core.errors import ModelError
from edgekd.core.fileio import remove_stale_temps

BEST, LAST, SUMMARY = "best.h5", "last.h5", "summary.json"
AVERAGE = "average.h5"  # the running mean of the last epochs' weights (train --average-last)
INFO_ATTR, OPTIMIZER_GROUP = "edgekd", "edgekd_optimizer"

# Every class a network description may name: the layers of edgekd's networks (models.MODELS, both heads, head
# dropout, input scaling), the initializers their configs carry, and the model class. Nothing that holds or names
# code (Lambda, TFOpLambda, custom layers): tests/test_bad_input.py checks that every registry network is covered.
ALLOWED_CLASSES = frozenset({
    "Functional", "Model",
    "InputLayer", "Rescaling", "Normalization", "ZeroPadding2D", "Conv2D", "DepthwiseConv2D", "BatchNormalization",
    "ReLU", "Activation", "Add", "Multiply", "Reshape", "GlobalAveragePooling2D", "Flatten", "Dropout", "Dense",
    "GlorotUniform", "VarianceScaling", "RandomNormal", "Zeros", "Ones",
})
# layer classes that are code by design, named as such in the refusal
_CODE_LAYERS = {"Lambda": "Python code stored in the file", "TFOpLambda": "a TensorFlow operation named in the file",
                "SlicingOpLambda": "a TensorFlow operation named in the file"}


def _checkpoint_file(checkpoint_path) -> Path:
    """The file of a checkpoint path: itself, or a stage folder's best.h5; refused when it is not there."""
    path = Path(checkpoint_path)
    if str(checkpoint_path) == "":
        raise ModelError("checkpoint '': expected a .h5 file or a training stage folder")
    if path.is_dir():
        path = path / BEST
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    return path


def network_description(checkpoint_path) -> dict:
    """The network a checkpoint describes, as plain JSON (nothing is built): HDF5's ``model_config`` attribute,
    or a .keras archive's config.json. A file that is neither is refused as not a checkpoint."""
    import zipfile

    import h5py

    path = _checkpoint_file(checkpoint_path)
    text = None
    is_hdf5, is_zip = h5py.is_hdf5(str(path)), zipfile.is_zipfile(path)
    if is_hdf5 and is_zip:  # Keras picks the zip for a .keras name, this check the HDF5: one file, two networks
        raise ModelError(f"{path}: refused: the file is both an HDF5 file and a zip archive; edgekd opens only "
                         f"checkpoints of its own networks")
    if path.suffix.lower() == ".keras" and not is_zip:
        raise ModelError(f"{path}: not a checkpoint (a .keras name, but not a .keras archive)")
    if is_hdf5:
        try:
            with h5py.File(path, "r") as f:
                text = f.attrs.get("model_config")
        except OSError as e:
            raise ModelError(f"{path}: not a checkpoint (a damaged HDF5 file: {str(e).splitlines()[0]})") from None
        if text is None:
            raise ModelError(f"{path}: not a checkpoint (an HDF5 file without a network description: weights "
                             f"alone, or another program's file)")
    elif is_zip:
        try:
            with zipfile.ZipFile(path) as z:
                text = z.read("config.json")
        except (KeyError, OSError, zipfile.BadZipFile):
            raise ModelError(f"{path}: not a checkpoint (a zip archive without a Keras config.json)") from None
    else:
        kind = "an empty file" if path.stat().st_size == 0 else "neither HDF5 nor a .keras archive"
        raise ModelError(f"{path}: not a checkpoint ({kind}); expected a .h5 file that `edgekd train` wrote")
    try:
        config = json.loads(text.decode("utf-8") if isinstance(text, bytes) else str(text))
    except (ValueError, UnicodeDecodeError):
        config = None
    if not isinstance(config, dict):
        raise ModelError(f"{path}: not a checkpoint (its network description is not readable JSON)")
    return config


def network_refusal(node) -> str | None:
    """What in a network description edgekd will not build, in words; None when everything is allowed."""
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        cls = node.get("class_name")
        if cls is not None:
            inner = node.get("config")
            name = inner.get("name") if isinstance(inner, dict) else None
            named = f" ({name!r})" if isinstance(name, str) else ""
            if cls in _CODE_LAYERS:
                return f"a {cls} layer{named}: {_CODE_LAYERS[cls]}, which loading it would run"
            if not isinstance(cls, str) or cls not in ALLOWED_CLASSES:
                return f"a {cls!r} object{named}, which is no part of edgekd's networks (loading it could run code)"
            if node.get("registered_name") not in (None, cls):
                return f"a {cls} that names the registered class {node['registered_name']!r}"
        module = node.get("module")
        if module is not None and not (isinstance(module, str) and (module.split(".")[0] in ("keras", "tf_keras"))):
            what = "an object" if cls is None else f"a {cls!r}"
            return f"{what} from the module {module!r}, which Keras would import"
        stack.extend(reversed(list(node.values())))
    return None


def check_network(checkpoint_path) -> Path:
    """Refuse a checkpoint whose network description names anything but edgekd's own layers (``ALLOWED_CLASSES``)
    before anything is built from it; returns the checkpoint's file. One line, naming the file and the layer."""
    path = _checkpoint_file(checkpoint_path)
    config = network_description(path)
    if config.get("class_name") not in ("Functional", "Model"):
        raise ModelError(f"{path}: refused: its network is a {config.get('class_name')!r}, not an edgekd network "
                         f"(a Keras functional model)")
    why = network_refusal(config)
    if why is not None:
        raise ModelError(f"{path}: refused: its network holds {why}; edgekd opens only checkpoints of its own "
                         f"networks")
    return path


def load_model(checkpoint_path):
    """A trained network (teacher or student) from ``best.h5``/``last.h5``, or from a stage folder (its best.h5).
    Its network description is checked first (``check_network``): no code from the file ever runs."""
    import tf_keras as keras

    path = check_network(checkpoint_path)
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{path}: not a checkpoint (Keras cannot build it: {str(e).splitlines()[0]})") from None


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
    info = bind_to_data(info)
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
    """The weights of a checkpoint into a network built here (only arrays are read; the file's network
    description is checked all the same, so a file that could run code is refused wherever it is given)."""
    check_network(path)
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


PREPARED_SHA = "prepared_sha256"  # the sha256 of the manifest of the prepared folder a checkpoint was trained on


def manifest_sha256(prepared) -> str | None:
    """The sha256 of a prepared folder's manifest.json (its settings, sources and counts: what the data is), or None
    when there is none."""
    import hashlib

    try:
        return hashlib.sha256((Path(prepared) / "manifest.json").read_bytes()).hexdigest()
    except OSError:
        return None


def bind_to_data(info: dict) -> dict:
    """``info`` with the sha256 of the manifest of the prepared folder it names (``prepared``), so that a run is
    bound to its data by content and a resume with another folder of the same size is refused (a copy)."""
    if info.get("prepared") and PREPARED_SHA not in info:
        sha = manifest_sha256(info["prepared"])
        if sha is not None:
            return {**info, PREPARED_SHA: sha}
    return info


def check_same_data(path: Path, data, recorded: dict, what: str = "it") -> None:
    """Refuse prepared data other than those ``recorded`` (a checkpoint's info, or a run's config.json) names:
    compared by the manifest's sha256, recorded since edgekd bound runs to their data, else with the manifest of
    the folder it names when that folder is still there and is not ``data``'s own."""
    theirs, named = recorded.get(PREPARED_SHA), recorded.get("prepared")
    mine = manifest_sha256(data.root)
    if theirs is None and named and Path(named).resolve() != Path(data.root).resolve():
        theirs = manifest_sha256(named)
    if theirs is not None and mine != theirs:
        where = f" ({named})" if named and Path(named).resolve() != Path(data.root).resolve() else ""
        raise ModelError(f"{data.root}: not the prepared data {path} was trained on{where}: its manifest differs; "
                         f"{what} continues only with those data (or start a new --run-dir)")


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
