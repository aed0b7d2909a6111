"""The results page (benchmarks/README.md) says what its committed files say.

Every table row that links a .json file (a bench run's results.json, a model card, a table of training runs) has
each figure it shows read back from that file and compared as rounded on the page; a row whose first cell is empty
continues the row above (same model, same file). Columns that name things (the first column, protocol, threads,
the "ours is" and "start" descriptions, the source) hold no figures to check, and a column headed "paper..." holds
the paper's figures (cited, not files here). A figure in any other column of a row that links no file fails, so
does a figure whose column has no rule. The docs' size limits and the absence of working-session words are
checked here too."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "benchmarks" / "README.md"

# Rows whose first cell does not name the file's entry (bench runs: the model as results.json names it, and the
# protocol where the table has no protocol column; tables of training runs: the run, or the KD run and its control)
ROWS = {
    ("recipe-choice/kd-variants.json", "plain L1 (the control)"): {"run": "plain/baseline"},
    ("recipe-choice/kd-variants.json", "KD-Loss, L1 main term"): {"run": "kd-l1/student"},
    ("recipe-choice/kd-variants.json", "KD-Loss, L1 main term toward ½ truth + ½ teacher"): {"run": "kd-l1-b05/student"},
    ("recipe-choice/kd-variants.json", "KD-Loss, L1 main term toward the teacher (default)"):
        {"run": "kd-l1-b10/student"},
    ("recipe-choice/refine.json", "KD student taught by itself and its Tolerant twin, light augmentation"):
        {"run": "kd-light/student"},
    ("recipe-choice/refine.json", "plain L1, light augmentation (its control)"): {"run": "plain-light/baseline"},
    ("recipe-choice/refine.json", "KD student, tight augmentation"): {"run": "kd-tight/student"},
    ("recipe-choice/blend.json", "KD-Loss, L1 main term toward the teacher (0.14.0's recipe)"):
        {"run": "kd-blend1.0/student"},
    ("recipe-choice/blend.json", "KD-Loss, L1 main term toward ½ truth + ½ teacher"): {"run": "kd-blend0.5/student"},
    ("recipe-choice/blend.json", "KD-Loss, L1 main term toward the truth (the assistive terms alone)"):
        {"run": "kd-blend0.0/student"},
    ("recipe-choice/blend.json", "plain L1 (the recipe's control, both recipes)"): {"run": "plain/student"},
    ("recipe-choice/teachers.json",
     "KD-Loss, L1 main term toward the mean of two plain refines (0.15.0's recipe, a command-line run)"):
        {"run": "kd-seed0/student"},
    ("recipe-choice/facemesh-student.json",
     "KD-Loss, L1 main term toward MediaPipe Face Mesh (3.315 %), cached on the training faces"):
        {"run": "seed0-facemesh/student"},
    ("recipe-choice/function-matching.json",
     "The same as 0.15.0's recipe, plus L1 to the teacher on the batch mixed with itself (seed 0)"):
        {"run": "kd-mixup/student"},
    ("kd-vs-plain/results.json", "MediaPipe Face Mesh (468 points, mapped to 68)"): {"model": "MediaPipe Face Mesh"},
    ("kd-vs-plain/results.json", "dlib 68-point (HOG detector + shape predictor)"): {"model": "dlib 68-pt"},
    ("kd-vs-plain/results.json", "MobileNetV2, plain"): {"model": "plain_student_int8.tflite", "protocol": "gt"},
    ("kd-vs-plain/results.json", "MobileNetV2 + KD-Loss"): {"model": "kd_student_int8.tflite", "protocol": "gt"},
    ("300w-128-fastcpu/kd-early-110.json", "L1 main term"):
        {"kd": "kd-l1-main-110/student", "control": "plain-110/baseline"},
    ("300w-128-fastcpu/v0.6.0/kd-cached-110.json", "L1 main term, teachers cached"):
        {"kd": "kd-cached-110/student", "control": "plain-110/baseline"},
    ("300w-128-fastcpu/kd-early.json", "L1 main term"): {"kd": "kd-l1-main/student", "control": "plain/baseline"},
    ("300w-128-fastcpu/kd-early.json", "as released"): {"kd": "kd/student", "control": "plain/baseline"},
    ("300w-128-fastcpu/kd.json", "as released"): {"kd": "kd/student", "control": "kd/baseline"},
    ("300w-128-fastcpu/kd.json", "L1 main term"): {"kd": "l1-main/student", "control": "kd/baseline"},
    ("300w-128-fastcpu/kd.json", "paper-figure constants"): {"kd": "paper-figure/student", "control": "kd/baseline"},
    ("300w-128-fastcpu/ablation.json",
     "the paper's: L2, inverse-time decay, default head, [0, 1] inputs, full augmentation"): {"run": "paper"},
    ("300w-128-fastcpu/ablation.json", "+ L1 loss"): {"run": "paper+l1"},
    ("300w-128-fastcpu/ablation.json", "+ cosine schedule over the planned steps"): {"run": "paper+cosine"},
    ("300w-128-fastcpu/ablation.json", "+ head at the mean shape"): {"run": "paper+mean-shape-head"},
    ("300w-128-fastcpu/ablation.json", "+ inputs scaled to [-1, 1]"): {"run": "paper+input-norm"},
    ("300w-128-fastcpu/ablation.json", "+ light augmentation"): {"run": "paper+light-augment"},
    ("300w-128-fastcpu/ablation.json",
     "all together (+ BatchNorm momentum 0.99): the default recipe's settings"): {"run": "fast-cpu"},
}

# columns that name or describe a row: no figures of a file
LABELS = {"model", "protocol", "threads", "peer", "kd-loss variant", "start", "settings", "file", "what",
          "paper's model", "300-w subset", "ours is", "source", "card"}


def _threads(lat: dict) -> list:
    return [lat[t] for t in ("1", "2") if t in lat]


def _bench_rule(header: str, e: dict, row: dict):
    lat = e["latency_ms"]
    t = row.get("threads")
    rules = {
        "mb": lambda: [e["size_mb"]],
        "nme %": lambda: [e["nme"]],
        "fr@0.1 %": lambda: [e["fr"]],
        "auc@0.1": lambda: [e["auc"]],
        "misses": lambda: [e["detector_failures"], e["count"]] if row["protocol"] == "detector" else [],
        "model ms 1t / 2t": lambda: _threads(lat["model"]),
        "model ms 1t": lambda: [lat["model"]["1"]],
        "end-to-end ms 1t / 2t": lambda: _threads(lat["end_to_end"]),
        "end-to-end ms 1t": lambda: [lat["end_to_end"]["1"]],
        "ours: nme / fr / auc*": lambda: [e["nme"], e["fr"], e["auc_paper"]],
        **{f"{stage} ms": (lambda stage=stage: [lat["end_to_end_stages"][t][stage]])
           for stage in ("detector", "crop", "model", "post", "other")},
        "end-to-end ms": lambda: [lat["end_to_end"][t]],
    }
    return rules.get(header)


def _card_rule(header: str, card: dict, row: dict):
    return {"input": lambda: [card["input"]["shape"][1]], "mb": lambda: [card["size_mb"]],
            "val nme %": lambda: [card["nme"]["tflite"]], "model ms, 1t": lambda: [card["latency_ms"]["median"]],
            }.get(header)


def _runs_rule(header: str, runs: dict, row: dict):
    spec = row["spec"]
    if "run" in spec:
        r = runs[spec["run"]]
        return {"val nme %": lambda: [r["val_nme"]], "test nme %": lambda: [r["test_nme"]],
                "val nme % (last 10)": lambda: [r["last10_val_nme"]],
                "ours: nme / fr / auc*": lambda: [r["test_nme"]]}.get(header)
    kd, control = runs[spec["kd"]], runs[spec["control"]]
    return {"epochs": lambda: [kd["epochs"]],
            "control val / test %": lambda: [control["val_nme"], control["test_nme"]],
            "kd val / test %": lambda: [kd["val_nme"], kd["test_nme"]],
            "kd ÷ control, val / test": lambda: [kd["val_nme"] / control["val_nme"],
                                                 kd["test_nme"] / control["test_nme"]]}.get(header)


def _timing_rule(header: str, timing: dict, row: dict):
    """benchmarks/recipe_time.py's file: a row per stage, named by the first code span of its first cell; its
    minutes are a run's own wall time (``--run``; its epochs' seconds for a stage stopped and resumed) or projected
    from a few epochs."""
    stage, dry = timing["stages"][row["stage"]], timing["dry_run"][row["stage"]]
    return {"epochs": lambda: [stage["epochs"]],
            "s per epoch": lambda: [stage.get("epoch_seconds", stage.get("qat_epoch_seconds"))],
            "measured min": lambda: [(stage.get("wall_seconds") or stage.get("seconds")
                                      or stage["projected_seconds"]) / 60],
            "dry run min": lambda: [dry["projected_seconds"] / 60]}.get(header)


def _seeds_rule(header: str, seeds: dict, row: dict):
    """benchmarks/kd_vs_plain.py's file: a row per seed ("seed N"), then the means with their spread in brackets."""
    if row["label"].startswith("mean"):
        m = seeds
        return {"kd student val %": lambda: [m["kd_mean"], m["kd_spread"]],
                "plain control val %": lambda: [m["plain_mean"], m["plain_spread"]],
                "kd ÷ plain": lambda: [m["ratio"]],
                "kd int8 val %": lambda: [m["kd_int8_mean"], m["kd_int8_spread"]],
                "plain int8 val %": lambda: [m["plain_int8_mean"], m["plain_int8_spread"]],
                "int8 kd ÷ plain": lambda: [m["ratio_int8"]]}.get(header)
    r = next(s for s in seeds["seeds"] if row["label"] == f"seed {s['seed']}")
    return {"kd student val %": lambda: [r["kd_val_nme"]], "plain control val %": lambda: [r["plain_val_nme"]],
            "kd ÷ plain": lambda: [r["kd_val_nme"] / r["plain_val_nme"]],
            "kd int8 val %": lambda: [r["kd_int8_val_nme"]], "plain int8 val %": lambda: [r["plain_int8_val_nme"]],
            "int8 kd ÷ plain": lambda: [r["kd_int8_val_nme"] / r["plain_int8_val_nme"]]}.get(header)


LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w])")


def _plain(cell: str) -> str:
    return LINK.sub(r"\1", cell).replace("**", "").replace("`", "").replace("\\*", "*").strip()


def _figures(cell: str) -> list[str]:
    """The numbers a cell shows, as written: code spans and links (names, sources) left out."""
    text = LINK.sub("", re.sub(r"`[^`]*`", "", cell)).replace("**", "")
    return NUMBER.findall(text)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def tables(text: str):
    """(line number, header, rows) of every Markdown table; header cells normalised to lower case."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-| ]+\|$", lines[i + 1].strip()):
            header = [_plain(c).lower() for c in _cells(lines[i])]
            rows, j = [], i + 2
            while j < len(lines) and lines[j].startswith("|"):
                rows.append((j + 1, _cells(lines[j])))
                j += 1
            yield i + 1, header, rows
            i = j
        else:
            i += 1


def _load(path: Path):
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "entries" in data:
        return "bench", data
    if isinstance(data, dict) and "sha256" in data and "nme" in data:
        return "card", data
    if isinstance(data, dict) and "measured_total_seconds" in data and "dry_run" in data:
        return "timing", data
    if isinstance(data, dict) and "seeds" in data and "ratio" in data:
        return "seeds", data
    if isinstance(data, list) and all(isinstance(r, dict) and "run" in r for r in data):
        return "runs", {r["run"]: r for r in data}
    raise AssertionError(f"{path}: not a results.json, a model card, a recipe timing, a seeds comparison or a table "
                         "of runs")


def mismatches(text: str, base: Path) -> list[str]:
    """Every figure of the page's tables that its linked file does not say, as 'line N: ...' messages."""
    problems, checked = [], 0
    for _, header, rows in tables(text):
        previous = None
        for lineno, cells in rows:
            cells = cells + [""] * (len(header) - len(cells))
            sources = sorted({t for _, t in LINK.findall(" ".join(cells)) if t.endswith(".json")
                              and not t.startswith("http")})
            if len(sources) > 1:
                problems.append(f"line {lineno}: links {len(sources)} json files; one per row")
                continue
            if not cells[0] and previous:
                label, src, row = previous["label"], previous["src"], dict(previous["row"])
            else:
                label, src, row = _plain(cells[0]), (sources[0] if sources else None), {}
            if "protocol" in header and cells[header.index("protocol")]:
                row["protocol"] = _plain(cells[header.index("protocol")])
            if "threads" in header:
                row["threads"] = _plain(cells[header.index("threads")])
            previous = {"label": label, "src": src, "row": row}
            data_cells = [(h, c) for k, (h, c) in enumerate(zip(header, cells))
                          if k > 0 and h not in LABELS and not h.startswith("paper")]
            if src is None:
                shown = [(h, c) for h, c in data_cells if _figures(c)]
                if shown and "source" in header:
                    problems.append(f"line {lineno}: figures {shown} with no source file")
                continue
            path = (base / src).resolve()
            if not path.is_file():
                problems.append(f"line {lineno}: {src} is not there")
                continue
            kind, data = _load(path)
            key = (src, label)
            if kind == "bench":
                entries = {(e["model"], e["protocol"]): e for e in data["entries"]}
                spans = re.findall(r"`([^`]*)`", cells[0]) if cells[0] else []
                model = next((s for s in spans if any(m == s for m, _ in entries)), None)
                spec = ROWS.get(key, {})
                model = model or spec.get("model") or row.get("model")
                row.setdefault("protocol", spec.get("protocol", "detector"))
                row["model"] = model
                previous["row"] = dict(row)
                entry = entries.get((model, row["protocol"]))
                if entry is None:
                    problems.append(f"line {lineno}: no entry ({model}, {row['protocol']}) in {src}")
                    continue
                rule_of = lambda h: _bench_rule(h, entry, row)  # noqa: E731
            elif kind == "card":
                rule_of = lambda h: _card_rule(h, data, row)  # noqa: E731
            elif kind == "timing":
                spans = re.findall(r"`([^`]*)`", cells[0])
                row["stage"] = spans[0] if spans else label
                rule_of = lambda h: _timing_rule(h, data, row)  # noqa: E731
            elif kind == "seeds":
                row["label"] = label
                rule_of = lambda h: _seeds_rule(h, data, row)  # noqa: E731
            else:
                if key not in ROWS:
                    problems.append(f"line {lineno}: which run of {src} is {label!r}? (ROWS in this test)")
                    continue
                row["spec"] = ROWS[key]
                rule_of = lambda h: _runs_rule(h, data, row)  # noqa: E731
            for h, c in data_cells:
                shown = _figures(c)
                if not shown:
                    continue
                rule = rule_of(h)
                if rule is None:
                    problems.append(f"line {lineno}: column {h!r} shows {shown}, and no rule reads it from {src}")
                    continue
                expected = rule()
                if len(expected) != len(shown):
                    problems.append(f"line {lineno}, {h!r}: shows {shown}, {src} has {len(expected)} figures")
                    continue
                for s, v in zip(shown, expected):
                    decimals = len(s.split(".")[1]) if "." in s else 0
                    checked += 1
                    if f"{float(v):.{decimals}f}" != s.lstrip("+"):
                        problems.append(f"line {lineno}, {label!r} {h!r}: page {s}, {src} {v:.{decimals + 2}f}")
    if not checked:
        problems.append("no figure of any table was checked")
    return problems


