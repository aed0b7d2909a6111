"""Recipes: a whole training run as one YAML file, run stage by stage by ``edgekd train PREPARED --recipe NAME|FILE``.

A recipe names its input size, the settings its training stages share, and its stages in order. Each stage has a
``kind`` (what it trains or makes) and starts ``from`` an earlier stage's best checkpoint, a trained model file (a
path: fine-tuning, ``recipes/finetune.yaml``), or from scratch:

  baseline   a plain student on the ground-truth landmarks (a warm start, or a plain control)
  tough      the Tough teacher, on the ground-truth landmarks
  tolerant   the Tolerant teacher, on the ASM soft landmarks
  student    the KD student: KD-Loss with the stages named ``tough`` and ``tolerant`` as its teachers, or those its
             ``teachers`` names by role (``teachers: {tough: [tough, refine], tolerant: [tolerant]}``: a role with
             several stages is their ensemble, the mean of their outputs)
  export     the .tflite files of the stage it starts from (``modes``: float32 and/or qat, the int8 export)

Keys are the fields of ``training.config.TrainConfig`` (training stages; ``kd`` holds ``losses.KDLossConfig``'s)
and of ``export.ExportConfig`` (export stages), spelled as there, so a recipe, a run's config.json and the Python API
say the same thing in the same words (``recipes.schema`` lists them and checks each value's type). The shipped
recipes live in ``edgekd/recipes/``; a user copies one to change it.

Command-line overrides ``KEY=VALUE`` (every stage that has the key) or ``STAGE.KEY=VALUE`` (one stage; ``kd.main``
and ``STAGE.kd.main`` for KD-Loss's constants, ``STAGE.from=PATH`` for where a stage starts) win over the file and
are recorded in the run (``recipe.json``). ``control=true`` turns the recipe into its plain control: the same stages
and student steps without the teachers' terms (the teacher stages, of kind tough or tolerant or named in a
student's ``teachers``, are left out but for one a student starts from, each KD student becomes a plain student
named ``<name>-control``, and the stages downstream of it follow, renamed the same way), so one switch measures what
the teachers add.

This module reads a recipe (the Recipe and Stage model, ``load``, ``as_control``, ``stage_config``) and checks its
stage graph; ``recipes.runner`` runs one (``run``, the export stage, the dry run), so reading a recipe does not
import the trainer.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from edgekd.core.checkpoint import BEST
from edgekd.core.errors import EdgekdError
from edgekd.models.losses import KDLossConfig
from edgekd.recipes.schema import (EXPORT_KEYS, KD_KEYS, KINDS, MODEL_SUFFIXES, STAGE_KEYS, TRAIN_KEYS, RecipeError,
                                   UniqueKeyLoader, check_export_settings, check_keys, checked_settings, typed)
from edgekd.training.config import TEACHER_ROLES, TrainConfig

RECIPES_DIR = Path(__file__).parent
DEFAULT_RECIPE = "default"
PACKAGE_PREFIX = "edgekd/recipes/"  # how a run records a shipped recipe's file


@dataclass(frozen=True)
class Stage:
    name: str
    kind: str
    start: str | None  # the file's ``from``: the stage whose best checkpoint this one starts from, or a model file
    settings: dict  # the stage's own keys merged over the recipe's shared ``settings``
    teachers: dict | None = None  # a KD student's ``teachers``: role -> the stages whose outputs teach it

    def to_dict(self) -> dict:
        return {"kind": self.kind, "from": self.start, **({"teachers": self.teachers} if self.teachers else {}),
                **self.settings}

    def teacher_stages(self) -> dict[str, list[str]]:
        """A KD student's teachers by role: its ``teachers``, or the stages named ``tough`` and ``tolerant``."""
        return {role: list((self.teachers or {}).get(role) or [role]) for role in TEACHER_ROLES}


@dataclass(frozen=True)
class Recipe:
    name: str
    source: str  # the file it was read from: edgekd/recipes/NAME.yaml for a shipped one, else an absolute path
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
        init = None if not stage.start else stage.start if is_model_file(stage.start) else \
            str(Path(run_dir) / stage.start / BEST)
        checkpoints = None if not stage.teachers else {
            role: [str(Path(run_dir) / name / BEST) for name in names]
            for role, names in stage.teacher_stages().items()}
        return TrainConfig(stage=stage.kind, recipe=self.name, init_from=init, kd=kd, progress=progress,
                           teacher_checkpoints=checkpoints, **settings)


