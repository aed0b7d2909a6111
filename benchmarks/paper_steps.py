"""The first steps of `--recipe paper`'s Tough teacher: does EfficientNet-B3 leave the mean shape, and what a step costs.

The paper recipe is a GPU's work (its dry run is 22.6 h on 2 CPU cores), so on a CPU only its first Tough-teacher
epochs are run, resumable (``edgekd train PREPARED --recipe paper --run-dir RUN batch_size=32``, stopped after
enough steps), and this script reads that stage's folder: its settings (config.json), every epoch's validation NME
and seconds (log.csv). Beside them, the validation NME of the mean training shape predicted for every face, the
plateau a landmark regressor sits on before it learns the face: the teacher has left it when its validation NME is
clearly below (``--margin``, in % of the plateau). Seconds per step are each epoch's training seconds over its steps;
the median says what a step costs with the cores to itself (an epoch that shared them is slower, not faster).

    .venv/bin/python benchmarks/paper_steps.py RUNS/paper/tough --prepared RUNS/data/300w-224 \\
        --out benchmarks/recipe-time/paper-tough.json
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

from edgekd.core.fileio import write_bytes, write_json  # noqa: E402
from edgekd.core.timing import machine  # noqa: E402


def mean_shape_nme(prepared) -> float:
    """Validation NME (%) of the mean training shape predicted for every validation face, in crop coordinates (the
    training loop's own validation metric)."""
    from edgekd.core.metrics import batch_nme
    from edgekd.data.pipeline import PreparedData
    from edgekd.training.build import mean_shape

    data = PreparedData(prepared)
    _, hard = data.arrays("val")
    truth = data.crop.normalize(hard).reshape(len(hard), -1)
    guess = mean_shape(data)[None].repeat(len(truth), axis=0)
    return float(batch_nme(guess, truth, data.scheme.nme_pair).mean() * 100)


def read_stage(stage_dir: Path) -> tuple[dict, list[dict]]:
    config = json.loads((stage_dir / "config.json").read_text())
    with open(stage_dir / "log.csv", newline="") as f:
        rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]
    if not rows:
        raise SystemExit(f"{stage_dir / 'log.csv'}: no finished epoch yet")
    return config, rows


def summarize(config: dict, rows: list[dict], plateau: float, margin: float) -> dict:
    train = config["train"]
    steps = train.get("steps_per_epoch") or math.ceil(config["data"]["counts"]["train"] / train["batch_size"])
    per_step = [r["seconds"] / steps for r in rows]
    below = next((int(r["epoch"]) for r in rows if r["val_nme"] < plateau * (1 - margin / 100)), None)
    return {"network": train["teacher_arch"], "stage": train["stage"], "recipe": train["recipe"],
            "input_size": config["data"]["input_size"], "batch_size": train["batch_size"],
            "loss": train["loss"], "schedule": train["schedule"], "head_init": train["head_init"],
            "planned_epochs": train["epochs"], "steps_per_epoch": steps, "epochs_run": len(rows),
            "steps_run": steps * len(rows), "mean_shape_val_nme": plateau, "margin_percent": margin,
            "left_mean_shape_at_epoch": below,
            "left_mean_shape_at_step": None if below is None else below * steps,
            "seconds_per_step_median": statistics.median(per_step),
            "seconds_per_step_min": min(per_step),
            "eval_seconds_median": statistics.median(r["eval_seconds"] for r in rows),
            "epochs": [{"epoch": int(r["epoch"]), "step": int(r["epoch"]) * steps, "train_nme": r["nme"],
                        "val_nme": r["val_nme"], "lr": r["lr"], "seconds": r["seconds"],
                        "eval_seconds": r["eval_seconds"]} for r in rows]}


def plot(result: dict, path: Path) -> None:
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [e["step"] for e in result["epochs"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [e["val_nme"] for e in result["epochs"]], "o-", label="validation NME")
    ax.plot(steps, [e["train_nme"] for e in result["epochs"]], ".--", label="training NME (augmented crops)")
    ax.axhline(result["mean_shape_val_nme"], color="grey", lw=1, label="the mean shape on validation")
    ax.set_xlabel(f"step (batch {result['batch_size']})")
    ax.set_ylabel("NME %")
    ax.set_ylim(0, max(35.0, result["mean_shape_val_nme"] * 1.2))
    ax.set_title(f"{result['recipe']}: {result['network']} Tough teacher at {result['input_size']} px")
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage_dir", type=Path, help="the paper run's tough/ folder")
    ap.add_argument("--prepared", type=Path, required=True, help="the prepared folder it trains on")
    ap.add_argument("--margin", type=float, default=10.0, help="%% below the mean shape's NME that counts as left")
    ap.add_argument("--out", type=Path, help="JSON to write (and a PNG of the same name)")
    args = ap.parse_args(argv)
    config, rows = read_stage(args.stage_dir)
    result = {"stage_dir": str(args.stage_dir), "machine": machine(),
              **summarize(config, rows, mean_shape_nme(args.prepared), args.margin)}
    print(f"{result['network']} at {result['input_size']} px, batch {result['batch_size']}: {result['steps_run']} "
          f"steps, {result['seconds_per_step_median']:.2f} s a step (median), mean shape "
          f"{result['mean_shape_val_nme']:.2f} %, last validation NME {rows[-1]['val_nme']:.2f} %, left the mean "
          f"shape at epoch {result['left_mean_shape_at_epoch']}")
    if args.out:
        write_json(args.out, result)
        plot(result, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
