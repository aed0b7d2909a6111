"""One training stage: a plain student (baseline), the Tough or Tolerant teacher, or the KD-Loss student.

A recipe (recipe.py) runs its stages in order through ``train``; `edgekd train --stage X` runs one alone.
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
Checkpoints are plain tf_keras full-model HDF5 files (``keras.models.load_model(path, compile=False)`` works; use
``load_model`` here for a one-line error on a bad file). Each carries JSON under the HDF5 attribute ``edgekd``
(stage, scheme, num_points, input_size, crop, epoch, val NME; read it with ``checkpoint_info``); ``last.h5`` also
holds the optimizer variables in the group ``edgekd_optimizer``. BatchNorm statistics are re-estimated on
training crops before every validation, so both checkpoints are ready for export as they are.
Teachers for the student stage are read from ``<teachers_dir>/{tough,tolerant}/best.h5`` (with several folders, each
teacher is the ensemble of its role's networks, a network of another input size fed the batch resized:
``trainers.Ensemble``), or their outputs from a teacher-targets file (``teacher_targets``: computed once by
``edgekd data teach``, no teacher runs while training).
The baseline stage with ``--teacher-blend`` reads the Tough teacher alone and fits its plain loss to the blend of the
ground truth and that teacher's outputs (distillation without KD-Loss's assistive terms).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import edgekd
from edgekd.core.checkpoint import (AVERAGE, BEST, LAST, SUMMARY, check_loaded, check_matches_data, checkpoint_info,
                                    load_model, load_weights, restore, save_checkpoint)
from edgekd.core.errors import EdgekdError, ModelError
from edgekd.core.fileio import check_outside_inputs, write_json, write_text
from edgekd.core.metrics import batch_nme
from edgekd.training import tflite_weights
from edgekd.training.config import TARGET, TrainConfig, resumed_config

TFLITE_INIT_CROPS = 320  # augmented training crops for the BatchNorm statistics of --init-from X.tflite
log = logging.getLogger(__name__)



class TrainingDiverged(EdgekdError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# --- metrics ----------------------------------------------------------------------------------------------------
def _forward(net):
    import tensorflow as tf

    def forward(images):
        return net(images, training=False)

    return tf.function(forward, reduce_retracing=True, autograph=False)


def evaluate(net, dataset, nme_pair, forward=None) -> dict:
    """Validation NME in % against hard and soft targets of a non-augmented dataset.

    Pass the same ``forward`` (a tf.function of the net) on every call to trace it only once.
    """
    forward = forward or _forward(net)
    preds, hard, soft = [], [], []
    for images, targets in dataset:
        preds.append(forward(images).numpy())
        hard.append(targets["hard"].numpy())
        soft.append(targets["soft"].numpy())
    preds, hard, soft = (np.concatenate(v) for v in (preds, hard, soft))
    return {"val_nme": float(100 * batch_nme(preds, hard, nme_pair).mean()),
            "val_nme_soft": float(100 * batch_nme(preds, soft, nme_pair).mean())}


# --- the training step ------------------------------------------------------------------------------------------
def make_schedule(cfg: TrainConfig, total_steps: int):
    """The learning-rate schedule: cosine from lr to min_lr over exactly ``total_steps`` (after a linear warm-up),
    or the paper's inverse-time decay, which barely decays within a CPU-sized run."""
    import tensorflow as tf
    import tf_keras as keras

    if cfg.schedule == "inverse-time":
        return keras.optimizers.schedules.InverseTimeDecay(cfg.learning_rate, decay_steps=1, decay_rate=cfg.lr_decay)
    decay_steps = max(1, total_steps - cfg.warmup_steps)
    cosine = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps, alpha=cfg.min_lr / cfg.learning_rate)
    if not cfg.warmup_steps:
        return cosine

    class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            warm = cfg.learning_rate * (step + 1.0) / cfg.warmup_steps
            return tf.where(step < cfg.warmup_steps, warm, cosine(step - cfg.warmup_steps))

        def get_config(self):
            return {}

    return WarmupCosine()


