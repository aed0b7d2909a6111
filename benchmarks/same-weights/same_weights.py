"""Does today's `edgekd train` make the same model as an earlier commit's package, from the same recipe file?

    .venv/bin/python benchmarks/same-weights/same_weights.py PREPARED --commit cb1cc5b \\
        --out benchmarks/same-weights/results.json

A run of `edgekd/recipes/default.yaml` takes about 5 hours on 2 cores; the recipe-made student was trained by the
package as it was at ``--commit``, and the package was refactored while it trained (folders, settings declared
once, `fit()` with callbacks). This runs a miniature of the same recipe file (every stage and setting kept, each
training stage cut to a few epochs of 3 steps, QAT to one epoch) once with that commit's package (``git archive``)
and once with the working tree's, side by side on one thread each, and compares every stage's checkpoints array by
array and the exported files byte by byte. TensorFlow on the CPU is deterministic here for a fixed seed and thread
count, so equal means the same training steps, not just similar scores. A package older than the recipe file's
keys (a student's ``teachers`` came in 0.14.1) refuses it: pass ``--recipe`` the file of that release
(`git show 4534750:edgekd/recipes/default.yaml > F` for 0.14.0's).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edgekd.core.fileio import write_json  # noqa: E402
from edgekd.core.timing import machine  # noqa: E402

CUT = {"baseline": 2, "tough": 3, "tolerant": 2, "student": 3}  # epochs per stage kind in the miniature


def miniature(recipe_text: str) -> str:
    """The default recipe with each training stage cut to its kind's CUT epochs of 3 steps (weight averaging over
    the last 2) and its export's QAT to one epoch of 3 steps; every other setting as in the file."""
    import yaml

    body = yaml.safe_load(recipe_text)
    body["settings"].update(steps_per_epoch=3, bn_recalibration_samples=16)
    for stage in body["stages"].values():
        if stage["kind"] == "export":
            stage.update(qat_epochs=1, qat_steps_per_epoch=3, calibration_samples=16)
        else:
            stage["epochs"] = CUT[stage["kind"]]
            if "average_last" in stage:
                stage["average_last"] = 2
    return yaml.safe_dump(body, sort_keys=False)


def _rev(name: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", name], check=True, capture_output=True,
                          text=True).stdout.strip()


def package_at(commit: str, dest: Path) -> Path:
    """The edgekd package as it was at ``commit`` (git archive), unpacked under ``dest``."""
    blob = subprocess.run(["git", "-C", str(REPO), "archive", commit, "edgekd"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return dest


LAUNCH = """import sys
sys.argv[0] = 'edgekd'
try:
    from edgekd.cli.main import main  # the package in folders
except ImportError:
    from edgekd.cli import main  # before it
sys.exit(main())
"""


def start(code: Path, prepared: Path, recipe: Path, run: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(code), "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", LAUNCH, "train", str(prepared), "--recipe", str(recipe),
                             "--run-dir", str(run)], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def arrays(path: Path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def compare(a: Path, b: Path) -> dict:
    stages = {}
    for stage in sorted(p.name for p in a.iterdir() if (p / "log.csv").is_file()):
        row = {}
        for ck in ("last.h5", "best.h5"):
            wa, wb = arrays(a / stage / ck), arrays(b / stage / ck)
            floats = [k for k in wa if k in wb and np.asarray(wa[k]).dtype.kind == "f"]
            row[ck] = {"arrays": len(wa), "same_names": sorted(wa) == sorted(wb), "float_arrays": len(floats),
                       "max_abs_diff": max(float(np.max(np.abs(np.asarray(wa[k], np.float64) - wb[k])))
                                           for k in floats if np.asarray(wa[k]).size)}
        row["val_nme"] = [[float(r["val_nme"]) for r in csv.DictReader((d / stage / "log.csv").open())]
                          for d in (a, b)]
        stages[stage] = row
    files = {}
    for f in sorted((a / "export").glob("*.tflite")):
        ha, hb = (hashlib.sha256(p.read_bytes()).hexdigest() for p in (f, b / "export" / f.name))
        files[f.name] = {"sha256": [ha, hb], "same_bytes": ha == hb}
    return {"stages": stages, "exports": files}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prepared", type=Path, help="a prepared 300-W folder at the recipe's input size")
    parser.add_argument("--commit", required=True, help="the commit whose package trained the shipped model")
    parser.add_argument("--recipe", type=Path, default=REPO / "edgekd" / "recipes" / "default.yaml")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="same-weights-") as tmp:
        tmp = Path(tmp)
        old = package_at(args.commit, tmp / "old-code")
        recipe = tmp / "mini-default.yaml"
        recipe.write_text(miniature(args.recipe.read_text()))
        procs = [start(code, args.prepared, recipe, tmp / name, tmp / f"{name}.log")
                 for name, code in (("old", old), ("new", REPO))]
        if any(p.wait() for p in procs):
            for name in ("old", "new"):
                print(f"--- {name}\n" + (tmp / f"{name}.log").read_text()[-3000:])
            return 1
        result = {"commit": _rev(args.commit), "against": f"the working tree at {_rev('HEAD')}",
                  "recipe": str(args.recipe.relative_to(REPO)),
                  "recipe_sha256": hashlib.sha256(args.recipe.read_bytes()).hexdigest(),
                  "miniature": {"epochs": CUT, "steps_per_epoch": 3, "average_last": 2, "qat_epochs": 1,
                                "threads": 1},
                  "machine": machine(), **compare(tmp / "old", tmp / "new")}
    write_json(args.out, result)
    same = all(r[ck]["same_names"] and r[ck]["max_abs_diff"] == 0 for r in result["stages"].values()
               for ck in ("last.h5", "best.h5")) and all(f["same_bytes"] for f in result["exports"].values())
    print(f"{args.out}: {'the same weights and files' if same else 'DIFFERENT'} "
          f"({len(result['stages'])} stages, {len(result['exports'])} exports)")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
