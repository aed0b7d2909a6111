"""The KD student against its plain control over several seeds, on validation: what `control=true` measures.

    .venv/bin/python benchmarks/kd_vs_plain.py RUN_SEED0 RUN_SEED1 --out benchmarks/kd-vs-plain/seeds.json

Each RUN is one run folder of a recipe trained twice, `edgekd train P --run-dir RUN [student.seed=S]` and the same
with `control=true`: its summary.json holds the KD student's stages, summary-control.json the control's. For each
seed: the selected checkpoint's validation NME of the student and of its control, and their int8 (QAT) exports'
validation NME when the recipe exports them; then the mean and spread over seeds and the ratio of the means, the
figure the recipe is judged by (KD / plain; below 1 the teachers helped). No test image is read.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekd.core.fileio import write_json  # noqa: E402


def _read(path: Path) -> dict:
    if not path.is_file():
        sys.exit(f"error: {path}: not found; expected a finished run (and its control=true run) of the recipe")
    return json.loads(path.read_text())


def _seed(stage: Path) -> int:
    """The seed a stage trained with, from the config.json every training stage writes."""
    return _read(stage / "config.json")["train"]["seed"]


def seed_row(run: Path) -> dict:
    """One run folder's KD student and control: validation NME of the selected checkpoints and of the int8 exports."""
    kd, plain = _read(run / "summary.json"), _read(run / "summary-control.json")
    students = [n for n, s in kd["stages"].items() if "best_val_nme" in s and n + "-control" in plain["stages"]]
    if len(students) != 1:
        sys.exit(f"error: {run}: expected one KD student with its control, found {students or 'none'}")
    name = students[0]
    seeds = {_seed(run / n) for n in (name, f"{name}-control")}
    if len(seeds) != 1:
        sys.exit(f"error: {run}: the KD student and its control were trained with different seeds {sorted(seeds)}")
    row = {"run": run.name, "seed": seeds.pop(), "student": name, "recipe_sha256": kd["recipe_sha256"],
           "kd_val_nme": kd["stages"][name]["best_val_nme"],
           "plain_val_nme": plain["stages"][f"{name}-control"]["best_val_nme"]}
    for key, summary in (("kd_int8_val_nme", kd), ("plain_int8_val_nme", plain)):
        qat = [s["qat"]["val_nme"] for s in summary["stages"].values() if isinstance(s.get("qat"), dict)]
        row[key] = qat[0] if qat else None
    return row


def summarize(rows: list[dict]) -> dict:
    if len({r["recipe_sha256"] for r in rows}) != 1:
        sys.exit("error: the runs were trained with different recipe files; compare seeds of one recipe")
    if len({r["seed"] for r in rows}) != len(rows):
        sys.exit("error: two runs were trained with the same seed; give one run folder per seed")
    out = {"seeds": rows}
    # unrounded: the pages round once, where they show a figure (a mean stored at 4 digits, 4.0795, read 4.080
    # where the seeds' own mean, 4.0795 minus a little, reads 4.079)
    for key in ("kd_val_nme", "plain_val_nme", "kd_int8_val_nme", "plain_int8_val_nme"):
        values = [r[key] for r in rows if r[key] is not None]
        if len(values) == len(rows):
            out[key.replace("_val_nme", "_mean")] = statistics.mean(values)
            out[key.replace("_val_nme", "_spread")] = max(values) - min(values)
    out["ratio"] = out["kd_mean"] / out["plain_mean"]
    if "kd_int8_mean" in out and "plain_int8_mean" in out:
        out["ratio_int8"] = out["kd_int8_mean"] / out["plain_int8_mean"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="one run folder per seed")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = summarize([seed_row(r) for r in args.runs])
    write_json(args.out, result)
    print(f"{args.out}: KD {result['kd_mean']:.3f} % vs plain {result['plain_mean']:.3f} % on validation "
          f"(mean of {len(args.runs)} seeds): {result['ratio']:.3f} x")


if __name__ == "__main__":
    main()
