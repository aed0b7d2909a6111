"""Tables of benchmarks/README.md from training stage folders: the recipe ablation (the plain student trained with
each setting alone) and KD-Loss against its plain control (`edgekd train ... control=true` makes such a pair).

Each finished stage folder (summary.json, config.json, log.csv, best.h5) gives its validation NME (the checkpoint
chosen on it), epochs, steps and wall time; its best.h5 is then scored on the 300-W common test set with `edgekd
bench`'s ground-truth crops (the results page's protocol: errors in the original image, inter-ocular
normalisation), one model at a time, after every choice was made. Prints a Markdown table; with --out also writes
it, the numbers as JSON and the validation curves of every run as a PNG.

    .venv/bin/python benchmarks/ablation_table.py RUNS/train/300w-128-ablation-e30/*/baseline \\
        --data ../shared/data/300w --out benchmarks/300w-128-fastcpu/ablation.md
    .venv/bin/python benchmarks/ablation_table.py RUNS/train/300w-128-fastcpu/kd/{baseline,student} \\
        RUNS/train/300w-128-fastcpu/kd-variants/*/student --data ../shared/data/300w --out .../kd.md
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekd.core import logs  # noqa: E402
from edgekd.core.fileio import write_bytes, write_json, write_text  # noqa: E402

# the ablation's order: the paper's settings, each change alone, every change together
ORDER = ["paper", "paper+l1", "paper+cosine", "paper+mean-shape-head", "paper+input-norm", "paper+light-augment",
         "fast-cpu"]


def label(stage: Path) -> str:
    """The ablation's run name (<name>/baseline) or <run>/<stage> for any other stage folder."""
    return stage.parent.name if stage.name == "baseline" and stage.parent.name in ORDER else \
        f"{stage.parent.name}/{stage.name}"


def median_epoch_seconds(log_csv: Path) -> float:
    """Median seconds of one epoch (training + validation): the runs shared the cores with other work at times,
    so epochs x the median is the fairer wall time to compare."""
    with open(log_csv, newline="") as f:
        return statistics.median(float(r["seconds"]) + float(r["eval_seconds"]) for r in csv.DictReader(f))


def kd_name(train: dict) -> str:
    """How the stage's loss reads in the table: the plain loss, or KD-Loss with its main term and constants."""
    if train["stage"] != "student":
        return train["loss"]
    kd = train.get("kd") or {}
    constants = "paper-figure" if kd.get("ramp") else "code"
    members = len((train.get("teacher_checkpoints") or {}).get("tough") or train.get("teachers_dir") or [None])
    tough = "the Tough teacher" if members == 1 else f"the Tough teacher (an ensemble of {members})"
    blend = f", target blended {kd['teacher_blend']:g} with {tough}" if kd.get("teacher_blend") else ""
    cached = ", cached teachers" if train.get("teacher_targets") else ""
    return f"KD-Loss ({constants} constants, main {kd.get('main', 'paper')}{blend}{cached})"


def finished(stages: list[Path]) -> list[dict]:
    rows = []
    for stage in stages:
        summary, config = stage / "summary.json", stage / "config.json"
        if not summary.is_file():
            print(f"{stage}: not finished, left out", file=sys.stderr)
            continue
        s, c = json.loads(summary.read_text()), json.loads(config.read_text())
        train, counts = c["train"], c["data"]["counts"]
        steps = s["epochs"] * (train.get("steps_per_epoch") or math.ceil(counts["train"] / train["batch_size"]))
        rows.append({"run": label(stage), "stage_dir": str(stage), "val_nme": s["best_val_nme"],
                     "best_epoch": s["best_epoch"], "epochs": s["epochs"], "steps": steps,
                     "minutes": s["seconds"] / 60.0,
                     "median_epoch_minutes": s["epochs"] * median_epoch_seconds(stage / "log.csv") / 60,
                     "init_from": c.get("init_from"), "loss": kd_name(train),
                     "settings": {**{k: train[k] for k in ("schedule", "head_init", "input_norm", "augment_preset",
                                                           "bn_momentum", "learning_rate", "teacher_flip")},
                                  "head": train.get("head", "gap"), "input_size": c["data"].get("input_size")}})
    rows.sort(key=lambda r: (ORDER.index(r["run"]) if r["run"] in ORDER else len(ORDER), r["run"]))
    return rows


