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
@click.option("--input-size", default=128, show_default=True, help="Model input size (multiple of 32, 96-224).")
@click.option("--margin", default=0.15, show_default=True, help="Crop margin on each side, fraction of the box.")
@click.option("--val-fraction", default=0.1, show_default=True, help="Share of training faces kept for validation.")
@click.option("--asm-variance", default=0.90, show_default=True, help="Variance share the ASM keeps (soft landmarks).")
@click.option("--seed", default=0, show_default=True)
@click.option("--force", is_flag=True, help="Rewrite even if an identical prepared folder exists.")
@friendly_errors
def data_prepare(dataset, root, out, input_size, margin, val_fraction, asm_variance, seed, force):
    """Prepare a dataset for training, e.g. `edgekd data prepare --root ../shared/data/300w --out runs/data/300w`."""
    from edgekd.data.prepare import PrepareConfig, prepare

    cfg = PrepareConfig(dataset=dataset, root=root, input_size=input_size, margin=margin,
                        val_fraction=val_fraction, asm_variance=asm_variance, seed=seed)
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


def _not_built(name: str, issue: int):
    @main.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def cmd():
        raise click.ClickException(f"`edgekd {name}` is not built yet (issue {issue})")

    cmd.__doc__ = f"(not built yet: issue {issue})"
    return cmd


train = _not_built("train", 3)
export = _not_built("export", 4)
bench = _not_built("bench", 5)
predict = _not_built("predict", 4)


if __name__ == "__main__":
    main()
