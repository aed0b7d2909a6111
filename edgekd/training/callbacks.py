"""The per-epoch bookkeeping of a training stage as tf_keras callbacks, one concern each, composed by ``train``.

In the order ``train`` lists them, which is the order their ``on_epoch_end`` runs in (a resumed run depends on it):
  EpochTimer     the epoch's training seconds, into ``logs``
  StopOnNaN      stops at the first non-finite loss, naming the last good checkpoint
  Validation     BatchNorm statistics re-estimated on training crops, then validation NME (hard and soft) and
                 whether it is the best so far, into ``logs``
  EpochLog       log.csv, rewritten whole with the epoch's row (before any checkpoint: see ``EpochLog``)
  Checkpoints    best.h5 when the epoch is the best, then last.h5 with the optimizer state
  WeightAverage  the epoch folded into average.h5's running mean (--average-last), after last.h5
  ProgressReport the tqdm bar of the epoch's steps and the epoch's console line with the ETA (with progress on)
Later callbacks read what earlier ones put into the epoch's ``logs`` dict (tf_keras hands every callback the same
one), as Keras's own callbacks read ``val_`` metrics.
"""
from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tqdm import tqdm

from edgekd.core.checkpoint import AVERAGE, BEST, LAST, checkpoint_info, load_weights
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import write_text
from edgekd.core.metrics import batch_nme
from edgekd.models.backbones import recalibrate_batchnorm
from edgekd.training.projection import format_duration

VAL_KEYS = ("val_nme", "val_nme_soft")  # what ``evaluate`` returns, in checkpoint metadata in this order
# what these callbacks add to an epoch's logs; the rest are the trainer's metrics (loss, nme, KD-Loss's terms)
ADDED_KEYS = ("seconds", *VAL_KEYS, "eval_seconds", "best", "best_so_far")


class TrainingDiverged(EdgekdError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def selected_on(stage: str) -> str:
    """The validation NME that picks a stage's best epoch: the Tolerant teacher learns the soft targets."""
    return "val_nme_soft" if stage == "tolerant" else "val_nme"


def _forward(net):
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


class EpochTimer(keras.callbacks.Callback):
    """``logs["seconds"]``: the epoch's training time, validation left out (first in the list for that)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs["seconds"] = time.time() - self.t0


class StopOnNaN(keras.callbacks.Callback):
    """Raises ``TrainingDiverged`` at the first non-finite loss. Keras's TerminateOnNaN would let the epoch end run
    (validation, and checkpoints of the NaN weights over the last good ones)."""

    def __init__(self, name: str, stage_dir: Path):
        super().__init__()
        self.name, self.dir, self.done = name, stage_dir, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.done = epoch  # epochs finished, and held by last.h5

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs.get("loss", 0.0))
        if not math.isfinite(loss):
            kept = (f"the last good checkpoint {self.dir / LAST} (epoch {self.done}) is kept" if self.done
                    else "no checkpoint yet")
            raise TrainingDiverged(f"{self.name}: loss became {loss} at epoch {self.done + 1}, step {batch + 1}; "
                                   f"stopped, {kept}; try a lower --lr and --resume")


class Validation(keras.callbacks.Callback):
    """BatchNorm statistics re-estimated on training crops, then the validation NME (the val split, never test), and
    whether it beats ``best``. Custom: Keras's ``validation_data`` reports the trainer's loss, not the NME against
    both targets, and validates the BatchNorm statistics as training left them (far behind the weights)."""

    def __init__(self, net, data, cfg, make_dataset, best: float = math.inf):
        super().__init__()
        self.net, self.data, self.cfg, self.make_dataset = net, data, cfg, make_dataset
        self.monitor, self.best = selected_on(cfg.stage), best
        self.val = make_dataset(data, "val", cfg.batch_size, augment=False, shuffle=False).cache()
        self.forward = _forward(net)

    def recalibrate(self, epoch: int) -> None:
        steps = math.ceil(self.cfg.bn_recalibration_samples / self.cfg.batch_size)
        if steps:
            ds = self.make_dataset(self.data, "train", self.cfg.batch_size, augment=self.cfg.augmentation() or False,
                                   seed=self.cfg.seed + 7919 * epoch, shuffle=True)
            recalibrate_batchnorm(self.net, ds, steps)

    def measure(self, epoch: int) -> dict:
        """The network's validation NME after its BatchNorm statistics are re-estimated (crops drawn for ``epoch``)."""
        self.recalibrate(epoch)
        return evaluate(self.net, self.val, self.data.scheme.nme_pair, self.forward)

    def on_epoch_end(self, epoch, logs=None):
        t0 = time.time()
        val = self.measure(epoch + 1)
        logs.update(val, eval_seconds=time.time() - t0)
        improved = val[self.monitor] < self.best
        if improved:
            self.best = val[self.monitor]
        logs.update(best=int(improved), best_so_far=self.best)


class EpochLog(keras.callbacks.Callback):
    """log.csv: one row per epoch. Custom, not Keras's CSVLogger: a resumed run keeps only the rows up to last.h5's
    epoch, values are rounded, the learning rate is the optimizer's, and the file is rewritten whole (atomically).

    Written before the checkpoints: a kill -9 before last.h5 is in place leaves a row that --resume drops and redoes;
    after it, no epoch that last.h5 holds is missing from the log."""

    def __init__(self, stage_dir: Path, upto: int):
        super().__init__()
        self.path = stage_dir / "log.csv"
        rows = list(csv.DictReader(self.path.open())) if self.path.is_file() else []
        self.rows = [{k: (float(v) if k != "epoch" else int(v)) for k, v in r.items() if v != ""}
                     for r in rows if int(r["epoch"]) <= upto]

    def on_epoch_end(self, epoch, logs=None):
        trained = {k: round(float(v), 6) for k, v in logs.items() if k not in ADDED_KEYS}
        lr = float(tf.convert_to_tensor(self.model.optimizer.learning_rate))  # the rate of the epoch's last step
        self.rows.append({"epoch": epoch + 1, **trained, **{k: logs[k] for k in VAL_KEYS}, "lr": lr,
                          "seconds": round(logs["seconds"], 1), "eval_seconds": round(logs["eval_seconds"], 1),
                          "best": logs["best"]})
        fields = list(dict.fromkeys(k for row in self.rows for k in row))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.path, buf.getvalue())


