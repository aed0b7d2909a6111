"""BlazeFace on another model file (``path``), and the int8 input/output handling an int8 BlazeFace would use.

No int8 detector ships: the one benchmarks/detector_int8 made (ai-edge-quantizer, static int8, calibrated on 377
300-W training images) put boxes 7.9 % larger than the float detector's (median IoU 0.86 against the 0.98 asked)
and ran 1.13x slower on one Xeon core (see benchmarks/detector_int8/README.md). These tests keep the way to open
and compare such a file working.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from runtime_helpers import W300

TRAIN_IMAGES = ("lfpw/trainset/image_0001.jpg", "helen/trainset/103770709_1.jpg")


@pytest.mark.skipif(not (W300 / "lfpw" / "trainset").is_dir(), reason="300-W training images not available")
def test_blazeface_on_another_file_finds_what_the_default_finds(tmp_path):
    """``path`` swaps the model file and nothing else: MediaPipe's file under another name (so no sha256 is
    registered for it) gives the default detector's detections exactly."""
    from edgekd.core.detector import ASSET, SHIPPED
    from edgekd.core.imageio import load_image
    from edgekd.runtime.blazeface import BlazeFace

    copy = tmp_path / "other.tflite"
    shutil.copy(ASSET, copy)
    assert copy not in SHIPPED
    with BlazeFace() as default, BlazeFace(path=copy) as other:
        assert other.spec.path == copy and default.spec.path == ASSET
        for rel in TRAIN_IMAGES:
            image = load_image(W300 / rel)
            a, b = default.detect(image), other.detect(image)
            assert len(a) == len(b) >= 1
            np.testing.assert_array_equal(a[0].box, b[0].box)
            np.testing.assert_array_equal(a[0].keypoints, b[0].keypoints)


def test_int8_input_table_is_the_float_input_quantized():
    """The 256-entry pixel table gives what quantizing the float path's [-1, 1] input would give, pixel by pixel,
    and the output dequantizer inverts (q - zero point) * scale; a float output passes through unchanged."""
    from edgekd.runtime.blazeface import input_table
    from edgekd.runtime.model import dequantize_output

    detail = {"dtype": np.int8, "quantization": (0.007695671, 1)}  # the made int8 file's input parameters
    pixels = np.arange(256, dtype=np.uint8)
    x = pixels * np.float32(2.0 / 255.0) - np.float32(1.0)  # BlazeFace.detect's float input
    table = input_table(detail)
    assert table.dtype == np.int8 and (table[0], table[255]) == (-128, 127)  # [-1, 1] fills the int8 range
    expected = np.clip(np.round(x / np.float32(0.007695671)) + 1, -128, 127)
    np.testing.assert_array_equal(table.astype(np.int64), expected.astype(np.int64))
    out = lambda q: dequantize_output(q, {"dtype": np.int8, "quantization": (0.5, -64)})
    np.testing.assert_allclose(out(np.array([-64, 0, 127], np.int8)), [0.0, 32.0, 95.5])
    same = np.array([1.5, -2.0], np.float32)
    assert dequantize_output(same, {"dtype": np.float32, "quantization": (0.0, 0)}) is same
