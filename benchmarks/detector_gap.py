"""Why detector crops score worse than ground-truth crops: content, or only how far the box lands from the face?

On the validation faces of a prepared folder (never the test set), a Keras checkpoint is scored three ways, errors
in the original image, inter-ocular normalisation (the bench's protocol):
  gt        crops from the landmark box (the `--crop gt` protocol);
  detector  crops from BlazeFace's box (and keypoints) through the prepared folder's fitted mapping (`--crop
            detector`);
  shuffled  crops from the landmark box moved by *another* face's detector residual (its offset and scale against
            its own landmark box): the same spread of box errors as the detector's, with no link to the face's
            content. If `shuffled` scores like `detector`, the gap is the box jitter itself (a network that is
            more robust to where the face sits in the crop, or a re-crop, closes it); if it scores like `gt`, the
            detector errs on particular faces in ways training on detector crops could learn.

    .venv/bin/python benchmarks/detector_gap.py RUNS/train/300w-128-fastcpu/plain-wing2/baseline/best.h5 \\
        --prepared RUNS/data/300w-128 --draws 3
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from edgekd.core import logs  # noqa: E402
from edgekd.core.fileio import write_json  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--prepared", type=Path, required=True, help="prepared folder (its validation faces)")
    ap.add_argument("--draws", type=int, default=3, help="shuffles of the residuals")
    ap.add_argument("--out", type=Path, help="also write the numbers as JSON")
    args = ap.parse_args(argv)
    logs.setup()

    from edgekd.core.checkpoint import load_model
    from edgekd.core.crop import invert, transform_points
    from edgekd.data.pipeline import PreparedData
    from edgekd.core.imageio import load_image, read_pts
    from edgekd.core.detector import FaceDetector, match_box

    data = PreparedData.open(args.prepared)
    crop, (a, b) = data.crop, data.scheme.nme_pair
    model = load_model(args.checkpoint)
    images, points, boxes = [], [], []
    with FaceDetector() as detector:
        for face in data.split("val").faces:
            image = load_image(face["image"])
            pts = read_pts(face["image"].rsplit(".", 1)[0] + ".pts", data.num_points)
            found = detector.detect(image)
            k = match_box([d.box for d in found], pts)
            if k is not None:  # a missed face has no detector crop to compare
                images.append(image), points.append(pts), boxes.append(found[k])

    def nme(crop_boxes) -> float:
        cut = [crop.crop(im, box) for im, box in zip(images, crop_boxes)]
        pred = model.predict(np.stack([c for c, _ in cut]).astype(np.float32) / 255.0, verbose=0)
        errors = []
        for p, (_, m), gt in zip(pred, cut, points):
            q = transform_points(crop.denormalize(p).reshape(-1, 2), invert(m))
            errors.append(np.linalg.norm(q - gt, axis=1).mean() / np.linalg.norm(gt[a] - gt[b]))
        return float(100 * np.mean(errors))

    gt = [crop.box_from_points(p) for p in points]
    det = [crop.box_from_detector(d.box, d.keypoints) for d in boxes]  # keypoints: when the folder has a keypoint fit
    residual = np.array([[(x1 - x0) / s0, (y1 - y0) / s0, s1 / s0 - 1] for (x0, y0, s0), (x1, y1, s1) in zip(gt, det)])
    rng = np.random.default_rng(0)
    shuffled = []
    for _ in range(args.draws):
        other = rng.permutation(len(gt))
        shuffled.append(nme([(x + residual[j, 0] * s, y + residual[j, 1] * s, s * (1 + residual[j, 2]))
                             for (x, y, s), j in zip(gt, other)]))
    result = {"checkpoint": str(args.checkpoint), "faces": len(gt), "missed": len(data.split("val").faces) - len(gt),
              "gt": nme(gt), "detector": nme(det), "shuffled": shuffled,
              "residual_mean": residual.mean(0).tolist(), "residual_std": residual.std(0).tolist()}
    print(f"{len(gt)} validation faces ({result['missed']} missed by the detector): gt crops {result['gt']:.3f} %, "
          f"detector crops {result['detector']:.3f} %, gt crops moved by other faces' detector residuals "
          f"{', '.join(f'{v:.3f}' for v in shuffled)} %")
    print("detector box against the landmark box, in box sides: offset x, y and scale - 1: mean "
          f"{np.round(residual.mean(0), 4).tolist()}, std {np.round(residual.std(0), 4).tolist()}")
    if args.out:
        write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
