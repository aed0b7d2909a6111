"""`edgekd data prepare | show | teach`: a dataset root -> a prepared folder, a picture of it, teacher outputs."""
from __future__ import annotations

import click

from edgekd.cli.app import RUNS, Option, config_options, given_settings, main, run_dir_options
from edgekd.core import logs
from edgekd.core.errors import OptionError
from edgekd.data.augment import PRESETS as AUGMENT_PRESETS
from edgekd.data.prepare import PrepareConfig, prepare


# --- data -------------------------------------------------------------------------------------------------------
@main.group(short_help="Prepare a dataset (crops, ASM soft landmarks) and look at it.")
def data():
    """Read datasets, crop faces, fit the ASM, write prepared folders."""


@data.command("prepare", short_help="Dataset root -> prepared folder that training streams.")
@config_options(PrepareConfig, only=("dataset", "root"))
@click.option("--out-dir", "out_dir", cls=Option, old=("--out",), required=True, type=click.Path(file_okay=False),
              help="Prepared folder to write (never inside --root).")
@config_options(PrepareConfig, exclude=("dataset", "root"))
@click.option("--force", is_flag=True, help="Rewrite a prepared folder (only one that prepare wrote).")
def data_prepare(out_dir, force, **_settings):
    """Prepare a dataset for training, e.g.
    `edgekd data prepare --root path/to/300w --out-dir runs/data/300w-128`.

    A rerun with the same settings finds the folder prepared and does nothing."""
    cfg = PrepareConfig(**given_settings(click.get_current_context()))
    manifest = prepare(cfg, out_dir, force=force, progress=logs.show_progress())
    if not manifest.reused:  # prepare itself said, in one line, that there was nothing to do
        click.echo(manifest.summary())
        click.echo(f"prepared data in {out_dir}")


@data.command("show", short_help="Draw (augmented) training crops with their landmarks into a PNG.")
@click.argument("prepared", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False),
              help="PNG to write (default: runs/show/NAME/samples.png; never inside PREPARED).")
@run_dir_options("show")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train", show_default=True)
@click.option("--count", type=int, default=12, show_default=True, help="Faces to draw, 1 to 400.")
@click.option("--augment", "augment_preset", type=click.Choice(AUGMENT_PRESETS), default="light", show_default=True,
              help="Augmentation drawn, as `train --augment` takes it.")
@click.option("--no-augment", is_flag=True, help="Draw the canonical crops only.")
@click.option("--seed", type=int, default=0, show_default=True)
def data_show(prepared, out, name, exist_ok, split, count, augment_preset, no_augment, seed):
    """Draw training samples (augmented by default) with hard (green) and soft (red) landmarks into a PNG."""
    from click.core import ParameterSource

    from edgekd.core.fileio import check_output_dir, mark_output_dir, next_run_dir
    from edgekd.data.visualize import draw_prepared_samples

    augment_given = click.get_current_context().get_parameter_source("augment_preset") == ParameterSource.COMMANDLINE
    if no_augment and augment_given:
        raise OptionError(f"--no-augment and --augment {augment_preset}: choose one (--no-augment draws the "
                          f"canonical crops)")
    folder = None
    if out is None:
        folder = check_output_dir(next_run_dir(RUNS / "show", name, exist_ok), "data show", "--exist-ok")
        out = folder / "samples.png"
    path = draw_prepared_samples(prepared, out, split=split, count=count, augment=not no_augment and augment_preset,
                                 seed=seed)
    if folder is not None:
        mark_output_dir(folder, "data show")
    click.echo(f"wrote {path}")


@data.command("teach", short_help="Teachers' outputs on every training face, once: KD without teachers in the loop.")
@click.argument("prepared", type=click.Path(exists=True, file_okay=False))
@click.option("--tough", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Tough-teacher checkpoint (hard landmarks); repeat it for an ensemble, whose mean is the target.")
@click.option("--tolerant", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Tolerant-teacher checkpoint (soft landmarks); repeat it for an ensemble.")
@click.option("--teacher-flip", is_flag=True, help="Average each teacher's output with its output on the mirrored "
                                                     "crop.")
@click.option("--also-prepared", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Prepared folders of the same faces at other input sizes, for teachers of those sizes.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The .npz to write (`edgekd train --teacher-targets` reads it; never inside PREPARED).")
def data_teach(prepared, tough, tolerant, teacher_flip, also_prepared, out):
    """Run the teachers once over the training faces and save their outputs, e.g.
    `edgekd data teach runs/data/300w-128 --tough a.h5 --tough b.h5 --tolerant c.h5 --teacher-flip --out t.npz`.

    `edgekd train --stage student --teacher-targets t.npz` then trains KD-Loss from these outputs, carried by each
    sample's augmentation like the landmarks, at the cost of a plain step. Each teacher runs on the prepared folder
    of its input size (PREPARED or an --also-prepared one)."""
    from edgekd.core.checkpoint import check_network
    from edgekd.core.fileio import check_no_file_in_the_way, check_outside_inputs
    from edgekd.data.pipeline import PreparedData
    from edgekd.training import teacher_targets

    inputs = {"PREPARED": prepared, **{f"--also-prepared {p}": p for p in also_prepared},
              **{f"--tough {p}": p for p in tough}, **{f"--tolerant {p}": p for p in tolerant}}
    check_outside_inputs(out, "--out", inputs)
    check_no_file_in_the_way(out, "--out")
    for path in (*tough, *tolerant):  # every teacher before the first one runs: none that is no checkpoint
        check_network(path)
    folders = [PreparedData.open(p) for p in (prepared, *also_prepared)]
    targets, meta = teacher_targets.compute(folders, {"tough": tough, "tolerant": tolerant}, teacher_flip,
                                            logs.log.info if logs.show_progress() else None)
    teacher_targets.save(out, targets, meta, teacher_targets.face_ids(folders[0]))
    for role in teacher_targets.ROLES:
        nets = meta["teachers"][role]["networks"]
        each = ", ".join(f"{r['train_nme']:.2f}" for r in nets)
        click.echo(f"{role}: {len(nets)} network(s), NME on the {meta['faces']} training faces {each} -> "
                   f"target {meta['teachers'][role]['train_nme']:.2f} %")
    click.echo(f"wrote {out}")
