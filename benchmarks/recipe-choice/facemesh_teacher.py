"""MediaPipe Face Mesh as the Tough teacher: its points on every training face, as a teacher-targets file.

Why: a KD student gains only from a teacher that knows clearly more than the student learns alone, and the
recipe's own MobileNetV2 teachers do not (the mean of two refines, 3.964 % mirror-averaged on validation, taught a
student to 0.992 x its plain control). Face Mesh with the 300-W point map (edgekd.bench.facemesh) scores 3.3 % on
the validation faces: a teacher 0.8 x the control, trained on other data. It did not move the student either
(facemesh-student.md beside this file).

Each face's stored crop of the prepared folder (its full context, 192 px at 128) goes through Face Mesh from the
ROI its annotated points give (``roi_from_points``, the bench's `gt` protocol: at training time the truth is known),
then the 68-point map. Its mirror-average (the mirrored crop too, mirrored back) is scored on validation and used
only with ``--mesh-flip``, as it scored worse there (3.349 against 3.315 %). The Tolerant role keeps a network's
outputs (``--tolerant``; with ``--flip`` mirror-averaged as the Distiller averages them). The file is the one
`edgekd data teach` writes, so `edgekd train --stage student --teacher-targets FILE` reads it.

    python benchmarks/recipe-choice/facemesh_teacher.py PREPARED --tolerant RUN/tolerant/best.h5 --flip --out fm.npz

Prints the validation NME of the Face Mesh teacher (single and mirror-averaged) and the training faces' NME of
both roles; ``--json`` writes them. The test split is not read; a prepared folder of other landmarks is refused.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgekd.bench.facemesh import FaceMeshModel, roi_from_points  # noqa: E402
from edgekd.bench.meshmap import MeshMap  # noqa: E402
from edgekd.core.crop import to_box  # noqa: E402
from edgekd.core.fileio import write_json  # noqa: E402
from edgekd.core.metrics import batch_nme  # noqa: E402
from edgekd.data.pipeline import PreparedData  # noqa: E402
from edgekd.training import teacher_targets  # noqa: E402


def mesh_points(fm: FaceMeshModel, mesh_map: MeshMap, image: np.ndarray, hard: np.ndarray) -> np.ndarray:
    """(68, 2) stored-image pixels: Face Mesh from the ROI of the annotated points, through the map."""
    roi = roi_from_points(hard, mesh_map.gt_offset, mesh_map.gt_scale)
    mesh, _ = fm.run(fm.crop(image, roi))
    return roi.to_image(mesh_map.apply(mesh[:, :2]))


def split_points(data: PreparedData, split: str, fm, mesh_map, mirror: bool = True):
    """(single, mirror-averaged or None without ``mirror``) (M, 68, 2) stored-image pixels of a split's faces."""
    s = data.split(split)
    perm = np.asarray(data.scheme.flip_permutation)
    size = s.images.shape[2]
    one, avg = [], []
    for image, hard in zip(s.images, s.hard):
        p = mesh_points(fm, mesh_map, np.ascontiguousarray(image), hard)
        one.append(p)
        if not mirror:
            continue
        mirrored_hard = hard[perm].copy()
        mirrored_hard[:, 0] = size - 1 - mirrored_hard[:, 0]
        q = mesh_points(fm, mesh_map, np.ascontiguousarray(image[:, ::-1]), mirrored_hard)[perm]
        q[:, 0] = size - 1 - q[:, 0]
        avg.append(0.5 * (p + q))
    return np.array(one), (np.array(avg) if mirror else None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("prepared")
    ap.add_argument("--tolerant", required=True, help="the Tolerant teacher's checkpoint (.h5)")
    ap.add_argument("--out", required=True, help="the teacher-targets .npz to write")
    ap.add_argument("--flip", action="store_true", help="mirror-average the Tolerant teacher")
    ap.add_argument("--mesh-flip", action="store_true", help="mirror-average Face Mesh too")
    ap.add_argument("--json", help="write the NME figures here")
    args = ap.parse_args(argv)

    data = PreparedData(args.prepared)
    fm, mesh_map = FaceMeshModel(), MeshMap.load()
    if data.num_points != mesh_map.num_points or data.scheme.name != "300w":
        sys.exit(f"{args.prepared}: {data.scheme.name} landmarks, but the Face Mesh map gives the 68 300-W points")
    pair = data.scheme.nme_pair
    offset = (data.manifest.store_size - data.input_size) / 2.0

    def box(stored_px):  # stored-image pixels -> box coordinates (teacher_targets.load's inverse)
        return to_box(data.crop.normalize(stored_px - offset), data.input_size).astype(np.float32)

    figures = {"prepared": str(Path(args.prepared).resolve()), "flip": args.flip, "mesh_flip": args.mesh_flip,
               "map": mesh_map.info.get("fitted_on")}
    t0 = time.time()
    val_one, val_avg = split_points(data, "val", fm, mesh_map)
    val_hard = data.split("val").hard
    figures["val_nme_facemesh"] = float(100 * batch_nme(val_one, val_hard, pair).mean())
    figures["val_nme_facemesh_flip"] = float(100 * batch_nme(val_avg, val_hard, pair).mean())
    train_one, train_avg = split_points(data, "train", fm, mesh_map, mirror=args.mesh_flip)
    tough = box(train_avg if args.mesh_flip else train_one)
    figures["facemesh_seconds"] = round(time.time() - t0, 1)

    from edgekd.core.checkpoint import load_model
    tolerant = teacher_targets.teacher_outputs(load_model(args.tolerant), data, "train", args.flip)
    hard = box(data.split("train").hard)
    meta = {"format": teacher_targets.FORMAT, "flip": args.flip, "mesh_flip": args.mesh_flip,
            "scheme": data.scheme.name, "margin": data.crop.margin, "faces": len(hard), "teachers": {
                "tough": {"networks": [{"checkpoint": "MediaPipe Face Mesh (face_landmark_with_attention.tflite) + "
                                                      "face_landmark_to_300w.npz, ROI from the annotated points"}]},
                "tolerant": {"networks": [{"checkpoint": str(Path(args.tolerant).resolve())}]}}}
    for role, t in (("tough", tough), ("tolerant", tolerant)):
        meta["teachers"][role]["train_nme"] = float(100 * batch_nme(t, hard, pair).mean())
        figures[f"train_nme_{role}"] = meta["teachers"][role]["train_nme"]
    teacher_targets.save(args.out, {"tough": tough, "tolerant": tolerant}, meta, teacher_targets.face_ids(data))
    print(json.dumps(figures, indent=1))
    if args.json:
        write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
