"""One table of int8 recipes from the model cards `edgekd export` wrote: for each network (the checkpoint a card
names) its float32 validation NME and, per int8 file, the validation NME and what int8 costs (int8 - float32).

The cards hold every figure (nothing is re-run), so the table is what the exports measured on the validation
split; the choice of a recipe is made from it, before any test figure is read.

    .venv/bin/python benchmarks/quantization_table.py RUNS/export/300w-128-s9/*.card.json \\
        --out benchmarks/300w-128-fastcpu/v0.8.0/quantization
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekd.core.errors import EdgekdError  # noqa: E402
from edgekd.core.fileio import write_json, write_text  # noqa: E402


def recipe(card: dict) -> str:
    """A card's int8 recipe in words: PTQ, or QAT with its target, schedule and length."""
    quant = card["quantization"]
    if quant["mode"] != "qat":
        crops = str(quant.get("calibration", "")).split(" augmented")[0]
        return f"PTQ ({crops} calibration crops)" if quant["mode"] == "int8" and crops else quant["mode"]
    qat = quant["qat"]
    words = (f"QAT fitting the {qat.get('target', 'truth')}, {qat['epochs']} epochs at {qat['learning_rate']:g} "
             f"{qat.get('schedule', 'constant')}")
    seed = (card.get("config") or {}).get("seed", 0)  # two seeds of one recipe show the noise of a QAT run
    words += f", seed {seed}" if seed else ""
    # the landmark layer in float: an early trial, `edgekd export --qat --float-head` since edgekd 0.12.0
    return words + (", landmark layer in float" if qat.get("landmark_head", "int8") != "int8" else "")


def collect(paths: list[Path]) -> list[dict]:
    """Rows per network (the run/stage folder of the checkpoint a card names): {"network", "float32", "int8":
    [{"file", "recipe", "nme", "cost"}]}; float32 is the Keras network's validation NME, which every card of it
    records."""
    networks: dict[str, dict] = {}
    for path in paths:
        try:
            card = json.loads(path.read_text())
            checkpoint = Path(card["checkpoint"])  # a checkpoint file, or the stage folder export was given
            stage = checkpoint.parent if checkpoint.suffix in (".h5", ".keras", ".hdf5") else checkpoint
            network = f"{stage.parent.name}/{stage.name}"
            mode, nme = card["quantization"]["mode"], card["nme"]
            row = networks.setdefault(network, {"network": network, "float32": nme["keras"], "int8": []})
            if mode in ("int8", "qat"):
                row["int8"].append({"file": card["model"], "recipe": recipe(card), "nme": nme["tflite"],
                                    "cost": nme["tflite"] - nme["keras"]})
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise EdgekdError(f"{path}: not an edgekd model card ({e})") from None
    for row in networks.values():
        row["int8"].sort(key=lambda r: r["nme"])
    return sorted(networks.values(), key=lambda r: r["network"])


def markdown(rows: list[dict]) -> str:
    lines = ["| network | float32 val % | int8 file | recipe | int8 val % | int8 - float32 |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        if not row["int8"]:
            lines.append(f"| {row['network']} | {row['float32']:.3f} | (float32 only) | | | |")
        for i, r in enumerate(row["int8"]):
            network, float32 = (row["network"], f"{row['float32']:.3f}") if i == 0 else ("", "")
            lines.append(f"| {network} | {float32} | `{r['file']}` | {r['recipe']} | {r['nme']:.3f} | "
                         f"{r['cost']:+.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cards", nargs="+", type=Path, help="*.card.json files written by edgekd export")
    parser.add_argument("--out", type=Path, help="write OUT.md and OUT.json as well as printing the table")
    args = parser.parse_args(argv)
    try:
        rows = collect(args.cards)
    except EdgekdError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = markdown(rows)
    print(table, end="")
    if args.out:
        try:
            write_text(args.out.with_suffix(".md"), table)
            write_json(args.out.with_suffix(".json"), rows)
        except OSError as e:
            print(f"error: --out {args.out}: {e.strerror or e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
