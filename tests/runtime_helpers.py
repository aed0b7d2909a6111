"""Shared helpers for the runtime/bench tests: tiny .tflite models (built once per session) and data paths."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import edgekd  # noqa: F401  (legacy Keras before TensorFlow)
from edgekd.core.crop import CropSpec
from edgekd.core.metadata import ModelMetadata, embed
from edgekd.core.schemes import get_scheme

DATA = Path(os.environ.get("EDGEKD_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
W300 = DATA / "300w"
TINY_SIZE = 64
REPO = Path(__file__).resolve().parents[1]
SHIPPED_INT8 = REPO / "models" / "300w" / "kd_student_int8.tflite"  # what `make demo` runs
SHIPPED_FLOAT32 = REPO / "models" / "300w" / "kd_student_float32.tflite"  # the same network, every weight


def tiny_metadata(scheme_name="300w", size=TINY_SIZE, quantization="float32") -> ModelMetadata:
    s = get_scheme(scheme_name)
    return ModelMetadata(scheme=s.name, num_points=s.num_points, flip_permutation=list(s.flip_permutation),
                         nme_pair=list(s.nme_pair), crop=CropSpec(input_size=size), quantization=quantization)


def tiny_keras(num_points=68, size=TINY_SIZE, seed=0):
    """Two layers, untrained but deterministic; a bias on the head puts outputs near a face-like mean."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2 * num_points, name="landmarks")(x)
    return keras.Model(inp, out)


def to_tflite(model, int8=False, size=TINY_SIZE) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.random((1, size, size, 3), dtype=np.float32)] for _ in range(8))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


def build_tiny_models(folder: Path) -> dict[str, Path]:
    """float.tflite, int8.tflite, wflw.tflite (98 points), keras.h5 (+ keras.json) in ``folder``; reused if there."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {k: folder / n for k, n in (("float", "float.tflite"), ("int8", "int8.tflite"),
                                         ("wflw", "wflw.tflite"), ("keras", "keras.h5"))}
    if all(p.is_file() for p in paths.values()):
        return paths
    model = tiny_keras()
    paths["float"].write_bytes(embed(to_tflite(model), tiny_metadata()))
    paths["int8"].write_bytes(embed(to_tflite(model, int8=True), tiny_metadata(quantization="int8-ptq")))
    paths["wflw"].write_bytes(embed(to_tflite(tiny_keras(98)), tiny_metadata("wflw")))
    model.save(paths["keras"])
    (folder / "keras.json").write_text(tiny_metadata().to_json())
    return paths
