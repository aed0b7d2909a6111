"""LandmarkModel: one way to run a landmark network, whether it is an exported .tflite or a Keras checkpoint.

Everything downstream (Predictor, bench, predict) only sees "crop in, crop-pixel points out", so float, int8 and
teacher checkpoints line up in one benchmark table. A .tflite carries its scheme and CropSpec in its edgekd
metadata; a Keras checkpoint gets them from a JSON beside it or from explicit arguments.

.tflite files run on ai-edge-litert (XNNPACK, the maintained desktop runtime); without it on tflite_runtime or
tf.lite, and the runtime's name says which, because tflite_runtime runs int8 without XNNPACK (about 18x slower).
TensorFlow is imported only for Keras checkpoints or the tf.lite fallback.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.core.checkpoint import check_network, checkpoint_info, load_model
from edgekd.core.crop import CropSpec
from edgekd.core.errors import ModelError
from edgekd.core.interpreter import RUNTIMES, make_interpreter, package_version
from edgekd.core.metadata import read
from edgekd.core.schemes import get_scheme

log = logging.getLogger(__name__)

KERAS_SUFFIXES = (".h5", ".keras", ".hdf5")


@dataclass(frozen=True)
class ModelInfo:
    """What a model predicts and how its crop is cut: the subset of ModelMetadata that running it needs."""

    scheme: str
    num_points: int
    crop: CropSpec
    quantization: str = "float32"
    # the mirror map from the model file itself, so flip TTA works for a user's own points without their scheme
    # being registered here (None: the registered scheme's, for Keras checkpoints)
    flip_permutation: tuple[int, ...] | None = None


class LandmarkModel:
    """A landmark network behind one interface.

    ``predict(crop)`` takes an (S, S, 3) uint8 RGB crop cut with ``self.crop`` and returns (N, 2) crop pixels;
    the staged form ``set_input(crop)``, ``invoke()``, ``points(to_image)`` lets a pipeline time each stage and
    get image pixels straight away. ``run(batch)`` is the raw (B, S, S, 3) float [0, 1] -> (B, 2N) normalised
    call. ``runtime`` names the engine and its version (recorded beside every latency number).
    """

    def __init__(self, path, num_threads: int = 1, runtime: str = "auto", scheme: str | None = None,
                 crop: CropSpec | dict | None = None):
        self.path = Path(path)
        self.num_threads = int(num_threads)
        if not self.path.exists():
            raise ModelError(f"{self.path}: no such model file")
        if runtime not in RUNTIMES:
            raise ModelError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
        self.kind = "tflite" if self.path.suffix.lower() == ".tflite" else "keras"
        # a display name: checkpoints are all best.h5/last.h5, so their stage folder names them
        self.name = (self.path.name if self.kind == "tflite" else
                     f"{self.path.name}/best.h5" if self.path.is_dir() else f"{self.path.parent.name}/{self.path.name}")
        if self.kind == "keras" and self.path.suffix.lower() not in KERAS_SUFFIXES and not self.path.is_dir():
            raise ModelError(f"{self.path}: expected a .tflite file or a Keras checkpoint (.h5/.keras)")
        if self.kind == "keras" and self.path.is_dir() and not (self.path / "best.h5").is_file():
            raise ModelError(f"{self.path}: a folder without best.h5; expected a .tflite file, a Keras checkpoint "
                             f"(.h5/.keras) or a training stage folder")
        if self.kind == "keras":  # no checkpoint, or one that could run code: refused before anything is read
            check_network(self.path)
        self._requested_runtime = runtime
        if self.kind == "tflite":
            self.info = _tflite_info(self.path, scheme, crop)
            self._backend = _TFLiteBackend(self.path, self.num_threads, runtime)
        else:
            self.info = _keras_info(self.path, scheme, crop)
            self._backend = _KerasBackend(self.path)
        size = self._backend.input_size
        if size is not None and size != self.info.crop.input_size:
            raise ModelError(f"{self.path}: input is {size}x{size} but its metadata says crops of "
                             f"{self.info.crop.input_size}")
        outputs = self._backend.output_size
        if outputs is not None and outputs != 2 * self.info.num_points:
            raise ModelError(f"{self.path}: outputs {outputs} values but its metadata says "
                             f"{self.info.num_points} points ({2 * self.info.num_points} values)")
        self._raw_xy = np.empty((self.info.num_points, 2), np.float32)  # the output as float, reused per call
        self._gain, self._offset = self._backend.output_affine(self.info.crop.input_size)

    # --- identity -----------------------------------------------------------------------------------------------
    @property
    def crop(self) -> CropSpec:
        return self.info.crop

    @property
    def num_points(self) -> int:
        return self.info.num_points

    @property
    def scheme(self) -> str:
        return self.info.scheme

    @property
    def runtime(self) -> str:
        return self._backend.name

    @property
    def size_mb(self) -> float:
        p = self.path
        total = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
        return total / 1e6

    def with_threads(self, num_threads: int) -> "LandmarkModel":
        """The same model on a fresh interpreter with another thread count (Keras ignores thread counts)."""
        return LandmarkModel(self.path, num_threads, self._requested_runtime, self.info.scheme, self.info.crop)

    # --- inference ----------------------------------------------------------------------------------------------
    def run(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        return self._backend.run(x)

    def predict(self, crop: np.ndarray) -> np.ndarray:
        """(N, 2) crop pixels of one uint8 crop."""
        self._backend.set_input(crop)
        self._backend.invoke()
        return self.points()

    def set_input(self, crop: np.ndarray) -> None:
        """Write one (S, S, 3) uint8 crop into the model's input (no conversion when the tensor allows it)."""
        self._backend.set_input(crop)

    def invoke(self) -> None:
        self._backend.invoke()

    def points(self, to_image: np.ndarray | None = None) -> np.ndarray:
        """The last invoke's (N, 2) points: crop pixels, or through ``to_image`` (2x3 crop -> image affine) image
        pixels. Dequantization, denormalisation and the inverse crop are one affine map of the raw output, so
        this is one small matrix product whatever the tensor types."""
        a = _IDENTITY if to_image is None else np.asarray(to_image, dtype=np.float64)
        k = a[:, :2] * self._gain  # crop px = raw * gain + offset, then the crop -> image affine
        t = a[:, :2].sum(axis=1) * self._offset + a[:, 2]
        np.copyto(self._raw_xy, self._backend.output().reshape(-1, 2))
        out = self._raw_xy @ k.T.astype(np.float32)
        out += t.astype(np.float32)
        return out

    def close(self) -> None:
        self._backend = _Closed()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (f"LandmarkModel({self.path.name}, {self.info.scheme}/{self.info.num_points} pts, "
                f"{self.info.quantization}, {self.runtime}, threads={self.num_threads})")


_IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


class _Closed:
    name = "closed"

    def _closed(self, *args):
        raise RuntimeError("LandmarkModel is closed")

    run = set_input = invoke = output = _closed


# --- metadata -------------------------------------------------------------------------------------------------
def _tflite_info(path: Path, scheme, crop) -> ModelInfo:
    meta = read(path)
    spec = _as_crop(crop) if crop is not None else meta.crop
    if scheme is not None and scheme != meta.scheme:
        raise ModelError(f"{path}: metadata says scheme {meta.scheme!r}, but {scheme!r} was asked for")
    return ModelInfo(meta.scheme, int(meta.num_points), spec, meta.quantization,
                     tuple(meta.flip_permutation) if meta.flip_permutation else None)


def _as_crop(crop) -> CropSpec:
    return crop if isinstance(crop, CropSpec) else CropSpec.from_dict(crop)


def metadata_json_candidates(path: Path) -> list[Path]:
    """Where a Keras checkpoint's scheme and crop may be written, most specific first."""
    return [path.with_name(path.name + ".json"), path.with_suffix(".json"), path.parent / "metadata.json",
            path.parent / "model.json"]


def _checkpoint_attrs(path: Path) -> dict:
    """The edgekd JSON inside the HDF5 checkpoint (edgekd.core.checkpoint.checkpoint_info), if any."""
    try:
        return checkpoint_info(path) or {}
    except ModelError:  # not HDF5 (.keras): fall back to a JSON beside it
        return {}


def _keras_info(path: Path, scheme, crop) -> ModelInfo:
    found: dict = _checkpoint_attrs(path)
    for cand in ([] if "scheme" in found else metadata_json_candidates(path)):
        if cand.is_file() and cand != path:
            try:
                d = json.loads(cand.read_text())
            except ValueError as e:
                raise ModelError(f"{cand}: unreadable JSON ({e})") from None
            if isinstance(d, dict) and "scheme" in d:
                found = d
                break
    scheme = scheme or found.get("scheme")
    crop_d = crop if crop is not None else found.get("crop")
    if scheme is None or crop_d is None:
        names = ", ".join(p.name for p in metadata_json_candidates(path))
        raise ModelError(f"{path}: Keras checkpoint without scheme/crop (no edgekd info inside, no JSON beside it: "
                         f"{names}); pass scheme= and crop=")
    n = int(found.get("num_points", get_scheme(scheme).num_points))
    return ModelInfo(scheme, n, _as_crop(crop_d), found.get("quantization", "float32 (keras)"))