def mean_shape(data) -> np.ndarray:
    """Mean hard landmarks of the training split in normalised crop coordinates, (2N,): the head's starting bias."""
    _, hard = data.arrays("train")
    return data.crop.normalize(hard).mean(axis=0).reshape(-1)


# --- per-epoch bookkeeping --------------------------------------------------------------------------------------
def _epoch_callback_class():
    import tf_keras as keras
    from tqdm import tqdm

    class EpochEnd(keras.callbacks.Callback):
        """Progress bar, NaN guard, and at each epoch end: BatchNorm recalibration, validation, log, checkpoints."""

        def __init__(self, run: "_Run"):
            super().__init__()
            self.run, self.bar, self.t0 = run, None, 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()
            if self.run.cfg.progress:
                self.bar = tqdm(total=self.run.steps, desc=f"{self.run.name} {epoch + 1}/{self.run.cfg.epochs}",
                                unit="step", leave=False, dynamic_ncols=True)

        def on_train_batch_end(self, batch, logs=None):
            self.run.step_done(batch)
            loss = float(logs.get("loss", 0.0))
            if not math.isfinite(loss):
                self.close()
                self.run.diverged(batch, loss)
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix(loss=f"{loss:.4f}", nme=f"{float(logs.get('nme', 0.0)):.2f}")

        def on_epoch_end(self, epoch, logs=None):
            self.close()
            self.run.end_epoch(epoch + 1, {k: float(v) for k, v in (logs or {}).items()}, time.time() - self.t0)

        def close(self):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return EpochEnd


