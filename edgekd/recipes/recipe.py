"""Recipes: a whole training run as one YAML file, run stage by stage by ``edgekd train PREPARED --recipe NAME|FILE``.

A recipe names its input size, the settings its training stages share, and its stages in order. Each stage has a
``kind`` (what it trains or makes) and starts ``from`` an earlier stage's best checkpoint, or from scratch:

  baseline   a plain student on the ground-truth landmarks (a warm start, or a plain control)
  tough      the Tough teacher, on the ground-truth landmarks
  tolerant   the Tolerant teacher, on the ASM soft landmarks
  student    the KD student: KD-Loss with the stages named ``tough`` and ``tolerant`` as its teachers
  export     the .tflite files of the stage it starts from (``modes``: float32 and/or qat, the int8 export)

Keys are the fields of ``training.config.TrainConfig`` (training stages; ``kd`` holds ``losses.KDLossConfig``'s) and of
``export.ExportConfig`` (export stages), spelled as there, so a recipe, a run's config.json and the Python API say
the same thing in the same words. The shipped recipes live in ``edgekd/recipes/``; a user copies one to change it.

Command-line overrides ``KEY=VALUE`` (every stage that has the key) or ``STAGE.KEY=VALUE`` (one stage; ``kd.main``
and ``STAGE.kd.main`` for KD-Loss's constants) win over the file and are recorded in the run (``recipe.json``).
``control=true`` turns the recipe into its plain control: the same stages and student steps without the teachers'
terms (the teacher stages are left out, each KD student becomes a plain student named ``<name>-control``, and the
stages downstream of it follow, renamed the same way), so one switch measures what the teachers add.

The modules that load TensorFlow (tf_keras, the data pipeline, models, qat, export) are imported inside the
functions that train or export, so reading and checking a recipe (and `edgekd train --help`) stays fast.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import time
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import yaml

from edgekd.core.checkpoint import BEST, SUMMARY, manifest_sha256
from edgekd.core.errors import EdgekdError, check_range
from edgekd.core.fileio import check_output_dir, mark_output_dir, write_json, write_text
from edgekd.models.losses import KDLossConfig
from edgekd.training.config import TrainConfig, check_finished_matches
from edgekd.training.train import dry_run, stage_cost, steps_per_epoch, train

RECIPES_DIR = Path(__file__).parent
DEFAULT_RECIPE = "default"
TRAIN_KINDS = ("baseline", "tough", "tolerant", "student")
KINDS = (*TRAIN_KINDS, "export")
EXPORT_MODES = ("float32", "qat")
STAGE_KEYS = ("kind", "from")
# TrainConfig fields a recipe does not set: the runner fills them from the stage graph (stage, init_from,
# teachers_dir), the file's name (recipe) or the command line (progress); cached teacher targets are a single-stage
# tool (`edgekd data teach`), not part of a recipe
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig)
                   if f.name not in ("stage", "recipe", "init_from", "teachers_dir", "teacher_targets", "progress"))
EXPORT_KEYS = ("modes", "calibration_samples", "qat_epochs", "qat_steps_per_epoch", "qat_learning_rate",
               "qat_schedule", "qat_target", "float_head", "tolerance", "allow_degradation", "seed")
KD_KEYS = tuple(f.name for f in fields(KDLossConfig))
DONE = "done.json"  # an export stage's record of what it wrote, and with which settings
# a QAT step against a float step of the same network (MobileNetV2 at 128 px on 2 cores: 0.48 against 0.30 s), and
# the fixed part of one export (conversion, validation of the file, latency), measured on a 2-core Xeon: what the
# dry run and the ETA price an export stage at
QAT_STEP_COST = 1.6
EXPORT_SECONDS = 60.0


class RecipeError(EdgekdError):
    """A recipe file or override that cannot be run; the message names the file and key."""


@dataclass(frozen=True)
class Stage:
    name: str
    kind: str
    start: str | None  # the stage whose best checkpoint this one starts from (the file's ``from``)
    settings: dict  # the stage's own keys merged over the recipe's shared ``settings``

    def to_dict(self) -> dict:
        return {"kind": self.kind, "from": self.start, **self.settings}


@dataclass(frozen=True)
class Recipe:
    name: str
    source: str  # the file it was read from
    sha256: str  # of that file's bytes: the card records it
    input_size: int
    description: str
    stages: tuple[Stage, ...]
    overrides: tuple[str, ...] = ()
    control: bool = False
    settings: dict = field(default_factory=dict, compare=False)  # the shared ``settings``, checked (stage_config)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise RecipeError(f"{self.source}: no stage {name!r} (stages: {', '.join(s.name for s in self.stages)})")

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "sha256": self.sha256, "input_size": self.input_size,
                "overrides": list(self.overrides), "control": self.control,
                "stages": {s.name: s.to_dict() for s in self.stages}}

    def train_config(self, stage: Stage, run_dir, progress: bool = True) -> TrainConfig:
        """The TrainConfig of a training stage: its settings, its start and (a KD student) its teachers."""
        settings = dict(stage.settings)
        kd = KDLossConfig(**settings.pop("kd", {}))
        init = str(Path(run_dir) / stage.start / BEST) if stage.start else None
        return TrainConfig(stage=stage.kind, recipe=self.name, init_from=init, kd=kd, progress=progress, **settings)


# --- reading ----------------------------------------------------------------------------------------------------
def available() -> list[str]:
    """The names of the recipes shipped in the package."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(name_or_file) -> Path:
    """A shipped recipe's file by name, or the user's own file."""
    text = str(name_or_file)
    if text in available():
        return RECIPES_DIR / f"{text}.yaml"
    path = Path(text)
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        raise RecipeError(f"--recipe {text}: expected a recipe name ({', '.join(available())}) or a .yaml recipe file")
    return path


