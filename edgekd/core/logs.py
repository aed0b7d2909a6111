"""Quiet by default: the one place that decides what reaches the user's terminal.

TensorFlow, LiteRT and MediaPipe print from C++ straight to file descriptor 2 (absl's "I0000 ... port.cc] oneDNN
custom operations are on", "cuInit" failures on machines without a GPU, "INFO: Created TensorFlow Lite XNNPACK
delegate", "Logging before InitGoogle()"). TF 2.21's absl logging ignores ``TF_CPP_MIN_LOG_LEVEL``, and LiteRT has
no switch at all, so environment variables alone cannot silence them. The CLI therefore puts a filter on fd 2
before any of them loads: known native noise is dropped, everything else (a real crash, a fatal check) still
reaches the terminal. Python's own ``sys.stderr`` is pointed at the original terminal, so edgekd's messages,
errors and progress bars are written synchronously and never pass through the filter. ``-v`` turns the filter
off and shows everything; library users who never run the CLI keep their fd 2 untouched.

edgekd's own messages go through ``logging`` (logger ``edgekd``): INFO by default, DEBUG with ``-v``, WARNING
with ``-q``.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import threading
import warnings

# Set at package import, before anything can load a native library (the variables are read once, at load time).
NATIVE_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TF's own C++ logging below ERROR (older TF; absl-based logs ignore it)
    "GLOG_minloglevel": "2",  # MediaPipe's glog: errors only
    "ABSL_MIN_LOG_LEVEL": "2",
    # OpenCV's own log and FFmpeg's through it: a missing camera or a corrupt video otherwise prints a dozen lines
    # of warnings before edgekd's one-line error says the same (fatal messages still pass)
    "OPENCV_LOG_LEVEL": "FATAL",
    "OPENCV_FFMPEG_LOGLEVEL": "8",  # AV_LOG_FATAL
}

# Lines of native-library noise (anchored at the line start). Errors and fatal lines not listed here pass.
NATIVE_NOISE = re.compile(
    rb"^(?:"
    rb"[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] "  # absl / glog INFO and WARNING ("W0000 00:00:1795816717.57 ...")
    rb"|E\d{4} [\d:.]+ +\d+ \S+:\d+\] .*(?:cu[A-Z]|CUDA|TensorRT|TF-TRT)"  # no-GPU "errors"
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] "  # older TensorFlow C++ logging
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|WARNING: Logging before InitGoogle\(\) is written to STDERR"
    rb"|INFO: |VERBOSE: "  # TFLite / LiteRT minimal logging
    rb"|To enable the following instructions: "  # continuation of TF's CPU-feature banner
    rb"|fully_quantize: \d+, inference_type: \d+"  # the TFLite converter's quantizer, printed bare at every int8 export
    rb")")

# Third-party Python loggers and warning sources that stay below WARNING/ERROR unless -v.
THIRD_PARTY_LOGGERS = ("tensorflow", "absl", "h5py", "matplotlib", "PIL", "mediapipe")
THIRD_PARTY_WARNINGS = r"(tensorflow|tf_keras|keras|absl|mediapipe|google|tensorflow_model_optimization|h5py)(\.|$)"

log = logging.getLogger("edgekd")
_filter_installed = False


def native_env_defaults() -> None:
    """Lower the native libraries' log levels unless the user set them (called from ``edgekd/__init__.py``)."""
    for key, value in NATIVE_ENV.items():
        os.environ.setdefault(key, value)


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (click's test runner swaps it), one line per record."""

    PREFIX = {logging.DEBUG: "debug: ", logging.WARNING: "warning: ", logging.ERROR: "error: ",
              logging.CRITICAL: "error: "}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.PREFIX.get(record.levelno, "") + self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def setup(verbosity: int = 0) -> None:
    """Configure output for one CLI run: ``verbosity`` -1 (``-q``), 0 (default) or 1 (``-v``)."""
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    for h in [h for h in log.handlers if isinstance(h, _StderrHandler)]:
        log.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity > 0 else logging.ERROR)
    if verbosity <= 0:
        warnings.filterwarnings("ignore", module=THIRD_PARTY_WARNINGS)
        filter_native_stderr()


def reset() -> None:
    """Undo ``setup``'s logger levels and handler (the fd-2 filter stays for the process): a CLI call made from
    Python, as tests do, leaves logging as it found it."""
    for h in [h for h in log.handlers if isinstance(h, _StderrHandler)]:
        log.removeHandler(h)
    log.setLevel(logging.NOTSET)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


def show_progress() -> bool:
    """Progress bars follow the log level: shown by default and with -v, hidden with -q."""
    return log.isEnabledFor(logging.INFO)


def filter_native_stderr() -> bool:
    """Put the native-noise filter on fd 2 (once per process). Returns False where it does not apply: when
    ``sys.stderr`` is not the process's fd 2 (a test runner captures it) or on a platform without ``os.pipe``."""
    global _filter_installed
    if _filter_installed:
        return True
    try:
        if sys.stderr is not sys.__stderr__ or sys.stderr.fileno() != 2:
            return False
    except (AttributeError, OSError, ValueError):
        return False
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = open(terminal, "w", buffering=1, encoding=sys.__stderr__.encoding or "utf-8",  # noqa: SIM115
                      errors="backslashreplace", closefd=False)
    threading.Thread(target=_pump, args=(read_end, terminal), name="edgekd-native-log-filter", daemon=True).start()
    _filter_installed = True
    return True


def _pump(read_end: int, terminal: int) -> None:
    """Forward the lines native code writes to fd 2, minus the known noise. The read end is never closed, so a
    native write after this thread stops (at interpreter exit) fills the pipe instead of raising SIGPIPE."""
    pending = b""
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        kept = [line for line in lines if not NATIVE_NOISE.match(line)]
        if kept:
            os.write(terminal, b"\n".join(kept) + b"\n")