class _Run:
    """One stage in one folder: everything the epoch callback needs to validate, log and checkpoint."""

    def __init__(self, cfg: TrainConfig, stage_dir: Path, data, net, optimizer, info: dict, datasets):
        self.cfg, self.dir, self.data, self.net, self.optimizer, self.info = cfg, stage_dir, data, net, optimizer, info
        self.make_dataset = datasets
        self.select = "val_nme_soft" if cfg.stage == "tolerant" else "val_nme"
        self.rows: list[dict] = []
        self.best = math.inf
        self.step_seconds: list[float] = []  # every training step of this session but each epoch's first
        self.eval_seconds: list[float] = []  # BatchNorm re-estimation + validation of each epoch of this session
        self._last_step: float | None = None
        self.later_epochs = 0.0  # epochs of the stages a recipe runs after this one, in this stage's epoch units
        self.name = stage_dir.name  # what progress lines call the stage: its folder (a recipe's stage name)
        self.steps = cfg.steps_per_epoch or math.ceil(data.manifest.counts["train"] / cfg.batch_size)
        self.val = datasets(data, "val", cfg.batch_size, augment=False, shuffle=False).cache()
        self.forward = _forward(net)

    def diverged(self, batch, loss):
        done = self.rows[-1]["epoch"] if self.rows else 0
        kept = f"the last good checkpoint {self.dir / LAST} (epoch {done}) is kept" if done else "no checkpoint yet"
        raise TrainingDiverged(f"{self.name}: loss became {loss} at epoch {done + 1}, step {batch + 1}; "
                               f"stopped, {kept}; try a lower --lr and --resume")

    def recalibrate(self, epoch: int) -> None:
        from edgekd.models.backbones import recalibrate_batchnorm

        steps = math.ceil(self.cfg.bn_recalibration_samples / self.cfg.batch_size)
        if steps:
            ds = self.make_dataset(self.data, "train", self.cfg.batch_size, augment=self.cfg.augmentation() or False,
                                   seed=self.cfg.seed + 7919 * epoch, shuffle=True)
            recalibrate_batchnorm(self.net, ds, steps)

    def end_epoch(self, epoch: int, logs: dict, seconds: float) -> None:
        import tensorflow as tf

        t0 = time.time()
        self.recalibrate(epoch)
        val = evaluate(self.net, self.val, self.data.scheme.nme_pair, self.forward)
        eval_seconds = time.time() - t0
        lr = float(tf.convert_to_tensor(self.optimizer.learning_rate))  # the rate of the epoch's last step
        row = {"epoch": epoch, **{k: round(v, 6) for k, v in logs.items()}, **val, "lr": lr,
               "seconds": round(seconds, 1), "eval_seconds": round(eval_seconds, 1)}
        improved = val[self.select] < self.best
        row["best"] = int(improved)
        self.rows.append(row)
        if improved:
            self.best = val[self.select]
        # last.h5 carries the best score so far: a kill between the checkpoints and log.csv cannot make a resumed
        # run forget an epoch's best and replace best.h5 with a worse model
        info = {**self.info, "epoch": epoch, **val, "best_so_far": self.best}
        # the log first: a kill -9 before last.h5 is in place leaves a row that --resume drops (load_log keeps the
        # rows up to last.h5's epoch) and redoes; after it, no epoch that last.h5 holds is missing from the log
        self.write_log()
        if improved:
            save_checkpoint(self.net, self.dir / BEST, info)
        save_checkpoint(self.net, self.dir / LAST, info, self.optimizer)
        self.fold_in(epoch)
        self.eval_seconds.append(eval_seconds)
        self._last_step = None  # validation is not a training step
        if self.cfg.progress:
            from tqdm import tqdm

            tqdm.write(self.progress_line(epoch, logs, val, seconds, eval_seconds))

    def averages(self, epoch: int) -> bool:
        """Whether ``epoch`` (1-based) is one of the last ``average_last`` epochs of the stage."""
        return self.cfg.average_last > 0 and epoch > self.cfg.epochs - self.cfg.average_last

    def fold_in(self, epoch: int) -> None:
        """Add the network's current weights (those of ``epoch``) to the running mean in average.h5.

        Written after last.h5: a kill between the two leaves the epoch out of the mean, and the resumed run, whose
        network then holds last.h5's weights, folds it in first; an epoch already in the mean is not added twice."""
        if not self.averages(epoch):
            return
        path, weights = self.dir / AVERAGE, self.net.get_weights()
        first = epoch
        if path.is_file():
            first, last = checkpoint_info(path)["averaged_epochs"]
            if first <= epoch <= last:
                return
        # a mean of other epochs (a finished run resumed with more --epochs) is not continued: it starts again
        if path.is_file() and last == epoch - 1 and self.averages(first):
            load_weights(path, self.net)
            mean, n = self.net.get_weights(), last - first + 1
            self.net.set_weights([m + (w - m) / (n + 1) for m, w in zip(mean, weights)])
        else:
            first = epoch
        save_checkpoint(self.net, path, {**self.info, "averaged_epochs": [first, epoch]})
        self.net.set_weights(weights)

    def finish_average(self) -> dict | None:
        """After the last epoch: the mean's BatchNorm statistics re-estimated, validated, written back to
        average.h5, and to best.h5 when it beats every epoch. Returns what summary.json records of it."""
        path = self.dir / AVERAGE
        if not self.cfg.average_last or not path.is_file():
            return None
        info = checkpoint_info(path)
        first, last = info["averaged_epochs"]
        if self.select not in info and last == self.cfg.epochs:
            weights = self.net.get_weights()
            load_weights(path, self.net)
            self.recalibrate(self.cfg.epochs + 1)
            val = evaluate(self.net, self.val, self.data.scheme.nme_pair, self.forward)
            info = {**info, "epoch": last, **val, "best_so_far": min(self.best, val[self.select])}
            if val[self.select] < self.best:
                save_checkpoint(self.net, self.dir / BEST, info)
                self.best = val[self.select]
            save_checkpoint(self.net, path, info)
            self.net.set_weights(weights)
            if self.cfg.progress:
                from tqdm import tqdm

                tqdm.write(f"{self.name}: the mean of epochs {first}-{last}: val NME {val[self.select]:.2f}% "
                           f"(best epoch {min(r[self.select] for r in self.rows):.2f}%)")
        if self.select not in info or last != self.cfg.epochs:  # none, or a mean of another run's last epochs
            return None
        return {"epochs": [first, last], "val_nme": info["val_nme"], "val_nme_soft": info["val_nme_soft"],
                "is_best": checkpoint_info(self.dir / BEST).get("averaged_epochs") == [first, last]}

    def step_done(self, batch: int) -> None:
        """Time of every training step; the first steps of a session carry graph tracing and are left out."""
        now = time.perf_counter()
        if batch > 0 and self._last_step is not None:
            self.step_seconds.append(now - self._last_step)
        self._last_step = now

    def epoch_estimate(self) -> float:
        """Seconds of one more epoch: the median step of this session (tracing left out, so the first epoch
        already gives a fair estimate) x steps, plus the median validation time."""
        steps = self.step_seconds[2:] or self.step_seconds
        evals = [t for t in self.eval_seconds] or [0.0]
        return float(np.median(steps)) * self.steps + float(np.median(evals)) if steps else math.nan

    def progress_line(self, epoch: int, logs: dict, val: dict, seconds: float, eval_seconds: float) -> str:
        # the Tolerant teacher is selected on its soft targets: its best is the soft NME, said so
        extra = f", soft {val['val_nme_soft']:.2f}%" if self.select == "val_nme_soft" else ""
        best_label = "best soft" if self.select == "val_nme_soft" else "best"
        best = min(r.get(self.select, math.inf) for r in self.rows)
        per_epoch = self.epoch_estimate()
        stage_left = per_epoch * (self.cfg.epochs - epoch)
        run_left = stage_left + self.later_epochs * per_epoch
        later = f", run {format_duration(run_left)}" if self.later_epochs else ""
        return (f"{self.name} {epoch}/{self.cfg.epochs}: loss {logs.get('loss', math.nan):.4f}, "
                f"train NME {logs.get('nme', math.nan):.2f}%, val NME {val['val_nme']:.2f}%{extra} "
                f"({best_label} {best:.2f}%) | {seconds:.0f} s + {eval_seconds:.0f} s val | "
                f"ETA stage {format_duration(stage_left)}{later}")

    def write_log(self) -> None:
        fields = list(dict.fromkeys(k for row in self.rows for k in row))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.dir / "log.csv", buf.getvalue())

    def load_log(self, upto: int) -> None:
        path = self.dir / "log.csv"
        rows = list(csv.DictReader(path.open())) if path.is_file() else []
        self.rows = [{k: (float(v) if k != "epoch" else int(v)) for k, v in r.items() if v != ""}
                     for r in rows if int(r["epoch"]) <= upto]
        if self.rows:
            self.best = min(r.get(self.select, math.inf) for r in self.rows)


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