def last_epochs_mean(log_csv: Path, k: int = 10) -> float:
    """Mean validation NME of the last ``k`` epochs: a run's best epoch is luckier than its level by 0.02-0.04
    on 168 faces, so choices between runs read this too."""
    with open(log_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    return statistics.fmean(float(r["val_nme"]) for r in rows[-k:])


def test_nme(checkpoint: Path, data: str, limit: int | None = None) -> float:
    from edgekd.bench import BenchConfig, benchmark

    result = benchmark(BenchConfig(models=[str(checkpoint)], data=data, crop="gt", threads=(1,), progress=False,
                                   e2e_images=1, limit=limit))
    (entry,) = [e for e in result.results["entries"] if e["protocol"] == "gt"]
    return entry["nme"]


def curves_plot(rows: list[dict], path: Path, title: str = "Validation NME per epoch, same steps for every run",
                last_epoch: int | None = None) -> None:
    """Validation NME per epoch of every run, one line each: where a schedule stalls or a loss leaves its plateau
    shows at a glance. ``last_epoch``: draw only the epochs up to it."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for r in rows:
        with open(Path(r["stage_dir"]) / "log.csv", newline="") as f:
            log = [e for e in csv.DictReader(f) if last_epoch is None or int(e["epoch"]) <= last_epoch]
        ax.plot([int(e["epoch"]) for e in log], [float(e["val_nme"]) for e in log],
                lw=2.2 if r["run"] in ("paper", "fast-cpu") else 1.2, label=f"{r['run']} ({r['val_nme']:.2f} %)")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NME % (log scale)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def table(rows: list[dict]) -> str:
    lines = ["| run | loss | schedule | head (init) | input px | inputs | augment | val NME % (best) | val NME % "
             "(last 10) | test NME % (gt) | steps | wall min (epochs x median epoch) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["settings"]
        test = "not read" if r["test_nme"] is None else f"{r['test_nme']:.2f}"
        lines.append(f"| {r['run']} | {r['loss']} | {s['schedule']} | {s['head']} ({s['head_init']}) | "
                     f"{s['input_size'] or '?'} | {'[-1, 1]' if s['input_norm'] else '[0, 1]'} | "
                     f"{s['augment_preset']} | {r['val_nme']:.3f} | {r['last10_val_nme']:.3f} | {test} | "
                     f"{r['steps']} | {r['median_epoch_minutes']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stages", nargs="+", type=Path, help="training stage folders (with summary.json)")
    ap.add_argument("--data", help="the 300-W root (its common test set is scored; leave it out for choices "
                                    "made on validation, which must not read the test set)")
    ap.add_argument("--out", type=Path, help="Markdown file to write (and the same name with .json and .png)")
    ap.add_argument("--limit", type=int, help="score the first N test faces only (to try the script)")
    args = ap.parse_args(argv)
    logs.setup(0)  # the CLI's quiet output: native libraries' log lines filtered
    rows = finished(args.stages)
    if not rows:
        sys.exit("error: no finished stage among the folders given (each needs summary.json)")
    for r in rows:
        r["last10_val_nme"] = last_epochs_mean(Path(r["stage_dir"]) / "log.csv")
        r["test_nme"] = test_nme(Path(r["stage_dir"]) / "best.h5", args.data, args.limit) if args.data else None
    text = table(rows)
    print(text)
    if args.out:
        write_text(args.out, text)
        write_json(args.out.with_suffix(".json"), rows)
        curves_plot(rows, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
