"""An int8 BlazeFace short-range, calibrated on 300-W training images, and how far it strays from the float one.

Why: on one core the float detector is the largest stage of a still image (about 1.3 of 3.0-3.2 ms end to end);
a full-integer copy runs it in int8 under XNNPACK. It is only worth shipping if its boxes and keypoints stay those of
the float detector (IoU >= 0.98, keypoints within 1 % of the box side, same recall), because the landmark model's
crop is fitted on the float detector's box and keypoints.

Steps (each reads the previous one's files under --work, /tmp/detector_int8 by default):

  inputs    main venv   BlazeFace's own input (letterboxed 128 px, [-1, 1], exactly as BlazeFace.detect makes it)
                        for every 4th LFPW/HELEN training image that is not a validation face -> calib.npy
  quantize  /work/qenv  ai-edge-quantizer 0.10.0 (needs ai-edge-litert 2.3.0, as the project pins):
                        python3.11 -m venv /work/qenv && /work/qenv/bin/pip install ai-edge-quantizer==0.10.0
                        -> int8.tflite (int8 input, int8 outputs)
  compare   main venv   float vs int8 through BlazeFace's own decode on all 1,675 training images (the 168
                        validation faces reported apart) -> compare.json
  time      main venv   invoke and detect, float and int8 interleaved, one thread; op types -> time.json
  results   main venv   compare.json + time.json -> benchmarks/detector_int8/results.json

  .venv/bin/python benchmarks/detector_int8/make_and_compare.py inputs
  /work/qenv/bin/python benchmarks/detector_int8/make_and_compare.py quantize
  .venv/bin/python benchmarks/detector_int8/make_and_compare.py compare
  .venv/bin/python benchmarks/detector_int8/make_and_compare.py time
  .venv/bin/python benchmarks/detector_int8/make_and_compare.py results

The test sets (``testset`` folders) are never read.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATA = Path("/work/shared/data/300w")
VAL_FACES = Path("/work/runs/data/300w-128/val/faces.json")
FLOAT = REPO / "edgekd" / "assets" / "face_detection_short_range.tflite"
HERE = Path(__file__).resolve().parent
IOU_MIN, KEYPOINT_MAX = 0.98, 0.01  # the agreement asked of the int8 detector (keypoints: fraction of box side)
TIMING_IMAGES = ("lfpw/trainset/image_0001.jpg", "helen/trainset/103770709_1.jpg", "lfpw/trainset/image_0100.jpg")


def training_images() -> list[tuple[str, Path]]:
    """(id, path) of every LFPW and HELEN training image, sorted; ids as in the validation list ('helen/1_1')."""
    out = []
    for subset in ("lfpw", "helen"):
        out += [(f"{subset}/{p.stem}", p) for p in sorted((DATA / subset / "trainset").glob("*.jpg"))]
    return out


def validation_ids() -> set[str]:
    return {f["id"] for f in json.loads(VAL_FACES.read_text())}


# --- inputs (main venv) -------------------------------------------------------------------------------------------
def make_inputs(work: Path, every: int) -> None:
    """BlazeFace's input tensor for every ``every``-th training image outside the validation faces, taken from
    BlazeFace.detect's own buffer so the letterbox and scaling are exactly the runtime's."""
    sys.path.insert(0, str(REPO))
    from edgekd.core.imageio import load_image
    from edgekd.runtime.blazeface import BlazeFace

    val = validation_ids()
    pick = [p for i, p in training_images() if i not in val][::every]
    xs = []
    with BlazeFace() as det:
        for p in pick:
            det.detect(load_image(p))
            xs.append(det._x[0].copy())
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "calib.npy", np.stack(xs))
    (work / "calib.json").write_text(json.dumps([str(p.relative_to(DATA)) for p in pick], indent=0))
    print(f"{len(xs)} calibration inputs -> {work / 'calib.npy'}")


# --- quantize (/work/qenv) -----------------------------------------------------------------------------------------
def prepare_float(data: bytes) -> bytes:
    """MediaPipe's file as ai-edge-quantizer can read it: the same float network, four things changed.

    - Its operator codes use only the old ``deprecated_builtin_code`` field; the quantizer reads ``builtin_code``
      (0 = ADD there), so every op looked like an ADD and conv kernels were quantized as activations
      (per-tensor, asymmetric), which LiteRT then refuses (zero point != 0 on a conv filter).
    - Its weights are float16 behind 74 DEQUANTIZE ops; the quantizer calibrates their outputs as activations
      too. Each is folded into a float32 constant (float16 -> float32 is exact) and the op removed.
    - It has no signature, and calibration is fed by signature: 'serving_default' with input 'input' and
      outputs 'regressors', 'classificators' is added.
    - Each RELU is fused into the op before it (``fuse_relu``).
    """
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils as fu

    m = fu.read_model_from_bytearray(bytearray(data))
    for oc in m.operatorCodes:
        oc.builtinCode = max(oc.builtinCode, oc.deprecatedBuiltinCode)
    sg = m.subgraphs[0]
    kept, folded = [], 0
    for op in sg.operators:
        src = sg.tensors[op.inputs[0]]
        buf = m.buffers[src.buffer]
        if (m.operatorCodes[op.opcodeIndex].builtinCode == fb.BuiltinOperator.DEQUANTIZE
                and src.type == fb.TensorType.FLOAT16 and buf.data is not None and len(buf.data)):
            w = np.frombuffer(np.asarray(buf.data, np.uint8).tobytes(), np.float16).astype(np.float32)
            new = fb.BufferT()
            new.data = np.frombuffer(w.tobytes(), np.uint8)
            m.buffers.append(new)
            sg.tensors[op.outputs[0]].buffer = len(m.buffers) - 1
            folded += 1
        else:
            kept.append(op)
    sg.operators = kept
    sg.operators = kept = fuse_relu(m, sg)
    # drop the float16 tensors and buffers nothing reads now (the quantizer would carry them into its output)
    used = sorted({i for op in kept for i in (*op.inputs, *op.outputs) if i >= 0} | set(sg.inputs) | set(sg.outputs))
    remap = {old: new for new, old in enumerate(used)}
    sg.tensors = [sg.tensors[i] for i in used]
    for op in kept:
        op.inputs = [remap.get(i, -1) for i in op.inputs]
        op.outputs = [remap[i] for i in op.outputs]
    sg.inputs, sg.outputs = [remap[i] for i in sg.inputs], [remap[i] for i in sg.outputs]
    meta = list(m.metadataBuffer if m.metadataBuffer is not None else ())
    bufs = sorted({0} | {t.buffer for t in sg.tensors} | {x.buffer for x in m.metadata or ()} | set(meta))
    bremap = {old: new for new, old in enumerate(bufs)}
    m.buffers = [m.buffers[i] for i in bufs]
    for t in sg.tensors:
        t.buffer = bremap[t.buffer]
    for x in m.metadata or ():
        x.buffer = bremap[x.buffer]
    m.metadataBuffer = [bremap[i] for i in meta] or None

    def io(i):
        t = fb.TensorMapT()
        t.name, t.tensorIndex = sg.tensors[i].name.decode(), i
        return t

    sig = fb.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = "serving_default", 0
    sig.inputs, sig.outputs = [io(i) for i in sg.inputs], [io(i) for i in sg.outputs]
    m.signatureDefs = [sig]
    print(f"prepared: {folded} float16 weights folded, {len(kept)} ops, signature 'serving_default'")
    return bytes(fu.convert_object_to_bytearray(m))


def fuse_relu(m, sg) -> list:
    """The graph's ops with each RELU folded into the ADD or CONV_2D before it (as a fused activation), where that
    op's output feeds the RELU alone. In float this changes nothing; in int8 it matters twice: XNNPACK takes no
    standalone int8 RELU, so each one cut the graph out of the delegate (18 partitions, 3.3 ms against 0.9 ms
    float), and the ADD's output was quantized over its negative half too, which the RELU then threw away."""
    from ai_edge_litert import schema_py_generated as fb

    code = {i: oc.builtinCode for i, oc in enumerate(m.operatorCodes)}
    readers = collections.Counter(i for op in sg.operators for i in op.inputs)
    producer = {op.outputs[0]: op for op in sg.operators}
    relu = fb.ActivationFunctionType.RELU
    kept, fused = [], 0
    for op in sg.operators:
        if code[op.opcodeIndex] == fb.BuiltinOperator.RELU:
            before = producer.get(op.inputs[0])
            if (before is not None and readers[op.inputs[0]] == 1 and op.inputs[0] not in sg.outputs
                    and code[before.opcodeIndex] in (fb.BuiltinOperator.ADD, fb.BuiltinOperator.CONV_2D)
                    and before.builtinOptions.fusedActivationFunction == fb.ActivationFunctionType.NONE):
                before.builtinOptions.fusedActivationFunction = relu
                before.outputs = [op.outputs[0]]
                fused += 1
                continue
        kept.append(op)
    print(f"{fused} RELU ops fused into the op before them")
    return kept


