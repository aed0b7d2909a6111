"""Distributed training (--strategy mirrored and multi-worker) on CPU, each run an `edgekd train` process.

Processes, not the test's own: MultiWorkerMirroredStrategy must be made before TensorFlow runs anything, and two
logical CPU devices (what ``mirrored`` spreads over here) before TensorFlow initialises its devices. The workers talk
over free ports of 127.0.0.1. The runs are the tiny baseline of train_helpers.TINY (input 64, alpha 0.35, 2 epochs of 2
steps) with a global batch of 4: 2 samples per replica.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

import edgekd  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgekd.core.checkpoint import INFO_ATTR, LAST, OPTIMIZER_GROUP

# the subprocess's entry: `edgekd` itself, with two test hooks set by environment variables
LAUNCH = """
import os, signal, sys
import edgekd
cpus = int(os.environ.get("TEST_LOGICAL_CPUS", "0"))
if cpus:  # before TensorFlow initialises its devices
    import tensorflow as tf
    tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                               [tf.config.LogicalDeviceConfiguration()] * cpus)
die = int(os.environ.get("TEST_DIE_AT_EPOCH", "0"))
if die:  # a worker lost mid-run: killed as it writes the epoch's last.h5, after the epoch before was backed up
    import edgekd.training.train as train
    save = train.save_checkpoint
    def dying(net, path, info, optimizer=None):
        if path.name == "last.h5" and info["epoch"] == die:
            os.kill(os.getpid(), signal.SIGKILL)
        return save(net, path, info, optimizer)
    train.save_checkpoint = dying