def test_every_table_figure_matches_the_file_it_links():
    assert mismatches(PAGE.read_text(), PAGE.parent) == []


def test_a_changed_figure_is_caught(tmp_path):
    """The check can fail: the page with one figure changed (the shipped int8 file's NME from gt crops, in the
    scores table) is reported, on that line; so are a changed ratio, stage time and seed figure."""
    text = PAGE.read_text()
    lines = text.splitlines()
    shipped = next(i for i, ln in enumerate(lines) if ln.startswith("| **shipped: KD student, int8**"))
    line = lines[shipped + 1]
    assert line.startswith("|  | gt |")
    nme = _cells(line)[3].strip("*")
    wrong = f"{float(nme) + 0.01:.3f}"
    problems = mismatches(text.replace(line, line.replace(nme, wrong, 1), 1), PAGE.parent)
    assert len(problems) == 1 and f"page {wrong}" in problems[0], problems
    tough = next(ln for ln in lines if ln.startswith("| `tough`"))
    minutes = _cells(tough)[3]
    changed = tough.replace(f"| {minutes} |", f"| {float(minutes) + 0.1:.1f} |", 1)
    assert mismatches(text.replace(tough, changed, 1), PAGE.parent)  # a recipe stage's time too
    seed0 = next(ln for ln in lines if ln.startswith("| seed 0 |"))
    kd, ratio = _cells(seed0)[1], _cells(seed0)[3]
    assert mismatches(text.replace(seed0, seed0.replace(kd, f"{float(kd) + 0.001:.3f}", 1), 1), PAGE.parent)
    wrong_ratio = seed0.replace(f"| {ratio} |", f"| {float(ratio) + 0.001:.3f} |", 1)
    assert wrong_ratio != seed0 and mismatches(text.replace(seed0, wrong_ratio, 1), PAGE.parent)  # a ratio too


