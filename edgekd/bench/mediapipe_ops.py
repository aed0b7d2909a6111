"""MediaPipe's custom TFLite ops in numpy, and ``SplitModel``: a .tflite run on LiteRT around the custom ops it has.

Why: Face Mesh's attention variant (``face_landmark_with_attention.tflite``) crops its own feature maps around the
lips and eyes with three MediaPipe ops (Landmarks2TransformMatrix, TransformTensorBilinear, TransformLandmarks, all
version 2) that LiteRT does not have, so it cannot be loaded as it is. Its graph is builtin ops with those ops in
between, so ``SplitModel`` cuts it into builtin segments (each a .tflite of its own, sharing the original's weights,
run by LiteRT with XNNPACK like any model) and runs the custom nodes here, on tensors of a few hundred values.

The ops follow MediaPipe's CPU kernels (mediapipe/util/tflite/operations/*.cc, Apache-2.0) line for line in
numpy; their options are the nodes' flexbuffer custom options.
"""
from __future__ import annotations

import numpy as np

from edgekd.core.errors import ModelError
from edgekd.core.interpreter import make_interpreter


def uses_xnnpack(interp) -> bool:
    """Whether LiteRT delegated the graph to XNNPACK (a DELEGATE node), for the runtime's label."""
    try:
        return any(op.get("op_name") == "DELEGATE" for op in interp._get_ops_details())
    except Exception:  # private API; its absence only loses the label
        return False


def _rotation(r: float) -> np.ndarray:
    c, s = np.cos(r), np.sin(r)
    return np.array([[c, -s], [s, c]])


def landmarks_to_transform_matrix(landmarks: np.ndarray, options: dict) -> np.ndarray:
    """Landmarks2TransformMatrix v2: (1, N, 3) landmarks -> (1, 4, 4) matrix from output-grid pixels to input-grid
    pixels: the box of ``subset_idxs`` in the frame rotated by the left -> right landmark line, scaled by
    scale_x / scale_y, over an output_width x output_height grid."""
    p = np.asarray(landmarks, np.float64).reshape(-1, 3)[:, :2]
    left, right = p[int(options["left_rotation_idx"])], p[int(options["right_rotation_idx"])]
    rotation = float(options.get("target_rotation_radians", 0.0)) - np.arctan2(right[1] - left[1], right[0] - left[0])
    sub = p[np.asarray(options["subset_idxs"], int)] @ _rotation(rotation).T
    lo, hi = sub.min(0), sub.max(0)
    width, height = hi - lo
    centre = _rotation(-rotation) @ ((lo + hi) / 2.0)
    ow, oh = float(options["output_width"]), float(options["output_height"])
    t = np.eye(4)
    t[:2, 3] = centre
    rot = np.eye(4)
    rot[:2, :2] = _rotation(-rotation)
    scale = np.diag([float(options["scale_x"]) * width / ow, float(options["scale_y"]) * height / oh, 1.0, 1.0])
    shift = np.eye(4)
    shift[:2, 3] = (-ow / 2.0, -oh / 2.0)
    return (t @ rot @ scale @ shift).astype(np.float32)[None]


def transform_tensor_bilinear(data: np.ndarray, matrix: np.ndarray, options: dict) -> np.ndarray:
    """TransformTensorBilinear v2: sample (1, H, W, C) at output_height x output_width grid points mapped through
    the matrix (with its half-pixel correction); points outside the input are 0, as in MediaPipe."""
    x = np.asarray(data, np.float32)[0]
    h, w = x.shape[:2]
    m = np.asarray(matrix, np.float64).reshape(4, 4)
    xt, yt = m[0].copy(), m[1].copy()
    xt[3] += xt[0] * 0.5 + xt[1] * 0.5 - 0.5
    yt[3] += yt[0] * 0.5 + yt[1] * 0.5 - 0.5
    oh, ow = int(options["output_height"]), int(options["output_width"])
    gy, gx = np.mgrid[0:oh, 0:ow].astype(np.float64)
    tx = xt[0] * gx + xt[1] * gy + xt[3]
    ty = yt[0] * gx + yt[1] * gy + yt[3]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    x0 = np.clip(np.floor(tx), 0, w - 1).astype(np.intp)
    y0 = np.clip(np.floor(ty), 0, h - 1).astype(np.intp)
    fx, fy = (tx - x0)[..., None].astype(np.float32), (ty - y0)[..., None].astype(np.float32)
    # floor + 1 past the last row / column only happens inside with a weight of 0, so clipping it reads the same
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    upper = x[y0, x0] + fx * (x[y0, x1] - x[y0, x0])
    lower = x[y1, x0] + fx * (x[y1, x1] - x[y1, x0])
    out = upper + fy * (lower - upper)
    out[~inside] = 0.0
    return out[None]


def transform_landmarks(landmarks: np.ndarray, matrix: np.ndarray, options: dict | None = None) -> np.ndarray:
    """TransformLandmarks v2: (1, N, D) points through the matrix's first two rows (z, when D = 3, kept)."""
    p = np.array(landmarks, np.float32, copy=True)
    m = np.asarray(matrix, np.float64).reshape(4, 4)
    xy = p[0, :, :2].astype(np.float64)
    p[0, :, 0] = m[0, 0] * xy[:, 0] + m[0, 1] * xy[:, 1] + m[0, 3]
    p[0, :, 1] = m[1, 0] * xy[:, 0] + m[1, 1] * xy[:, 1] + m[1, 3]
    return p