def quantize(work: Path, out: Path) -> None:
    """Static int8 (ai-edge-quantizer's static_wi8_ai8: int8 activations per tensor, int8 weights per channel,
    min/max calibration) of the prepared float file, calibrated on calib.npy."""
    from ai_edge_quantizer import quantizer, recipe

    prepared = prepare_float(FLOAT.read_bytes())
    (work / "float_prepared.tflite").write_bytes(prepared)
    x = np.load(work / "calib.npy")
    q = quantizer.Quantizer(bytearray(prepared), recipe.static_wi8_ai8())
    qsv = q.calibrate({"serving_default": [{"input": x[i:i + 1]} for i in range(len(x))]}, num_threads=1)
    q.quantize(qsv).export_model(str(out), overwrite=True)
    print(f"{len(x)} calibration inputs -> {out} ({out.stat().st_size:,} bytes)")


# --- compare (main venv) -------------------------------------------------------------------------------------------
def compare(work: Path, candidate: Path) -> None:
    """Per training image: both detectors' detections (score >= 0.5, the default) through BlazeFace's decode; the
    best (highest-score) detection of each compared, and each matched to the annotated face."""
    sys.path.insert(0, str(REPO))
    from edgekd.core.detector import iou, match_box
    from edgekd.core.imageio import load_image, read_pts
    from edgekd.runtime.blazeface import BlazeFace

    val = validation_ids()
    rows = []
    with BlazeFace() as fdet, BlazeFace(path=candidate) as qdet:
        for face_id, path in training_images():
            image = load_image(path)
            points = read_pts(path.with_suffix(".pts"))
            f, q = fdet.detect(image), qdet.detect(image)
            row = {"id": face_id, "val": face_id in val, "n_float": len(f), "n_int8": len(q),
                   "float_hits_face": bool(f) and match_box([d.box for d in f], points) is not None,
                   "int8_hits_face": bool(q) and match_box([d.box for d in q], points) is not None}
            if f and q:
                a, b = f[0], q[0]
                side = max(a.box[2], a.box[3])
                err = np.linalg.norm(a.keypoints - b.keypoints, axis=1) / side
                row.update(iou=iou(a.box, b.box), kp_max=float(err.max()), kp_mean=float(err.mean()),
                           score_float=a.score, score_int8=b.score, box_side_px=side,
                           side_ratio=max(b.box[2], b.box[3]) / side)
            rows.append(row)
    (work / "compare.json").write_text(json.dumps({"candidate": str(candidate), "rows": rows}))
    print(json.dumps(summarize(rows), indent=1))