class Checkpoints(keras.callbacks.Callback):
    """best.h5 when the epoch validated best, then last.h5. Custom, not Keras's ModelCheckpoint: each file carries
    edgekd's JSON metadata, and last.h5 the optimizer state, in the HDF5 (``core.checkpoint.save_checkpoint``,
    passed in as ``save``)."""

    def __init__(self, stage_dir: Path, net, optimizer, info: dict, save):
        super().__init__()
        self.dir, self.net, self.optimizer, self.info, self.save = stage_dir, net, optimizer, info, save

    def on_epoch_end(self, epoch, logs=None):
        # last.h5 carries the best score so far: a kill between the checkpoints and log.csv cannot make a resumed
        # run forget an epoch's best and replace best.h5 with a worse model
        info = {**self.info, "epoch": epoch + 1, **{k: logs[k] for k in VAL_KEYS}, "best_so_far": logs["best_so_far"]}
        if logs["best"]:
            self.save(self.net, self.dir / BEST, info)
        self.save(self.net, self.dir / LAST, info, self.optimizer)


class WeightAverage(keras.callbacks.Callback):
    """--average-last K: the mean of the weights of the last K epochs in average.h5 (stochastic weight averaging,
    Izmailov et al., UAI 2018), validated after the last epoch (``finish``). Custom: tf_keras has no weight
    averaging of whole epochs, and this one must survive a kill."""

    def __init__(self, stage_dir: Path, net, info: dict, cfg, save, name: str):
        super().__init__()
        self.path, self.net, self.info, self.cfg, self.save, self.name = stage_dir / AVERAGE, net, info, cfg, save, name
        self.best_path = stage_dir / BEST

    def averages(self, epoch: int) -> bool:
        """Whether ``epoch`` (1-based) is one of the last ``average_last`` epochs of the stage."""
        return self.cfg.average_last > 0 and epoch > self.cfg.epochs - self.cfg.average_last

    def on_epoch_end(self, epoch, logs=None):
        self.fold_in(epoch + 1)

    def fold_in(self, epoch: int) -> None:
        """Add the network's current weights (those of ``epoch``) to the running mean in average.h5.

        Written after last.h5: a kill between the two leaves the epoch out of the mean, and the resumed run, whose
        network then holds last.h5's weights, folds it in first; an epoch already in the mean is not added twice."""
        if not self.averages(epoch):
            return
        path, weights = self.path, self.net.get_weights()
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
        self.save(self.net, path, {**self.info, "averaged_epochs": [first, epoch]})
        self.net.set_weights(weights)

    def finish(self, validation: Validation, rows: list[dict]) -> dict | None:
        """After the last epoch (called by ``train``, also when a finished stage is run again): the mean's BatchNorm
        statistics re-estimated, validated, written back to average.h5, and to best.h5 when it beats every epoch.
        Returns what summary.json records of it."""
        path, select = self.path, validation.monitor
        if not self.cfg.average_last or not path.is_file():
            return None
        info = checkpoint_info(path)
        first, last = info["averaged_epochs"]
        if select not in info and last == self.cfg.epochs:
            weights = self.net.get_weights()
            load_weights(path, self.net)
            val = validation.measure(self.cfg.epochs + 1)
            info = {**info, "epoch": last, **val, "best_so_far": min(validation.best, val[select])}
            if val[select] < validation.best:
                self.save(self.net, self.best_path, info)
                validation.best = val[select]
            self.save(self.net, path, info)
            self.net.set_weights(weights)
            if self.cfg.progress:
                tqdm.write(f"{self.name}: the mean of epochs {first}-{last}: val NME {val[select]:.2f}% "
                           f"(best epoch {min(r[select] for r in rows):.2f}%)")
        if select not in info or last != self.cfg.epochs:  # none, or a mean of another run's last epochs
            return None
        return {"epochs": [first, last], "val_nme": info["val_nme"], "val_nme_soft": info["val_nme_soft"],
                "is_best": checkpoint_info(self.best_path).get("averaged_epochs") == [first, last]}