from edgekd.cli.main import main
sys.argv[0] = "edgekd"
main()
"""
TINY = ["--stage", "baseline", "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "4", "--alpha", "0.35",
        "--bn-recalibration-samples", "8", "--seed", "3"]
# a miniature recipe: two training stages, the second starting from the first, and a float32 export of it. Its first
# stage is TINY (a stage alone takes the default recipe's settings as defaults: so does this one), so the two-worker
# recipe job is also the uninterrupted two-worker run that the mirrored and the killed runs are compared with.
MINI_RECIPE = {
    "input_size": 64,
    "settings": {**yaml.safe_load((Path(__file__).resolve().parents[1] / "edgekd" / "recipes" / "default.yaml")
                                  .read_text())["settings"],
                 "batch_size": 4, "alpha": 0.35, "steps_per_epoch": 2, "bn_recalibration_samples": 8, "seed": 3},
    "stages": {
        "warmup": {"kind": "baseline", "epochs": 2},
        "tough": {"kind": "tough", "from": "warmup", "epochs": 1},
        "export": {"kind": "export", "from": "tough", "modes": ["float32"]},
    },
}
RUN_SECONDS = 600  # the processes started together at most, on 2 cores loaded by other work


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _tf_config(addresses, index):
    return json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})


def _start(prepared, run, strategy, env=None, extra=(), what=TINY):
    """`edgekd -q train` of the tiny stage (or ``what``) in a process, its stderr into a file beside the run folder
    (a pipe that nobody reads while the test waits on another process would stop it, and its cluster with it)."""
    cmd = [sys.executable, "-c", LAUNCH, "-q", "train", str(prepared), "--run-dir", str(run), *what, "--strategy",
           strategy, *extra]
    log = Path(run).parent / f"{Path(run).name}.{len(list(Path(run).parent.glob('*.stderr')))}.stderr"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=err)
    proc.log = log
    return proc


def _finish(procs, seconds=RUN_SECONDS):
    """(exit code, stderr) of each process; any still running after ``seconds`` is killed and the test fails."""
    deadline = time.monotonic() + seconds
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"a worker still ran after {seconds} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [(p.returncode, p.log.read_text()) for p in procs]


def _start_job(prepared, run, die=None, what=TINY):
    """Two workers of one cluster training into ``run`` (as on two machines sharing the run folder); ``die``: the
    epoch whose end kills worker 1."""
    addresses = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    return [_start(prepared, run, "multi-worker", {"TF_CONFIG": _tf_config(addresses, i),
                                                   **({"TEST_DIE_AT_EPOCH": str(die)} if die and i == 1 else {})},
                   what=what)
            for i in range(2)]


def _weights(path):
    """Every weight array of a checkpoint, and its optimizer variables, by HDF5 name."""
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, node: arrays.__setitem__(name, node[()]) if isinstance(node, h5py.Dataset) else None)
        info = json.loads(f.attrs[INFO_ATTR])
    return arrays, info


def _assert_same_checkpoint(a, b):
    wa, ia = _weights(a)
    wb, ib = _weights(b)
    assert set(wa) == set(wb)
    assert any(k.startswith(OPTIMIZER_GROUP) for k in wa)
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=1e-4, atol=1e-5, err_msg=k)
    assert ia["epoch"] == ib["epoch"] == 2
    assert ia["val_nme"] == pytest.approx(ib["val_nme"], rel=1e-4)


@pytest.fixture(scope="module")
def runs(tiny_prepared, tmp_path_factory):
    """Started together, to share the machine's idle time: an uninterrupted two-worker job (the miniature recipe,
    whose first stage is TINY), the single process mirrored over two logical CPUs, a two-worker job whose worker 1 is
    killed while epoch 2 ends (epoch 1 backed up), and a mirrored process killed the same way. Returns their run
    folders and (exit code, stderr) of each process, and the uninterrupted two-worker TINY stage."""
    root = tmp_path_factory.mktemp("runs")
    recipe, mirrored, killed, mirrored_killed = (root / n for n in ("recipe", "mirrored", "killed", "mirrored-killed"))
    two_cpus = {"TEST_LOGICAL_CPUS": "2"}
    mini = root / "mini.yaml"
    mini.write_text(yaml.safe_dump(MINI_RECIPE, sort_keys=False))
    procs = [*_start_job(tiny_prepared, recipe, what=["--recipe", str(mini)]),
             _start(tiny_prepared, mirrored, "mirrored", two_cpus),
             *_start_job(tiny_prepared, killed, die=2),
             _start(tiny_prepared, mirrored_killed, "mirrored", {**two_cpus, "TEST_DIE_AT_EPOCH": "2"})]
    results = _finish(procs)
    return {"recipe": recipe, "multi": recipe / "warmup", "mirrored": mirrored, "killed": killed,
            "mirrored-killed": mirrored_killed, "results": results}


def test_two_workers_train_as_mirrored_over_two_devices(runs):
    """The two-worker job's checkpoint is the one a single process gets from mirrored over two logical CPUs with the
    same global batch and seed; only the chief's files are left, and the record says who trained it."""
    assert [code for code, _ in runs["results"][:3]] == [0, 0, 0], [err[-2000:] for _, err in runs["results"][:3]]
    stage = runs["multi"]
    assert sorted(p.name for p in stage.iterdir()) == sorted(
        ["config.json", "model_info.json", "log.csv", "best.h5", "last.h5", "summary.json"])  # no backup, no scratch
    summary = json.loads((stage / "summary.json").read_text())
    config = json.loads((stage / "config.json").read_text())
    assert (summary["workers"], summary["replicas"]) == (config["workers"], config["replicas"]) == (2, 2)
    assert config["train"]["strategy"] == "multi-worker"
    mirrored = runs["mirrored"] / "baseline"
    assert (json.loads((mirrored / "summary.json").read_text())["workers"],
            json.loads((mirrored / "config.json").read_text())["replicas"]) == (1, 2)
    _assert_same_checkpoint(stage / LAST, mirrored / LAST)


