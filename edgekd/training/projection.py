"""How long training will take: the planned cost of a stage not yet started (``stage_cost``, for a recipe's ETA
over its later stages) and ``dry_run``, which times a few real steps of each stage's network on this machine.

Apart from train.py: planning reads settings and builds networks, but never writes a run folder.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import replace

from edgekd.models.backbones import build_network, network_macs
from edgekd.training.build import build_stage, make_trainer, mean_shape, open_data, steps_per_epoch
from edgekd.training.config import TrainConfig

COST_SIZE = 128  # input size at which networks are priced against each other (their ratio barely depends on it)
# a frozen teacher's forward pass costs about a third of its training step
FORWARD_SHARE = 1 / 3


def format_duration(seconds: float) -> str:
    """12 s, 7 min, 1 h 05 min: what a person reads at a glance."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def stage_cost(cfg: TrainConfig, stage: str, input_size: int = COST_SIZE) -> float:
    """A stage's step cost relative to a plain step of its student network: for planning ETAs of stages not yet
    started.

    Each network is priced by its multiply-adds (``models.network_macs``), so any registered backbone, as student or
    teacher, is priced without a table. Multiply-adds under-price some networks on a CPU: EfficientNet-B3 counts
    3.2 MobileNetV2-1.0 steps at 128 px, where 2 cores measured 4.1 (1.24 vs 0.30 s per step); the running stage's
    ETA is measured, not planned."""
    student = network_macs(cfg.network("baseline"), input_size)
    teacher = network_macs(cfg.network("tough"), input_size) / student
    if stage in ("tough", "tolerant"):
        return teacher
    # every member of an ensemble runs, each priced as a network at the student's input size (a 160 px member
    # costs about 1.6 x that: the ETA of the running stage, measured, is the one to trust)
    passes = (2 if cfg.teacher_flip else 1) * teacher_members(cfg)
    if stage == "student" and not cfg.teacher_targets:
        return 1.0 + 2 * FORWARD_SHARE * teacher * passes
    if stage == "baseline" and cfg.kd.teacher_blend:
        return 1.0 + FORWARD_SHARE * teacher * passes
    return 1.0


def teacher_members(cfg: TrainConfig) -> float:
    """Networks per teacher role (the mean over the roles): folders of --teachers-dir, or a recipe's checkpoints."""
    if cfg.teacher_checkpoints:
        roles = ("tough",) if cfg.blended_baseline else tuple(cfg.teacher_checkpoints)
        return sum(len(cfg.teacher_checkpoints[r]) for r in roles) / len(roles)
    return len(cfg.teachers_dir or [None])


def _time_steps(trainer, data, cfg: TrainConfig, timed_steps: int) -> float:
    """Seconds per training step of ``trainer`` as training runs it: ``fit()`` over the augmented input pipeline
    (``train_on_batch`` adds a per-call cost that made the dry run 1.3-1.5 x the real steps), the median of
    ``timed_steps`` steps after 3 warm-up steps (the first steps trace the graph and are several times slower)."""
    import tf_keras as keras

    from edgekd.data.pipeline import make_training_dataset  # loads TensorFlow

    ends = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    ds = make_training_dataset(data, cfg.batch_size, cfg.augmentation(), cfg.seed, 0, 1, timed_steps + 3)
    trainer.fit(ds, epochs=1, steps_per_epoch=timed_steps + 3, verbose=0, callbacks=[Clock()])
    return statistics.median(b - a for a, b in zip(ends[2:], ends[3:]))


def _stand_in_trainer(cfg: TrainConfig, data, net, steps: int):
    """The stage's KD (or blended) trainer with teachers that cost what the real ones will: fresh networks of the
    teachers' architecture at the data's input size, one per teacher folder, mirrored as the stage mirrors them."""
    from edgekd.training.trainers import Ensemble  # loads TensorFlow

    teacher_cfg = cfg.network("tough")
    shape = mean_shape(data) if teacher_cfg.head_init == "mean-shape" else None

    def stand_in(name):
        members = len(cfg.teacher_checkpoints[name]) if cfg.teacher_checkpoints else len(cfg.teachers_dir or [None])
        nets = [build_network(data.num_points, data.input_size, teacher_cfg, shape) for _ in range(members)]
        return nets[0] if members == 1 else Ensemble(nets, data.input_size, name=f"{name}_ensemble")

    roles = ("tough",) if cfg.blended_baseline else ("tough", "tolerant")
    return make_trainer(cfg, data, net, {role: stand_in(role) for role in roles}, steps)[0]


def dry_run(prepared_dir, cfg: TrainConfig, stages=("baseline",), timed_steps: int = 5,
            measured: dict | None = None) -> list[dict]:
    """Projected time of each stage: a few real training steps of each stage's network on the prepared data (a KD
    stage with stand-in teachers as costly as its real ones), timed after warm-up, times its planned steps
    (validation adds about 15 %). Writes nothing.

    A plain step is timed once per network and input pipeline (``measured`` keeps them, and may be shared between
    calls: a recipe's warm start, Tough and Tolerant teachers and its student's own step are often one network), so
    stages that train the same network are projected from the same measurement."""
    import tf_keras as keras

    cfg.validate()  # before steps_per_epoch divides by --batch-size
    data = open_data(prepared_dir)
    steps = steps_per_epoch(cfg, data)
    measured = {} if measured is None else measured
    rows = []
    for stage in stages:
        scfg = replace(cfg, stage=stage)
        scfg.validate()
        # a teacher stage times its own (teacher) network; a student or baseline its network without teachers
        plain_cfg = replace(scfg, stage=stage if stage in ("tough", "tolerant") else "baseline",
                            kd=replace(scfg.kd, teacher_blend=0.0))
        key = (plain_cfg.network(), data.input_size, scfg.batch_size, scfg.augment, scfg.augment_preset,
               scfg.strategy)
        runs_teachers = (stage == "student" and not scfg.teacher_targets) or scfg.blended_baseline
        net = None
        if key not in measured:
            net, trainer, _ = build_stage(plain_cfg, data, {}, steps)
            measured[key] = _time_steps(trainer, data, scfg, timed_steps)
        plain = step = measured[key]
        if runs_teachers:  # timed with stand-ins: fresh networks of each teacher's architecture, as costly to run
            if net is None:
                net = build_stage(plain_cfg, data, {}, steps)[0]
            step = _time_steps(_stand_in_trainer(scfg, data, net, steps), data, scfg, timed_steps)
        rows.append({"stage": stage, "network": scfg.network().arch, "seconds_per_step": round(step, 3),
                     "plain_seconds_per_step": round(plain, 3),
                     "steps": steps * cfg.epochs, "projected_seconds": round(1.15 * step * steps * cfg.epochs)})
        keras.backend.clear_session()
    return rows