# --- stages -----------------------------------------------------------------------------------------------------
def _strategy(name: str):
    import tensorflow as tf

    return tf.distribute.MirroredStrategy() if name == "mirrored" else tf.distribute.get_strategy()


def teacher_paths(run_dir, cfg: TrainConfig | None = None) -> dict[str, list[Path]]:
    """``<each teachers_dir, or run_dir>/{tough,tolerant}/best.h5`` (the Tough ones alone for a blended baseline):
    each role's networks, one per folder (several make an ensemble)."""
    roots = [Path(d) for d in cfg.teachers_dir] if cfg and cfg.teachers_dir else [Path(run_dir)]
    names = ("tough",) if cfg is not None and cfg.blended_baseline else ("tough", "tolerant")
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
    from edgekd.training.trainers import Ensemble

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


def _open_data(prepared_dir):
    from edgekd.data.pipeline import PreparedData

    data = PreparedData.open(prepared_dir)
    if data.manifest.counts.get("val", 0) < 1:
        raise EdgekdError(f"{prepared_dir}: no validation split; prepare the data with --val-fraction > 0")
    for split in ("train", "val"):  # a missing, damaged or NaN array is said now, before a run folder is made
        data.split(split)
    return data


def _check_stage_folder(stage_dir: Path, cfg: TrainConfig, resume: bool, data) -> None:
    """Refuse to mix runs: a finished or unfinished stage continues only with --resume, and with its own data (the
    manifest's sha256 the checkpoints record); a --resume with nothing to resume, a batch that cannot fit in memory
    and a checkpoint to start from that is none (or could run code) are refused before anything is built."""
    from edgekd.core.checkpoint import check_network, check_same_data
    from edgekd.core.fileio import check_no_file_in_the_way

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
    from edgekd.models.backbones import check_batch_fits

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
        check_matches_data(init, "the checkpoint to start from", data, info=info, any_size=True)