CUSTOM_OPS = {
    "Landmarks2TransformMatrix": lambda inputs, options: landmarks_to_transform_matrix(inputs[0], options),
    "TransformTensorBilinear": lambda inputs, options: transform_tensor_bilinear(inputs[0], inputs[1], options),
    "TransformLandmarks": lambda inputs, options: transform_landmarks(inputs[0], inputs[1], options),
}


class SplitModel:
    """A single-subgraph .tflite with custom ops, run as LiteRT segments (the builtin ops between custom nodes) and
    the numpy ops of CUSTOM_OPS. ``input_details()`` / ``output_details()`` describe the original graph;
    ``set_input(x)``, ``invoke()`` and ``output(name)`` run it."""

    def __init__(self, content: bytes, num_threads: int = 1, label: str = "model"):
        try:  # the .tflite schema ships with ai-edge-litert (the bench's runtime)
            import flatbuffers
            from ai_edge_litert import schema_py_generated as schema
            from flatbuffers import flexbuffers
        except ImportError as e:
            raise ModelError(f"{label}: splitting it around its custom ops needs ai-edge-litert and flatbuffers "
                             f"(pip install ai-edge-litert): {e}") from None

        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
        if len(model.subgraphs) != 1:
            raise ModelError(f"{label}: {len(model.subgraphs)} subgraphs; expected one")
        graph = model.subgraphs[0]
        self._tensors = graph.tensors
        codes = model.operatorCodes
        consumers: dict[int, int] = {}  # tensor -> last operator reading it
        for i, op in enumerate(graph.operators):
            for t in op.inputs:
                if t >= 0:
                    consumers[t] = i
        for t in graph.outputs:
            consumers[t] = len(graph.operators)

        def constant(t):
            b = model.buffers[graph.tensors[t].buffer]
            return b.data is not None and len(b.data) > 0

        steps, run = [], []
        produced_at: dict[int, int] = {}
        for i, op in enumerate(graph.operators):
            for t in op.outputs:
                produced_at[t] = i
        for i, op in enumerate(graph.operators + [None]):
            name = None if op is None else codes[op.opcodeIndex].customCode
            if op is not None and not name:
                run.append(i)
                continue
            if run:  # close the builtin segment before this custom node (or the end)
                ops = [graph.operators[k] for k in run]
                inside = {t for o in ops for t in o.outputs}
                ins = sorted({t for o in ops for t in o.inputs if t >= 0 and t not in inside and not constant(t)})
                outs = sorted({t for t in inside if consumers.get(t, -1) > run[-1]})
                steps.append(("segment", self._segment(model, graph, ops, ins, outs, flatbuffers, schema,
                                                       num_threads, label), ins, outs))
                run = []
            if op is not None:
                custom = name.decode()
                if custom not in CUSTOM_OPS:
                    raise ModelError(f"{label}: custom op {custom} has no implementation here")
                options = flexbuffers.Loads(bytes(op.customOptions)) if op.customOptions is not None else {}
                steps.append(("custom", (CUSTOM_OPS[custom], options), [t for t in op.inputs if t >= 0],
                              list(op.outputs)))
        self._steps = steps
        self._inputs, self._outputs = list(graph.inputs), list(graph.outputs)
        self._values: dict[int, np.ndarray] = {}
        xnnpack = any(uses_xnnpack(what[0]) for kind, what, *_ in steps if kind == "segment")
        self.runtime = f"{self._label}{' XNNPACK' if xnnpack else ''}"

    def _segment(self, model, graph, ops, ins, outs, flatbuffers, schema, num_threads, label):
        """One builtin segment as a .tflite of its own (every tensor and buffer kept, only these operators)."""
        sub = schema.SubGraphT()
        sub.tensors, sub.operators, sub.inputs, sub.outputs, sub.name = graph.tensors, ops, ins, outs, graph.name
        seg = schema.ModelT()
        seg.version, seg.operatorCodes, seg.buffers, seg.subgraphs = model.version, model.operatorCodes, \
            model.buffers, [sub]
        seg.description = model.description
        builder = flatbuffers.Builder(1 << 20)
        builder.Finish(seg.Pack(builder), file_identifier=b"TFL3")
        interp, self._label = make_interpreter(content=bytes(builder.Output()), num_threads=num_threads)
        by_name = {d["name"]: d["index"] for d in interp.get_input_details() + interp.get_output_details()}
        index = [by_name[graph.tensors[t].name.decode()] for t in ins], \
            [by_name[graph.tensors[t].name.decode()] for t in outs]
        return interp, index

    def name_of(self, t: int) -> str:
        return self._tensors[t].name.decode()

    def output_names(self) -> list[str]:
        return [self.name_of(t) for t in self._outputs]

    def set_input(self, x: np.ndarray) -> None:
        self._values = {self._inputs[0]: x}

    def invoke(self) -> None:
        v = self._values
        for kind, what, ins, outs in self._steps:
            if kind == "segment":
                interp, (in_idx, out_idx) = what
                for t, k in zip(ins, in_idx):
                    interp.set_tensor(k, v[t])
                interp.invoke()
                for t, k in zip(outs, out_idx):
                    v[t] = interp.get_tensor(k)
            else:
                fn, options = what
                (v[outs[0]],) = (fn([v[t] for t in ins], options),)

    def output(self, name: str) -> np.ndarray:
        for t in self._outputs:
            if self.name_of(t) == name:
                return self._values[t]
        raise KeyError(name)
