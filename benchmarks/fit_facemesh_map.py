"""Refit the MediaPipe Face Mesh -> 300-W map that `edgekd bench --compare mediapipe` uses
(edgekd/assets/face_landmark_to_300w.npz), on the 300-W training faces only, and report its residual on the
validation faces.

    python benchmarks/fit_facemesh_map.py --root ../shared/data/300w --prepared /work/runs/data/300w-128 \
        [--compare-model mpw/face_landmark.tflite] [--out edgekd/assets/face_landmark_to_300w.npz] [--cache F.npz]

(the shipped map was written by this command with --compare-model pointing at face_landmark.tflite taken out of the
mediapipe 0.10.21 wheel, which records the plain network's residuals beside the attention one's; about 2 minutes
on 2 cores).

Which faces: the prepared folder's train/faces.json (fit) and val/faces.json (residual), both taken from the 300-W
training images (lfpw + helen trainset); the test faces are never read. Steps:

1. Every face through BlazeFace short-range (LiteRT) and MediaPipe's detector ROI (edgekd.bench.facemesh).
2. The gt ROI's convention: where the detector ROI sits relative to the square around the annotated points in the
   eye-corner frame (centre offset in that frame, in sides, and the side's ratio), 10 %-trimmed means over the
   training faces the detector found (edgekd.core.detector.fit_box_mapping's rule).
3. The network (the shipped face_landmark_with_attention.tflite, or --model) on both ROIs of every face; the 468
   mesh (x, y) (lips and eyes refined, for the attention model) and the 68 annotated points each in its ROI's
   normalised frame (crop x / 192 - 0.5).
4. A ridge map [mesh, 1] -> 68 points, fitted on the training faces' crops of both ROIs together (so it serves both
   protocols), the ridge picked by 5-fold cross-validation on the training faces alone.
5. Residual: NME (% of the outer-eye-corner distance, edgekd.core.metrics) of the mapped points against the annotation,
   on the validation faces, per ROI; and the fit's own (training) residual beside it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgekd.bench.facemesh import FaceMeshModel, roi_from_detection, roi_from_points  # noqa: E402
from edgekd.bench.meshmap import MAP_FILE, NUM_MESH, MeshMap, fit_ridge  # noqa: E402
from edgekd.core.detector import match_box  # noqa: E402
from edgekd.core.errors import DataError  # noqa: E402

RIDGES = (1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3)


def read_faces(root, prepared):
    """(train samples, val samples): the prepared folder's lists, looked up among 300-W's training faces."""
    from edgekd.data.readers import read_dataset

    by_id = {s.id: s for s in read_dataset("300w", root, "train")}
    out = []
    for split in ("train", "val"):
        ids = [f["id"] for f in json.loads((Path(prepared) / split / "faces.json").read_text())]
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise DataError(f"{prepared}/{split}: {len(missing)} faces (first {missing[0]}) not in --root {root}")
        out.append([by_id[i] for i in ids])
    return out


def run_faces(samples, model, detector):
    """Per face: the annotation and, where BlazeFace finds the face, MediaPipe's detector ROI, its mesh and
    presence. Images are not kept (a few GB for 300-W's photos): ``add_gt_meshes`` reads them again."""
    from tqdm import tqdm

    from edgekd.core.imageio import load_image

    rows = []
    for s in tqdm(samples, desc="face mesh, detector ROI", unit="face", leave=False):
        image = load_image(s)
        dets = detector.detect(image)
        k = match_box([d.box for d in dets], s.points)
        row = {"id": s.id, "sample": s, "points": np.asarray(s.points, np.float64)}
        if k is not None:
            roi = roi_from_detection(dets[k].box, dets[k].keypoints)
            mesh, presence = model.run(model.crop(image, roi))
            row.update(det_roi=roi, det_mesh=mesh, det_presence=presence)
        rows.append(row)
    return rows


def fit_gt_convention(rows):
    """(offset, scale, faces, spread): where the detector ROI sits relative to the square around the annotation in
    the eye-corner frame (roi_from_points without offset), by edgekd.core.detector.fit_box_mapping's trimmed means."""
    from edgekd.core.detector import fit_box_mapping

    pairs = []
    for r in rows:
        if "det_roi" not in r:
            continue
        base, det = roi_from_points(r["points"]), r["det_roi"]
        frame = type(base)(0.0, 0.0, 1.0, base.angle)  # rotation alone: the eye-corner frame at image scale
        cx, cy = frame.to_normalised(np.array([[base.cx, base.cy]]))[0]
        tx, ty = frame.to_normalised(np.array([[det.cx, det.cy]]))[0]
        pairs.append(((cx - base.side / 2, cy - base.side / 2, base.side, base.side), (tx, ty, det.side)))
    offset, scale, spread = fit_box_mapping(pairs)
    return offset, scale, len(pairs), spread


def add_gt_meshes(rows, model, offset, scale):
    from tqdm import tqdm

    from edgekd.core.imageio import load_image

    for r in tqdm(rows, desc="face mesh, gt ROI", unit="face", leave=False):
        roi = roi_from_points(r["points"], offset, scale)
        r["gt_roi"] = roi
        r["gt_mesh"], r["gt_presence"] = model.run(model.crop(load_image(r["sample"]), roi))


def save_cache(path, rows_tr, rows_va):
    rows = rows_tr + rows_va
    nan_mesh, nan_roi = np.full((NUM_MESH, 3), np.nan), (np.nan,) * 4

    def roi(r, k):
        v = r.get(k)
        return nan_roi if v is None else (v.cx, v.cy, v.side, v.angle)

    np.savez_compressed(path, ids=np.array([r["id"] for r in rows]), split=np.array(["train"] * len(rows_tr) +
                        ["val"] * len(rows_va)), points=np.stack([r["points"] for r in rows]),
                        det_mesh=np.stack([r.get("det_mesh", nan_mesh) for r in rows]),
                        det_roi=np.array([roi(r, "det_roi") for r in rows]),
                        det_presence=np.array([r.get("det_presence", np.nan) for r in rows]),
                        gt_mesh=np.stack([r["gt_mesh"] for r in rows]),
                        gt_roi=np.array([roi(r, "gt_roi") for r in rows]),
                        gt_presence=np.array([r["gt_presence"] for r in rows]))


def design(rows, which):
    """(features (F, 936), targets (F, 136), rows used) of one ROI kind."""
    used = [r for r in rows if f"{which}_mesh" in r]
    x = np.stack([r[f"{which}_mesh"][:, :2].ravel() for r in used])
    y = np.stack([r[f"{which}_roi"].to_normalised(r["points"]).ravel() for r in used])
    return x, y, used


def residual_nme(mesh_map, rows, which):
    """Mean NME % (image pixels, edgekd.core.metrics) of the mapped points on ``rows``' ``which`` ROI crops."""
    from edgekd.core.metrics import nme
    from edgekd.core.schemes import get_scheme

    scheme = get_scheme("300w")
    errs = [nme(r[f"{which}_roi"].to_image(mesh_map.apply(r[f"{which}_mesh"][:, :2])), r["points"], scheme)
            for r in rows if f"{which}_mesh" in r]
    return 100 * float(np.mean(errs)), len(errs)


def pick_ridge(x, y, groups, folds=5, seed=0):
    """The ridge with the smallest 5-fold cross-validated mean point error (normalised frame), folds by face so a
    face's two crops stay in one fold."""
    rng = np.random.default_rng(seed)
    faces = np.unique(groups)
    fold_of = dict(zip(rng.permutation(faces), np.arange(len(faces)) % folds))
    f = np.array([fold_of[g] for g in groups])
    scores = {}
    for lam in RIDGES:
        err = []
        for k in range(folds):
            w = fit_ridge(x[f != k], y[f != k], lam)
            p = (x[f == k] @ w[:-1] + w[-1]).reshape(-1, 68, 2)
            err.append(np.linalg.norm(p - y[f == k].reshape(-1, 68, 2), axis=-1).mean(-1))
        scores[lam] = float(np.mean(np.concatenate(err)))
    return min(scores, key=scores.get), scores


def fit_model(model_path, train, val, detector, prepared, cache=None):
    """The map of one Face Mesh network (steps 1-5 of the module's docstring): (MeshMap, its info)."""
    model = FaceMeshModel(model_path)
    rows_tr, rows_va = run_faces(train, model, detector), run_faces(val, model, detector)
    offset, scale, used, spread = fit_gt_convention(rows_tr)
    add_gt_meshes(rows_tr + rows_va, model, offset, scale)
    if cache:
        save_cache(cache, rows_tr, rows_va)
    xd, yd, ud = design(rows_tr, "det")
    xg, yg, ug = design(rows_tr, "gt")
    x, y = np.vstack([xd, xg]), np.vstack([yd, yg])
    groups = np.array([r["id"] for r in ud] + [r["id"] for r in ug])
    ridge, cv = pick_ridge(x, y, groups)
    weights = fit_ridge(x, y, ridge)
    info = {"fitted_on": f"300-W training faces: {prepared}/train/faces.json ({len(train)} faces; "
                         f"{len(ud)} found by BlazeFace short-range) - detector-ROI and gt-ROI crops together",
            "model": f"{Path(model.path).name} ({model.runtime})",
            "features": f"{NUM_MESH} mesh (x, y) in the ROI's normalised frame (crop x / 192 - 0.5)"
                        + (", lips and eyes refined by the attention model" if model.attention else "") + ", and 1",
            "targets": "68 300-W points in the same frame",
            "ridge": ridge, "ridge_by": "5-fold cross-validation on the training faces (folds by face)",
            "cv_error_normalised_frame": cv,
            "gt_roi": {"offset": list(offset), "scale": scale, "faces": used, "spread_mad": list(spread),
                       "rule": "detector ROI vs the eye-corner-frame square of the annotation, 10%-trimmed means "
                               "(edgekd.core.detector.fit_box_mapping)"},
            "script": "benchmarks/fit_facemesh_map.py"}
    mesh_map = MeshMap(weights, offset, scale, info)
    for name, rows in (("train", rows_tr), ("val", rows_va)):
        for which in ("det", "gt"):
            v, n = residual_nme(mesh_map, rows, which)
            info[f"residual_nme_{name}_{which}"] = {"nme_percent": round(v, 4), "faces": n}
    info["val_faces"] = f"{prepared}/val/faces.json ({len(val)} faces, never fitted on)"
    info["presence_below_0.5"] = {k: int(sum(r.get(f"{w}_presence", 1) < 0.5 for r in rs))
                                  for k, rs, w in (("train_det", rows_tr, "det"), ("val_det", rows_va, "det"),
                                                   ("train_gt", rows_tr, "gt"), ("val_gt", rows_va, "gt"))}
    return MeshMap(weights, offset, scale, info), info


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="300-W root (its training images)")
    ap.add_argument("--prepared", required=True, help="prepared folder whose train/val face lists split them")
    ap.add_argument("--out", default=str(MAP_FILE), help="the map file to write (default: the shipped one)")
    ap.add_argument("--model", default=None, help="the Face Mesh .tflite to fit for (default: the shipped one)")
    ap.add_argument("--compare-model", action="append", default=[],
                    help="another Face Mesh .tflite (e.g. face_landmark.tflite from the mediapipe 0.10.21 wheel) "
                         "fitted the same way; its residuals are recorded beside the shipped one's")
    ap.add_argument("--cache", default=None, help="also save every face's meshes and ROIs here (.npz), to try other "
                                                  "maps without running the network again")
    args = ap.parse_args(argv)

    from edgekd.runtime.blazeface import open_detector

    t0 = time.time()
    train, val = read_faces(args.root, args.prepared)
    with open_detector() as det:
        mesh_map, info = fit_model(args.model, train, val, det, args.prepared, args.cache)
        for other in args.compare_model:
            _, o = fit_model(other, train, val, det, args.prepared)
            info.setdefault("compared_models", {})[Path(other).name] = {
                k: o[k] for k in ("model", "ridge", *(f"residual_nme_{a}_{b}" for a in ("train", "val")
                                                      for b in ("det", "gt")))}
    mesh_map.save(args.out)
    print(json.dumps(info, indent=1))
    print(f"wrote {args.out} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
