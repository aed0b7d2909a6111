"""Copy an exported model and its cards into models/ under the name it ships as, saying in both cards where it
came from and why it was chosen (the choice itself is made on validation NME, before any test figure is read).

    .venv/bin/python benchmarks/ship_model.py RUNS/export/300w-128-fastcpu/plain_long_qat_int8.tflite \\
        models/300w/student_qat_int8.tflite --note "the plain student trained longest; chosen on validation NME"
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekd.fileio import write_bytes, write_json, write_text  # noqa: E402


def cards(model: Path) -> tuple[Path, Path]:
    return model.with_suffix(".card.json"), model.with_suffix(".card.md")


def ship(source: Path, target: Path, note: str) -> None:
    src_json, src_md = cards(source)
    missing = [p for p in (source, src_json, src_md) if not p.is_file()]
    if missing:
        sys.exit(f"error: {missing[0]}: not found; expected an `edgekd export` output with its two cards")
    card = json.loads(src_json.read_text())
    card["model"] = target.name
    card["shipped_as"] = {"file": target.name, "exported_as": str(source), "note": note}
    md = src_md.read_text().rstrip("\n").replace(f"# {source.name}", f"# {target.name}", 1)
    md += f"\n\nShipped as `{target.name}`; exported as `{source.name}` (benchmarks/export_bench_300w.sh): {note}.\n"
    dst_json, dst_md = cards(target)
    write_bytes(target, source.read_bytes())
    write_json(dst_json, card)
    write_text(dst_md, md)
    print(f"{source} -> {target} (+ {dst_json.name}, {dst_md.name})")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="the exported .tflite (its .card.json and .card.md beside it)")
    ap.add_argument("target", type=Path, help="where it ships, e.g. models/300w/student_qat_int8.tflite")
    ap.add_argument("--note", required=True, help="what it is and why it was chosen")
    args = ap.parse_args(argv)
    ship(args.source, args.target, args.note)


if __name__ == "__main__":
    main()
