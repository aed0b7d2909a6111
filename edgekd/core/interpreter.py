"""The one place a TFLite interpreter is built (runtime, export's checks, training's --init-from X.tflite).

A foundation, so that every floor can run or read a .tflite without importing the runtime's inference code.
ai-edge-litert is preferred (XNNPACK, the maintained desktop runtime); tflite_runtime and tf.lite are fallbacks,
and the label returned with every interpreter names which one ran, because tflite_runtime runs int8 without
XNNPACK (about 18x slower).
"""
from __future__ import annotations

import sys
from importlib import metadata as importlib_metadata

from edgekd.core.errors import ModelError

RUNTIMES = ("auto", "litert", "tflite_runtime", "tf")


def package_version(dist: str) -> str:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _interpreter_class(runtime: str):
    """(Interpreter class, runtime label). 'auto' prefers ai-edge-litert, then tflite_runtime, then tf.lite."""
    order = ["litert", "tflite_runtime", "tf"] if runtime == "auto" else [runtime]
    for name in order:
        try:
            if name == "litert":
                from ai_edge_litert.interpreter import Interpreter

                return Interpreter, f"ai-edge-litert {package_version('ai-edge-litert')}"
            if name == "tflite_runtime":
                from tflite_runtime.interpreter import Interpreter

                return Interpreter, f"tflite-runtime {package_version('tflite-runtime')}"
            import tensorflow as tf

            return tf.lite.Interpreter, f"tensorflow {tf.__version__} (tf.lite)"
        except ImportError:
            continue
    raise ModelError("no TFLite runtime found; install ai-edge-litert (pip install ai-edge-litert)")


def make_interpreter(path=None, content: bytes | None = None, num_threads: int = 1, runtime: str = "auto",
                     delegates: bool = True, preserve_all_tensors: bool = False):
    """The one place a TFLite interpreter is built: (allocated interpreter, runtime label).

    ``delegates=False`` runs the builtin kernels without XNNPACK, which would hide every op's types inside one
    DELEGATE node (export's op inspection needs them); only LiteRT and tf.lite offer the switch.
    ``preserve_all_tensors`` keeps every intermediate tensor readable after ``invoke`` (export reads the head's input).
    """
    cls, label = _interpreter_class(runtime)
    kwargs = {"num_threads": num_threads}
    if not delegates:
        resolver = getattr(sys.modules[cls.__module__], "OpResolverType", None)
        if resolver is None:
            raise ModelError(f"{label} cannot run without its default delegates; install ai-edge-litert")
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if preserve_all_tensors:
        kwargs["experimental_preserve_all_tensors"] = True
    source = {"model_content": content} if content is not None else {"model_path": str(path)}
    try:
        interp = cls(**source, **kwargs)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ModelError(f"{path or 'model'}: the TFLite runtime cannot load it ({str(e).splitlines()[0]})") from None
    return interp, label
