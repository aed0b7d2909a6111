"""edgekd: knowledge-distilled facial landmarks (Fard & Mahoor, CVIU 2022) that run fast on phones.

Importing the package sets ``TF_USE_LEGACY_KERAS=1`` before anything can import TensorFlow: quantization-aware
training (tfmot) only accepts tf_keras models, and ``tf.keras`` must not silently become Keras 3 first.
This is the one place that does it; every module writes ``import tf_keras as keras``. It also lowers the native
libraries' log levels before they load (``edgekd.core.logs``, where the CLI's quiet-by-default output is decided).

The Python API has the CLI's verbs and names, and is loaded on first use (PEP 562 ``__getattr__``), so that
``import edgekd`` stays cheap and ``edgekd.Landmarker`` never loads training code or TensorFlow:

    lm = edgekd.Landmarker("models/300w/kd_student_int8.tflite")   # edgekd predict
    lm.predict("photos/"), lm.track("clip.mp4")
    edgekd.prepare_data(edgekd.PrepareConfig(...), out)              # edgekd data prepare
    edgekd.train_recipe(prepared, run_dir, edgekd.load_recipe("default", ["student.epochs=60"]))  # edgekd train
    edgekd.export_model(edgekd.ExportConfig(checkpoint, out, "qat"))  # edgekd export
    edgekd.benchmark(edgekd.BenchConfig(...))                         # edgekd bench

The verbs' names are not the folders' (``edgekd.export`` and ``edgekd.training`` are packages), so no name hides one.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from edgekd.core.logs import native_env_defaults  # noqa: E402  (after the line above, before any native library)

native_env_defaults()

__version__ = "0.15.0"


# The imports below are lazy by design (PEP 562, see above): each loader imports one part of the API on first use, so
# `import edgekd` stays cheap and a name from the runtime never loads the training floors.
def _runtime() -> dict:
    from edgekd.runtime.api import FaceLandmarks, Landmarker, Result
    from edgekd.runtime.model import LandmarkModel
    from edgekd.runtime.predictor import Predictor
    from edgekd.runtime.tracker import FaceTracker

    return {"Landmarker": Landmarker, "Result": Result, "FaceLandmarks": FaceLandmarks,
            "LandmarkModel": LandmarkModel, "Predictor": Predictor, "FaceTracker": FaceTracker}


def _data() -> dict:
    from edgekd.data.prepare import PrepareConfig, prepare

    return {"prepare_data": prepare, "PrepareConfig": PrepareConfig}


def _recipes() -> dict:
    from edgekd.recipes.recipe import load
    from edgekd.recipes.runner import run

    return {"load_recipe": load, "train_recipe": run}


def _export() -> dict:
    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import export_model

    return {"export_model": export_model, "ExportConfig": ExportConfig}


def _bench() -> dict:
    from edgekd.bench.config import BenchConfig
    from edgekd.bench.runner import benchmark

    return {"benchmark": benchmark, "BenchConfig": BenchConfig}


_LAZY = {name: loader for loader, names in (
    (_runtime, ("Landmarker", "Result", "FaceLandmarks", "LandmarkModel", "Predictor", "FaceTracker")),
    (_data, ("prepare_data", "PrepareConfig")),
    (_recipes, ("load_recipe", "train_recipe")),
    (_export, ("export_model", "ExportConfig")),
    (_bench, ("benchmark", "BenchConfig"))) for name in names}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    """``edgekd.Landmarker`` and the other API names, imported from their module on first use and kept."""
    if name not in _LAZY:
        raise AttributeError(f"module 'edgekd' has no attribute {name!r}")
    found = _LAZY[name]()
    globals().update(found)
    return found[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
