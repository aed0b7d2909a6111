"""Detector crops when the face fills less of the image: NME of one checkpoint on the validation faces, each image
shown as it is and centred on a black canvas 1.6 and 2.5 times its size, with the crop placed three ways: the box
mapping, a keypoint mapping fitted on the training images as they are (a prepared folder fitted with
`fit_detector_mapping(..., pads=(1.0,))`, e.g. one made before edgekd 0.7.0's padded views), and the keypoint mapping
of ``--prepared`` (fitted on padded views too). Why: the 300-W training images in ../shared are cut to about twice
the face, and BlazeFace's keypoints sit differently in its box when the face is smaller in the frame.

    .venv/bin/python benchmarks/keypoint_fit_views.py RUNS/train/300w-128-fastcpu/tight/baseline/best.h5 \\
        --as-is RUNS/data/300w-128-kp-v1 --prepared RUNS/data/300w-128-kp \\
        --out benchmarks/300w-128-fastcpu/v0.7.0/detector-crops-by-face-size.json
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from edgekd.core import logs  # noqa: E402
from edgekd.core.fileio import write_json  # noqa: E402

PADS = (1.0, 1.6, 2.5)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--prepared", type=Path, required=True, help="prepared folder with the keypoint mapping to test")
    ap.add_argument("--as-is", type=Path, required=True, help="prepared folder whose keypoint fit saw no padded views")
    ap.add_argument("--out", type=Path, help="also write the numbers as JSON")
    args = ap.parse_args(argv)
    logs.setup()

    from edgekd.core.checkpoint import load_model
    from edgekd.core.crop import invert, transform_points
    from edgekd.data.pipeline import PreparedData
    from edgekd.core.imageio import load_image, read_pts
    from edgekd.core.detector import match_box, padded_view
    from edgekd.runtime.blazeface import open_detector

    data = PreparedData.open(args.prepared)
    as_is = PreparedData.open(args.as_is).crop
    specs = {"box mapping": dataclasses.replace(data.crop, detector_keypoint_weights=None),
             "keypoints, fitted on the images as they are": as_is,
             "keypoints, fitted on padded views too": data.crop}
    model, (a, b) = load_model(args.checkpoint), data.scheme.nme_pair
    faces = [(load_image(f["image"]), read_pts(f["image"].rsplit(".", 1)[0] + ".pts", data.num_points))
             for f in data.split("val").faces]
    result = {}
    with open_detector() as detector:
        for pad in PADS:
            found = []
            for image, pts in faces:
                view, corner = padded_view(image, pad)
                dets = detector.detect(view)
                k = match_box([(x - corner[0], y - corner[1], w, h) for x, y, w, h in (d.box for d in dets)], pts)
                found.append(None if k is None else
                             ((dets[k].box[0] - corner[0], dets[k].box[1] - corner[1], dets[k].box[2], dets[k].box[3]),
                              np.asarray(dets[k].keypoints, np.float64) - corner))
            for name, spec in specs.items():
                cuts, truth, sizes = [], [], []
                for (image, pts), f in zip(faces, found):
                    if f is not None:
                        box = spec.box_from_detector(*f)
                        cuts.append(spec.crop(image, box)), truth.append(pts)
                        sizes.append(box[2] / spec.box_from_points(pts)[2] - 1)
                pred = model.predict(np.stack([c for c, _ in cuts]).astype(np.float32) / 255.0, verbose=0)
                errors = [np.linalg.norm(transform_points(spec.denormalize(p).reshape(-1, 2), invert(m)) - g, axis=1)
                          .mean() / np.linalg.norm(g[a] - g[b]) for p, (_, m), g in zip(pred, cuts, truth)]
                row = {"nme": float(100 * np.mean(errors)), "faces": len(errors),
                       "mean_size_error_pct": float(100 * np.mean(sizes))}
                result.setdefault(name, {})[str(pad)] = row
                print(f"canvas {pad} x: {name}: NME {row['nme']:.3f} % on {row['faces']} faces, crop size "
                      f"{row['mean_size_error_pct']:+.2f} %")
    if args.out:
        write_json(args.out, {"checkpoint": str(args.checkpoint), "prepared": str(args.prepared),
                              "as_is": str(args.as_is), "views": "each validation image centred on a black canvas "
                              "pad times its size", "results": result})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
