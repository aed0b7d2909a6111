"""What a recipe file may say: its kinds and keys, the type of each value, and the checks made when it is read.

The keys are the fields of ``training.config.TrainConfig`` (training stages; ``kd`` holds ``losses.KDLossConfig``'s)
and of ``export.ExportConfig`` (export stages). The training keys and their types come from the dataclasses, so a
new training setting is a recipe key with no change here; the export keys a recipe may set are listed below (an
export stage sets fewer than the export command takes). ``recipes.recipe`` reads a recipe with these.
"""
from __future__ import annotations

import typing
from dataclasses import fields
from pathlib import Path

import yaml

from edgekd.core.errors import EdgekdError, check_range
from edgekd.models.losses import KDLossConfig
from edgekd.training.config import TrainConfig
from edgekd.training.qat import QAT_SCHEDULES, QAT_TARGETS

TRAIN_KINDS = ("baseline", "tough", "tolerant", "student")
KINDS = (*TRAIN_KINDS, "export")
EXPORT_MODES = ("float32", "qat")
STAGE_KEYS = ("kind", "from", "teachers")  # what a stage is, where it starts, whom a KD student learns from
MODEL_SUFFIXES = (".h5", ".keras", ".tflite")  # a ``from`` with one of these is a model file, not a stage
# TrainConfig fields a recipe does not set: the runner fills them from the stage graph (stage, init_from from
# ``from``, teacher_checkpoints from ``teachers``), the file's name (recipe) or the command line (progress); teacher
# folders and cached teacher targets are single-stage tools (`edgekd train --stage`, `edgekd data teach`)
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig)
                   if f.name not in ("stage", "recipe", "init_from", "teachers_dir", "teacher_checkpoints",
                                     "teacher_targets", "progress"))
EXPORT_KEYS = ("modes", "calibration_samples", "qat_epochs", "qat_steps_per_epoch", "qat_learning_rate",
               "qat_schedule", "qat_target", "float_head", "tolerance", "allow_degradation", "seed")
KD_KEYS = tuple(f.name for f in fields(KDLossConfig))



class RecipeError(EdgekdError):
    """A recipe file or override that cannot be run; the message names the file and key."""



class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last one silently: a
    second ``tough:`` block would replace the first)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)



def check_keys(path: Path, where: str, mapping: dict, allowed, required=()) -> None:
    for key in mapping:
        if key not in allowed:
            raise RecipeError(f"{path}: {where}{key}: unknown key; expected one of {', '.join(allowed)}")
    for key in required:
        if key not in mapping:
            raise RecipeError(f"{path}: {where}{key}: missing")


def typed(path: Path, where: str, value, kind):
    """``value`` as ``kind`` (int, float, bool, str, list), or one line saying what was expected."""
    if kind is float and isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    ok = {int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          bool: isinstance(value, bool), str: isinstance(value, str), list: isinstance(value, list)}[kind]
    if not ok:
        names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list"}
        raise RecipeError(f"{path}: {where}: expected {names[kind]}, got {value!r}")
    return float(value) if kind is float else value


_HINTS = {**typing.get_type_hints(TrainConfig),
          **{f"kd.{k}": v for k, v in typing.get_type_hints(KDLossConfig).items()}}
_EXPORT_TYPES = {"modes": list, "calibration_samples": int, "qat_epochs": int, "qat_steps_per_epoch": int,
                 "qat_learning_rate": float, "qat_schedule": str, "qat_target": str, "float_head": bool,
                 "tolerance": float, "allow_degradation": bool, "seed": int}


def _expected_type(key: str):
    """(type, optional) of a training key from TrainConfig's annotations."""
    hint = _HINTS[key]
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    return base, optional


def checked_settings(path: Path, where: str, kind: str, settings: dict) -> dict:
    """A stage's settings (``where``: its place in the file), each value of its field's type, or one line saying
    which key is wrong and what was expected."""
    out = {}
    for key, value in settings.items():
        if kind == "export":
            if key == "qat_steps_per_epoch" and value is None:
                out[key] = value
                continue
            out[key] = typed(path, f"{where}.{key}", value, _EXPORT_TYPES[key])
            continue
        if key == "kd":
            if not isinstance(value, dict):
                raise RecipeError(f"{path}: {where}.kd: expected a mapping of KD-Loss constants")
            check_keys(path, f"{where}.kd.", value, KD_KEYS)
            out["kd"] = {k: typed_field(path, f"{where}.kd.{k}", v, f"kd.{k}") for k, v in value.items()}
            continue
        out[key] = typed_field(path, f"{where}.{key}", value, key)
    if kind == "export":
        modes = out.get("modes", list(EXPORT_MODES))
        bad = [m for m in modes if m not in EXPORT_MODES]
        if not modes or bad:
            raise RecipeError(f"{path}: {where}.modes: {modes!r}; expected a list of {', '.join(EXPORT_MODES)}")
        out["modes"] = list(modes)
    return out


def typed_field(path: Path, where: str, value, key: str):
    base, optional = _expected_type(key)
    if value is None and optional:
        return None
    if base in (int, float, bool, str):
        return typed(path, where, value, base)
    return value  # list-valued fields are not set by recipes (TRAIN_KEYS leaves them out)


def check_export_settings(settings: dict) -> None:
    """An export stage's values, checked when the recipe is read, not after hours of training."""
    for key, allowed in (("qat_schedule", QAT_SCHEDULES), ("qat_target", QAT_TARGETS)):
        if key in settings and settings[key] not in allowed:
            raise EdgekdError(f"{key} {settings[key]!r}: expected one of {', '.join(allowed)}")
    for key, lo, integer in (("calibration_samples", 1, True), ("qat_epochs", 1, True), ("tolerance", 0, False),
                             ("seed", 0, True)):
        if key in settings:
            check_range(key, settings[key], lo, integer=integer)
    if settings.get("qat_steps_per_epoch") is not None:
        check_range("qat_steps_per_epoch", settings["qat_steps_per_epoch"], 1, integer=True)
    if "qat_learning_rate" in settings:
        check_range("qat_learning_rate", settings["qat_learning_rate"], 0, lo_open=True)
    if settings.get("float_head") and "qat" not in settings["modes"]:
        raise EdgekdError("float_head: only with the qat mode")