def test_a_lost_worker_is_restarted_and_ends_as_uninterrupted(tiny_prepared, runs):
    """Worker 1 was killed while epoch 2 ended (epoch 1 backed up); the chief stopped with one line; the job
    restarted with the same command continues from the backup (no --resume) and ends with the uninterrupted job's
    weights."""
    run, (chief, victim) = runs["killed"], runs["results"][3:5]
    assert victim[0] == -signal.SIGKILL
    assert chief[0] == 2 and "lost a worker" in chief[1].strip().splitlines()[-1], chief[1][-2000:]
    stage = run / "baseline"
    assert (stage / "backup").is_dir() and not (stage / "summary.json").exists()

    results = _finish(_start_job(tiny_prepared, run))
    assert [c for c, _ in results] == [0, 0], [e[-2000:] for _, e in results]
    assert json.loads((stage / "config.json").read_text())["resumed_from_epoch"] == 1
    assert not (stage / "backup").exists() and not list(stage.glob("workertemp_*"))
    rows = (stage / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    _assert_same_checkpoint(stage / LAST, runs["multi"] / LAST)


def test_a_killed_mirrored_run_resumes_and_ends_as_uninterrupted(tiny_prepared, runs):
    """One process over two logical CPUs, killed while epoch 2 ended (last.h5 still holds epoch 1): `--resume`
    continues from epoch 1 and ends with the uninterrupted mirrored run's weights and optimizer state."""
    run, (code, err) = runs["mirrored-killed"], runs["results"][5]
    assert code == -signal.SIGKILL, err[-2000:]
    stage = run / "baseline"
    assert not (stage / "summary.json").exists()
    assert _weights(stage / LAST)[1]["epoch"] == 1

    [(code, err)] = _finish([_start(tiny_prepared, run, "mirrored", {"TEST_LOGICAL_CPUS": "2"}, ["--resume"])])
    assert code == 0, err[-2000:]
    config = json.loads((stage / "config.json").read_text())
    assert config["resumed_from_epoch"] == 1 and config["replicas"] == 2
    _assert_same_checkpoint(stage / LAST, runs["mirrored"] / "baseline" / LAST)


def test_a_whole_recipe_trains_on_two_workers_and_the_chief_alone_exports(runs):
    """`edgekd train --recipe FILE --strategy multi-worker`: every training stage on both workers, in order (each
    starting from the files the chief finished), the export by the chief; one run folder, the chief's."""
    assert [code for code, _ in runs["results"][:2]] == [0, 0], [err[-2000:] for _, err in runs["results"][:2]]
    run = runs["recipe"]
    summary = json.loads((run / "summary.json").read_text())
    assert list(summary["stages"]) == ["warmup", "tough", "export"]
    for stage in ("warmup", "tough"):
        config = json.loads((run / stage / "config.json").read_text())
        assert (config["workers"], config["replicas"], config["train"]["strategy"]) == (2, 2, "multi-worker")
        assert not list((run / stage).glob("workertemp_*")) and not (run / stage / "backup").exists()
    assert json.loads((run / "tough" / "config.json").read_text())["init_from"] == str(run / "warmup" / "best.h5")
    assert sorted(p.name for p in (run / "export").iterdir()) == [
        "done.json", "tough_float32.card.json", "tough_float32.card.md", "tough_float32.tflite"]


@pytest.mark.parametrize("tf_config, said", [
    ("{not json", "not JSON"),
    (json.dumps({"task": {"type": "worker", "index": 0}}), "no \"cluster\""),
    (json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 2}}),
     "index 2 out of range"),
])
def test_a_bad_tf_config_is_one_line(tiny_prepared, tmp_path, tf_config, said):
    [(code, err)] = _finish([_start(tiny_prepared, tmp_path / "run", "multi-worker", {"TF_CONFIG": tf_config})], 90)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: TF_CONFIG: ") and said in lines[0], err
    assert not (tmp_path / "run").exists()


def test_an_absent_worker_is_said_after_the_timeout(tiny_prepared, tmp_path):
    """Worker 1 never starts: worker 0 gives up after EDGEKD_CLUSTER_TIMEOUT seconds, naming its address."""
    addresses = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    started = time.monotonic()
    proc = _start(tiny_prepared, tmp_path / "run", "multi-worker",
                  {"TF_CONFIG": _tf_config(addresses, 0), "EDGEKD_CLUSTER_TIMEOUT": "5"})
    [(code, err)] = _finish([proc], 90)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: TF_CONFIG: ") and f"{addresses[1]} not reachable within 5 s" in last, err
    assert time.monotonic() - started < 80 and proc.poll() is not None
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, said", [
    (None, "not set"),
    (json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker"}}), "job 'ps'"),
    (json.dumps({"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}), "listed twice"),
    (json.dumps({"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}), "\"host:port\""),
    (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}), "\"task\".type 'chief'"),
])
def test_tf_config_refusals_name_the_variable(text, said):
    """Read before TensorFlow loads (no process needed): each fault in one line with the expected form."""
    from edgekd.core.errors import EdgekdError
    from edgekd.training.distributed import read_cluster

    with pytest.raises(EdgekdError, match="^TF_CONFIG: ") as e:
        read_cluster(text)
    assert said in str(e.value) and "expects JSON such as" in str(e.value) and "\n" not in str(e.value)


def test_the_chief_is_the_chief_task_or_worker_0():
    from edgekd.training.distributed import read_cluster

    with_chief = {"cluster": {"chief": ["c:1"], "worker": ["w:1", "w:2"]}}
    assert read_cluster(json.dumps({**with_chief, "task": {"type": "chief", "index": 0}})).chief
    assert not read_cluster(json.dumps({**with_chief, "task": {"type": "worker", "index": 0}})).chief
    alone = read_cluster(json.dumps({"cluster": {"worker": ["w:1", "w:2"]}, "task": {"type": "worker", "index": 0}}))
    assert alone.chief and alone.tasks == ("worker:0", "worker:1")
