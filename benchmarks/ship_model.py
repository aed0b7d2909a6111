"""Copy an exported model and its cards into models/ under the name it ships as, saying in both cards where it
came from and why it was chosen (the choice itself is made on validation NME, before any test figure is read).

    .venv/bin/python benchmarks/ship_model.py RUNS/export/300w-128-fastcpu/plain_long_qat_int8.tflite \\
        models/300w/student_qat_int8.tflite --note "the plain student trained longest; chosen on validation NME"

``--prepared DIR`` also replaces the detector mapping in the model's metadata by that prepared folder's (same
input size and margin; the network's bytes are untouched): how a model exported before its data's mapping was
refitted with keypoints ships with the new one (edgekd 0.7.0). The cards get the new sha256, size and metadata.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekd.core.fileio import write_bytes, write_json, write_text  # noqa: E402


def cards(model: Path) -> tuple[Path, Path]:
    return model.with_suffix(".card.json"), model.with_suffix(".card.md")


def ship(source: Path, target: Path, note: str, prepared: Path | None = None) -> None:
    src_json, src_md = cards(source)
    missing = [p for p in (source, src_json, src_md) if not p.is_file()]
    if missing:
        sys.exit(f"error: {missing[0]}: not found; expected an `edgekd export` output with its two cards")
    card = json.loads(src_json.read_text())
    card["model"] = target.name
    training = card.get("training") or {}
    if "/edgekd/recipes/" in str(training.get("recipe_file")):  # a shipped recipe run from a copy of the package
        training["recipe_file"] = "edgekd/recipes/" + Path(training["recipe_file"]).name
    card["shipped_as"] = {"file": target.name, "exported_as": str(source), "note": note}
    model = source.read_bytes()
    md = src_md.read_text().rstrip("\n")
    if prepared is not None:
        model, card, md = _remap(model, card, source, prepared)
    md = md.replace(f"# {source.name}", f"# {target.name}", 1)
    md += f"\n\nShipped as `{target.name}`; exported as `{source.name}`: {note.rstrip('.')}.\n"
    dst_json, dst_md = cards(target)
    write_bytes(target, model)
    write_json(dst_json, card)
    write_text(dst_md, md)
    print(f"{source} -> {target} (+ {dst_json.name}, {dst_md.name})")


def _remap(model: bytes, card: dict, source: Path, prepared: Path) -> tuple[bytes, dict, str]:
    """The model with ``prepared``'s detector mapping in its metadata, its card updated to match, the card's
    Markdown rendered again from it."""
    import hashlib

    from edgekd.data.pipeline import PreparedData
    from edgekd.core.errors import EdgekdError
    from edgekd.export.exporter import render_card
    from edgekd.core.metadata import with_detector_mapping

    try:
        model, meta = with_detector_mapping(model, PreparedData.open(prepared).crop, str(source))
    except EdgekdError as e:
        sys.exit(f"error: {e}")
    card.update(sha256=hashlib.sha256(model).hexdigest(), size_bytes=len(model), size_mb=round(len(model) / 1e6, 3),
                metadata=json.loads(meta.to_json()))
    card["shipped_as"]["detector_mapping_from"] = str(prepared.resolve())
    return model, card, render_card(card).rstrip("\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="the exported .tflite (its .card.json and .card.md beside it)")
    ap.add_argument("target", type=Path, help="where it ships, e.g. models/300w/student_qat_int8.tflite")
    ap.add_argument("--note", required=True, help="what it is and why it was chosen")
    ap.add_argument("--prepared", type=Path, help="take the detector mapping from this prepared folder")
    args = ap.parse_args(argv)
    ship(args.source, args.target, args.note, args.prepared)


if __name__ == "__main__":
    main()
