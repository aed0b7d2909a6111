"""The `edgekd` command: one verb per stage, each a thin layer over the Python API (no logic lives here)."""
from __future__ import annotations

import sys
from functools import wraps

import click

import edgekd
from edgekd.errors import EdgekdError


def friendly_errors(fn):
    """User errors become one line on stderr and exit status 2; Ctrl-C exits 130 without a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgekdError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(edgekd.__version__, prog_name="edgekd")
def main():
    """Knowledge-distilled facial landmarks for phones: data -> train -> export -> bench / predict."""


# --- data -------------------------------------------------------------------------------------------------------
@main.group()
def data():
    """Read datasets, crop faces, fit the ASM, write prepared folders."""


@data.command("prepare")
@click.option("--dataset", type=click.Choice(["300w", "wflw", "cofw"]), default="300w", show_default=True)
@click.option("--root", required=True, type=click.Path(file_okay=False), help="Dataset root as downloaded.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Prepared folder to write.")
@click.option("--input-size", default=128, show_default=True, help="Model input size: a multiple of 32 from 64 to 224 (64 is for quick tests).")
@click.option("--margin", default=0.15, show_default=True, help="Crop margin on each side, fraction of the box.")
@click.option("--val-fraction", default=0.1, show_default=True, help="Share of training faces kept for validation.")
@click.option("--asm-variance", default=0.90, show_default=True, help="Variance share the ASM keeps (soft landmarks).")
@click.option("--seed", default=0, show_default=True)
@click.option("--fit-detector/--no-fit-detector", default=True, show_default=True,
              help="Fit the MediaPipe face-box -> crop-box mapping on the training faces (stored in the crop spec).")
@click.option("--force", is_flag=True, help="Rewrite even if an identical prepared folder exists.")
@friendly_errors
def data_prepare(dataset, root, out, input_size, margin, val_fraction, asm_variance, seed, fit_detector, force):
    """Prepare a dataset for training, e.g. `edgekd data prepare --root ../shared/data/300w --out runs/data/300w`."""
    from edgekd.data.prepare import PrepareConfig, prepare

    cfg = PrepareConfig(dataset=dataset, root=root, input_size=input_size, margin=margin,
                        val_fraction=val_fraction, asm_variance=asm_variance, seed=seed, fit_detector=fit_detector)
    manifest = prepare(cfg, out, force=force)
    click.echo(manifest.summary())


@data.command("show")
@click.argument("prepared", type=click.Path(exists=True, file_okay=False))
@click.option("--out", default="augmented.png", show_default=True, type=click.Path(dir_okay=False))
@click.option("--split", default="train", show_default=True)
@click.option("--count", default=12, show_default=True)
@click.option("--augment/--no-augment", default=True, show_default=True)
@click.option("--seed", default=0, show_default=True)
@friendly_errors
def data_show(prepared, out, split, count, augment, seed):
    """Draw training samples (augmented by default) with hard (green) and soft (red) landmarks into a PNG."""
    from edgekd.data.visualize import draw_prepared_samples

    path = draw_prepared_samples(prepared, out, split=split, count=count, augment=augment, seed=seed)
    click.echo(f"wrote {path}")


@main.command("train")
@click.argument("prepared", type=click.Path(exists=True, file_okay=False))
@click.option("--run-dir", required=True, type=click.Path(file_okay=False), help="Run folder (one sub-folder per stage).")
@click.option("--stage", type=click.Choice(["all", "tough", "tolerant", "student", "baseline"]), default="all",
              show_default=True, help="all = tough, tolerant, student in order, skipping finished stages.")
@click.option("--recipe", type=click.Choice(["fast-cpu", "paper"]), default="fast-cpu", show_default=True,
              help="Defaults of every option below: fast-cpu = L1, cosine, head at the mean shape, [-1, 1] inputs, "
                   "light augmentation, 110 epochs, MobileNetV2 teachers; paper = L2, inverse-time decay, "
                   "EfficientNet-B3 teachers, 150 epochs. Options given explicitly override the recipe.")
@click.option("--epochs", type=int, default=None, help="Epochs (recipe: 110 fast-cpu, 150 paper).")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--lr", default=1e-3, show_default=True, help="Initial (peak) Adam learning rate.")
@click.option("--schedule", type=click.Choice(["cosine", "inverse-time"]), default=None,
              help="cosine: to --min-lr over exactly the planned steps; inverse-time: lr / (1 + --lr-decay * step).")
@click.option("--warmup-steps", default=0, show_default=True, help="Linear warm-up steps before the cosine.")
@click.option("--min-lr", default=1e-5, show_default=True, help="Where the cosine schedule ends.")
@click.option("--lr-decay", default=1e-4, show_default=True, help="Inverse-time decay per step (the paper's 1e-4).")
@click.option("--loss", type=click.Choice(["l2", "l1", "wing"]), default=None,
              help="Loss of teachers and plain students (the KD student uses KD-Loss).")
@click.option("--head-init", type=click.Choice(["mean-shape", "default"]), default=None,
              help="mean-shape: the head's bias starts at the mean training shape.")
@click.option("--input-norm/--no-input-norm", default=None,
              help="Scale [0, 1] pixels to the backbone's input range inside the model.")
@click.option("--augment", "augment_preset", type=click.Choice(["light", "full"]), default=None,
              help="light: geometry, mirror, contrast, brightness; full: also gamma, blur, noise, occlusion.")
@click.option("--alpha", default=1.0, show_default=True, help="MobileNetV2 width.")
@click.option("--dropout", type=float, default=None, help="Dropout before the teachers' Dense head.")
@click.option("--stochastic-depth", type=float, default=None, help="Teachers' EfficientNet drop-connect rate.")
@click.option("--teacher-arch", type=click.Choice(["efficientnet-b3", "mobilenetv2"]), default=None,
              help="Teachers' network (recipe: mobilenetv2 fast-cpu, efficientnet-b3 paper).")
@click.option("--teacher-flip", is_flag=True, help="KD student: average each teacher's output with its output on the "
                                                     "mirrored image.")
@click.option("--steps-per-epoch", type=int, default=None, help="Limit steps per epoch (default: whole train split).")
@click.option("--teachers-dir", type=click.Path(file_okay=False), default=None,
              help="Folder with tough/ and tolerant/ teacher runs (default: --run-dir).")
@click.option("--init-from", type=click.Path(dir_okay=False), default=None,
              help="Start from this checkpoint's weights (same network) instead of random ones.")
@click.option("--strategy", type=click.Choice(["default", "mirrored"]), default="default", show_default=True,
              help="mirrored = data-parallel over all local GPUs.")
@click.option("--loss-variant", type=click.Choice(["code", "paper-figure"]), default="code", show_default=True,
              help="KD-Loss constants: the authors' code or the paper's figures.")
@click.option("--no-augment", is_flag=True, help="Train on the canonical crops only.")
@click.option("--seed", default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from last.h5 (weights, optimizer, epoch).")
@friendly_errors
def train(prepared, run_dir, stage, recipe, epochs, batch_size, lr, schedule, warmup_steps, min_lr, lr_decay, loss,
          head_init, input_norm, augment_preset, alpha, dropout, stochastic_depth, teacher_arch, teacher_flip,
          steps_per_epoch, teachers_dir, init_from, strategy, loss_variant, no_augment, seed, resume):
    """Train the teachers and the KD-Loss student, e.g. `edgekd train runs/data/300w --run-dir runs/train/300w`."""
    import json

    from edgekd.losses import KDLossConfig
    from edgekd.train import TrainConfig, train as train_stage, train_all

    kd = KDLossConfig.paper_figure() if loss_variant == "paper-figure" else KDLossConfig()
    cfg = TrainConfig.from_recipe(
        recipe, stage="student" if stage == "all" else stage, epochs=epochs, batch_size=batch_size,
        learning_rate=lr, schedule=schedule, warmup_steps=warmup_steps, min_lr=min_lr, lr_decay=lr_decay, loss=loss,
        head_init=head_init, input_norm=input_norm, augment_preset=augment_preset, alpha=alpha, dropout=dropout,
        stochastic_depth=stochastic_depth, teacher_arch=teacher_arch, teacher_flip=teacher_flip, seed=seed,
        augment=not no_augment, strategy=strategy, steps_per_epoch=steps_per_epoch, teachers_dir=teachers_dir,
        init_from=init_from, kd=kd)
    if stage == "all":
        result = train_all(prepared, run_dir, cfg, resume=resume)
    else:
        result = {stage: train_stage(prepared, run_dir, cfg, resume=resume)}
    click.echo(json.dumps(result, indent=1))


@main.command("export")
@click.argument("checkpoint", required=False, type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), help="The .tflite to write (its card goes beside it).")
@click.option("--int8", "int8", is_flag=True, help="Full-integer int8 by post-training quantization.")
@click.option("--qat", is_flag=True, help="Full-integer int8 after quantization-aware fine-tuning.")
@click.option("--float16", is_flag=True, help="float16 weights.")
@click.option("--dynamic", is_flag=True, help="Dynamic-range: int8 weights, float activations.")
@click.option("--prepared", "--data", "prepared", type=click.Path(file_okay=False),
              help="Prepared folder the checkpoint was trained on (default: the one its run recorded).")
@click.option("--input-type", type=click.Choice(["int8", "uint8", "float32"]), default="int8", show_default=True,
              help="Input tensor type of an int8/QAT export.")
@click.option("--output-type", type=click.Choice(["float32", "int8", "uint8"]), default="float32", show_default=True,
              help="Output tensor type of an int8/QAT export (float32 = dequantized int8 head).")
@click.option("--calibration-samples", default=300, show_default=True, help="Augmented training crops to calibrate on.")
@click.option("--qat-epochs", default=3, show_default=True, help="Quantization-aware fine-tuning epochs.")
@click.option("--qat-steps", default=None, type=int, help="Steps per QAT epoch (default: the whole training split).")
@click.option("--qat-lr", default=1e-4, show_default=True,
              help="QAT Adam learning rate; keep it at or below the rate the checkpoint's training ended on.")
@click.option("--teachers-dir", type=click.Path(file_okay=False),
              help="QAT: folder with tough/best.h5 and tolerant/best.h5 (default: the student run's teachers).")
@click.option("--tolerance", default=0.1, show_default=True, help="Largest NME increase (points) over the Keras model.")
@click.option("--allow-degradation", is_flag=True, help="Write the model even if it loses more than --tolerance.")
@click.option("--seed", default=0, show_default=True)
@friendly_errors
def export(checkpoint, out, int8, qat, float16, dynamic, prepared, input_type, output_type, calibration_samples,
           qat_epochs, qat_steps, qat_lr, teachers_dir, tolerance, allow_degradation, seed):
    """Convert a checkpoint to .tflite with metadata and a model card, e.g.
    `edgekd export runs/kd/student/best.h5 --out student_int8.tflite --int8 --prepared runs/data/300w`."""
    from edgekd.export import export_model

    if checkpoint is None or out is None:
        raise EdgekdError("usage: edgekd export CHECKPOINT --out FILE.tflite [--int8|--qat|--float16|--dynamic] "
                          "[--prepared PREPARED_DIR]")
    chosen = [m for m, on in (("int8", int8), ("qat", qat), ("float16", float16), ("dynamic", dynamic)) if on]
    if len(chosen) > 1:
        raise EdgekdError(f"choose one of --int8, --qat, --float16, --dynamic (got {', '.join(chosen)})")
    r = export_model(checkpoint, out, chosen[0] if chosen else "float32", prepared, input_type=input_type,
                     output_type=output_type, calibration_samples=calibration_samples, qat_epochs=qat_epochs,
                     qat_steps_per_epoch=qat_steps, qat_learning_rate=qat_lr, teachers_dir=teachers_dir,
                     tolerance=tolerance,
                     allow_degradation=allow_degradation, seed=seed)
    warn = " (DEGRADED, written with --allow-degradation)" if r.degraded else ""
    click.echo(f"wrote {r.path} ({r.size_mb:.2f} MB, {r.metadata.quantization}): validation NME "
               f"{r.nme_tflite:.3f}% vs Keras {r.nme_keras:.3f}%{warn}, {r.card['latency_ms']['median']:.2f} ms "
               f"1 thread; card {r.card_md}")


def _int_list(ctx, param, value):
    try:
        out = tuple(int(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated thread counts like 1,2") from None
    if not out or min(out) < 1:
        raise click.BadParameter(f"{value!r}: expected thread counts >= 1")
    return out


@main.command()
@click.argument("models", nargs=-1, type=click.Path())
@click.option("--data", type=click.Path(file_okay=False), help="Dataset root as downloaded; without it, latency only.")
@click.option("--dataset", type=click.Choice(["300w", "wflw", "cofw"]), default="300w", show_default=True)
@click.option("--out", default="runs/bench", show_default=True, type=click.Path(file_okay=False),
              help="Folder for results.json, report.md and the plots.")
@click.option("--crop", "crop", type=click.Choice(["detector", "gt", "both"]), default="detector", show_default=True,
              help="Crop from the face detector's box (as an app does), from the ground truth (paper), or both.")
@click.option("--threads", default="1,2", show_default=True, callback=_int_list, help="Thread counts to time.")
@click.option("--compare", multiple=True, type=click.Choice(["dlib"]), help="Peers scored in the same run.")
@click.option("--limit", type=int, help="Only the first N test faces (quick checks).")
@click.option("--device", default="desktop", show_default=True,
              help="desktop, or pixel: the one Android phone attached over adb (runs android_demo's evaluation mode).")
@click.option("--serial", help="Phone: adb serial, when several devices are attached.")
@click.option("--adb", "adb_path", type=click.Path(dir_okay=False), help="Phone: adb binary (default: PATH, $ANDROID_HOME).")
@click.option("--apk", type=click.Path(dir_okay=False), help="Phone: install this android_demo APK first.")
@click.option("--benchmark-binary", type=click.Path(dir_okay=False),
              help="Phone: TFLite's benchmark_model binary, for model-only latency on the device.")
@friendly_errors
def bench(models, data, dataset, out, crop, threads, compare, limit, device, serial, adb_path, apk, benchmark_binary):
    """Accuracy and latency of .tflite models / Keras checkpoints, e.g.
    `edgekd bench model.tflite --data ../shared/data/300w --crop both --compare dlib`."""
    from edgekd.bench import benchmark

    phone = {k: v for k, v in (("serial", serial), ("adb", adb_path), ("apk", apk),
                               ("benchmark_binary", benchmark_binary)) if v}
    result = benchmark(list(models), data=data, dataset=dataset, out=out, crop=crop, threads=threads,
                       compare=compare, limit=limit, device=device, device_options=phone)
    click.echo(result.table)
    click.echo(f"wrote {result.out}/results.json and report.md")


@main.command()
@click.argument("model", type=click.Path())
@click.argument("image", type=click.Path(), required=False)
@click.option("--out", default="predicted.png", show_default=True, type=click.Path(dir_okay=False),
              help="Image with the landmarks drawn.")
@click.option("--pts", type=click.Path(dir_okay=False), help="Also write the first face's points as a .pts file.")
@click.option("--threads", default=1, show_default=True)
@friendly_errors
def predict(model, image, out, pts, threads):
    """Landmarks of every face in IMAGE (detector -> crop from the model's metadata -> model -> image points).

    Without IMAGE, scikit-image's astronaut photo (public domain) is used, so a model can be tried with no dataset."""
    from edgekd.runtime import predict_file

    faces = predict_file(model, image, out=out, num_threads=threads)
    click.echo(f"{len(faces)} face(s) found in {image or 'the astronaut sample'}; wrote {out}")
    if pts and faces:
        from edgekd.data.readers import write_pts

        write_pts(pts, faces[0].points)
        click.echo(f"wrote {pts}")


if __name__ == "__main__":
    main()
