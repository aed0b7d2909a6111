"""One training stage: a plain student (baseline), the Tough or Tolerant teacher, or the KD-Loss student.

A recipe (recipes/runner.py) runs its stages in order through ``train``; `edgekd train --stage X` runs one alone.
Run folder, one sub-folder per stage (``<run_dir>/<stage name>/``):
  config.json      TrainConfig + the prepared data it ran on
  model_info.json  params and multiply-adds of the trained network
  log.csv          one row per epoch: training losses, running train NME, validation NME (vs hard and soft
                   targets), learning rate, seconds of training and of BatchNorm recalibration + validation
  last.h5          full Keras model after the latest epoch + optimizer state and epoch (for ``--resume``)
  best.h5          full Keras model of the epoch with the best validation NME (val split, never test), or the
                   average below when it validates better
  average.h5       with --average-last K: the mean of the weights of the last K epochs (stochastic weight
                   averaging), BatchNorm re-estimated and validated after the last epoch
  summary.json     written when the stage finishes; a recipe run skips a stage that has one
  backup/          --strategy multi-worker only, while the stage is unfinished: tf_keras's BackupAndRestore
                   state after the last epoch, which a restarted job continues from (distributed.py)
Checkpoints are plain tf_keras full-model HDF5 files (``keras.models.load_model(path, compile=False)`` works; use
``load_model`` here for a one-line error on a bad file). Each carries JSON under the HDF5 attribute ``edgekd``
(stage, scheme, num_points, input_size, crop, epoch, val NME; read it with ``checkpoint_info``); ``last.h5`` also
holds the optimizer variables in the group ``edgekd_optimizer``. BatchNorm statistics are re-estimated on
training crops before every validation, so both checkpoints are ready for export as they are.
Teachers for the student stage are read from ``<teachers_dir>/{tough,tolerant}/best.h5`` (teachers.py), or their
outputs from a teacher-targets file (``teacher_targets``: computed once by ``edgekd data teach``, no teacher runs
while training).
The baseline stage with ``--teacher-blend`` reads the Tough teacher alone and fits its plain loss to the blend of the
ground truth and that teacher's outputs (distillation without KD-Loss's assistive terms).
Here: the checks before a stage starts, its run folder, and ``train``, which composes the stage's parts (build.py)
with its per-epoch callbacks (callbacks.py) around ``fit``; planning a run's time is projection.py's.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import edgekd
from edgekd.core import metadata
from edgekd.core.checkpoint import (AVERAGE, BEST, LAST, SUMMARY, check_matches_data, check_network, check_same_data,
                                    checkpoint_info, load_model, load_weights, restore, save_checkpoint)
from edgekd.core.errors import EdgekdError, ModelError
from edgekd.core.fileio import check_no_file_in_the_way, check_outside_inputs, write_json
from edgekd.models.backbones import (HEAD_NAME, build_network, check_batch_fits, gap_to_spatial, get_spec, head_of,
                                    model_info)
from edgekd.training import distributed, teacher_targets, tflite_weights
from edgekd.training.build import build_stage, mean_shape, open_data, steps_per_epoch
from edgekd.training.config import TARGET, TrainConfig, resumed_config
from edgekd.training.qat import calibration_images
from edgekd.training.teachers import check_teacher, teacher_paths

TFLITE_INIT_CROPS = 320  # augmented training crops for the BatchNorm statistics of --init-from X.tflite
log = logging.getLogger(__name__)


def _check_stage_folder(stage_dir: Path, cfg: TrainConfig, resume: bool, data) -> None:
    """Refuse to mix runs: a finished or unfinished stage continues only with --resume, and with its own data (the
    manifest's sha256 the checkpoints record); a --resume with nothing to resume, a batch that cannot fit in memory
    and a checkpoint to start from that is none (or could run code) are refused before anything is built."""
    last = stage_dir / LAST
    if (stage_dir / SUMMARY).is_file() and not resume:
        raise EdgekdError(f"{stage_dir}: stage already trained; pass --resume to continue it (inverse-time runs "
                          f"can take more --epochs), or use another --run-dir")
    if last.is_file() and not resume:
        raise EdgekdError(f"{stage_dir}: holds an unfinished run; pass --resume to continue it, or use another --run-dir")
    check_no_file_in_the_way(stage_dir, "--run-dir", folder=True)
    if resume and not last.is_file() and not (stage_dir / "config.json").is_file():
        # (a recipe run resumes only the stages that started: recipe.run asks for resume where there is a run)
        found = "does not exist" if not stage_dir.exists() else "holds no run (no config.json, no last.h5)"
        raise EdgekdError(f"--resume: {stage_dir} {found}: nothing to resume; leave out --resume to start the "
                          f"stage, or give the --run-dir of the run to continue")
    if resume and last.is_file():
        check_matches_data(last, "the checkpoint to resume", data)
        check_same_data(last, data, checkpoint_info(last), "--resume")
    elif resume and (stage_dir / "config.json").is_file():  # started, killed before its first checkpoint
        try:
            recorded = json.loads((stage_dir / "config.json").read_text())
        except ValueError:
            recorded = {}
        check_same_data(stage_dir / "config.json", data, {"prepared": recorded.get("prepared")}, "--resume")
    check_batch_fits(cfg.network(), data.input_size, cfg.batch_size, data.manifest.counts.get("train", 0))
    if cfg.average_last and (stage_dir / AVERAGE).is_file() and not last.is_file():
        raise EdgekdError(f"{stage_dir / AVERAGE}: left by an earlier run without its {LAST}; remove it, or use "
                          f"another --run-dir")
    if cfg.init_from and not (resume and last.is_file()):
        init = Path(cfg.init_from)
        if not init.is_file():
            raise ModelError(f"{init}: checkpoint to start from (--init-from) not found")
        info = None
        if tflite_weights.is_tflite(init):
            tflite_weights.check_float32(init)
            info = _tflite_info(init)
        else:
            check_network(init)  # refused before anything is built: a file that could run code, or no checkpoint
        points, subset = _points_of(init), data.scheme.subset_of
        if points not in (None, data.num_points) and subset is not None and max(subset[1]) < points:
            data = _WithPoints(data, points)  # the data's points are a subset of the file's (_init_subset)
        check_matches_data(init, "the checkpoint to start from", data, info=info, any_size=True)


def _tflite_info(path: Path) -> dict:
    """What ``check_matches_data`` compares, read from an exported model's edgekd metadata."""
    meta = metadata.read(path)
    return {"num_points": meta.num_points, "crop": meta.crop.to_dict()}


def _init_weights(path: Path, net, cfg: TrainConfig, data) -> None:
    """``--init-from``: a checkpoint's weights into a freshly built network; a GAP-head checkpoint also starts a
    spatial-head network (``models.gap_to_spatial``: the same function, so fine-tuning starts where it stands).
    A float32 .tflite export starts the same network (``tflite_weights``: BatchNorm split again with statistics
    of the stage's own augmented training crops). A model of more points starts a network of a subset of them when
    the data's scheme says which (``subset_of``): its landmark layer keeps those points' rows."""
    source_points = _points_of(path)
    if source_points not in (None, data.num_points):
        _init_subset(path, net, cfg, data, source_points)
        return
    if tflite_weights.is_tflite(path):
        images = calibration_images(data, TFLITE_INIT_CROPS, cfg.seed, cfg.augment_preset if cfg.augment else "none")
        spatial_file = tflite_weights.has_spatial_head(path)
        if head_of(net) == "spatial" and spatial_file:
            _check_spatial_size(path, metadata.read(path).crop.input_size, net.input_shape[1])
        spatial_from_gap = head_of(net) == "spatial" and not spatial_file
        target = build_network(data.num_points, data.input_size, replace(cfg.network(), head="gap"),
                               mean_shape(data)) if spatial_from_gap else net
        done = tflite_weights.load_into(target, path, images)
        if spatial_from_gap:
            gap_to_spatial(target, net)
        diff = done["max_output_diff"]
        log.info("started from %s: %d weighted layers, BatchNorm statistics of %d augmented training crops, %s",
                 path, done["layers"], len(images), "not compared with the file (it cannot run at this size)"
                 if diff is None else f"largest output difference to the file {diff:.1g}")
        return
    if head_of(net) == "spatial":
        source = load_model(path)
        if head_of(source) == "gap":
            try:
                gap_to_spatial(source, net)
            except (ValueError, ModelError) as e:
                raise ModelError(f"{path}: does not fit this run's network (was --alpha or --teacher-arch "
                                 f"changed?): {str(e).splitlines()[0]}") from None
            return
        _check_spatial_size(path, source.input_shape[1], net.input_shape[1])
    load_weights(path, net)


def _points_of(path: Path) -> int | None:
    """How many points the model file predicts, where it says (edgekd's .tflite metadata, checkpoint info)."""
    try:
        info = metadata.read(path).num_points if tflite_weights.is_tflite(path) else \
            checkpoint_info(path).get("num_points")
    except (ModelError, EdgekdError):
        return None
    return int(info) if info is not None else None


def _init_subset(path: Path, net, cfg: TrainConfig, data, source_points: int) -> None:
    """The model at ``path`` (``source_points`` points) into a network of the data's points, a subset of them: the
    same network of the file's points is started as usual, then copied layer by layer, its landmark layer keeping the
    rows (x and y) of the subset's points, so the new network starts predicting those points as the file does."""
    subset = data.scheme.subset_of
    if subset is None or max(subset[1]) >= source_points or head_of(net) != "gap":
        raise ModelError(f"{path}: predicts {source_points} points, the data {data.num_points} ({data.scheme.name}); "
                         f"start from a model of the same points, or describe your points as a subset of the file's "
                         f"(subset_of: {{scheme: ..., points: [...]}} in dataset.yaml; a GAP head)")
    full = build_network(source_points, data.input_size, replace(cfg.network(), head_init="default"), None)
    _init_weights(path, full, cfg, _WithPoints(data, source_points))
    columns = [2 * i + k for i in subset[1] for k in (0, 1)]
    for src, dst in zip(full.layers, net.layers):
        weights = src.get_weights()
        if src.name == HEAD_NAME:
            weights = [weights[0][:, columns], weights[1][columns]]
        if weights:
            dst.set_weights(weights)
    log.info("started from %s: %d of its %d points (%s)", path, data.num_points, source_points, subset[0])


class _WithPoints:
    """The prepared data as a network of another point count sees it (``_init_subset`` starts that network)."""

    def __init__(self, data, num_points: int):
        self._data, self.num_points = data, num_points

    def __getattr__(self, name):
        return getattr(self._data, name)


def _check_spatial_size(path: Path, size: int, wanted: int) -> None:
    if size != wanted:
        raise ModelError(f"{path}: a spatial head's Dense layer depends on the input size ({size} px here, {wanted} "
                         f"px in the data); --init-from a spatial model of the same size, or a GAP one of any size")


def _write_config(stage_dir: Path, cfg: TrainConfig, prepared_dir, data, teachers: dict, start: int, net,
                  distribution: dict | None = None) -> dict:
    """config.json and model_info.json of the stage; returns the info stored inside every checkpoint.
    ``distribution``: how many workers and replicas train it (absent on one device)."""
    netcfg = cfg.network()
    prepared = str(Path(prepared_dir).resolve())
    write_json(stage_dir / "config.json", {"train": cfg.to_dict(), "prepared": prepared,
                                            "data": {"scheme": data.scheme.name, "input_size": data.input_size,
                                                     "counts": data.manifest.counts},
                                            "teachers": {k: [str(p) for p in v] for k, v in teachers.items()},
                                            "teacher_targets": _targets_record(cfg),
                                            "init_from": str(Path(cfg.init_from).resolve()) if cfg.init_from else None,
                                            "resumed_from_epoch": start or None, **(distribution or {})})
    write_json(stage_dir / "model_info.json", model_info(net))
    return {"stage": cfg.stage, "scheme": data.scheme.name, "num_points": data.num_points,
            "input_size": data.input_size, "crop": data.crop.to_dict(), "arch": netcfg.arch,
            "alpha": cfg.alpha if get_spec(netcfg.arch).width else None, "head": netcfg.head,
            "target": TARGET[cfg.stage],
            "prepared": prepared, "data_license": data.manifest.license, "edgekd_version": edgekd.__version__}


def _check_same_targets(stage_dir: Path, cfg: TrainConfig) -> None:
    """A resumed KD run must read the very teacher outputs it started with: refuse a file that changed since."""
    path = stage_dir / "config.json"
    recorded = (json.loads(path.read_text()).get("teacher_targets") or {}) if path.is_file() else {}
    if cfg.teacher_targets and recorded.get("sha256") and Path(cfg.teacher_targets).is_file():
        if teacher_targets.sha256(cfg.teacher_targets) != recorded["sha256"]:
            raise EdgekdError(f"--teacher-targets {cfg.teacher_targets}: not the file {stage_dir} started with (its "
                              f"sha256 changed); resume with that file, or start a new --run-dir")


def _targets_record(cfg: TrainConfig) -> dict | None:
    """The teacher-targets file and what it holds (its teachers and their NME on the training faces)."""
    if not (cfg.stage == "student" and cfg.teacher_targets):
        return None
    return {"file": str(Path(cfg.teacher_targets).resolve()), **teacher_targets.describe(cfg.teacher_targets)}


def train(prepared_dir, run_dir, cfg: TrainConfig, resume: bool = False, explicit=None, later_epochs: float = 0.0,
          name: str | None = None) -> dict:
    """Train one stage into ``<run_dir>/<name or stage>/``; returns the stage summary (also written as summary.json).

    ``name``: the stage's folder when it is not the stage kind's own name (a recipe's ``warmup`` is a baseline).

    ``resume`` continues from last.h5 with the settings recorded in the stage's config.json (``explicit``: the
    fields set on the command line, which must not contradict them); the data order of every epoch is a function
    of (seed, epoch), so a resumed seeded run sees the batches an uninterrupted one would have seen.
    With ``strategy`` multi-worker, a backup left by a job that lost a worker is continued without ``resume``
    (distributed.py): the restarted job runs the same command on every worker.
    """
    cfg.validate()
    # first: MultiWorkerMirroredStrategy must be made before TensorFlow runs anything in the process
    place = distributed.placement(cfg.strategy) if cfg.strategy == "multi-worker" else None
    check_outside_inputs(run_dir, "--run-dir", {"PREPARED": prepared_dir})
    stage_dir = Path(run_dir) / (name or cfg.stage)
    backed_up = distributed.backed_up_epoch(stage_dir) if place else None
    resume = resume or backed_up is not None  # a restarted job: its backup proves the stage is this run's
    if cfg.teacher_targets:  # recorded resolved, so a resume from another folder finds it
        cfg = replace(cfg, teacher_targets=str(Path(cfg.teacher_targets).resolve()))
    if cfg.teachers_dir:  # the same for the teachers (and for the export of the run's QAT, which reads them)
        cfg = replace(cfg, teachers_dir=[str(Path(d).resolve()) for d in cfg.teachers_dir])
    if cfg.teacher_checkpoints:
        cfg = replace(cfg, teacher_checkpoints={role: [str(Path(p).resolve()) for p in paths]
                                                for role, paths in cfg.teacher_checkpoints.items()})
    if resume:
        cfg = resumed_config(stage_dir, cfg, explicit)
        _check_same_targets(stage_dir, cfg)
    data = open_data(prepared_dir)
    _check_stage_folder(stage_dir, cfg, resume, data)
    runs_teachers = (cfg.stage == "student" and not cfg.teacher_targets) or cfg.blended_baseline
    teachers = teacher_paths(run_dir, cfg) if runs_teachers else {}
    for role, role_paths in teachers.items():
        for path in role_paths:
            check_teacher(role, path, data)
    if cfg.stage == "student" and cfg.teacher_targets:
        data.attach_guides(teacher_targets.load(cfg.teacher_targets, data))

    place = place or distributed.placement(cfg.strategy)
    if cfg.batch_size < place.replicas:
        raise EdgekdError(f"--batch-size {cfg.batch_size}: the global batch, split over {place.replicas} replicas; "
                          f"give at least {place.replicas}")
    final_dir, scratch = stage_dir, None
    if not place.chief:  # the same callbacks as the chief's (distributed.py), writing where nothing is kept
        stage_dir = scratch = distributed.scratch_folder(stage_dir, place.cluster)
        cfg = replace(cfg, progress=False)
    try:
        summary = _train_placed(place, prepared_dir, final_dir, stage_dir, cfg, data, teachers, resume, backed_up,
                                later_epochs)
    finally:
        if scratch is not None:
            distributed.remove_scratch(scratch, Path(run_dir))
    return {**summary, "checkpoint": str(final_dir / BEST)}


def _train_placed(place, prepared_dir, final_dir: Path, stage_dir: Path, cfg: TrainConfig, data, teachers: dict,
                  resume: bool, backed_up: int | None, later_epochs: float) -> dict:
    """``train`` from the network on, in ``stage_dir`` (a non-chief worker's scratch copy of ``final_dir``).

    ``backed_up``: the epochs a multi-worker backup holds; BackupAndRestore restores its weights and optimizer when
    ``fit`` starts, so last.h5 (maybe an epoch later: it is written before the backup) is not read."""
    import tf_keras as keras

    # tf_keras and the data pipeline load TensorFlow, the callbacks with them: train.py is imported without it
    from edgekd.data.pipeline import make_dataset, make_training_dataset
    from edgekd.training import callbacks

    lost = distributed.lost_errors()

    keras.utils.set_random_seed(cfg.seed)
    steps = steps_per_epoch(cfg, data)
    with place.strategy.scope():
        net, trainer, optimizer = build_stage(cfg, data, teachers, steps)
        start, best_so_far = 0, math.inf
        if backed_up is not None:
            start = backed_up
            if (stage_dir / LAST).is_file() and checkpoint_info(stage_dir / LAST).get("epoch") == start:
                best_so_far = float(checkpoint_info(stage_dir / LAST).get("best_so_far", math.inf))
        elif resume and (stage_dir / LAST).is_file():
            restored = restore(stage_dir / LAST, net, optimizer)
            start, best_so_far = int(restored["epoch"]), float(restored.get("best_so_far", math.inf))
        elif cfg.init_from:
            _init_weights(Path(cfg.init_from), net, cfg, data)
    stage_dir.mkdir(parents=True, exist_ok=True)  # only now: a refused start leaves no folder behind
    info = _write_config(stage_dir, cfg, prepared_dir, data, teachers, start, net, place.record())

    label = stage_dir.name  # what progress lines call the stage: its folder (a recipe's stage name)
    history = callbacks.EpochLog(stage_dir, upto=start)
    select = callbacks.selected_on(cfg.stage)
    best = min([best_so_far, *(r.get(select, math.inf) for r in history.rows)])
    if resume and (stage_dir / BEST).is_file():  # the mean of the last epochs may be best.h5 (after last.h5)
        recorded = checkpoint_info(stage_dir / BEST)
        if backed_up is None or recorded.get("epoch", 0) <= start:  # not an epoch after the backup, done again
            best = min(best, recorded.get(select, math.inf))
    validation = callbacks.Validation(net, data, cfg, make_dataset, best)
    # save_checkpoint looked up here, at each call: a test replaces train.save_checkpoint to stop a run mid-epoch
    average = callbacks.WeightAverage(stage_dir, net, info, cfg, save_checkpoint, label)
    average.fold_in(start)  # a kill between last.h5 and average.h5 left last.h5's epoch out of the mean
    # in the order their epoch ends must run: see callbacks.py
    epoch_end = [callbacks.EpochTimer(), callbacks.StopOnNaN(label, stage_dir), validation, history,
                 callbacks.Checkpoints(stage_dir, net, optimizer, info, save_checkpoint), average]
    if place.multi_worker:  # backed up after last.h5 and average.h5: a restored epoch is in both
        epoch_end += [distributed.train_end_barrier(), distributed.backup_callback(final_dir)]
    progress = callbacks.ProgressReport(label, select, history, later_epochs) if cfg.progress else None
    t0 = time.time()
    if start < cfg.epochs:
        (stage_dir / SUMMARY).unlink(missing_ok=True)  # unfinished again until these epochs are done
        train_ds = make_training_dataset(data, cfg.batch_size, cfg.augmentation(), cfg.seed, start, cfg.epochs,
                                         cfg.steps_per_epoch)
        try:
            trainer.fit(distributed.shard_by_data(train_ds) if place.multi_worker else train_ds, epochs=cfg.epochs,
                        initial_epoch=start, steps_per_epoch=steps,
                        callbacks=epoch_end + ([progress] if progress else []), verbose=0)
        except lost as e:
            if not place.multi_worker:
                raise
            raise distributed.lost_worker(label, final_dir, e) from None
        finally:  # the bar is cleared before any error is printed
            if progress:
                progress.close()
    averaged = average.finish(validation, history.rows)
    if place.multi_worker and place.chief:  # BackupAndRestore removed its checkpoint; its folder is left
        distributed.remove_backup(final_dir)
    return _summarize(history.rows, cfg.stage, select, stage_dir, start, time.time() - t0, averaged, place.record())


def _summarize(rows: list[dict], stage: str, select: str, stage_dir: Path, start: int, seconds: float,
               average: dict | None = None, distribution: dict | None = None) -> dict:
    """summary.json, from log.csv's rows and what the weight average recorded."""
    best_row = min(rows, key=lambda r: r.get(select, math.inf)) if rows else {}
    summary = {"stage": stage, "epochs": rows[-1]["epoch"] if rows else start,
               "best_epoch": best_row.get("epoch"), "best_val_nme": best_row.get("val_nme"),
               "selected_on": select, "last_val_nme": rows[-1].get("val_nme") if rows else None,
               "checkpoint": str(stage_dir / BEST), "seconds": round(seconds, 1),
               "seconds_per_epoch": round(float(np.median([r["seconds"] + r.get("eval_seconds", 0)
                                                            for r in rows])), 1) if rows else None,
               **(distribution or {})}
    if average is not None:  # best.h5 is the one validated best: the mean of the last epochs, or one epoch
        summary["average"] = average
        if average["is_best"]:
            summary.update(best_epoch=None, best_val_nme=average["val_nme"])
    write_json(stage_dir / SUMMARY, summary)
    return summary
