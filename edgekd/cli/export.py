"""`edgekd export`: a checkpoint -> a .tflite in one mode, with metadata and a model card."""
from __future__ import annotations

import click

from edgekd.cli.app import config_options, given_settings, main
from edgekd.core import logs
from edgekd.core.errors import EdgekdError
from edgekd.export.config import ExportConfig
from edgekd.export.quantize import FORMATS

# one flag per export format of the registry (float32, the default, needs none): a new format is a new flag
FLAGGED = tuple(name for name in FORMATS if name != "float32")


def format_flags(fn):
    for name in reversed(FLAGGED):
        fn = click.option(f"--{name}", name, is_flag=True, help=FORMATS[name].help)(fn)
    return fn


# ExportConfig fields the Python API and recipes set, not the command line
API_ONLY = ("bn_recalibration_samples", "latency_runs", "val_limit", "progress", "recipe")


@main.command("export", short_help="Checkpoint -> .tflite (float32, float16, dynamic, int8, QAT) with a card.")
@click.argument("checkpoint", required=True, type=click.Path())
@config_options(ExportConfig, only=("out",))
@format_flags
@config_options(ExportConfig, exclude=("checkpoint", "out", "mode", *API_ONLY))
def export(checkpoint, **settings):
    """Convert a checkpoint to .tflite with metadata and a model card, e.g.
    `edgekd export runs/train/300w/student/best.h5 --out runs/export/student_int8.tflite --int8`."""
    from edgekd.export.exporter import export_model  # lazy: export and training code, kept out of edgekd --help

    chosen = [name for name in FLAGGED if settings.get(name)]
    if len(chosen) > 1:
        raise EdgekdError(f"choose one of {', '.join('--' + n for n in FLAGGED)} (got {', '.join(chosen)})")
    given = given_settings(click.get_current_context())
    r = export_model(ExportConfig(checkpoint, mode=chosen[0] if chosen else "float32", progress=logs.show_progress(),
                                  **given))
    warn = " (DEGRADED, written with --allow-degradation)" if r.degraded else ""
    click.echo(f"wrote {r.path} ({r.size_mb:.2f} MB, {r.metadata.quantization}): validation NME "
               f"{r.nme_tflite:.3f}% vs Keras {r.nme_keras:.3f}%{warn}, {r.latency['median']:.2f} ms "
               f"1 thread; card {r.card_md}")
