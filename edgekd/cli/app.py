"""The `edgekd` group and what its verbs share: the one error handler (one line, exit status 2, no traceback),
option types (thread counts, old spellings kept hidden), run-folder options, and the rule that no path is empty.

Conventions every verb follows (tests/test_cli.py compares their --help):
  --root DIR        a dataset root as downloaded          PREPARED / --prepared DIR   a prepared folder
  --out FILE        a file to write                      --out-dir DIR                a folder to write
  --name, --exist-ok  a run folder runs/<verb>/<name>, numbered exp, exp2, ... unless --exist-ok (Ultralytics)
  --threads         thread counts (a list where a verb times several)
Choices are read from the registries (datasets, networks, losses, recipes), so a new entry shows up here by itself.
"""
from __future__ import annotations

import dataclasses
import errno
import sys
import typing
from dataclasses import MISSING
from pathlib import Path

import click

import edgekd
from edgekd.core import logs
from edgekd.core.errors import EdgekdError, describe_os_error
from edgekd.core.settings import choices_of, default_of, option
from edgekd.runtime.blazeface import BACKENDS as DETECTOR_BACKENDS
from edgekd.runtime.predictor import MAX_REFINE

RUNS = Path("runs")  # run folders: runs/<verb>/<name>, relative to where the command runs (as in Ultralytics)


class EdgekdGroup(click.Group):
    """The top-level group: the one error handler of every verb. User errors (EdgekdError, bad options, OS errors
    such as a read-only folder or a full disk) become one line on stderr and exit status 2; Ctrl-C exits 130.
    Real bugs keep their traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click.exceptions.NoArgsIsHelpError as e:  # `edgekd` or `edgekd data` alone: the help, as click shows it
            e.show()
            code = e.exit_code
        except click.UsageError as e:
            code = _fail(_usage_line(e), 2)
        except click.ClickException as e:
            code = _fail(e.format_message(), e.exit_code)
        except EdgekdError as e:
            code = _fail(str(e), 2)
        except click.exceptions.Abort as e:
            if isinstance(e.__cause__, EOFError):  # click turns any EOFError into Abort: a file that ended early
                code = _fail(f"unexpected end of a file ({e.__cause__ or 'EOFError'}): an empty or truncated input", 2)
            else:
                code = _fail("interrupted", 130)
        except OSError as e:
            code = 0 if e.errno == errno.EPIPE else _fail(describe_os_error(e), 2)  # EPIPE: `| head` closed it
        finally:
            logs.reset()
        sys.exit(code)


def _fail(message: str, code: int) -> int:
    click.echo(f"error: {' '.join(str(message).split())}", err=True)  # one line, whatever the message held
    return code


def _usage_line(e: click.UsageError) -> str:
    msg = e.format_message()
    if e.ctx is None:
        return msg
    pieces = " ".join(e.ctx.command.collect_usage_pieces(e.ctx))
    return f"{msg[:1].lower()}{msg[1:].rstrip('.')} (usage: {e.ctx.command_path} {pieces}; see {e.ctx.command_path} -h)"


class Option(click.Option):
    """A click option whose old spellings (``old=("--data",)``) keep working but are hidden from --help, so each
    concept shows one name across verbs while scripts written for an earlier version still run."""

    def __init__(self, param_decls, old=(), **kwargs):
        super().__init__([*param_decls, *old], **kwargs)
        self.old = tuple(old)

    def get_help_record(self, ctx):
        saved = self.opts
        self.opts = [o for o in saved if o not in self.old]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = saved


class SettingOption(Option):
    """An option made from a config field by ``config_options``; ``setting`` is the field's dotted path
    (``learning_rate``, ``kd.main``), which is how the command reads back what was given (``given_settings``)."""

    def __init__(self, param_decls, setting: str = "", **kwargs):
        super().__init__(param_decls, **kwargs)
        self.setting = setting


def config_options(cls, only=None, exclude=(), types=None, prefix: str = ""):
    """One option per field of a config dataclass, from what the field declares (``core.settings.setting``): its help,
    choices, path kind and old spellings, its default shown in the help. A nested dataclass field (``kd``) becomes one
    option per field of its own (``--kd-main``).

    Every option defaults to None, so the default lives in the dataclass alone and "given" means "not None": an
    option given explicitly wins over a recipe even where it repeats the default. ``types``: click types by field
    name where the field's Python type is not enough (thread counts).
    """
    hints = typing.get_type_hints(cls)
    made = []
    for f in dataclasses.fields(cls):
        if (only is not None and f.name not in only) or f.name in exclude:
            continue
        base, multiple = _base_type(hints[f.name])
        if dataclasses.is_dataclass(base):
            made.append(config_options(base, types=types, prefix=f"{prefix}{f.name}."))
            continue
        required = default_of(f) is MISSING
        # a required option gets no default at all: click (8.2 on) takes an explicit default=None as a given value
        made.append(click.option(*_declarations(f, prefix, base), cls=SettingOption, setting=prefix + f.name,
                                 old=f.metadata.get("old", ()), multiple=multiple, required=required,
                                 **({} if required else {"default": None}), help=_help(f, base, prefix),
                                 **_kind(f, base, (types or {}).get(f.name))))

    def decorate(fn):
        for option_decorator in reversed(made):  # the fields' order in --help (click stacks decorators bottom-up)
            fn = option_decorator(fn)
        return fn
    return decorate


def given_settings(ctx: click.Context) -> dict:
    """The config fields the user gave on the command line (options not None), nested fields as dicts
    (``{"kd": {"main": "l1"}}``): what wins over a recipe, and what ``--resume`` compares with a run's record."""
    out = {}
    for p in ctx.command.params:
        value = ctx.params.get(p.name)
        if not isinstance(p, SettingOption) or value is None or (p.multiple and not value):
            continue
        head, _, rest = p.setting.partition(".")
        value = list(value) if p.multiple else value
        if rest:
            out.setdefault(head, {})[rest] = value
        else:
            out[head] = value
    return out