def summarize(rows: list[dict]) -> dict:
    out = {}
    for name, sel in (("train_all", rows), ("train_not_val", [r for r in rows if not r["val"]]),
                      ("val", [r for r in rows if r["val"]])):
        both = [r for r in sel if "iou" in r]
        v = {k: np.array([r[k] for r in both]) for k in ("iou", "kp_max", "kp_mean")}
        dscore = np.array([r["score_int8"] - r["score_float"] for r in both])

        def stats(a, worst):
            return {"median": float(np.median(a)), "p5": float(np.percentile(a, 5)),
                    "p95": float(np.percentile(a, 95)), "worst": float(worst(a))}

        worst_iou = sorted(both, key=lambda r: r["iou"])[:5]
        worst_kp = sorted(both, key=lambda r: -r["kp_max"])[:5]
        ok = (v["iou"] >= IOU_MIN) & (v["kp_max"] <= KEYPOINT_MAX)
        out[name] = {
            "images": len(sel), "both_found": len(both),
            "float_found_int8_not": [r["id"] for r in sel if r["n_float"] and not r["n_int8"]],
            "int8_found_float_not": [r["id"] for r in sel if r["n_int8"] and not r["n_float"]],
            "float_recall_annotated_face": sum(r["float_hits_face"] for r in sel) / len(sel),
            "int8_recall_annotated_face": sum(r["int8_hits_face"] for r in sel) / len(sel),
            "detection_count_differs": sum(r["n_float"] != r["n_int8"] for r in sel),
            "box_side_int8_over_float": stats(np.array([r["side_ratio"] for r in both]), np.max),
            "iou": stats(v["iou"], np.min), "keypoint_max_err_of_box_side": stats(v["kp_max"], np.max),
            "keypoint_mean_err_of_box_side": stats(v["kp_mean"], np.max),
            "score_int8_minus_float": {**stats(dscore, lambda a: a[np.argmax(np.abs(a))]),
                                       "median_abs": float(np.median(np.abs(dscore)))},
            "fraction_iou_ok": float(np.mean(v["iou"] >= IOU_MIN)),
            "fraction_keypoints_ok": float(np.mean(v["kp_max"] <= KEYPOINT_MAX)),
            "fraction_both_ok": float(np.mean(ok)),
            "worst_iou": [{k: r[k] for k in ("id", "iou", "kp_max", "score_float", "score_int8")} for r in worst_iou],
            "worst_keypoints": [{k: r[k] for k in ("id", "iou", "kp_max", "box_side_px")} for r in worst_kp],
        }
    return out


