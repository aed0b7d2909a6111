"""Settings declared once: a config dataclass field carries its default, help, choices and range in its metadata.

The command line (``cli.app.config_options``), the checks (``check_ranges``) and the error messages (``option``) all
read the field, so a setting is never written twice: a default on a click option and another on the dataclass
drifted apart, and tables that mapped option names to field names had to be kept in step by hand.

A field's option is ``--`` and its dotted path with ``.`` and ``_`` as ``-`` (``kd.teacher_blend`` ->
``--kd-teacher-blend``); ``option="..."`` in a field's metadata names the few visible spellings that differ, shared
with other verbs (``train --augment PRESET`` as ``data show`` spells it); ``old=(...)`` keeps earlier spellings
working, hidden from --help.
"""
from __future__ import annotations

import dataclasses
from dataclasses import MISSING

from edgekd.core.errors import OptionError, check_range


def setting(default=MISSING, help: str = "", *, factory=None, choices=None, range: dict | None = None,
            path: str | None = None, option: str | None = None, old: tuple = ()):
    """A dataclass field with what the command line and ``validate`` need to know about it.

    ``range``: ``check_range``'s bounds (``lo``, ``hi``, ``lo_open``, ``hi_open``, ``integer``); ``path``: "file" or
    "dir" for a path option; ``choices``: the allowed values (a click.Choice on the command line), or a function
    returning them where the registry is defined further down the same module (``choices_of`` reads either).
    """
    metadata = {"help": help, "choices": choices, "range": range, "path": path, "option": option, "old": tuple(old)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option(name: str, cls=None) -> str:
    """How the command line spells a field (a dotted path for nested ones, ``kd.main``): the way errors name it."""
    if cls is not None:
        f = {f.name: f for f in dataclasses.fields(cls)}.get(name)
        if f is not None and f.metadata.get("option"):
            return f.metadata["option"]
    return "--" + name.replace(".", "-").replace("_", "-")


def choices_of(f: dataclasses.Field) -> tuple | None:
    """A field's allowed values, or None where any value of its type goes."""
    allowed = f.metadata.get("choices")
    return tuple(allowed() if callable(allowed) else allowed) if allowed is not None else None


def default_of(f: dataclasses.Field):
    """A field's default value (its factory called), or MISSING for a required one."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def check_ranges(obj, prefix: str = "") -> None:
    """``check_range`` of every field that declares a range (None values, meaning "not set", are skipped)."""
    for f in dataclasses.fields(obj):
        bounds = f.metadata.get("range")
        value = getattr(obj, f.name)
        if bounds is not None and value is not None:
            check_range(option(prefix + f.name, type(obj)), value, **bounds)


def check_choices(obj, prefix: str = "") -> None:
    """Every field with choices holds one of them: one line naming the option and the choices."""
    for f in dataclasses.fields(obj):
        allowed = choices_of(f)
        value = getattr(obj, f.name)
        for v in (value if isinstance(value, (list, tuple)) else [value]):  # a repeatable option: each value
            if allowed is not None and v is not None and v not in allowed:
                raise OptionError(f"{option(prefix + f.name, type(obj))} {v!r}: expected one of {', '.join(allowed)}")
