"""Two training runs side by side, epoch by epoch, on validation: the means of their validation NME over blocks of
epochs and the ratio of each run's means to the first run's. For runs compared as they train (or stopped before
their end, where no summary.json exists yet for benchmarks/ablation_table.py): an epoch's NME on 168 faces moves by
0.1-0.3 from one epoch to the next, so blocks of 10 epochs are what can be compared.

    .venv/bin/python benchmarks/recipe-choice/epoch_means.py RUN/tough KD_RUN/student \\
        --names plain facemesh --out benchmarks/recipe-choice/facemesh-long.json

Writes the JSON and the same name with .png (each run's validation NME per epoch). No test image is read.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ablation_table import curves_plot  # noqa: E402

from edgekd.core.fileio import write_json  # noqa: E402


def val_nme(stage: Path) -> dict[int, float]:
    """Epoch -> validation NME from a stage folder's log.csv (the last line of an epoch logged twice, by a resume)."""
    log = stage / "log.csv"
    if not log.is_file():
        sys.exit(f"error: {log}: not found; expected a training stage folder")
    with open(log, newline="") as f:
        return {int(r["epoch"]): float(r["val_nme"]) for r in csv.DictReader(f)}


def block_means(runs: dict[str, dict[int, float]], block: int = 10) -> list[dict]:
    """Blocks of ``block`` epochs that every run has finished: each run's mean, and its ratio to the first run's."""
    names = list(runs)
    last = min(max(r) for r in runs.values())
    rows = []
    for start in range(1, last - block + 2, block):
        epochs = range(start, start + block)
        if not all(all(e in r for e in epochs) for r in runs.values()):
            continue
        means = {n: statistics.fmean(runs[n][e] for e in epochs) for n in names}
        rows.append({"epochs": [start, start + block - 1], "mean_val_nme": means,
                     "ratio_to_first": {n: means[n] / means[names[0]] for n in names[1:]}})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stages", nargs="+", type=Path, help="training stage folders; the first is the reference")
    ap.add_argument("--names", nargs="+", help="a name per stage (default: run/stage)")
    ap.add_argument("--block", type=int, default=10, help="epochs per block")
    ap.add_argument("--out", type=Path, required=True, help="the JSON to write (and the same name with .png)")
    args = ap.parse_args(argv)
    names = args.names or [f"{s.parent.name}/{s.name}" for s in args.stages]
    if len(names) != len(args.stages) or len(set(names)) != len(names):
        sys.exit("error: --names: expected one distinct name per stage folder")
    runs = {n: val_nme(s) for n, s in zip(names, args.stages)}
    blocks = block_means(runs, args.block)
    common = min(max(r) for r in runs.values())  # the epochs every run has logged
    best = {n: min(v for e, v in r.items() if e <= common) for n, r in runs.items()}
    write_json(args.out, {"runs": {n: {"stage_dir": str(s), "epochs_logged": max(runs[n]),
                                       "best_val_nme": min(runs[n].values()), "best_val_nme_common": best[n]}
                                   for n, s in zip(names, args.stages)},
                          "common_epochs": common, "block": args.block, "blocks": blocks})
    curves_plot([{"run": n, "stage_dir": str(s), "val_nme": best[n]} for n, s in zip(names, args.stages)],
                args.out.with_suffix(".png"), f"Validation NME per epoch, the {common} epochs every run has logged "
                "(legend: best of them)", last_epoch=common)
    for b in blocks:
        print(f"epochs {b['epochs'][0]}-{b['epochs'][1]}: " + ", ".join(
            f"{n} {m:.3f}" for n, m in b["mean_val_nme"].items()) + "; ratio " + ", ".join(
            f"{r:.3f}" for r in b["ratio_to_first"].values()))


if __name__ == "__main__":
    main()
