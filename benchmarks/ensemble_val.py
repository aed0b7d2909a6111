"""Validation NME of networks and of their ensembles, each flip-averaged: which teacher to give `edgekd data teach`.

Each checkpoint runs on the prepared folder of its input size (the folders must hold the same faces), on the
validation split only; outputs are compared in box coordinates (`core.crop.to_box`), so 128 and 160 px
networks average correctly. Prints one line per network (single pass, flip-averaged) and one per ensemble of
2..--max networks (the mean of their flip-averaged outputs), best first.

    .venv/bin/python benchmarks/ensemble_val.py RUNS/train/300w-128-fastcpu/plain-wing2/baseline/best.h5 \\
        RUNS/train/300w-160-fastcpu/spatial160/baseline/best.h5 \\
        --prepared RUNS/data/300w-128 --prepared RUNS/data/300w-160 --max 3
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from edgekd.core import logs  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--prepared", type=Path, action="append", required=True,
                    help="prepared folder of one input size (repeat for each size the checkpoints take)")
    ap.add_argument("--max", type=int, default=3, help="largest ensemble scored")
    ap.add_argument("--out", type=Path, help="also write every figure to this JSON file")
    args = ap.parse_args(argv)
    logs.setup()

    from edgekd.core.checkpoint import load_model
    from edgekd.data.pipeline import PreparedData
    from edgekd.core.metrics import batch_nme
    from edgekd.core.crop import to_box
    from edgekd.training.teacher_targets import teacher_outputs

    folders = {d.input_size: d for d in (PreparedData.open(p) for p in args.prepared)}
    base = folders[min(folders)]
    ids = [f["id"] for f in base.split("val").faces]
    for d in folders.values():
        if [f["id"] for f in d.split("val").faces] != ids:
            sys.exit(f"error: {d.root}: not the same validation faces as {base.root}")
    truth = to_box(base.crop.normalize(base.arrays("val")[1]), base.input_size)

    def nme(pred) -> float:
        return float(100 * batch_nme(pred, truth, base.scheme.nme_pair).mean())

    flipped, networks = {}, []
    for path in args.checkpoints:
        model = load_model(path)
        size = model.input_shape[1]
        if size not in folders:
            sys.exit(f"error: {path}: takes {size} px crops; give a prepared folder of that size with --prepared")
        single = teacher_outputs(model, folders[size], "val", flip=False)
        flipped[path] = teacher_outputs(model, folders[size], "val", flip=True)
        print(f"{path}: {nme(single):.3f} single, {nme(flipped[path]):.3f} flip-averaged")
        networks.append({"checkpoint": str(path), "input_size": size, "val_nme": nme(single),
                         "val_nme_flip": nme(flipped[path])})
    rows = []
    for k in range(2, min(args.max, len(args.checkpoints)) + 1):
        for combo in itertools.combinations(args.checkpoints, k):
            rows.append((nme(np.mean([flipped[p] for p in combo], axis=0)), combo))
    for value, combo in sorted(rows, key=lambda r: r[0]):
        print(f"{value:.3f}  " + " + ".join(str(p) for p in combo))
    if args.out:
        from edgekd.core.fileio import write_json

        write_json(args.out, {"split": "val", "faces": len(ids), "units": "NME % of the inter-ocular distance; "
                              "ensembles: the mean of the networks' flip-averaged outputs", "networks": networks,
                              "ensembles": [{"checkpoints": [str(p) for p in combo], "val_nme_flip": value}
                                            for value, combo in sorted(rows, key=lambda r: r[0])]})


if __name__ == "__main__":
    main()
