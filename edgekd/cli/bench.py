"""`edgekd bench`: accuracy and latency of models (and peers) behind the face detector, on desktop or a phone."""
from __future__ import annotations

import click

from edgekd.bench.config import DEVICES, PEERS, SPLITS
from edgekd.bench.protocols import PROTOCOLS
from edgekd.cli.app import (DATASETS, RUNS, Option, ThreadCounts, detector_backend_option, main, refine_option,
                            run_dir_options)
from edgekd.core import logs
from edgekd.runtime.predictor import TTA


@main.command(short_help="Accuracy (NME, FR, AUC) and latency of models behind the face detector.")
@click.argument("models", nargs=-1, type=click.Path())
@click.option("--root", "root", cls=Option, old=("--data",), type=click.Path(file_okay=False),
              help="Dataset root as downloaded (the --split faces are scored); without it, latency only.")
@click.option("--dataset", type=DATASETS, default="300w", show_default=True, help="Dataset format and landmarks.")
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True,
              help="val: the validation faces of --prepared (from their images under --root), to choose settings "
                   "such as --refine or --tta without reading the test set; train: every training face as "
                   "downloaded, validation faces included.")
@click.option("--prepared", type=click.Path(file_okay=False),
              help="With --split val: the prepared folder (`edgekd data prepare`) whose validation faces to score.")
@click.option("--out-dir", "out_dir", cls=Option, old=("--out",), type=click.Path(file_okay=False),
              help="Folder for results.json, report.md and the plots (default: runs/bench/NAME).")
@run_dir_options("bench")
@click.option("--crop", "crop", type=click.Choice([*PROTOCOLS, "both"]), default="detector", show_default=True,
              help="Crop from the face detector's box (as an app does), from the ground truth (paper), or both.")
@click.option("--threads", type=ThreadCounts(), default="1,2", show_default=True, help="Thread counts to time.")
@click.option("--compare", multiple=True, type=click.Choice(PEERS),
              help="Peers scored in the same run (repeatable): dlib (HOG + 68-point predictor), mediapipe (Face Mesh "
                   "on LiteRT behind the same detector, mapped to 68 points).")
@click.option("--limit", type=int, help="Only the first N faces of the split (quick checks), 1 or more.")
@click.option("--tta", type=click.Choice(TTA), default="none", show_default=True,
              help="flip: every model also as a mirror-averaged row (two model runs per face), as `predict --tta`.")
@refine_option
@click.option("--video", is_flag=True,
              help="Also a video row: each face as a pan-and-zoom clip, per-frame time and NME with tracking "
                   "vs detector crops on the same frames (adds a pass over every face).")
@detector_backend_option
@click.option("--device", type=click.Choice(DEVICES), default="desktop", show_default=True,
              help="desktop, or pixel: the one Android phone attached over adb (runs android_demo's evaluation mode).")
@click.option("--serial", help="Phone: adb serial, when several devices are attached.")
@click.option("--adb", "adb_path", type=click.Path(dir_okay=False), help="Phone: adb binary (default: PATH, $ANDROID_HOME).")
@click.option("--apk", type=click.Path(dir_okay=False), help="Phone: install this android_demo APK first.")
@click.option("--benchmark-binary", type=click.Path(dir_okay=False),
              help="Phone: TFLite's benchmark_model binary, for model-only latency on the device.")
def bench(models, root, dataset, split, prepared, out_dir, name, exist_ok, crop, threads, compare, limit, tta, refine,
          video, detector_backend,
          device, serial, adb_path, apk, benchmark_binary):
    """Accuracy and latency of .tflite models / Keras checkpoints, e.g.
    `edgekd bench models/300w/student_qat_int8.tflite --root path/to/300w --crop both --compare dlib`.

    Each run writes into a new folder runs/bench/exp, exp2, ... unless --out-dir or --exist-ok says otherwise."""
    from edgekd.bench import benchmark
    from edgekd.core.fileio import next_run_dir

    phone = {k: v for k, v in (("serial", serial), ("adb", adb_path), ("apk", apk),
                               ("benchmark_binary", benchmark_binary)) if v}
    from edgekd.core.fileio import check_output_dir, check_outside_inputs

    if out_dir is not None:
        check_outside_inputs(out_dir, "--out-dir", {"--root": root, "--prepared": prepared})  # inputs stay as they are
    out = out_dir if out_dir is not None else next_run_dir(RUNS / "bench", name, exist_ok)
    check_output_dir(out, "bench", "--out-dir" if out_dir is not None else "--exist-ok")  # never a user's folder
    result = benchmark(list(models), data=root, dataset=dataset, split=split, prepared=prepared, out=out, crop=crop,
                       threads=threads, compare=compare, limit=limit, tta=tta, refine=refine, video=video,
                       detector_backend=detector_backend, device=device, device_options=phone,
                       progress=logs.show_progress())
    click.echo(result.table)
    click.echo(f"results saved to {result.out}")