def _base_type(hint):
    """(the type an option converts to, whether it repeats) of a field's annotation: ``int | None`` -> int,
    ``list[str] | None`` -> (str, repeated)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (list, tuple):
        return (args[0] if args else str), True
    if args and typing.get_origin(hint) is not None:
        return _base_type(args[0]) if len(args) == 1 else (args[0], False)
    return hint, False


def _declarations(f: dataclasses.Field, prefix: str, base) -> list[str]:
    name = (prefix + f.name).replace(".", "_")
    flag = f.metadata.get("option") or option(prefix + f.name)
    if base is bool and not f.metadata.get("option"):
        flag = f"{flag}/--no-{flag[2:]}"
    return [flag, name]


def _kind(f: dataclasses.Field, base, click_type) -> dict:
    if base is bool:  # --x/--no-x; a differently spelt flag (--no-augment) turns the default off
        return {"is_flag": True} if not f.metadata.get("option") else \
            {"is_flag": True, "flag_value": not default_of(f)}
    if click_type is not None:
        return {"type": click_type}
    if choices_of(f) is not None:
        return {"type": click.Choice(choices_of(f))}
    if f.metadata.get("path"):
        return {"type": click.Path(file_okay=f.metadata["path"] == "file", dir_okay=f.metadata["path"] == "dir")}
    return {"type": base if base in (int, float) else str}


def _help(f: dataclasses.Field, base, prefix: str = "") -> str:
    """The field's help, and its default where one is shown (a one-way flag's default is its absence)."""
    default = default_of(f)
    text = f.metadata.get("help", "")
    if default is MISSING or default is None or default == () or (base is bool and f.metadata.get("option")):
        return text
    if base is bool:
        shown = option(prefix + f.name)[2:]
        shown = shown if default else f"no-{shown}"
    elif isinstance(default, (tuple, list)):
        shown = ",".join(str(v) for v in default)
    else:
        shown = default
    return f"{text}  [default: {shown}]"


class ThreadCounts(click.ParamType):
    """Thread counts, one concept for every verb: ``1,2`` where a verb times several (a tuple), one count where
    it runs once (``many=False``: an int)."""

    def __init__(self, many: bool = True):
        self.many = many
        self.name = "N[,N...]" if many else "N"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or (isinstance(value, tuple) and self.many):
            counts = (value,) if isinstance(value, int) else value
        else:
            try:
                counts = tuple(int(v) for v in str(value).split(",") if v.strip())
            except ValueError:
                self.fail(f"{value!r}: expected {'comma-separated thread counts like 1,2' if self.many else 'a count'}",
                          param, ctx)
        if not counts or min(counts) < 1 or max(counts) > 256:
            self.fail(f"{value!r}: expected thread counts from 1 to 256", param, ctx)
        if not self.many and len(counts) != 1:
            self.fail(f"{value!r}: expected one thread count", param, ctx)
        return counts if self.many else counts[0]


def run_dir_options(verb: str):
    """--name and --exist-ok, as Ultralytics users know them, for a verb whose output is a run folder."""
    def decorate(fn):
        fn = click.option("--exist-ok", is_flag=True, help=f"Reuse runs/{verb}/NAME instead of numbering a new "
                                                           "folder.")(fn)
        return click.option("--name", default="exp", show_default=True,
                            help=f"Run folder runs/{verb}/NAME; taken names get a number: exp2, exp3, ...")(fn)
    return decorate


detector_backend_option = click.option(
    "--detector-backend", type=click.Choice(DETECTOR_BACKENDS), default="auto", show_default=True,
    help="auto = litert: BlazeFace on LiteRT (the boxes MediaPipe Tasks finds, without its wrapper's cost); "
         "tasks: MediaPipe Tasks' FaceDetector, as the Android app runs it.")

refine_option = click.option(
    "--refine", type=int, default=0, show_default=True,
    help=f"Cut each face again N times from its own predicted points and predict again (N more model runs): "
         f"crops from the detector's box come closer to ground-truth ones. 0 to {MAX_REFINE}.")


@click.group(name="edgekd", cls=EdgekdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(edgekd.__version__, prog_name="edgekd")
@click.option("-v", "--verbose", is_flag=True, help="Also debug messages and the native libraries' own logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors: no progress bars, no notices.")
def main(verbose, quiet):
    """Knowledge-distilled facial landmarks for phones: data -> train -> export -> bench / predict."""
    if verbose and quiet:
        raise click.UsageError("-v/--verbose and -q/--quiet exclude each other")
    logs.setup(1 if verbose else -1 if quiet else 0)


class NonEmptyPath(click.Path):
    """click.Path that refuses an empty string: ``--out-dir ""`` would otherwise mean the current folder (prepare
    then failed at its end with "Device or resource busy"), ``--out ""`` a file without a name."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip() == "":
            self.fail("an empty path; give the name of a file or folder", param, ctx)
        return super().convert(value, param, ctx)


def refuse_empty_paths(command: click.Command) -> None:
    """Every path option and argument of every verb refuses an empty string (one rule, not one check per verb)."""
    for param in command.params:
        t = param.type
        if isinstance(t, click.Path) and not isinstance(t, NonEmptyPath):
            param.type = NonEmptyPath(exists=t.exists, file_okay=t.file_okay, dir_okay=t.dir_okay,
                                      writable=t.writable, readable=t.readable, resolve_path=t.resolve_path,
                                      allow_dash=t.allow_dash, path_type=t.type, executable=t.executable)
    for sub in getattr(command, "commands", {}).values():
        refuse_empty_paths(sub)