# --- time and ops (main venv) ---------------------------------------------------------------------------------------
def op_types(path: Path) -> dict:
    """Op type -> {input/output tensor types: count}, from the builtin kernels (XNNPACK off, so every op is seen),
    and what XNNPACK leaves outside its delegate with delegates on."""
    sys.path.insert(0, str(REPO))
    from edgekd.core.interpreter import make_interpreter

    interp, _ = make_interpreter(path, delegates=False)
    td = {t["index"]: np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    ops = collections.defaultdict(collections.Counter)
    for op in interp._get_ops_details():
        ins = ",".join(td[i] for i in op["inputs"] if i >= 0)
        ops[op["op_name"]][f"{ins} -> {','.join(td[i] for i in op['outputs'])}"] += 1
    delegated, _ = make_interpreter(path)
    left = collections.Counter(op["op_name"] for op in delegated._get_ops_details())
    return {"ops": {k: dict(v) for k, v in sorted(ops.items())}, "with_xnnpack": dict(left)}


def timing(work: Path, candidate: Path, rounds: int) -> None:
    """Median ms of ``invoke`` alone and of the whole ``detect`` (letterbox, input, invoke, decode), float and int8
    interleaved call by call in one process, one thread, on a few training images."""
    sys.path.insert(0, str(REPO))
    from edgekd.core.imageio import load_image
    from edgekd.core.timing import cpu_name
    from edgekd.runtime.blazeface import BlazeFace

    dets = {"float": BlazeFace(), "int8": BlazeFace(path=candidate)}
    out = {"images": {}}
    for rel in TIMING_IMAGES:
        image = load_image(DATA / rel)
        ms = {f"{k}_{w}": [] for k in dets for w in ("invoke", "detect")}
        for d in dets.values():  # warm up, and leave the image's input in the tensor for invoke alone
            for _ in range(20):
                d.detect(image)
        for _ in range(rounds):
            for k, d in dets.items():
                t0 = time.perf_counter()
                d.interp.invoke()
                ms[f"{k}_invoke"].append((time.perf_counter() - t0) * 1e3)
            for k, d in dets.items():
                t0 = time.perf_counter()
                d.detect(image)
                ms[f"{k}_detect"].append((time.perf_counter() - t0) * 1e3)
        out["images"][rel] = {"size": list(image.shape[:2]), **{k: float(np.median(v)) for k, v in ms.items()}}
        print(rel, out["images"][rel])
    med = {k: float(np.median([v[k] for v in out["images"].values()])) for k in next(iter(out["images"].values()))
           if k != "size"}
    out["median_over_images"] = med
    out["ratio_int8_over_float"] = {"invoke": med["int8_invoke"] / med["float_invoke"],
                                    "detect": med["int8_detect"] / med["float_detect"]}
    out["rounds"], out["threads"] = rounds, 1
    out["cpu"] = cpu_name()
    out["ops"] = {"float": op_types(FLOAT), "int8": op_types(candidate)}
    (work / "time.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("median_over_images", "ratio_int8_over_float", "cpu")}, indent=1))


def results(work: Path, candidate: Path) -> None:
    import hashlib

    sys.path.insert(0, str(REPO))
    from edgekd.core.interpreter import package_version

    comp = json.loads((work / "compare.json").read_text())
    out = {
        "what": "int8 BlazeFace short-range (ai-edge-quantizer static_wi8_ai8, calibrated on 300-W training images) "
                "against MediaPipe's float file, both through edgekd.runtime.blazeface.BlazeFace, score >= 0.5",
        "criteria": {"iou_min": IOU_MIN, "keypoint_max_err_of_box_side": KEYPOINT_MAX},
        "candidate": {"file": candidate.name, "bytes": candidate.stat().st_size,
                      "sha256": hashlib.sha256(candidate.read_bytes()).hexdigest()},
        "calibration_images": len(json.loads((work / "calib.json").read_text())),
        "runtime": f"ai-edge-litert {package_version('ai-edge-litert')}, XNNPACK",
        "agreement": summarize(comp["rows"]),
        "timing": json.loads((work / "time.json").read_text()),
    }
    agree = out["agreement"]
    out["meets_criteria"] = all(agree[k]["fraction_both_ok"] == 1.0 and not agree[k]["float_found_int8_not"]
                                and not agree[k]["int8_found_float_not"] for k in ("train_all", "val"))
    out["faster"] = out["timing"]["ratio_int8_over_float"]["detect"] < 1.0
    (HERE / "results.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"-> {HERE / 'results.json'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=("inputs", "quantize", "compare", "time", "results"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/detector_int8"))
    ap.add_argument("--candidate", type=Path, default=None, help="the int8 file (default: WORK/int8.tflite)")
    ap.add_argument("--every", type=int, default=4, help="calibrate on every Nth training image outside val")
    ap.add_argument("--rounds", type=int, default=400, help="timing: calls of each kind per image")
    a = ap.parse_args()
    candidate = a.candidate or a.work / "int8.tflite"
    if a.step == "inputs":
        make_inputs(a.work, a.every)
    elif a.step == "quantize":
        quantize(a.work, candidate)
    elif a.step == "compare":
        compare(a.work, candidate)
    elif a.step == "time":
        timing(a.work, candidate, a.rounds)
    else:
        results(a.work, candidate)


if __name__ == "__main__":
    main()
