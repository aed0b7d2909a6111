"""`edgekd bench`: accuracy and latency of models (and peers) behind the face detector, on desktop or a phone."""
from __future__ import annotations

import click

from edgekd.bench import benchmark
from edgekd.bench.config import BenchConfig
from edgekd.cli.app import RUNS, Option, ThreadCounts, config_options, given_settings, main, run_dir_options
from edgekd.core import logs
from edgekd.core.fileio import check_output_dir, check_outside_inputs, next_run_dir


@main.command(short_help="Accuracy (NME, FR, AUC) and latency of models behind the face detector.")
@click.argument("models", nargs=-1, type=click.Path())
@click.option("--root", "root", cls=Option, old=("--data",), type=click.Path(file_okay=False),
              help="Dataset root as downloaded, or a folder with a dataset.yaml (the --split faces are scored); "
                   "without it, latency only.")
@config_options(BenchConfig, only=("dataset", "split", "prepared"))
@click.option("--out-dir", "out_dir", cls=Option, old=("--out",), type=click.Path(file_okay=False),
              help="Folder for results.json, report.md and the plots (default: runs/bench/NAME).")
@run_dir_options("bench")
@config_options(BenchConfig, only=("crop", "threads", "compare", "limit", "tta", "refine", "video",
                                   "detector_backend", "device"), types={"threads": ThreadCounts()})
@click.option("--serial", help="Phone: adb serial, when several devices are attached.")
@click.option("--adb", "adb_path", type=click.Path(dir_okay=False),
              help="Phone: adb binary (default: PATH, $ANDROID_HOME).")
@click.option("--apk", type=click.Path(dir_okay=False), help="Phone: install this android_demo APK first.")
@click.option("--benchmark-binary", type=click.Path(dir_okay=False),
              help="Phone: TFLite's benchmark_model binary, for model-only latency on the device.")
def bench(models, root, out_dir, name, exist_ok, serial, adb_path, apk, benchmark_binary, **_settings):
    """Accuracy and latency of .tflite models / Keras checkpoints, e.g.
    `edgekd bench models/300w/kd_student_int8.tflite --root path/to/300w --crop both --compare dlib`.

    Each run writes into a new folder runs/bench/exp, exp2, ... unless --out-dir or --exist-ok says otherwise."""
    phone = {k: v for k, v in (("serial", serial), ("adb", adb_path), ("apk", apk),
                               ("benchmark_binary", benchmark_binary)) if v}
    if out_dir is not None:
        # the inputs stay as they are
        check_outside_inputs(out_dir, "--out-dir", {"--root": root, "--prepared": _settings.get("prepared")})
    out = out_dir if out_dir is not None else next_run_dir(RUNS / "bench", name, exist_ok)
    check_output_dir(out, "bench", "--out-dir" if out_dir is not None else "--exist-ok")  # never a user's folder
    given = given_settings(click.get_current_context())
    result = benchmark(list(models), data=root, out=out, device_options=phone, progress=logs.show_progress(), **given)
    click.echo(result.table)
    click.echo(f"results saved to {result.out}")
