"""The frozen teachers of a KD student (and of a ``--teacher-blend`` baseline): where they are, whether they fit the
data, and loading them.

Teachers are read from ``<teachers_dir>/{tough,tolerant}/best.h5``; with several folders each role's teacher is the
ensemble of its networks, a network of another input size fed the batch resized (``trainers.Ensemble``). Apart from
train.py because export reads the same teachers for a run's QAT fine-tune.
"""
from __future__ import annotations

from pathlib import Path

from edgekd.core.checkpoint import BEST, check_loaded, check_matches_data, load_model
from edgekd.core.errors import ModelError
from edgekd.training.config import TrainConfig


def teacher_paths(run_dir, cfg: TrainConfig | None = None) -> dict[str, list[Path]]:
    """``<each teachers_dir, or run_dir>/{tough,tolerant}/best.h5`` (the Tough ones alone for a blended baseline):
    each role's networks, one per folder (several make an ensemble); or the ``teacher_checkpoints`` given."""
    names = ("tough",) if cfg is not None and cfg.blended_baseline else ("tough", "tolerant")
    if cfg is not None and cfg.teacher_checkpoints:  # a recipe's student: each role's stages, named in the recipe
        return {name: [Path(p) for p in cfg.teacher_checkpoints[name]] for name in names}
    roots = [Path(d) for d in cfg.teachers_dir] if cfg and cfg.teachers_dir else [Path(run_dir)]
    return {name: [root / name / BEST for root in roots] for name in names}


def check_teacher(name: str, path: Path, data) -> None:
    """Refuse a missing teacher, or one trained for other landmarks or another crop (its input size may differ: it
    is fed the batch resized, trainers.Ensemble)."""
    if not path.is_file():
        raise ModelError(f"{path}: no {name} teacher; train it first (`edgekd train ... --stage {name}`) "
                         f"or point --teachers-dir at a folder holding {name}/{BEST}")
    check_matches_data(path, f"{name} teacher", data, any_size=True)


def load_teachers(paths: dict[str, list[Path]], data) -> dict:
    """Each role's frozen teacher: its one network, or the ``Ensemble`` of several (any input size)."""
    from edgekd.training.trainers import Ensemble  # loads TensorFlow: train.py imports this module without it

    teachers = {}
    for name, role_paths in paths.items():
        nets = []
        for path in role_paths:
            check_teacher(name, path, data)
            nets.append(load_model(path))
            check_loaded(path, f"{name} teacher", nets[-1], data, any_size=True)
        single = len(nets) == 1 and nets[0].input_shape[1] == data.input_size
        teachers[name] = nets[0] if single else Ensemble(nets, data.input_size, name=f"{name}_ensemble")
    return teachers
