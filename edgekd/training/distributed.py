"""Where a stage trains: one device, several local ones (``mirrored``), or several machines (``multi-worker``).

``multi-worker`` is TensorFlow's MultiWorkerMirroredStrategy, set up as its Keras multi-worker guide does: every
machine runs the same `edgekd train` command with the standard ``TF_CONFIG`` environment variable naming the cluster
and its own task. Each worker computes the gradients of its shard of every global batch (``--batch-size`` is the
global batch, split over the replicas), the gradients are summed over all replicas, and every worker applies the
same update. Here, apart from train.py, because each of these needs care that a single-device run never does:

* the strategy must be made before TensorFlow runs anything in the process (it configures the collective ops of
  the runtime), so ``placement`` is the first thing ``train`` calls, and it is made once per process;
* reading a synchronised-on-read variable (BatchNorm's moving statistics, metrics) is itself a collective step, so
  every worker runs the very same callbacks (validation, checkpoints, weight averaging) in the same order; only the
  chief keeps what they write, the others write into a scratch folder (the guide's ``write_filepath`` pattern)
  seeded with the chief's files, so that they take the same decisions, and removed at the end;
* a worker that dies stops the others (their next collective fails); the job is restarted whole, with the same
  command and TF_CONFIG, and tf_keras's BackupAndRestore continues from the backup of the last finished epoch;
* a bad TF_CONFIG, or a worker that never comes, must not leave a process waiting forever.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.core.checkpoint import AVERAGE, BEST, LAST
from edgekd.core.errors import EdgekdError

TF_CONFIG = "TF_CONFIG"
TIMEOUT_ENV = "EDGEKD_CLUSTER_TIMEOUT"  # seconds every worker of TF_CONFIG's cluster has to show up (default below)
DEFAULT_TIMEOUT = 600.0
BACKUP = "backup"  # BackupAndRestore's folder inside the stage folder
SCRATCH = "workertemp_{}"  # a non-chief worker's writes, inside the stage folder (TensorFlow's own name for them)
STATE_FILES = ("config.json", "log.csv", BEST, LAST, AVERAGE)  # what a worker's callbacks read back
EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}')
_MADE: dict = {}  # the one MultiWorkerMirroredStrategy of this process (a recipe trains several stages in it)


@dataclass(frozen=True)
class Cluster:
    """TF_CONFIG read and checked: the training tasks (chief first, then the workers) and which one this is."""

    tasks: tuple[str, ...]  # "chief:0", "worker:0", ... in TensorFlow's order (chief first)
    addresses: tuple[str, ...]
    task_type: str
    task_index: int

    @property
    def me(self) -> int:
        return self.tasks.index(f"{self.task_type}:{self.task_index}")

    @property
    def chief(self) -> bool:
        """Whether this task keeps the run's files: the "chief" task, or worker 0 of a cluster without one."""
        return self.me == 0


@dataclass
class Placement:
    """A stage's distribution strategy and what the run record says of it."""

    strategy: object
    workers: int = 1
    replicas: int = 1
    cluster: Cluster | None = field(default=None)

    @property
    def chief(self) -> bool:
        return self.cluster is None or self.cluster.chief

    @property
    def multi_worker(self) -> bool:
        return self.cluster is not None

    def record(self) -> dict:
        """What config.json and summary.json say of it (nothing for a single device: those records are unchanged)."""
        return {} if self.replicas == 1 and self.workers == 1 else {"workers": self.workers, "replicas": self.replicas}


def _bad(what: str) -> EdgekdError:
    return EdgekdError(f"{TF_CONFIG}: {what}; --strategy multi-worker expects JSON such as {EXAMPLE} (the same "
                       f"cluster on every worker, each with its own task)")


