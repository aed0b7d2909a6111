"""The ablation table of benchmarks/README.md from the runs of benchmarks/ablate_recipe.sh.

Each finished run (<ablation folder>/<name>/baseline/summary.json) gives its validation NME (the checkpoint chosen
on it), epochs, steps and wall time; its best.h5 is then scored on the 300-W common test set with `edgekd bench`'s
ground-truth crops (the same protocol as the results page, errors in the original image, inter-ocular
normalisation), one model at a time, read once, after every choice was made. Prints a Markdown table and writes it
(with the numbers as JSON, and the validation curves of every run as a PNG) where --out says.

    .venv/bin/python benchmarks/ablation_table.py /work/edgekd-runs/train/300w-128-ablation-e30 \\
        --data ../shared/data/300w --out benchmarks/300w-128-fastcpu/ablation.md
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekd.fileio import write_json, write_text  # noqa: E402

# the order of the table: the paper's settings, each change alone, every change together
ORDER = ["paper", "paper+l1", "paper+cosine", "paper+mean-shape-head", "paper+input-norm", "paper+light-augment",
         "fast-cpu"]


def finished_runs(folder: Path) -> list[dict]:
    rows = []
    for run in sorted(folder.iterdir(), key=lambda p: (ORDER.index(p.name) if p.name in ORDER else 99, p.name)):
        summary, config = run / "baseline" / "summary.json", run / "baseline" / "config.json"
        if not summary.is_file():
            continue
        s, c = json.loads(summary.read_text()), json.loads(config.read_text())
        train, counts = c["train"], c["data"]["counts"]
        steps = s["epochs"] * (train.get("steps_per_epoch") or math.ceil(counts["train"] / train["batch_size"]))
        rows.append({"run": run.name, "val_nme": s["best_val_nme"], "best_epoch": s["best_epoch"],
                     "epochs": s["epochs"], "steps": steps, "minutes": s["seconds"] / 60.0,
                     "median_epoch_minutes": s["epochs"] * median_epoch_seconds(run / "baseline" / "log.csv") / 60,
                     "checkpoint": str(run / "baseline" / s["checkpoint"]),
                     "settings": {k: train[k] for k in ("loss", "schedule", "head_init", "input_norm",
                                                        "augment_preset", "bn_momentum")}})
    return rows


def median_epoch_seconds(log_csv: Path) -> float:
    """Median seconds of one epoch (training + validation): the runs shared the cores with other work at times,
    so epochs x the median is the fairer wall time to compare."""
    import csv
    import statistics

    with open(log_csv, newline="") as f:
        return statistics.median(float(r["seconds"]) + float(r["eval_seconds"]) for r in csv.DictReader(f))


def test_nme(checkpoint: str, data: str, limit: int | None = None) -> float:
    from edgekd.bench import BenchConfig, benchmark

    result = benchmark(BenchConfig(models=[checkpoint], data=data, crop="gt", threads=(1,), progress=False,
                                   e2e_images=1, limit=limit))
    (entry,) = [e for e in result.results["entries"] if e["protocol"] == "gt"]
    return entry["nme"]


def curves_plot(folder: Path, rows: list[dict], path: Path) -> None:
    """Validation NME per epoch of every run, one line each: where a schedule stalls or a loss leaves its plateau
    shows at a glance."""
    import csv
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgekd.fileio import write_bytes

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for r in rows:
        with open(folder / r["run"] / "baseline" / "log.csv", newline="") as f:
            log = list(csv.DictReader(f))
        ax.plot([int(e["epoch"]) for e in log], [float(e["val_nme"]) for e in log],
                lw=2.2 if r["run"] in ("paper", "fast-cpu") else 1.2, label=f"{r['run']} ({r['val_nme']:.2f} %)")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NME % (log scale)")
    ax.set_title("Recipe ablation: MobileNetV2 student from scratch, same steps", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def table(rows: list[dict]) -> str:
    lines = ["| run | loss | schedule | head | inputs | augment | val NME % | test NME % (gt) | steps | wall min "
             "(epochs x median epoch) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["settings"]
        lines.append(f"| {r['run']} | {s['loss']} | {s['schedule']} | {s['head_init']} | "
                     f"{'[-1, 1]' if s['input_norm'] else '[0, 1]'} | {s['augment_preset']} | {r['val_nme']:.2f} | "
                     f"{r['test_nme']:.2f} | {r['steps']} | {r['median_epoch_minutes']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="the ablation folder (RUNS/train/300w-128-ablation-e<EPOCHS>)")
    ap.add_argument("--data", required=True, help="the 300-W root (its common test set is scored)")
    ap.add_argument("--out", type=Path, help="Markdown file to write (and the same name with .json)")
    ap.add_argument("--limit", type=int, help="score the first N test faces only (to try the script)")
    args = ap.parse_args(argv)
    rows = finished_runs(args.folder)
    if not rows:
        sys.exit(f"error: {args.folder}: no finished run (<name>/baseline/summary.json)")
    for r in rows:
        r["test_nme"] = test_nme(r.pop("checkpoint"), args.data, args.limit)
    text = table(rows)
    print(text)
    if args.out:
        write_text(args.out, text)
        write_json(args.out.with_suffix(".json"), rows)
        curves_plot(args.folder, rows, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
