"""`edgekd export`: a checkpoint -> a .tflite in one mode, with metadata and a model card."""
from __future__ import annotations

import click

from edgekd.cli.app import Option, main
from edgekd.core import logs
from edgekd.core.errors import EdgekdError
from edgekd.training.qat import QAT_SCHEDULES, QAT_TARGETS, QATConfig


@main.command("export", short_help="Checkpoint -> .tflite (float32, float16, dynamic, int8, QAT) with a card.")
@click.argument("checkpoint", required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The .tflite to write (its card goes beside it).")
@click.option("--int8", "int8", is_flag=True, help="Full-integer int8 by post-training quantization.")
@click.option("--qat", is_flag=True, help="Full-integer int8 after quantization-aware fine-tuning (the landmark layer "
                                          "in float with --float-head).")
@click.option("--float16", is_flag=True, help="float16 weights.")
@click.option("--dynamic", is_flag=True, help="Dynamic-range: int8 weights, float activations.")
@click.option("--prepared", "prepared", cls=Option, old=("--data",), type=click.Path(file_okay=False),
              help="Prepared folder the checkpoint was trained on (default: the one its run recorded).")
@click.option("--input-type", type=click.Choice(["int8", "uint8", "float32"]), default="int8", show_default=True,
              help="Input tensor type of an int8/QAT export.")
@click.option("--output-type", type=click.Choice(["float32", "int8", "uint8"]), default="float32", show_default=True,
              help="Output tensor type of an int8/QAT export (float32 = dequantized int8 head).")
@click.option("--calibration-samples", default=300, show_default=True, help="Augmented training crops to calibrate on.")
@click.option("--qat-epochs", default=QATConfig.epochs, show_default=True,
              help="Quantization-aware fine-tuning epochs.")
@click.option("--qat-steps", default=None, type=int, help="Steps per QAT epoch (default: the whole training split).")
@click.option("--qat-lr", default=QATConfig.learning_rate, show_default=True,
              help="QAT Adam learning rate; keep it near the rate the checkpoint's training ended on (measured "
                   "best: 1e-5 after a cosine run to 1e-6; 3e-5 and 1e-4 were worse).")
@click.option("--qat-target", type=click.Choice(list(QAT_TARGETS)), default=QAT_TARGETS[0], show_default=True,
              help="What QAT fits: the float network's own outputs on the same crops (it then only learns to undo "
                   "the rounding; measured best), or the run's own targets and loss (KD-Loss with the student's "
                   "teachers; a --teacher-blend baseline's blend with its Tough teacher).")
@click.option("--qat-schedule", type=click.Choice(list(QAT_SCHEDULES)), default=QATConfig.schedule,
              show_default=True,
              help="QAT learning rate: cosine-decayed to 0 over the fine-tune, or constant.")
@click.option("--teachers-dir", type=click.Path(file_okay=False),
              help="QAT with --qat-target truth: folder with tough/best.h5 and tolerant/best.h5 (tough alone for a "
                   "--teacher-blend baseline; default: the run's teachers, all of an ensemble's networks).")
@click.option("--float-head", is_flag=True,
              help="QAT: keep the landmark layer in float (int8 up to its input): no int8 rounding of the output. "
                   "For the shipped 128 px student: +0.5 MB, about +0.02 ms, and 0.003-0.006 lower validation NME "
                   "in two paired runs (within one QAT run's spread).")
@click.option("--tolerance", default=0.1, show_default=True, help="Largest NME increase (points) over the Keras model.")
@click.option("--allow-degradation", is_flag=True, help="Write the model even if it loses more than --tolerance.")
@click.option("--seed", default=0, show_default=True)
def export(checkpoint, out, int8, qat, float16, dynamic, prepared, input_type, output_type, calibration_samples,
           qat_epochs, qat_steps, qat_lr, qat_schedule, qat_target, teachers_dir, float_head, tolerance,
           allow_degradation, seed):
    """Convert a checkpoint to .tflite with metadata and a model card, e.g.
    `edgekd export runs/train/300w/student/best.h5 --out runs/export/student_int8.tflite --int8`."""
    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import export_model

    chosen = [m for m, on in (("int8", int8), ("qat", qat), ("float16", float16), ("dynamic", dynamic)) if on]
    if len(chosen) > 1:
        raise EdgekdError(f"choose one of --int8, --qat, --float16, --dynamic (got {', '.join(chosen)})")
    r = export_model(ExportConfig(
        checkpoint, out, chosen[0] if chosen else "float32", prepared, input_type=input_type, output_type=output_type,
        calibration_samples=calibration_samples, qat_epochs=qat_epochs, qat_steps_per_epoch=qat_steps,
        qat_learning_rate=qat_lr, qat_schedule=qat_schedule, qat_target=qat_target, teachers_dir=teachers_dir,
        float_head=float_head, tolerance=tolerance, allow_degradation=allow_degradation, seed=seed,
        progress=logs.show_progress()))
    warn = " (DEGRADED, written with --allow-degradation)" if r.degraded else ""
    click.echo(f"wrote {r.path} ({r.size_mb:.2f} MB, {r.metadata.quantization}): validation NME "
               f"{r.nme_tflite:.3f}% vs Keras {r.nme_keras:.3f}%{warn}, {r.latency['median']:.2f} ms "
               f"1 thread; card {r.card_md}")