def _tflite_info(path: Path) -> dict:
    """What ``check_matches_data`` compares, read from an exported model's edgekd metadata."""
    from edgekd.core import metadata

    meta = metadata.read(path)
    return {"num_points": meta.num_points, "crop": meta.crop.to_dict()}


def _init_weights(path: Path, net, cfg: TrainConfig, data) -> None:
    """``--init-from``: a checkpoint's weights into a freshly built network; a GAP-head checkpoint also starts a
    spatial-head network (``models.gap_to_spatial``: the same function, so fine-tuning starts where it stands).
    A float32 .tflite export starts the same network (``tflite_weights``: BatchNorm split again with statistics
    of the stage's own augmented training crops)."""
    from edgekd.models.backbones import gap_to_spatial, head_of

    if tflite_weights.is_tflite(path):
        from edgekd.models.backbones import build_network
        from edgekd.training.qat import calibration_images

        images = calibration_images(data, TFLITE_INIT_CROPS, cfg.seed, cfg.augment_preset if cfg.augment else "none")
        spatial_file = tflite_weights.has_spatial_head(path)
        if head_of(net) == "spatial" and spatial_file:
            from edgekd.core import metadata

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


def _check_spatial_size(path: Path, size: int, wanted: int) -> None:
    if size != wanted:
        raise ModelError(f"{path}: a spatial head's Dense layer depends on the input size ({size} px here, {wanted} "
                         f"px in the data); --init-from a spatial model of the same size, or a GAP one of any size")


def _build(cfg: TrainConfig, data, teachers: dict, steps: int):
    """(network, trainer, optimizer) of a stage, in the distribution strategy's scope."""
    from edgekd.models.backbones import build_network

    netcfg = cfg.network()
    shape = mean_shape(data) if netcfg.head_init == "mean-shape" else None
    net = build_network(data.num_points, data.input_size, netcfg, shape)
    trainer, optimizer = _trainer(cfg, data, net, load_teachers(teachers, data) if teachers else {}, steps)
    return net, trainer, optimizer


def _trainer(cfg: TrainConfig, data, net, teachers: dict, steps: int):
    """(trainer, optimizer) that train ``net`` as the stage asks, with ``teachers`` (role -> network) where it has
    any; the optimizer's variables made now, as restore() makes them for --resume: fit's train function is then
    traced once, not twice (a tf.function that creates variables is traced again), which is seconds at every
    start."""
    import tf_keras as keras

    from edgekd.training.trainers import Distiller, LandmarkTrainer, Mimic

    flip = data.scheme.flip_permutation if cfg.teacher_flip else None
    if cfg.stage == "student" and cfg.teacher_targets:
        trainer = Distiller(net, None, None, cfg.kd, data.scheme.nme_pair)  # outputs come with the batches
    elif teachers and cfg.blended_baseline:
        trainer = Mimic(net, teachers["tough"], data.scheme.nme_pair, cfg.loss, cfg.kd.teacher_blend, flip)
    elif teachers:
        trainer = Distiller(net, teachers["tough"], teachers["tolerant"], cfg.kd, data.scheme.nme_pair, flip)
    else:
        trainer = LandmarkTrainer(net, TARGET[cfg.stage], data.scheme.nme_pair, cfg.loss)
    optimizer = keras.optimizers.Adam(learning_rate=make_schedule(cfg, steps * cfg.epochs))
    trainer.compile(optimizer=optimizer)
    optimizer.build(net.trainable_variables)
    return trainer, optimizer