def read_cluster(text: str | None) -> Cluster:
    """TF_CONFIG's cluster and task, each fault refused in one line naming the variable and what it should hold."""
    if not text or not text.strip():
        raise _bad("not set")
    try:
        spec = json.loads(text)
    except ValueError as e:
        raise _bad(f"not JSON ({e})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict):
        raise _bad("no \"cluster\" object")
    jobs = spec["cluster"]
    unknown = sorted(set(jobs) - {"chief", "worker"})
    if unknown:
        raise _bad(f"job {unknown[0]!r} in \"cluster\": only \"chief\" and \"worker\" tasks train here (no parameter "
                   f"servers, no evaluator)")
    tasks, addresses = [], []
    for job in ("chief", "worker"):
        members = jobs.get(job, [])
        if not isinstance(members, list) or not all(isinstance(a, str) and _port(a) for a in members):
            raise _bad(f"\"cluster\".{job} is not a list of \"host:port\" addresses")
        tasks += [f"{job}:{i}" for i in range(len(members))]
        addresses += members
    if len(jobs.get("chief", [])) > 1:
        raise _bad(f"{len(jobs['chief'])} chiefs; at most one")
    if not tasks:
        raise _bad("no \"worker\" addresses in \"cluster\"")
    if len(set(addresses)) < len(addresses):
        raise _bad("an address is listed twice in \"cluster\"")
    task = spec.get("task")
    if not isinstance(task, dict) or task.get("type") not in jobs:
        raise _bad(f"\"task\".type {(task or {}).get('type') if isinstance(task, dict) else None!r} is not one of "
                   f"the cluster's jobs ({', '.join(sorted(jobs))})")
    index, count = task.get("index", 0), len(jobs[task["type"]])
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
        raise _bad(f"\"task\".index {index!r} out of range: the cluster has {count} {task['type']} task(s), "
                   f"index 0 to {count - 1}")
    return Cluster(tuple(tasks), tuple(addresses), task["type"], index)


def _port(address: str) -> bool:
    host, _, port = address.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def cluster_timeout() -> float:
    value = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise EdgekdError(f"{TIMEOUT_ENV} {value!r}: expected the seconds every worker has to start, above 0")
    return seconds


def placement(name: str) -> Placement:
    """The strategy of ``--strategy name``: default (the current device), mirrored (every local GPU, or every
    logical CPU device where there is no GPU: how it is tested on CPU) or multi-worker (TF_CONFIG's cluster)."""
    if name == "multi-worker":  # read before TensorFlow loads: a bad TF_CONFIG is said at once
        return _multi_worker(read_cluster(os.environ.get(TF_CONFIG)))
    import tensorflow as tf  # here: `edgekd --help` must not wait for TensorFlow to load

    if name != "mirrored":
        return Placement(tf.distribute.get_strategy())
    devices = None
    if not tf.config.list_logical_devices("GPU") and len(tf.config.list_logical_devices("CPU")) > 1:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    return Placement(strategy, 1, strategy.num_replicas_in_sync)


def _multi_worker(cluster: Cluster) -> Placement:
    """MultiWorkerMirroredStrategy over ``cluster``, made once per process, after every worker answered within
    ``cluster_timeout`` seconds (``_wait_for_cluster``)."""
    import tensorflow as tf

    if "strategy" in _MADE:
        if _MADE["cluster"] != cluster:
            raise _bad("changed since this process first joined its cluster")
        return _MADE["strategy"]
    _wait_for_cluster(cluster, cluster_timeout())
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as e:  # "Collective ops must be configured at program startup"
        raise EdgekdError(f"--strategy multi-worker: TensorFlow already ran in this process ({e}); start the "
                          f"stage in a new process (`edgekd train`) with {TF_CONFIG} set") from None
    except (tf.errors.OpError, ValueError) as e:
        raise _bad(f"the cluster could not start ({' '.join(str(e).split())[:300]})") from None
    made = Placement(strategy, len(cluster.tasks), strategy.num_replicas_in_sync, cluster)
    _MADE.update(strategy=made, cluster=cluster)
    return made


def _wait_for_cluster(cluster: Cluster, timeout: float) -> None:
    """Wait until every other task's address accepts a connection, while this task's own port accepts theirs.

    Why not let the strategy wait: it blocks in native code holding the interpreter, forever when a worker never
    comes (a typo in TF_CONFIG, a machine down), where nothing (not a timer thread, not a signal handler) can stop
    it. This rendezvous says which addresses did not answer, in one line, and the process ends."""
    mine = cluster.addresses[cluster.me]
    try:
        listener = socket.create_server(("", int(mine.rpartition(":")[2])))
    except OSError as e:
        raise _bad(f"this task's address {mine} cannot be listened on ({e.strerror or e})") from None
    deadline = time.monotonic() + timeout
    pending = [a for i, a in enumerate(cluster.addresses) if i != cluster.me]
    try:
        while pending:
            pending = [a for a in pending if not _reachable(a)]
            if pending and time.monotonic() > deadline:
                raise EdgekdError(f"{TF_CONFIG}: {', '.join(pending)} not reachable within {timeout:g} s "
                                  f"({TIMEOUT_ENV}); expected every address of its cluster to run the same "
                                  f"`edgekd train` command")
            if pending:
                time.sleep(0.25)
        time.sleep(1.0)  # answer a little longer: the last worker to arrive may not have seen this one yet
    finally:
        listener.close()  # the strategy's server takes the port over


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
            return True
    except OSError:
        return False


def shard_by_data(dataset):
    """Each worker takes its own share of every global batch (AutoShardPolicy.DATA: the training stream is made in
    memory from index tables, there are no files to share out)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def backed_up_epoch(stage_dir: Path) -> int | None:
    """Epochs finished by the backup BackupAndRestore left in a stage folder (a job killed mid-run), or None."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(stage_dir / BACKUP / "chief"))
    if latest is None:
        return None
    try:
        epoch = int(tf.train.load_checkpoint(latest).get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError) as e:
        raise EdgekdError(f"{stage_dir / BACKUP}: unreadable backup ({' '.join(str(e).split())[:200]}); remove the "
                          f"folder to continue from last.h5 with --resume") from None
    return epoch + 1 if epoch >= 0 else None


def backup_callback(stage_dir: Path):
    """tf_keras's BackupAndRestore in the stage folder (non-chief workers write theirs into temporary folders that
    tf_keras removes; every worker restores from the chief's)."""
    import tf_keras as keras

    return keras.callbacks.BackupAndRestore(str(stage_dir / BACKUP), save_freq="epoch", delete_checkpoint=True)


def train_end_barrier():
    """A callback whose ``on_train_end`` every worker must reach before any goes on: listed before the backup, it
    keeps the chief from deleting the backup folder (BackupAndRestore, at train end) while another worker is still
    writing its last epoch's backup into its temporary folder inside it (a race seen as a NotFoundError in SaveV2)."""
    import tensorflow as tf
    import tf_keras as keras

    class TrainEndBarrier(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            strategy = self.model.distribute_strategy
            strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)

    return TrainEndBarrier()


def scratch_folder(stage_dir: Path, cluster: Cluster) -> Path:
    """A non-chief worker's stage folder: a fresh copy of the chief's state files (its checkpoints, log and average
    decide what the callbacks do, and so which collective steps they take), removed by ``remove_scratch``.

    Called before the network is built: the chief writes nothing before every worker has joined that step."""
    scratch = stage_dir / SCRATCH.format(cluster.me)
    shutil.rmtree(scratch, ignore_errors=True)  # left by a worker that was killed
    scratch.mkdir(parents=True)
    for name in STATE_FILES:
        if (stage_dir / name).is_file():
            shutil.copy2(stage_dir / name, scratch / name)
    return scratch


def remove_scratch(scratch: Path, run_dir: Path) -> None:
    """The scratch folder, and the stage and run folders above it when they hold nothing else (a worker whose run
    folder is not the chief's shared one leaves nothing behind)."""
    shutil.rmtree(scratch, ignore_errors=True)
    for folder in (scratch.parent / BACKUP, scratch.parent, Path(run_dir)):
        try:
            folder.rmdir()
        except OSError:  # not empty (the chief's), or gone
            pass


def remove_backup(stage_dir: Path) -> None:
    shutil.rmtree(stage_dir / BACKUP, ignore_errors=True)


def barrier(label: str, stage_dir: Path) -> None:
    """Every worker of this process's cluster waits here for the others (a collective sum of one). A recipe calls it
    after each stage, so that no worker starts the next stage from a file the chief is still writing (the final
    average, best.h5, summary.json)."""
    import tensorflow as tf

    strategy = _MADE["strategy"].strategy
    try:
        strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)
    except lost_errors() as e:
        raise lost_worker(label, stage_dir, e) from None


def lost_errors() -> tuple:
    """What a collective step raises when another worker died or cannot be reached."""
    import tensorflow as tf

    return (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
            tf.errors.CancelledError)


def lost_worker(label: str, stage_dir: Path, error: Exception) -> EdgekdError:
    """One line for a collective step that failed because a worker died or became unreachable."""
    first = " ".join(str(error).split())[:160]
    return EdgekdError(f"{label}: lost a worker of {TF_CONFIG}'s cluster ({type(error).__name__}: {first}); restart "
                       f"every worker with the same command and {TF_CONFIG}: training continues from the last "
                       f"epoch backed up in {stage_dir / BACKUP}")
