"""edgekd: knowledge-distilled facial landmarks (Fard & Mahoor, CVIU 2022) that run fast on phones.

Importing the package sets ``TF_USE_LEGACY_KERAS=1`` before anything can import TensorFlow: quantization-aware
training (tfmot) only accepts tf_keras models, and ``tf.keras`` must not silently become Keras 3 first.
This is the one place that does it; every module writes ``import tf_keras as keras``. It also lowers the native
libraries' log levels before they load (``edgekd.core.logs``, where the CLI's quiet-by-default output is decided).
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from edgekd.core.logs import native_env_defaults  # noqa: E402  (after the line above, before any native library)

native_env_defaults()

__version__ = "0.12.0"