# --- backends -------------------------------------------------------------------------------------------------
class _TFLiteBackend:
    def __init__(self, path: Path, num_threads: int, runtime: str):
        self.interp, label = make_interpreter(path, num_threads=num_threads, runtime=runtime)
        inputs, outputs = self.interp.get_input_details(), self.interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{path}: expected one input and one output tensor, found {len(inputs)} and "
                             f"{len(outputs)}")
        self.inp, self.out = inputs[0], outputs[0]
        shape = tuple(self.inp["shape"])
        if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2]:
            raise ModelError(f"{path}: expected an input of shape (1, S, S, 3), found {shape}")
        self.input_size = int(shape[1])
        self.output_size = int(np.prod(self.out["shape"][1:]))
        self.xnnpack = _uses_delegate(self.interp)
        self.name = f"{label}{' XNNPACK' if self.xnnpack else ''}"
        self.input_encoding = input_encoding(self.inp)
        self._input = np.zeros(tuple(shape), self.inp["dtype"])  # reused by every set_input

    def run(self, x: np.ndarray) -> np.ndarray:
        outs = []
        for one in x:  # exported models have batch 1
            self.interp.set_tensor(self.inp["index"], quantize_input(one[None], self.inp))
            self.interp.invoke()
            outs.append(dequantize_output(self.interp.get_tensor(self.out["index"]), self.out).reshape(-1))
        return np.stack(outs)

    def set_input(self, crop: np.ndarray) -> None:
        """uint8 pixels into the input tensor. With int8 (zero point -128, scale 1/255) the tensor value is
        pixel - 128, the pixel's bits with the top one flipped; with uint8 (0, 1/255) the pixel itself; float
        tensors get pixel / 255; anything else goes through the general quantizer."""
        dst = self._input[0]
        if self.input_encoding == "int8-xor":
            np.bitwise_xor(crop, 0x80, out=dst.view(np.uint8))
        elif self.input_encoding == "uint8":
            np.copyto(dst, crop)
        elif self.input_encoding == "float":
            np.divide(crop, np.float32(255.0), out=dst, dtype=dst.dtype)
        else:
            dst[...] = quantize_input(np.asarray(crop, np.float32) / 255.0, self.inp)
        self.interp.set_tensor(self.inp["index"], self._input)

    def invoke(self) -> None:
        self.interp.invoke()

    def output(self) -> np.ndarray:
        return self.interp.get_tensor(self.out["index"])

    def output_affine(self, input_size: int) -> tuple[float, float]:
        """(gain, offset) with crop pixels = raw * gain + offset: dequantize then denormalise
        ((q - zero) * scale + 0.5) * input_size, folded."""
        scale, zero = (1.0, 0) if np.issubdtype(self.out["dtype"], np.floating) else self.out["quantization"]
        return input_size * scale, input_size * (0.5 - zero * scale)


def input_encoding(detail: dict) -> str:
    """How uint8 pixels reach an input tensor: 'int8-xor' and 'uint8' write them without arithmetic (the tensor's
    quantization is exactly pixel / 255 there), 'float' divides by 255, 'quantize' runs the general quantizer."""
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.floating):
        return "float"
    scale, zero = detail["quantization"]
    exact = bool(scale) and abs(scale * 255.0 - 1.0) < 1e-6  # off by < 255e-6 of a step: rounding cannot differ
    if exact and dtype == np.int8 and zero == -128:
        return "int8-xor"
    if exact and dtype == np.uint8 and zero == 0:
        return "uint8"
    return "quantize"


def _uses_delegate(interp) -> bool:
    try:
        return any(op.get("op_name") == "DELEGATE" for op in interp._get_ops_details())
    except Exception:  # private API; absence only loses the label
        return False


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float values -> the tensor's dtype with its (scale, zero point); float tensors pass through."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    if not scale:
        raise ModelError(f"input tensor of type {np.dtype(dtype).name} has no quantization parameters")
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
    """A tensor's values -> float32 with its (scale, zero point); float32 tensors pass through (not copied)."""
    if np.issubdtype(y.dtype, np.floating):
        return y.astype(np.float32, copy=False)
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


class _KerasBackend:
    def __init__(self, path: Path):

        import tensorflow as tf

        self.model = _load_keras(path)
        self.name = (f"tf_keras {package_version('tf-keras')} (TensorFlow {package_version('tensorflow')}, "
                     f"tf.function)")
        shape = tuple(self.model.input_shape)
        self.input_size = int(shape[1]) if len(shape) == 4 and shape[1] else None
        out = tuple(self.model.output_shape)
        self.output_size = int(np.prod(out[1:])) if all(out[1:]) else None
        # a traced graph: eager calls cost ~6x more per face, which would misstate a checkpoint's latency
        self._call = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        self._x = self._y = None

    def run(self, x: np.ndarray) -> np.ndarray:
        out = self._call(x)
        return np.asarray(out, dtype=np.float32).reshape(len(x), -1)

    def set_input(self, crop: np.ndarray) -> None:
        self._x = np.asarray(crop, dtype=np.float32)[None] / 255.0

    def invoke(self) -> None:
        self._y = self.run(self._x)[0]

    def output(self) -> np.ndarray:
        return self._y

    @staticmethod
    def output_affine(input_size: int) -> tuple[float, float]:
        return float(input_size), 0.5 * input_size


def _load_keras(path: Path):
    """Plain tf_keras loading through edgekd.core.checkpoint (no training code needed)."""
    try:
        return load_model(path)
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: not a checkpoint (Keras cannot build it: {str(e).splitlines()[0]})") from None
