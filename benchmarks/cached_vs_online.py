"""A teacher run on augmented training crops against its cached output (`edgekd data teach`) moved by the same
augmentation: how far each is from the ground truth, and from each other (NME %, inter-ocular).

Why: KD-Loss's assistive terms use how far the teacher is from the truth on the very batch the student sees; a
cached teacher saw the canonical crop, so on a rotated or shifted sample it is a different teacher.

    .venv/bin/python benchmarks/cached_vs_online.py RUNS/train/300w-128-fastcpu/teachers/tough/best.h5 \\
        --prepared RUNS/data/300w-128 --targets RUNS/targets/teachers-flip.npz --role tough --samples 600
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from edgekd.core import logs  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path, help="the teacher (a network of the prepared folder's input size)")
    ap.add_argument("--prepared", type=Path, required=True)
    ap.add_argument("--targets", type=Path, required=True, help="the `edgekd data teach` file holding its outputs")
    ap.add_argument("--role", choices=("tough", "tolerant"), default="tough")
    ap.add_argument("--samples", type=int, default=600)
    ap.add_argument("--augment", default="light", help="augmentation preset, as `train --augment`")
    args = ap.parse_args(argv)
    logs.setup()

    from edgekd.training import teacher_targets
    from edgekd.core.checkpoint import load_model
    from edgekd.data.augment import AugmentConfig
    from edgekd.data.pipeline import PreparedData
    from edgekd.core.metrics import batch_nme

    data = PreparedData.open(args.prepared)
    data.attach_guides(teacher_targets.load(args.targets, data))
    flip = teacher_targets.describe(args.targets)["flip"]
    model = load_model(args.checkpoint)
    aug = AugmentConfig.preset(args.augment)
    rng = np.random.default_rng(0)
    crops, hard, cached = [], [], []
    for i in rng.choice(len(data.split("train")), min(args.samples, len(data.split("train"))), replace=False):
        crop, points, _ = data.sample_points("train", int(i), np.random.default_rng(int(i)), aug)
        crops.append(crop), hard.append(points["hard"]), cached.append(points[args.role])
    x = np.stack(crops).astype(np.float32) / 255.0
    size, n = data.input_size, data.num_points
    online = data.crop.denormalize(model.predict(x, verbose=0)).reshape(len(x), n, 2)
    if flip:  # as the file was made: each output averaged with the mirrored crop's, mirrored back
        mirrored = data.crop.denormalize(model.predict(np.ascontiguousarray(x[:, :, ::-1]), verbose=0))
        online = 0.5 * (online + np.stack([data.scheme.flip(p, size) for p in mirrored.reshape(len(x), n, 2)]))
    hard, cached = np.stack(hard), np.stack(cached)

    def nme(a, b) -> float:
        return float(100 * batch_nme(a, b, data.scheme.nme_pair).mean())

    print(f"{len(x)} augmented training crops ({args.augment}): the teacher run on them {nme(online, hard):.2f} %, "
          f"its cached output moved by the augmentation {nme(cached, hard):.2f} %, the two apart "
          f"{nme(online, cached):.2f} %")


if __name__ == "__main__":
    main()
