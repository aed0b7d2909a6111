"""`edgekd predict` over many images: one annotated picture per readable input in the run folder, and one JSON and
one CSV of every face, so a folder of photos becomes something a spreadsheet or a script reads at once.

A file that cannot be read is named (``skipped <file>: <why>``) and the run goes on: one bad file among thousands
should not cost the rest; the caller turns ``BatchResult.skipped`` into the exit status. Pictures are written as
each image is done (atomically, fileio), the two summaries at the end; pictures are named after their inputs
(``photo.png``; ``photo_2.png`` for a second input with the same name), inside the run folder, so never over an
input.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgekd.core.fileio import write_image, write_json, write_text

SUMMARY_JSON, SUMMARY_CSV = "faces.json", "faces.csv"
PROGRESS_FROM = 10  # inputs from which a progress bar is worth its lines


@dataclass
class BatchResult:
    images: int = 0  # inputs read
    faces: int = 0
    without_face: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (input, why)
    written: list[Path] = field(default_factory=list)  # pictures, then the two summaries
    stopped: bool = False  # the preview's q ended the run early


def picture_name(source: str, taken: set) -> str:
    """``<stem>.png`` for an input, ``<stem>_2.png``, ... when an earlier input had the same stem."""
    stem = Path(source).stem or "image"
    name, n = f"{stem}.png", 2
    while name in taken:
        name, n = f"{stem}_{n}.png", n + 1
    taken.add(name)
    return name


def predict_many(results, total: int, folder, progress: bool = True, echo=print, preview=None) -> BatchResult:
    """Write what ``results`` (``Landmarker.predict(..., stream=True, skip_unreadable=True)``) finds in ``total``
    inputs into ``folder``; ``echo`` reports each skipped file as it happens, ``preview`` (a Preview) shows each
    picture until a key is pressed, q stopping the run."""
    folder = Path(folder)
    out, rows, taken = BatchResult(), [], set()
    bar = tqdm(results, total=total, desc="predict", unit="image", disable=not progress or total < PROGRESS_FROM)
    say = bar.write if not bar.disable else echo
    try:
        for result in bar:
            if result.error is not None:
                out.skipped.append((result.source, result.error))
                say(f"skipped {result.error}")
                continue
            drawn = result.plot()
            name = picture_name(result.source, taken)
            out.written.append(write_image(folder / name, drawn))
            out.images += 1
            out.faces += len(result.faces)
            out.without_face += not result.faces
            rows.append({"file": result.source, "picture": name, "faces": [f.to_dict() for f in result.faces]})
            if preview is not None and not preview.show(drawn, [f.face for f in result.faces], wait_ms=0):
                out.stopped = True
                break
    finally:
        bar.close()
    skipped = [{"file": s, "error": why} for s, why in out.skipped]
    out.written.append(write_json(folder / SUMMARY_JSON, {"images": rows, "skipped": skipped}))
    out.written.append(write_text(folder / SUMMARY_CSV, summary_csv(rows)))
    return out


def summary_csv(rows: list[dict]) -> str:
    """One line per face: file, face (1, 2, ... best score first), box_x/y/w/h and score of the detection, then
    x0, y0, x1, y1, ... in image pixels. Images without a face have no line (faces.json lists them)."""
    n = max((len(f["points"]) for r in rows for f in r["faces"]), default=0)
    lines = [",".join(["file", "face", "box_x", "box_y", "box_w", "box_h", "score"]
                      + [f"{a}{i}" for i in range(n) for a in "xy"])]
    for r in rows:
        for k, f in enumerate(r["faces"], 1):
            box = [f"{v:.2f}" for v in f.get("box", ())] or [""] * 4
            score = f.get("score")
            lines.append(",".join([_csv_field(r["file"]), str(k), *box, "" if score is None else f"{score:.4f}"]
                                  + [f"{v:.3f}" for v in np.asarray(f["points"], np.float64).ravel()]))
    return "\n".join(lines) + "\n"


def _csv_field(text: str) -> str:
    """A CSV field quoted when it must be (a file name with a comma or a quote)."""
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n') else text
