"""Check edgekd's Face Mesh pipeline (edgekd.bench.facemesh, LiteRT) against MediaPipe's own graph, and rank the two
Face Mesh networks the way MediaPipe itself runs them.

MediaPipe 0.10.21 (the last wheel with `mp.solutions.face_mesh` and its models) cannot share edgekd's venv
(numpy < 2, protobuf < 5), so this runs in two steps:

1. In a venv of its own (`python3.11 -m venv mp && mp/bin/pip install "numpy<2" "protobuf>=4.25.3,<5" absl-py attrs
   flatbuffers "opencv-python-headless<4.11" matplotlib && mp/bin/pip install --no-deps mediapipe==0.10.21`):
       mp/bin/python benchmarks/facemesh_vs_mediapipe.py dump --prepared /work/runs/data/300w-128 --out mp.npy
   runs FaceMesh(static_image_mode=True) with refine_landmarks off (face_landmark.tflite) and on (the attention
   model) on the prepared folder's train + val faces (300-W training images) and saves every face's points.
2. In edgekd's venv, with the caches `benchmarks/fit_facemesh_map.py --cache` wrote for each network:
       python benchmarks/facemesh_vs_mediapipe.py compare --dump mp.npy --cache plain=plain.npz \
           --cache attention=attention.npz
   prints how far edgekd's points are from MediaPipe's (per point, % of the outer-eye-corner distance), and the
   validation residual of a map fitted on the training faces to MediaPipe's own points, for each network.

Measured (1,675 faces): edgekd vs MediaPipe 0.58 % (attention) / 0.55 % (plain) median per
point; map residual on the 168 validation faces from MediaPipe's own points 3.38 % (attention) against 3.76 %
(plain), the ranking edgekd's pipeline gives too (3.36 against 3.74).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def dump(prepared: str, out: str) -> None:
    """Step 1 (mediapipe 0.10.21's venv): every face's FaceMesh points in image pixels, edgekd's convention (pixel
    centres at integers), both networks."""
    import cv2
    import mediapipe as mp
    import numpy as np

    faces = [(split, f["id"], f["image"]) for split in ("train", "val")
             for f in json.loads((Path(prepared) / split / "faces.json").read_text())]
    found = {}
    for key, refine in (("plain", False), ("attention", True)):
        mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=4, refine_landmarks=refine,
                                               min_detection_confidence=0.5)
        found[key] = []
        for _, _, path in faces:
            image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
            h, w = image.shape[:2]
            result = mesh.process(image)
            found[key].append([np.array([(p.x * w - 0.5, p.y * h - 0.5, p.z * w) for p in f.landmark], np.float32)
                               for f in (result.multi_face_landmarks or [])])
        mesh.close()
    np.save(out, np.array({"ids": [f[1] for f in faces], "split": [f[0] for f in faces], **found}, dtype=object),
            allow_pickle=True)


def compare(dump_path: str, caches: list[str]) -> None:
    """Step 2 (edgekd's venv)."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from edgekd.bench.facemesh import Roi, fit_ridge
    from edgekd.core.detector import match_box, points_box
    from edgekd.core.metrics import batch_nme

    ref = np.load(dump_path, allow_pickle=True).item()
    for item in caches:
        key, path = item.split("=", 1)
        z = np.load(path)
        if list(z["ids"]) != list(ref["ids"]):
            raise SystemExit(f"{path}: not the same faces as {dump_path}")
        pts, rois, train = z["points"], z["det_roi"], z["split"] == "train"
        iod = np.linalg.norm(pts[:, 36] - pts[:, 45], axis=1)
        gap, used, theirs = [], [], []
        for i, (roi, mesh) in enumerate(zip(rois, z["det_mesh"])):
            faces = ref[key][i]
            k = match_box([points_box(f[:, :2]) for f in faces], pts[i]) if faces else None
            if k is None or not np.isfinite(roi[0]):
                continue
            mine = Roi(*roi).to_image(mesh[:, :2])
            gap.append(np.linalg.norm(mine - faces[k][:468, :2], axis=1).mean() / iod[i] * 100)
            used.append(i)
            theirs.append(Roi(*roi).to_normalised(faces[k][:468, :2]).ravel())
        used, x = np.array(used), np.array(theirs)
        y = np.stack([Roi(*rois[i]).to_normalised(pts[i]).ravel() for i in used])
        tr = train[used]
        w = fit_ridge(x[tr], y[tr], 1e-6)
        u = (x[~tr] @ w[:-1] + w[-1]).reshape(-1, 68, 2)
        pred = np.stack([Roi(*rois[i]).to_image(q) for i, q in zip(used[~tr], u)])
        val = 100 * batch_nme(pred, pts[used[~tr]], (36, 45)).mean()
        print(f"{key}: {len(used)} faces; edgekd vs MediaPipe per point, % eye-corner distance: median "
              f"{np.median(gap):.3f}, p90 {np.percentile(gap, 90):.3f}; map on MediaPipe's own points, validation "
              f"NME {val:.3f} % ({(~tr).sum()} faces)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    d = sub.add_parser("dump", help="step 1, in mediapipe 0.10.21's venv")
    d.add_argument("--prepared", required=True)
    d.add_argument("--out", required=True)
    c = sub.add_parser("compare", help="step 2, in edgekd's venv")
    c.add_argument("--dump", required=True)
    c.add_argument("--cache", action="append", required=True, help="NAME=fit_facemesh_map.py --cache file; NAME is "
                                                                    "plain or attention")
    args = ap.parse_args(argv)
    if args.step == "dump":
        dump(args.prepared, args.out)
    else:
        compare(args.dump, args.cache)


if __name__ == "__main__":
    main()