# --- reading ----------------------------------------------------------------------------------------------------
def available() -> list[str]:
    """The names of the recipes shipped in the package."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(name_or_file) -> Path:
    """A shipped recipe's file by name (or as a run records it, ``edgekd/recipes/NAME.yaml``), or the user's own
    file."""
    text = str(name_or_file)
    if text in available():
        return RECIPES_DIR / f"{text}.yaml"
    if text.startswith(PACKAGE_PREFIX) and Path(text).stem in available() and not Path(text).is_file():
        return RECIPES_DIR / Path(text).name
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


STAGE_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def load(name_or_file, overrides=(), control: bool = False) -> Recipe:
    """Read, override and check a recipe; every problem is one line naming the file and key."""
    path = recipe_path(name_or_file)
    raw_bytes = path.read_bytes()
    try:
        raw = yaml.load(raw_bytes, Loader=UniqueKeyLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise RecipeError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    name = path.stem
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: expected a mapping with input_size, settings and stages")
    check_keys(path, "", raw, ("description", "input_size", "settings", "stages"), required=("input_size", "stages"))
    input_size = typed(path, "input_size", raw["input_size"], int)
    shared = raw.get("settings") or {}
    if not isinstance(shared, dict):
        raise RecipeError(f"{path}: settings: expected a mapping of training settings")
    check_keys(path, "settings.", shared, TRAIN_KEYS)
    checked_shared = checked_settings(path, "settings", "baseline", dict(shared))
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
        check_keys(path, where + ".", body, allowed)
        own = {k: v for k, v in body.items() if k not in STAGE_KEYS}
        settings = own if kind == "export" else {**_merge_kd(shared, own)}
        teachers = _checked_teachers(path, where, kind, body["teachers"]) if "teachers" in body else None
        stages.append(Stage(str(stage_name), kind, body.get("from"), settings, teachers))
    stages = _apply_overrides(path, stages, overrides)
    stages = [replace(s, settings=checked_settings(path, f"stages.{s.name}", s.kind, s.settings)) for s in stages]
    recipe = Recipe(name, _source(path), hashlib.sha256(raw_bytes).hexdigest(), input_size,
                    str(raw.get("description") or "").strip(), tuple(stages), overrides, settings=checked_shared)
    _check_graph(path, recipe)
    return as_control(recipe) if control else recipe


def _source(path: Path) -> str:
    """What a run and a card record as the recipe's file: a shipped recipe by its place in the package (the same on
    every machine), the user's own file by its absolute path."""
    if path.resolve().parent == RECIPES_DIR.resolve():
        return PACKAGE_PREFIX + path.name
    return str(path.resolve())


def _checked_teachers(path: Path, where: str, kind: str, value) -> dict:
    """A KD student's ``teachers``: a mapping of tough and/or tolerant to one stage name or a list of them."""
    if kind != "student":
        raise RecipeError(f"{path}: {where}.teachers: only a KD student (kind student) names its teachers")
    if not isinstance(value, dict) or not value:
        raise RecipeError(f"{path}: {where}.teachers: expected a mapping of {' and/or '.join(TEACHER_ROLES)} to stage "
                          f"names")
    out = {}
    for role, names in value.items():
        if role not in TEACHER_ROLES:
            raise RecipeError(f"{path}: {where}.teachers.{role}: unknown role; expected one of "
                              f"{', '.join(TEACHER_ROLES)}")
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names) \
                or len(set(names)) < len(names):
            raise RecipeError(f"{path}: {where}.teachers.{role}: expected a stage name or a list of different stage "
                              f"names, got {value[role]!r}")
        out[role] = list(names)
    return out


def _pop_control(path: Path, overrides) -> bool:
    for o in overrides:
        key, _, value = o.partition("=")
        if key.strip() == "control":
            return bool(typed(path, "control (override)", yaml.safe_load(value), bool))
    return False


def _merge_kd(shared: dict, own: dict) -> dict:
    """A stage's settings over the shared ones; ``kd`` merged key by key, so a stage can change one constant."""
    merged = {**shared, **own}
    if "kd" in shared or "kd" in own:
        merged["kd"] = {**(shared.get("kd") or {}), **(own.get("kd") or {})}
    return merged


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
        if field_key == "from" and head in names:  # where the stage starts: a stage before it, a model file, or none
            stages[targets[0]] = replace(stages[targets[0]], start=None if value is None else str(value))
            continue
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


def is_model_file(start: str) -> bool:
    """A ``from`` that names a trained model (a path: fine-tuning a shipped or earlier student) and not a stage."""
    return Path(start).suffix.lower() in MODEL_SUFFIXES or "/" in start


def _same_training(a: Stage, b: Stage) -> bool:
    return (a.kind, a.start, a.settings) == (b.kind, b.start, b.settings)