def stage_config(name_or_file=DEFAULT_RECIPE, stage: str = "baseline", **given) -> TrainConfig:
    """The TrainConfig of one stage trained alone (`edgekd train --stage X`): the recipe's shared ``settings`` (not
    a stage's own section: a stage alone is the user's, e.g. a fine-tune), then ``given`` (None values ignored;
    ``kd`` a dict of KD-Loss constants merged over the recipe's), e.g. ``stage_config("paper", "tough", epochs=40)``;
    what is in neither takes TrainConfig's default."""
    recipe = load(name_or_file)
    settings = dict(recipe.settings)
    given = {k: v for k, v in given.items() if v is not None}
    kd = {**(settings.pop("kd", None) or {}), **(given.pop("kd", None) or {})}
    return TrainConfig(stage=stage, recipe=recipe.name, kd=KDLossConfig(**kd), **{**settings, **given})


class _UniqueKeyLoader(yaml.SafeLoader):
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


STAGE_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def load(name_or_file, overrides=(), control: bool = False) -> Recipe:
    """Read, override and check a recipe; every problem is one line naming the file and key."""
    path = recipe_path(name_or_file)
    raw_bytes = path.read_bytes()
    try:
        raw = yaml.load(raw_bytes, Loader=_UniqueKeyLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise RecipeError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    name = path.stem
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: expected a mapping with input_size, settings and stages")
    _keys(path, "", raw, ("description", "input_size", "settings", "stages"), required=("input_size", "stages"))
    input_size = _typed(path, "input_size", raw["input_size"], int)
    shared = raw.get("settings") or {}
    if not isinstance(shared, dict):
        raise RecipeError(f"{path}: settings: expected a mapping of training settings")
    _keys(path, "settings.", shared, TRAIN_KEYS)
    checked_shared = _checked_settings(path, Stage("settings", "baseline", None, dict(shared)), where="settings")
    stages_raw = raw["stages"]
    if not isinstance(stages_raw, dict) or not stages_raw:
        raise RecipeError(f"{path}: stages: expected a mapping of stage names to their settings, in order")
    overrides = tuple(overrides)
    control = control or _pop_control(path, overrides)
    overrides = tuple(o for o in overrides if o.split("=", 1)[0].strip() != "control")
    stages = []
    for stage_name, body in stages_raw.items():
        where = f"stages.{stage_name}"
        if not isinstance(stage_name, str) or not STAGE_NAME.match(stage_name) or stage_name in (
                *TRAIN_KEYS, *EXPORT_KEYS, "kd", "control"):
            raise RecipeError(f"{path}: {where}: a stage name is a folder name of lower-case letters, digits, _ and "
                              f"- (starting with a letter) that is not a setting's name")
        if not isinstance(body, dict):
            raise RecipeError(f"{path}: {where}: expected a mapping with kind, from and settings")
        kind = body.get("kind")
        if kind not in KINDS:
            raise RecipeError(f"{path}: {where}.kind: {kind!r}; expected one of {', '.join(KINDS)}")
        allowed = (*STAGE_KEYS, *(EXPORT_KEYS if kind == "export" else TRAIN_KEYS))
        _keys(path, where + ".", body, allowed)
        own = {k: v for k, v in body.items() if k not in STAGE_KEYS}
        settings = own if kind == "export" else {**_merge_kd(shared, own)}
        stages.append(Stage(str(stage_name), kind, body.get("from"), settings))
    stages = _apply_overrides(path, stages, overrides)
    stages = [Stage(s.name, s.kind, s.start, _checked_settings(path, s)) for s in stages]
    recipe = Recipe(name, str(path.resolve()), hashlib.sha256(raw_bytes).hexdigest(), input_size,
                    str(raw.get("description") or "").strip(), tuple(stages), overrides, settings=checked_shared)
    _check_graph(path, recipe)
    return as_control(recipe) if control else recipe


def _pop_control(path: Path, overrides) -> bool:
    for o in overrides:
        key, _, value = o.partition("=")
        if key.strip() == "control":
            return bool(_typed(path, "control (override)", yaml.safe_load(value), bool))
    return False


def _merge_kd(shared: dict, own: dict) -> dict:
    """A stage's settings over the shared ones; ``kd`` merged key by key, so a stage can change one constant."""
    merged = {**shared, **own}
    if "kd" in shared or "kd" in own:
        merged["kd"] = {**(shared.get("kd") or {}), **(own.get("kd") or {})}
    return merged


def _keys(path: Path, where: str, mapping: dict, allowed, required=()) -> None:
    for key in mapping:
        if key not in allowed:
            raise RecipeError(f"{path}: {where}{key}: unknown key; expected one of {', '.join(allowed)}")
    for key in required:
        if key not in mapping:
            raise RecipeError(f"{path}: {where}{key}: missing")


def _typed(path: Path, where: str, value, kind):
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


_HINTS = {**typing.get_type_hints(TrainConfig), **{f"kd.{k}": v for k, v in typing.get_type_hints(KDLossConfig).items()}}
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


def _checked_settings(path: Path, stage: Stage, where: str | None = None) -> dict:
    where = where or f"stages.{stage.name}"
    out = {}
    for key, value in stage.settings.items():
        if stage.kind == "export":
            if key == "qat_steps_per_epoch" and value is None:
                out[key] = value
                continue
            out[key] = _typed(path, f"{where}.{key}", value, _EXPORT_TYPES[key])
            continue
        if key == "kd":
            if not isinstance(value, dict):
                raise RecipeError(f"{path}: {where}.kd: expected a mapping of KD-Loss constants")
            _keys(path, f"{where}.kd.", value, KD_KEYS)
            out["kd"] = {k: _typed_field(path, f"{where}.kd.{k}", v, f"kd.{k}") for k, v in value.items()}
            continue
        out[key] = _typed_field(path, f"{where}.{key}", value, key)
    if stage.kind == "export":
        modes = out.get("modes", list(EXPORT_MODES))
        bad = [m for m in modes if m not in EXPORT_MODES]
        if not modes or bad:
            raise RecipeError(f"{path}: {where}.modes: {modes!r}; expected a list of {', '.join(EXPORT_MODES)}")
        out["modes"] = list(modes)
    return out


def _typed_field(path: Path, where: str, value, key: str):
    base, optional = _expected_type(key)
    if value is None and optional:
        return None
    if base in (int, float, bool, str):
        return _typed(path, where, value, base)
    return value  # list-valued fields are not set by recipes (TRAIN_KEYS leaves them out)


def _apply_overrides(path: Path, stages: list[Stage], overrides) -> list[Stage]:
    """``KEY=VALUE`` for every stage that has the key, ``STAGE.KEY=VALUE`` for one; values read as YAML."""
    names = [s.name for s in stages]
    stages = list(stages)
    for text in overrides:
        key, sep, value_text = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RecipeError(f"override {text!r}: expected KEY=VALUE or STAGE.KEY=VALUE")
        try:
            value = yaml.safe_load(value_text) if value_text.strip() else None
        except yaml.YAMLError:
            raise RecipeError(f"override {text!r}: the value is not valid YAML") from None
        head, _, rest = key.partition(".")
        targets = [i for i, s in enumerate(stages) if s.name == head] if head in names else range(len(stages))
        field_key = rest if head in names else key
        if not field_key:
            raise RecipeError(f"override {text!r}: name a setting after the stage ({head}.KEY=VALUE)")
        hit = False
        for i in targets:
            stage = stages[i]
            allowed = EXPORT_KEYS if stage.kind == "export" else (*TRAIN_KEYS, *(f"kd.{k}" for k in KD_KEYS))
            if field_key not in allowed:
                continue
            settings = dict(stage.settings)
            if field_key.startswith("kd."):
                settings["kd"] = {**(settings.get("kd") or {}), field_key[3:]: value}
            else:
                settings[field_key] = value
            stages[i] = replace(stage, settings=settings)
            hit = True
        if not hit:
            scope = f"stage {head}" if head in names else "any stage"
            raise RecipeError(f"override {text!r}: {field_key} is not a setting of {scope} in {path} (stages: "
                              f"{', '.join(names)})")
    return stages


def _check_graph(path: Path, recipe: Recipe) -> None:
    """Stages start from earlier stages; a KD student finds its two teachers before it; sizes agree."""
    seen: dict[str, Stage] = {}
    for stage in recipe.stages:
        where = f"stages.{stage.name}"
        if stage.start is not None and stage.start not in seen:
            raise RecipeError(f"{path}: {where}.from: {stage.start!r} is not a stage before it (before it: "
                              f"{', '.join(seen) or 'none'})")
        if stage.start is not None and seen[stage.start].kind == "export":
            raise RecipeError(f"{path}: {where}.from: {stage.start!r} is an export stage; start from a training stage")
        if stage.kind == "export" and stage.start is None:
            raise RecipeError(f"{path}: {where}.from: an export stage needs the training stage it exports")
        if stage.kind == "student":
            for role in ("tough", "tolerant"):
                if seen.get(role) is None or seen[role].kind != role:
                    raise RecipeError(f"{path}: {where}: a KD student needs a stage named {role!r} of kind {role} "
                                      f"before it")
        if stage.name in seen:
            raise RecipeError(f"{path}: {where}: the name is used twice")
        try:
            if stage.kind == "export":
                _check_export_settings(stage.settings)
            else:
                recipe.train_config(stage, ".").validate()
        except EdgekdError as e:
            raise RecipeError(f"{path}: {where}: {e}") from None
        seen[stage.name] = stage


def _check_export_settings(settings: dict) -> None:
    """An export stage's values, checked when the recipe is read, not after hours of training."""
    from edgekd.training.qat import QAT_SCHEDULES, QAT_TARGETS

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


def as_control(recipe: Recipe) -> Recipe:
    """The recipe's plain control: teacher stages out; each KD student trained plain with the same start, steps and
    settings (its main loss, no teacher terms), and the stages that follow from it renamed ``<name>-control``."""
    renamed: dict[str, str] = {}
    stages = []
    for stage in recipe.stages:
        if stage.kind in ("tough", "tolerant"):
            continue
        start = renamed.get(stage.start, stage.start)
        if stage.kind == "student":
            settings = dict(stage.settings)
            kd = settings.pop("kd", {}) or {}
            main = kd.get("main", KDLossConfig.main)
            settings["loss"] = main if main != "paper" else "l2"  # Loss_Main as published is L2-like around G
            settings["teacher_flip"] = False
            renamed[stage.name] = f"{stage.name}-control"
            stages.append(Stage(renamed[stage.name], "baseline", start, settings))
        elif stage.start in renamed or stage.start != start:
            renamed[stage.name] = f"{stage.name}-control"
            stages.append(Stage(renamed[stage.name], stage.kind, start, stage.settings))
        else:
            stages.append(replace(stage, start=start))
    if not renamed:
        raise RecipeError(f"{recipe.source}: control=true: the recipe has no KD student to control")
    kept = {s.name for s in stages}
    for s in stages:
        if s.start is not None and s.start not in kept:
            raise RecipeError(f"{recipe.source}: control=true: stage {s.name} starts from {s.start}, a teacher stage "
                              f"the plain control leaves out")
    return replace(recipe, stages=tuple(stages), control=True)


# --- running ----------------------------------------------------------------------------------------------------
RECORD = "recipe.json"


def check_run(run_dir, recipe: Recipe, resume: bool, data_sha256: str | None) -> None:
    """A run folder holds one recipe and its plain control, on one prepared folder: a recipe that ran here
    continues only with --resume; another recipe, other settings or other data are refused; --resume with nothing
    of this recipe to resume is refused with what was found."""
    record = Path(run_dir) / RECORD
    runs = []
    if record.is_file():
        try:
            runs = json.loads(record.read_text())["runs"]
        except (ValueError, KeyError, TypeError) as e:
            raise RecipeError(f"{record}: unreadable ({e}); use another --run-dir") from None
    mine = _comparable(recipe.to_dict())
    same = [r for r in runs if _comparable(r) == mine]
    if resume and not same:
        found = ", ".join(f"{r['name']}{' (control)' if r.get('control') else ''}" for r in runs) or "nothing"
        raise RecipeError(f"--resume: {run_dir} holds no run of this recipe and settings to resume (found: "
                          f"{found}); leave out --resume to start it")
    if same and not resume:
        raise RecipeError(f"{run_dir}: this recipe already ran here; pass --resume to continue it, or use another "
                          f"--run-dir")
    for r in runs:
        if r.get("prepared_sha256") and data_sha256 and r["prepared_sha256"] != data_sha256:
            raise RecipeError(f"{run_dir}: trained on other prepared data (manifest sha256 "
                              f"{r['prepared_sha256'][:12]}, this folder's {data_sha256[:12]}); use that folder, or "
                              f"another --run-dir")
    kd_runs = [r for r in runs if not r.get("control")]
    if not recipe.control and kd_runs and not same:
        first = kd_runs[0]
        raise RecipeError(f"{run_dir}: started with recipe {first['name']} (sha256 {first['sha256'][:12]}, overrides "
                          f"{' '.join(first['overrides']) or 'none'}); resume it with the same --recipe and "
                          f"overrides, or use another --run-dir")
    if recipe.control and not same:
        for r in runs:  # the control of another recipe would share this run's stages under other settings
            if r.get("control") and _comparable(r) != mine:
                raise RecipeError(f"{run_dir}: holds the control of another recipe or settings (sha256 "
                                  f"{r['sha256'][:12]}); use another --run-dir")


def _comparable(d: dict) -> dict:
    """What makes two runs the same: the file's bytes and the stages' effective settings (not the order or the
    spelling of the overrides that made them)."""
    return {k: d.get(k) for k in ("sha256", "control", "stages")}


def _record(run_dir, recipe: Recipe, data_sha256: str | None) -> None:
    record = Path(run_dir) / RECORD
    runs = json.loads(record.read_text()).get("runs", []) if record.is_file() else []
    if not any(_comparable(r) == _comparable(recipe.to_dict()) for r in runs):
        runs.append({**recipe.to_dict(), "prepared_sha256": data_sha256})
    write_json(record, {"runs": runs})


def stage_seconds(stage_dir: Path) -> float | None:
    """A training stage's measured time: every epoch's training and validation seconds in its log (resumed parts
    included), so a stage resumed after a kill still reports all it cost."""
    log = stage_dir / "log.csv"
    if not log.is_file():
        return None
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    return round(sum(float(r.get("seconds") or 0) + float(r.get("eval_seconds") or 0) for r in rows), 1)


def _open_sized(prepared_dir, recipe: Recipe):
    """The prepared folder, refused when it was prepared at another input size than the recipe trains at."""
    from edgekd.data.pipeline import PreparedData

    data = PreparedData.open(prepared_dir)
    if data.input_size != recipe.input_size:
        raise RecipeError(f"{prepared_dir}: prepared at {data.input_size} px, but recipe {recipe.name} trains at "
                          f"{recipe.input_size} px; prepare it with `edgekd data prepare --root DATASET --out-dir "
                          f"DIR --input-size {recipe.input_size}`")
    return data


def run(prepared_dir, run_dir, recipe: Recipe, resume: bool = False, progress: bool = True, echo=print) -> dict:
    """Every stage of ``recipe`` in order into ``<run_dir>/<stage>/``; a finished stage is skipped, an unfinished one
    continues from its last checkpoint (``resume``). Returns (and writes as ``summary.json``) each stage's result."""
    import tf_keras as keras

    from edgekd.models.backbones import check_batch_fits

    data = _open_sized(prepared_dir, recipe)
    data_sha256 = manifest_sha256(prepared_dir)
    check_output_dir(run_dir, "train", "--run-dir")
    check_run(run_dir, recipe, resume, data_sha256)
    for stage in recipe.stages:  # what would refuse a later stage after hours, refused before the first starts
        if stage.kind != "export":
            cfg = recipe.train_config(stage, run_dir)
            check_batch_fits(cfg.network(), data.input_size, cfg.batch_size, data.manifest.counts["train"])
    mark_output_dir(run_dir, "train")
    _record(run_dir, recipe, data_sha256)
    results = {}
    for i, stage in enumerate(recipe.stages):
        stage_dir = Path(run_dir) / stage.name
        if stage.kind == "export":
            results[stage.name] = _export(run_dir, recipe, stage, prepared_dir, progress, echo)
            continue
        cfg = recipe.train_config(stage, run_dir, progress)
        if (stage_dir / SUMMARY).is_file():
            check_finished_matches(stage_dir, cfg)
            results[stage.name] = {**json.loads((stage_dir / SUMMARY).read_text()),
                                   "stage_seconds": stage_seconds(stage_dir)}
            echo(f"{stage.name}: already trained ({stage_dir / SUMMARY}), skipped")
            continue
        later = _later_epochs(recipe, stage, run_dir)
        started = (stage_dir / "last.h5").is_file() or (stage_dir / "config.json").is_file()
        summary = train(prepared_dir, run_dir, cfg, resume=resume and started, later_epochs=later, name=stage.name)
        results[stage.name] = {**summary, "stage_seconds": stage_seconds(stage_dir)}
        keras.backend.clear_session()  # free the finished stage's graphs before the next one
    total = sum(r.get("stage_seconds") or 0 for r in results.values())
    out = {"recipe": recipe.name, "recipe_file": recipe.source, "recipe_sha256": recipe.sha256,
           "overrides": list(recipe.overrides), "control": recipe.control, "stages": results,
           "total_seconds": round(total, 1)}
    write_json(Path(run_dir) / ("summary-control.json" if recipe.control else "summary.json"), out)
    if recipe.control:
        _note_control_in_cards(run_dir, recipe)
    return out


def _later_epochs(recipe: Recipe, stage: Stage, run_dir) -> float:
    """The stages after ``stage`` in its own epochs (each priced by its step cost: a KD epoch runs its teachers too,
    a QAT epoch costs QAT_STEP_COST plain ones), for the run's ETA on every progress line."""

    own_cfg = recipe.train_config(stage, run_dir)
    own = stage_cost(own_cfg, stage.kind) * (own_cfg.steps_per_epoch or 1)
    later = 0.0
    for s in recipe.stages[recipe.stages.index(stage) + 1:]:
        if s.kind == "export":
            source = recipe.train_config(recipe.stage(s.start), run_dir)
            epochs = s.settings.get("qat_epochs", 6) if "qat" in s.settings["modes"] else 0
            later += epochs * QAT_STEP_COST * (s.settings.get("qat_steps_per_epoch") or source.steps_per_epoch or 1)
        else:
            cfg = recipe.train_config(s, run_dir)
            later += cfg.epochs * stage_cost(cfg, s.kind) * (cfg.steps_per_epoch or 1)
    return later / own


def _export(run_dir, recipe: Recipe, stage: Stage, prepared_dir, progress: bool, echo) -> dict:
    """The export stage: each mode's .tflite of the stage it starts from, named ``<from>_<mode>.tflite``."""
    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import export_model

    stage_dir = Path(run_dir) / stage.name
    source = Path(run_dir) / stage.start / BEST
    settings = dict(stage.settings)
    modes = settings.pop("modes")
    done_path = stage_dir / DONE
    wanted = {"from": stage.start, "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
              "settings": stage.settings}
    if done_path.is_file():
        done = json.loads(done_path.read_text())
        if done.get("wanted") == wanted:
            echo(f"{stage.name}: already exported ({done_path}), skipped")
            return done["result"]
        raise RecipeError(f"{stage_dir}: exported with other settings; use another --run-dir")
    stage_dir.mkdir(parents=True, exist_ok=True)
    result, seconds = {}, 0.0
    for mode in modes:
        suffix = "qat_int8" if mode == "qat" else mode
        out = stage_dir / f"{stage.start.removesuffix('-control')}_{suffix}.tflite"
        out.unlink(missing_ok=True)  # left by a killed export of this stage (the record is written after all)
        for side in (out.with_suffix(".card.json"), out.with_suffix(".card.md")):
            side.unlink(missing_ok=True)
        qat_keys = {k: v for k, v in settings.items() if mode == "qat" or not k.startswith(("qat_", "float_head"))}
        t0 = time.time()
        cfg = ExportConfig(source, out, mode, prepared=Path(prepared_dir), progress=progress,
                           recipe=_card_record(run_dir, recipe, stage), **qat_keys)
        exported = export_model(cfg)
        took = time.time() - t0
        seconds += took
        result[mode] = {"file": str(out), "val_nme": exported.nme.tflite, "seconds": round(took, 1)}
        echo(f"{stage.name}: {out} ({took:.0f} s)")
    record = {"result": {**result, "stage_seconds": round(seconds, 1)}, "wanted": wanted}
    write_json(done_path, record)
    return record["result"]


def _card_record(run_dir, recipe: Recipe, stage: Stage) -> dict:
    """What a card says of the run that made the model: the recipe file and every stage's validation NME and time."""
    stages = {}
    for s in recipe.stages:
        if s.kind == "export":
            continue
        summary = Path(run_dir) / s.name / SUMMARY
        if summary.is_file():
            d = json.loads(summary.read_text())
            stages[s.name] = {"kind": s.kind, "val_nme": d.get("best_val_nme"),
                              "seconds": stage_seconds(Path(run_dir) / s.name)}
    return {"recipe": recipe.name, "recipe_file": recipe.source, "recipe_sha256": recipe.sha256,
            "overrides": list(recipe.overrides), "control": recipe.control, "stages": stages,
            "plain_control_val_nme": None if recipe.control else _control_nme(run_dir, recipe)}


def _control_nme(run_dir, recipe: Recipe) -> dict | None:
    """The validation NME of ``recipe``'s own plain control in this run folder (its ``as_control``, nothing else),
    each student stage's; None until that control has trained."""
    expected = _comparable(as_control(recipe).to_dict())
    record = Path(run_dir) / RECORD
    runs = json.loads(record.read_text()).get("runs", []) if record.is_file() else []
    if not any(r.get("control") and _comparable(r) == expected for r in runs):
        return None
    nme = {}
    for stage in as_control(recipe).stages:
        summary = Path(run_dir) / stage.name / SUMMARY
        if stage.name.endswith("-control") and stage.kind != "export" and summary.is_file():
            nme[stage.name] = json.loads(summary.read_text()).get("best_val_nme")
    return nme or None


def _note_control_in_cards(run_dir, control: Recipe) -> None:
    """After a plain control, the cards of its KD recipe's exports (when they exist) gain the control's validation
    NME, so the order of the two runs does not matter; the model files are not touched."""
    from edgekd.export.exporter import render_card

    record = Path(run_dir) / RECORD
    for r in json.loads(record.read_text()).get("runs", []):
        if r.get("control") or r["sha256"] != control.sha256:
            continue
        try:
            kd = load(r["source"], r["overrides"])
        except EdgekdError:  # the file moved or changed since: its run is not this control's
            continue
        if _comparable(as_control(kd).to_dict()) != _comparable(control.to_dict()):
            continue
        nme = _control_nme(run_dir, kd)
        for stage in kd.stages:
            if stage.kind != "export":
                continue
            for card_path in sorted((Path(run_dir) / stage.name).glob("*.card.json")):
                card = json.loads(card_path.read_text())
                if card.get("training"):
                    card["training"]["plain_control_val_nme"] = nme
                    write_json(card_path, card)
                    write_text(card_path.with_name(card_path.name.replace(".card.json", ".card.md")),
                               render_card(card))


def project(prepared_dir, recipe: Recipe, timed_steps: int = 5) -> list[dict]:
    """``--dry-run``: each stage's projected time on this machine, from a few real steps of its own network (a KD
    student priced with its teachers' forward passes; an export priced as its QAT epochs at the QAT step cost)."""

    data = _open_sized(prepared_dir, recipe)
    rows, plain_step = [], {}
    for stage in recipe.stages:
        if stage.kind == "export":
            source = recipe.stage(stage.start)
            step = plain_step.get(source.name, math.nan) * QAT_STEP_COST
            cfg = recipe.train_config(source, ".")
            steps = (stage.settings.get("qat_steps_per_epoch") or steps_per_epoch(cfg, data)) * \
                stage.settings.get("qat_epochs", 6) if "qat" in stage.settings["modes"] else 0
            seconds = step * steps + EXPORT_SECONDS * len(stage.settings["modes"])
            rows.append({"stage": stage.name, "kind": "export", "network": cfg.network().arch,
                         "seconds_per_step": round(step, 3), "steps": steps, "projected_seconds": round(seconds)})
            continue
        cfg = recipe.train_config(stage, ".", progress=False)
        row = dry_run(prepared_dir, replace(cfg, init_from=None), (cfg.stage,), timed_steps)[0]
        plain_step[stage.name] = row["plain_seconds_per_step"]
        rows.append({**row, "stage": stage.name, "kind": stage.kind})
    return rows