def _write_config(stage_dir: Path, cfg: TrainConfig, prepared_dir, data, teachers: dict, start: int, net) -> dict:
    """config.json and model_info.json of the stage; returns the info stored inside every checkpoint."""
    from edgekd.models.backbones import model_info

    netcfg = cfg.network()
    prepared = str(Path(prepared_dir).resolve())
    write_json(stage_dir / "config.json", {"train": cfg.to_dict(), "prepared": prepared,
                                            "data": {"scheme": data.scheme.name, "input_size": data.input_size,
                                                     "counts": data.manifest.counts},
                                            "teachers": {k: [str(p) for p in v] for k, v in teachers.items()},
                                            "teacher_targets": _targets_record(cfg),
                                            "init_from": str(Path(cfg.init_from).resolve()) if cfg.init_from else None,
                                            "resumed_from_epoch": start or None})
    write_json(stage_dir / "model_info.json", model_info(net))
    return {"stage": cfg.stage, "scheme": data.scheme.name, "num_points": data.num_points,
            "input_size": data.input_size, "crop": data.crop.to_dict(), "arch": netcfg.arch,
            "alpha": cfg.alpha if netcfg.arch == "mobilenetv2" else None, "head": netcfg.head,
            "target": TARGET[cfg.stage],
            "prepared": prepared, "data_license": data.manifest.license, "edgekd_version": edgekd.__version__}


def _check_same_targets(stage_dir: Path, cfg: TrainConfig) -> None:
    """A resumed KD run must read the very teacher outputs it started with: refuse a file that changed since."""
    path = stage_dir / "config.json"
    recorded = (json.loads(path.read_text()).get("teacher_targets") or {}) if path.is_file() else {}
    if cfg.teacher_targets and recorded.get("sha256") and Path(cfg.teacher_targets).is_file():
        from edgekd.training import teacher_targets

        if teacher_targets.sha256(cfg.teacher_targets) != recorded["sha256"]:
            raise EdgekdError(f"--teacher-targets {cfg.teacher_targets}: not the file {stage_dir} started with (its "
                              f"sha256 changed); resume with that file, or start a new --run-dir")


def _targets_record(cfg: TrainConfig) -> dict | None:
    """The teacher-targets file and what it holds (its teachers and their NME on the training faces)."""
    if not (cfg.stage == "student" and cfg.teacher_targets):
        return None
    from edgekd.training import teacher_targets

    return {"file": str(Path(cfg.teacher_targets).resolve()), **teacher_targets.describe(cfg.teacher_targets)}


def steps_per_epoch(cfg: TrainConfig, data) -> int:
    return cfg.steps_per_epoch or math.ceil(data.manifest.counts["train"] / cfg.batch_size)


