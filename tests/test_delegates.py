"""The card's delegate line is measured, not assumed: a graph with an op XNNPACK lacks (CUMSUM) is reported as not
fully delegated, the shipped files as fully delegated; the GPU line is what LiteRT's analyzer says. The shipped int8
file is full-integer, as int8-only NPUs and the NNAPI/EdgeTPU delegates need."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from edgekd.export.quantize import delegate_support, inspect_ops
from runtime_helpers import SHIPPED_FLOAT32, SHIPPED_INT8


def _tflite(fn) -> bytes:
    spec = tf.TensorSpec([1, 8, 8, 3], tf.float32)
    concrete = tf.function(fn, input_signature=[spec]).get_concrete_function()
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], fn).convert()


def test_delegate_support_tells_a_partial_graph_from_a_whole_one():
    kernel = tf.constant(np.random.default_rng(0).normal(size=(3, 3, 3, 4)).astype(np.float32))
    whole = delegate_support(_tflite(lambda x: tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME"))))
    assert whole["xnnpack"] == {"every_op": True, "partitions": 1} and whole["gpu"]["analyzer_compatible"]
    partial = delegate_support(_tflite(lambda x: tf.math.cumsum(tf.nn.conv2d(x, kernel, 1, "SAME"), axis=1) * 2.0))
    assert not partial["xnnpack"]["every_op"]
    # the analyzer is lenient (it passes CUMSUM, TOPK_V2, GATHER_ND in TF 2.21): the card says only what it said
    assert "Analyzer" in partial["gpu"]["by"] and isinstance(partial["gpu"]["analyzer_warnings"], list)


def test_the_shipped_files_run_whole_on_xnnpack_and_the_gpu_delegate():
    for path in (SHIPPED_INT8, SHIPPED_FLOAT32):
        support = delegate_support(path.read_bytes())
        assert support["xnnpack"]["every_op"] and support["gpu"]["analyzer_compatible"], (path.name, support)


def test_the_shipped_int8_file_is_full_integer():
    """Read from the file's own tensors, not its card: every compute op takes and gives int8 (the landmark layer
    included); only the input QUANTIZE / output DEQUANTIZE convert."""
    ops = inspect_ops(SHIPPED_INT8.read_bytes())
    assert ops["all_integer"] and ops["float_ops"] == [], ops["float_ops"]
    fc = next(o for o in ops["ops"] if o["op"] == "FULLY_CONNECTED")
    assert fc["input_types"][:2] == ["int8", "int8"] and fc["output_types"] == ["int8"]
    assert not inspect_ops(SHIPPED_FLOAT32.read_bytes())["all_integer"]  # the check can fail