class ProgressReport(keras.callbacks.Callback):
    """The tqdm bar of an epoch's steps (on a terminal; a log file gets only the epoch lines, not a bar redrawn at
    every step), and after the epoch end one console line: losses, validation NME, the best so far, times and the
    ETA of the stage (and of the run: ``later_epochs``, the epochs of the stages a recipe runs after this one, in
    this stage's epoch units). Custom: Keras's ProgbarLogger prints its own lines and no ETA beyond the epoch."""

    def __init__(self, name: str, monitor: str, log: EpochLog, later_epochs: float = 0.0):
        super().__init__()
        self.name, self.monitor, self.log, self.later_epochs = name, monitor, log, later_epochs
        self.bar = None
        self.step_seconds: list[float] = []  # every training step of this process but each epoch's first
        self.eval_seconds: list[float] = []  # BatchNorm re-estimation + validation of each epoch of this process
        self._last_step: float | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.bar = tqdm(total=self.params["steps"], desc=f"{self.name} {epoch + 1}/{self.params['epochs']}",
                        unit="step", leave=False, dynamic_ncols=True, disable=None)

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()  # the first steps of a process carry graph tracing and are left out
        if batch > 0 and self._last_step is not None:
            self.step_seconds.append(now - self._last_step)
        self._last_step = now
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{float(logs.get('loss', 0.0)):.4f}", nme=f"{float(logs.get('nme', 0.0)):.2f}")
            if batch + 1 == self.params["steps"]:
                self.close()  # gone before validation starts

    def on_epoch_end(self, epoch, logs=None):
        self.close()
        self.eval_seconds.append(logs["eval_seconds"])
        self._last_step = None  # validation is not a training step
        tqdm.write(self.line(epoch + 1, logs))

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def epoch_estimate(self) -> float:
        """Seconds of one more epoch: the median step of this process (tracing left out, so the first epoch
        already gives a fair estimate) x steps, plus the median validation time."""
        steps = self.step_seconds[2:] or self.step_seconds
        evals = self.eval_seconds or [0.0]
        return float(np.median(steps)) * self.params["steps"] + float(np.median(evals)) if steps else math.nan

    def line(self, epoch: int, logs: dict) -> str:
        # the Tolerant teacher is selected on its soft targets: its best is the soft NME, said so
        soft = self.monitor == "val_nme_soft"
        extra = f", soft {logs['val_nme_soft']:.2f}%" if soft else ""
        best = min(r.get(self.monitor, math.inf) for r in self.log.rows)
        per_epoch = self.epoch_estimate()
        epochs = self.params["epochs"]
        stage_left = per_epoch * (epochs - epoch)
        run_left = stage_left + self.later_epochs * per_epoch
        later = f", run {format_duration(run_left)}" if self.later_epochs else ""
        return (f"{self.name} {epoch}/{epochs}: loss {logs.get('loss', math.nan):.4f}, "
                f"train NME {logs.get('nme', math.nan):.2f}%, val NME {logs['val_nme']:.2f}%{extra} "
                f"({'best soft' if soft else 'best'} {best:.2f}%) | {logs['seconds']:.0f} s + "
                f"{logs['eval_seconds']:.0f} s val | ETA stage {format_duration(stage_left)}{later}")