def train(prepared_dir, run_dir, cfg: TrainConfig, resume: bool = False, explicit=None, later_epochs: float = 0.0,
          name: str | None = None) -> dict:
    """Train one stage into ``<run_dir>/<name or stage>/``; returns the stage summary (also written as summary.json).

    ``name``: the stage's folder when it is not the stage kind's own name (a recipe's ``warmup`` is a baseline).

    ``resume`` continues from last.h5 with the settings recorded in the stage's config.json (``explicit``: the
    fields set on the command line, which must not contradict them); the data order of every epoch is a function
    of (seed, epoch), so a resumed seeded run sees the batches an uninterrupted one would have seen.
    """
    import tf_keras as keras

    from edgekd.data.pipeline import make_dataset, make_training_dataset

    cfg.validate()
    check_outside_inputs(run_dir, "--run-dir", {"PREPARED": prepared_dir})
    stage_dir = Path(run_dir) / (name or cfg.stage)
    if cfg.teacher_targets:  # recorded resolved, so a resume from another folder finds it
        cfg = replace(cfg, teacher_targets=str(Path(cfg.teacher_targets).resolve()))
    if cfg.teachers_dir:  # the same for the teachers (and for the export of the run's QAT, which reads them)
        cfg = replace(cfg, teachers_dir=[str(Path(d).resolve()) for d in cfg.teachers_dir])
    if resume:
        cfg = resumed_config(stage_dir, cfg, explicit)
        _check_same_targets(stage_dir, cfg)
    data = _open_data(prepared_dir)
    _check_stage_folder(stage_dir, cfg, resume, data)
    runs_teachers = (cfg.stage == "student" and not cfg.teacher_targets) or cfg.blended_baseline
    teachers = teacher_paths(run_dir, cfg) if runs_teachers else {}
    for name, role_paths in teachers.items():
        for path in role_paths:
            check_teacher(name, path, data)
    if cfg.stage == "student" and cfg.teacher_targets:
        from edgekd.training import teacher_targets

        data.attach_guides(teacher_targets.load(cfg.teacher_targets, data))

    keras.utils.set_random_seed(cfg.seed)
    steps = steps_per_epoch(cfg, data)
    with _strategy(cfg.strategy).scope():
        net, trainer, optimizer = _build(cfg, data, teachers, steps)
        start, best_so_far = 0, math.inf
        if resume and (stage_dir / LAST).is_file():
            restored = restore(stage_dir / LAST, net, optimizer)
            start, best_so_far = int(restored["epoch"]), float(restored.get("best_so_far", math.inf))
        elif cfg.init_from:
            _init_weights(Path(cfg.init_from), net, cfg, data)
    stage_dir.mkdir(parents=True, exist_ok=True)  # only now: a refused start leaves no folder behind
    info = _write_config(stage_dir, cfg, prepared_dir, data, teachers, start, net)

    run = _Run(cfg, stage_dir, data, net, optimizer, info, make_dataset)
    run.later_epochs = later_epochs
    run.load_log(start)
    run.best = min(run.best, best_so_far)
    if resume and (stage_dir / BEST).is_file():  # the mean of the last epochs may be best.h5 (after last.h5)
        run.best = min(run.best, checkpoint_info(stage_dir / BEST).get(run.select, math.inf))
    run.fold_in(start)  # a kill between last.h5 and average.h5 left last.h5's epoch out of the mean
    t0 = time.time()
    if start < cfg.epochs:
        (stage_dir / SUMMARY).unlink(missing_ok=True)  # unfinished again until these epochs are done
        train_ds = make_training_dataset(data, cfg.batch_size, cfg.augmentation(), cfg.seed, start, cfg.epochs,
                                         cfg.steps_per_epoch)
        trainer.fit(train_ds, epochs=cfg.epochs, initial_epoch=start, steps_per_epoch=steps,
                    callbacks=[_epoch_callback_class()(run)], verbose=0)
    average = run.finish_average()
    return _summarize(run, stage_dir, start, time.time() - t0, average)


def _summarize(run: "_Run", stage_dir: Path, start: int, seconds: float, average: dict | None = None) -> dict:
    best_row = min(run.rows, key=lambda r: r.get(run.select, math.inf)) if run.rows else {}
    summary = {"stage": run.cfg.stage, "epochs": run.rows[-1]["epoch"] if run.rows else start,
               "best_epoch": best_row.get("epoch"), "best_val_nme": best_row.get("val_nme"),
               "selected_on": run.select, "last_val_nme": run.rows[-1].get("val_nme") if run.rows else None,
               "checkpoint": str(stage_dir / BEST), "seconds": round(seconds, 1),
               "seconds_per_epoch": round(float(np.median([r["seconds"] + r.get("eval_seconds", 0)
                                                            for r in run.rows])), 1) if run.rows else None}
    if average is not None:  # best.h5 is the one validated best: the mean of the last epochs, or one epoch
        summary["average"] = average
        if average["is_best"]:
            summary.update(best_epoch=None, best_val_nme=average["val_nme"])
    write_json(stage_dir / SUMMARY, summary)
    return summary


# relative cost of one training step, MobileNetV2-1.0 = 1 (128 px on 2 cores: 0.30 vs 1.24 s per step); a frozen
# teacher's forward pass costs about a third of its training step
STEP_COST = {"mobilenetv2": 1.0, "efficientnet-b3": 4.1}
FORWARD_SHARE = 1 / 3


