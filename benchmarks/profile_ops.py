"""Time per stretch of ops of .tflite models on this CPU, without LiteRT's benchmark_model (not installable here).

The model is cut after every op whose output is the only tensor later ops read (the end of a MobileNetV2 block,
for example): the cut model keeps the ops up to there and outputs that one tensor, so it runs exactly the ops
before the cut, delegated to XNNPACK as the whole model is. (Cutting inside a block would add a second output,
which costs XNNPACK a copy and skews the difference.) Each cut model is timed with the bench's interpreter settings,
the rounds interleaved over the cuts so that a change in machine load spreads over all of them; a stretch's time is
the difference of the medians of consecutive cuts. Two models with the same ops (a float32 model and its int8 twin)
are compared stretch by stretch, so the stretches where int8 gains little stand out.

    .venv/bin/python benchmarks/profile_ops.py models/300w/kd_student_float32.tflite \\
        models/300w/kd_student_int8.tflite --threads 1 --rounds 15

Run it on a quiet machine: the CPU and the load average are printed first.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekd.core import logs  # noqa: E402
from edgekd.core.interpreter import make_interpreter  # noqa: E402
from edgekd.core.timing import machine  # noqa: E402


def op_names(model) -> list[str]:
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = model.operatorCodes
    return [names[max(codes[op.opcodeIndex].builtinCode, codes[op.opcodeIndex].deprecatedBuiltinCode)]
            for op in model.subgraphs[0].operators]


def cut_points(model) -> list[int]:
    """Indices k of the ops after which one tensor (op k's output) is all that later ops and the model read."""
    g = model.subgraphs[0]
    out = []
    for k in range(len(g.operators)):
        later = g.operators[k + 1:]
        needed = {t for op in later for t in op.inputs if t >= 0} | set(g.outputs.tolist())
        made = {t for op in g.operators[:k + 1] for t in op.outputs}
        if made & needed == {g.operators[k].outputs[0]} or k == len(g.operators) - 1:
            out.append(k)
    return out


def cut(model, k: int) -> bytes:
    """The model with ops 0..k and op k's output as its only output."""
    from tensorflow.lite.tools import flatbuffer_utils

    m = copy.deepcopy(model)
    g = m.subgraphs[0]
    g.operators = g.operators[:k + 1]
    g.outputs = np.array([g.operators[k].outputs[0]], np.int32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def time_cuts(path: Path, threads: int, rounds: int, invokes: int) -> tuple[list[str], np.ndarray]:
    """(for each stretch of ops between cuts: its op names joined, median seconds of the model cut after it)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    names, points = op_names(model), cut_points(model)
    stretches = [names[a + 1:b + 1] for a, b in zip([-1] + points, points)]
    interps = []
    for k in points:
        interp, _ = make_interpreter(content=cut(model, k), num_threads=threads)
        d = interp.get_input_details()[0]
        interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        interp.invoke()
        interps.append(interp)
    samples = defaultdict(list)
    for _ in range(rounds):
        for k, interp in enumerate(interps):
            t0 = time.perf_counter()
            for _ in range(invokes):
                interp.invoke()
            samples[k].append((time.perf_counter() - t0) / invokes)
    return [" ".join(short(n) for n in s) for s in stretches], np.array([np.median(samples[k])
                                                                        for k in range(len(points))])


def short(name: str) -> str:
    return {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "dw", "FULLY_CONNECTED": "fc", "DEQUANTIZE": "deq"}.get(
        name, name.lower())


def aligned(stretches: list[str], ms: np.ndarray) -> list[tuple[str, float]]:
    """The stretches with what comes before the first conv merged into one "input scaling" row and a trailing
    dequantize into one "output" row, so that a float32 model (MUL + ADD in front) and its int8 twin (one
    depthwise op in front, DEQUANTIZE at the end) line up stretch by stretch."""
    first = next(i for i, s in enumerate(stretches) if s.startswith("conv"))
    last = len(stretches) - (1 if stretches[-1] in ("deq", "quantize") else 0)
    rows = [("input scaling (" + " ".join(stretches[:first]) + ")", float(ms[:first].sum()))]
    rows += list(zip(stretches[first:last], ms[first:last].tolist()))
    rows.append(("output (" + " ".join(stretches[last:]) + ")", float(ms[last:].sum())))
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--invokes", type=int, default=20)
    args = ap.parse_args(argv)
    logs.setup(0)  # the CLI's quiet output: native libraries' log lines filtered
    m = machine()
    print(f"CPU: {m['cpu']}, load average {m['load_average_1m']}; {args.threads} thread(s), "
          f"{args.rounds} rounds x {args.invokes} invokes")
    rows = {}
    for path in args.models:
        stretches, cum = time_cuts(path, args.threads, args.rounds, args.invokes)
        rows[path] = aligned(stretches, np.diff(np.concatenate([[0.0], cum])) * 1e3)
        print(f"{path.name}: {cum[-1] * 1e3:.3f} ms (the full model)")
    first, *others = args.models
    if any(len(rows[p]) != len(rows[first]) for p in others):
        sys.exit("error: the models' stretches do not line up (not the same network?)")
    print(f"\n{'#':>3}  " + "  ".join(f"{p.stem[:18]:>18}" for p in args.models)
          + (f"  {'ratio':>6}" if others else "") + "  ops")
    for i, (ops, base) in enumerate(rows[first]):
        cells = "  ".join(f"{rows[p][i][1]:15.3f} ms" for p in args.models)
        ratio = f"  {rows[others[0]][i][1] / base:6.2f}" if others and base > 0.005 else ("  " + " " * 6) * bool(others)
        print(f"{i:3d}  {cells}{ratio}  {ops}")
    kinds = sorted({ops.split(" (")[0] for ops, _ in rows[first]})
    print("\nby kind of stretch:")
    for kind in kinds:
        totals = [sum(v for ops, v in rows[p] if ops.split(" (")[0] == kind) for p in args.models]
        ratio = f"  ratio {totals[1] / totals[0]:.2f}" if others and totals[0] > 0.005 else ""
        print(f"  {kind:<28} " + "  ".join(f"{t:7.3f} ms" for t in totals) + ratio)


if __name__ == "__main__":
    main()