HAND_WRITTEN = [ROOT / "README.md", PAGE, ROOT / "models" / "README.md", ROOT / "CHANGELOG.md",
                ROOT / "android_demo" / "README.md"]


@pytest.mark.parametrize("doc", HAND_WRITTEN[:4], ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_links_point_at_files_in_the_repository(doc):
    for _, target in LINK.findall(doc.read_text()):
        if target.startswith("http"):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.exists() and ROOT in path.parents, target


@pytest.mark.parametrize("path,limit", [(PAGE, 250), (ROOT / "README.md", 200)], ids=["results page", "README"])
def test_docs_are_short_and_their_table_rows_readable(path, limit):
    lines = path.read_text().splitlines()
    assert len(lines) <= limit
    assert [i + 1 for i, ln in enumerate(lines) if ln.startswith("|") and len(ln) > 300] == []


def test_no_working_sessions_or_internal_run_names_in_the_docs():
    docs = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in {".git", ".venv", "runs", "build", ".gradle", "node_modules"}]
        docs += [Path(folder) / f for f in files if f.endswith((".md", ".json", ".py", ".yaml"))]
    pattern = re.compile(r"session ?[0-9]+|session of issue", re.IGNORECASE)  # the committed results' names too
    sessions = [str(p.relative_to(ROOT)) for p in docs
                if p.name != "test_results_page.py" and pattern.search(p.read_text(errors="replace"))]
    assert sessions == []
    names = re.compile(r"\b(ens-hi\w*|ens-sf|ens-r\w+|tight[23]\w*|selfflip\S*|plain-wing\d?|plain-long\w*|"
                       r"sp1[69]\d-\w+|fh12\w*|mild[23])\b")
    assert {p.name: names.findall(p.read_text()) for p in HAND_WRITTEN if names.search(p.read_text())} == {}