def stage_cost(cfg: TrainConfig, stage: str) -> float:
    """A stage's step cost relative to a plain MobileNetV2 step: for planning ETAs of stages not yet started."""
    teacher = STEP_COST.get(cfg.teacher_arch, 1.0)
    if stage in ("tough", "tolerant"):
        return teacher
    # every member of an ensemble runs, each priced as a network at the student's input size (a 160 px member
    # costs about 1.6 x that: the ETA of the running stage, measured, is the one to trust)
    passes = (2 if cfg.teacher_flip else 1) * len(cfg.teachers_dir or [None])
    if stage == "student" and not cfg.teacher_targets:
        return 1.0 + 2 * FORWARD_SHARE * teacher * passes
    if stage == "baseline" and cfg.kd.teacher_blend:
        return 1.0 + FORWARD_SHARE * teacher * passes
    return 1.0


def _time_steps(trainer, data, cfg: TrainConfig, timed_steps: int) -> float:
    """Seconds per training step of ``trainer`` on augmented batches, after 3 warm-up steps (the first steps
    trace the graph and are several times slower)."""
    from edgekd.data.pipeline import make_training_dataset

    ds = iter(make_training_dataset(data, cfg.batch_size, cfg.augmentation(), cfg.seed, 0, 1, timed_steps + 3))
    for _ in range(3):
        trainer.train_on_batch(*next(ds))
    t0 = time.perf_counter()
    for _ in range(timed_steps):
        trainer.train_on_batch(*next(ds))
    return (time.perf_counter() - t0) / timed_steps


def _stand_in_trainer(cfg: TrainConfig, data, net, steps: int):
    """The stage's KD (or blended) trainer with teachers that cost what the real ones will: fresh networks of the
    teachers' architecture at the data's input size, one per teacher folder, mirrored as the stage mirrors them."""
    from edgekd.models.backbones import build_network
    from edgekd.training.trainers import Ensemble

    teacher_cfg = cfg.network("tough")
    members = len(cfg.teachers_dir or [None])
    shape = mean_shape(data) if teacher_cfg.head_init == "mean-shape" else None

    def stand_in(name):
        nets = [build_network(data.num_points, data.input_size, teacher_cfg, shape) for _ in range(members)]
        return nets[0] if members == 1 else Ensemble(nets, data.input_size, name=f"{name}_ensemble")

    roles = ("tough",) if cfg.blended_baseline else ("tough", "tolerant")
    return _trainer(cfg, data, net, {role: stand_in(role) for role in roles}, steps)[0]


def dry_run(prepared_dir, cfg: TrainConfig, stages=("baseline",), timed_steps: int = 5) -> list[dict]:
    """Projected time of each stage: a few real training steps of each stage's network on the prepared data (a KD
    stage with stand-in teachers as costly as its real ones), timed after warm-up, times its planned steps
    (validation adds about 15 %). Writes nothing."""
    import tf_keras as keras

    cfg.validate()  # before steps_per_epoch divides by --batch-size
    data = _open_data(prepared_dir)
    steps = steps_per_epoch(cfg, data)
    rows = []
    for stage in stages:
        scfg = replace(cfg, stage=stage)
        scfg.validate()
        plain_cfg = replace(scfg, stage="baseline", kd=replace(scfg.kd, teacher_blend=0.0))
        net, trainer, _ = _build(plain_cfg, data, {}, steps)
        plain = _time_steps(trainer, data, scfg, timed_steps)
        step = plain
        runs_teachers = (stage == "student" and not scfg.teacher_targets) or scfg.blended_baseline
        if runs_teachers:  # timed with stand-ins: fresh networks of each teacher's architecture, as costly to run
            step = _time_steps(_stand_in_trainer(scfg, data, net, steps), data, scfg, timed_steps)
        rows.append({"stage": stage, "network": scfg.network().arch, "seconds_per_step": round(step, 3),
                     "plain_seconds_per_step": round(plain, 3),
                     "steps": steps * cfg.epochs, "projected_seconds": round(1.15 * step * steps * cfg.epochs)})
        keras.backend.clear_session()
    return rows