def _check_graph(path: Path, recipe: Recipe) -> None:
    """Stages start from earlier stages (a training stage also from a model file); a KD student finds its two
    teachers before it; sizes agree."""
    seen: dict[str, Stage] = {}
    for stage in recipe.stages:
        where = f"stages.{stage.name}"
        if stage.start is not None and stage.start not in seen and is_model_file(stage.start):
            if stage.kind == "export":
                raise RecipeError(f"{path}: {where}.from: an export stage exports a training stage of the recipe, "
                                  f"not a file ({stage.start})")
            if not Path(stage.start).exists():
                raise RecipeError(f"{path}: {where}.from: {stage.start}: no such model file (expected a stage "
                                  f"before it, or a trained model: {', '.join(MODEL_SUFFIXES)})")
        elif stage.start is not None and stage.start not in seen:
            raise RecipeError(f"{path}: {where}.from: {stage.start!r} is not a stage before it (before it: "
                              f"{', '.join(seen) or 'none'})")
        if stage.start in seen and seen[stage.start].kind == "export":
            raise RecipeError(f"{path}: {where}.from: {stage.start!r} is an export stage; start from a training stage")
        if stage.kind == "export" and stage.start is None:
            raise RecipeError(f"{path}: {where}.from: an export stage needs the training stage it exports")
        if stage.kind == "student" and not stage.teachers:
            for role in TEACHER_ROLES:
                if seen.get(role) is None or seen[role].kind != role:
                    raise RecipeError(f"{path}: {where}: a KD student needs a stage named {role!r} of kind {role} "
                                      f"before it")
        elif stage.kind == "student":
            for role, names in stage.teacher_stages().items():
                given = role in stage.teachers
                default = "" if given else f" (not given: the stage named {role!r})"
                for name in names:
                    if name not in seen or seen[name].kind == "export":
                        raise RecipeError(f"{path}: {where}.teachers.{role}: {name!r} is not a training stage before "
                                          f"it{default} (before it: {', '.join(seen) or 'none'})")
                    # the Tolerant teacher learned the soft landmarks, the Tough one the ground truth
                    if (role == "tolerant") != (seen[name].kind == "tolerant"):
                        expected = "a stage of kind tolerant" if role == "tolerant" else "a stage trained on the " \
                                   "ground truth (not kind tolerant)"
                        raise RecipeError(f"{path}: {where}.teachers.{role}: {name!r} is of kind {seen[name].kind}"
                                          f"{default}; expected {expected}")
                for i, a in enumerate(names):  # training is deterministic: the same start and settings, the same net
                    twin = next((b for b in names[i + 1:] if _same_training(seen[a], seen[b])), None)
                    if twin is not None:
                        raise RecipeError(f"{path}: {where}.teachers.{role}: {a!r} and {twin!r} train the same network "
                                          f"(same start and settings), so their ensemble is one teacher twice; give "
                                          f"them different seeds (override one stage, `{twin}.seed=N`, not `seed=N`)")
        if stage.name in seen:
            raise RecipeError(f"{path}: {where}: the name is used twice")
        try:
            if stage.kind == "export":
                check_export_settings(stage.settings)
            else:
                recipe.train_config(stage, ".").validate()
        except EdgekdError as e:
            raise RecipeError(f"{path}: {where}: {e}") from None
        seen[stage.name] = stage


def as_control(recipe: Recipe) -> Recipe:
    """The recipe's plain control: teacher stages out; each KD student trained plain with the same start, steps and
    settings (its main loss, no teacher terms), and the stages that follow from it renamed ``<name>-control``. A
    teacher stage that a student starts from stays (a student refined from its own Tough teacher): the control
    starts where the KD student does, and shares that stage as it is."""
    teachers = {name for s in recipe.stages if s.kind == "student" for names in s.teacher_stages().values()
                for name in names}
    teachers |= {s.name for s in recipe.stages if s.kind in TEACHER_ROLES}
    by_name = {s.name: s for s in recipe.stages}
    starts = set()  # every stage a kept stage starts from, directly or through other stages
    for s in recipe.stages:
        start = s.start if s.name not in teachers else None
        while start in by_name and start not in starts:
            starts.add(start)
            start = by_name[start].start
    renamed: dict[str, str] = {}
    stages = []
    for stage in recipe.stages:
        if stage.name in teachers and stage.name not in starts:
            continue
        start = renamed.get(stage.start, stage.start)
        if stage.kind == "student":
            settings = dict(stage.settings)
            kd = settings.pop("kd", {}) or {}
            main = kd.get("main", KDLossConfig.main)
            settings["loss"] = main if main != "paper" else "l2"  # Loss_Main as published is L2-like around G
            settings["teacher_flip"] = False
            renamed[stage.name] = f"{stage.name}-control"
            stages.append(Stage(renamed[stage.name], "baseline", start, settings))  # no teachers
        elif stage.start in renamed or stage.start != start:
            renamed[stage.name] = f"{stage.name}-control"
            stages.append(Stage(renamed[stage.name], stage.kind, start, stage.settings))
        else:
            stages.append(replace(stage, start=start))
    if not renamed:
        raise RecipeError(f"{recipe.source}: control=true: the recipe has no KD student to control")
    kept = {s.name for s in stages}
    for s in stages:
        if s.start is not None and s.start not in kept and not is_model_file(s.start):
            raise RecipeError(f"{recipe.source}: control=true: stage {s.name} starts from {s.start}, a teacher stage "
                              f"the plain control leaves out")
    return replace(recipe, stages=tuple(stages), control=True)
