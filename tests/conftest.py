"""Shared fixtures: the real datasets in ../shared/data (read-only; override with EDGEKD_DATA) and a tiny
prepared 300-W folder built once per session from a few dozen real faces."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import edgekd  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any test imports TensorFlow)

REPO = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one test process per core (pytest-xdist): each TensorFlow op on one thread, so the processes
    # do not fight over the cores (set before TensorFlow loads; the processes tests start inherit it)
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

# The files that take longest, started first: pytest-xdist hands out whole files (--dist loadfile) in collection
# order when told to keep it (--no-loadscope-reorder, in the Makefile; by default it orders files by their number of
# tests), so a long file collected last would run alone at the end while the other cores idle
LONGEST_FIRST = ("test_distributed.py", "test_train.py", "test_recipe.py", "test_export.py", "test_bad_input.py",
                 "test_init_from.py", "test_bench.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept


def _data_root() -> Path:
    root = Path(os.environ.get("EDGEKD_DATA", REPO.parent / "shared" / "data"))
    if not (root / "300w").is_dir():
        pytest.fail(f"test data not found at {root} (set EDGEKD_DATA to the folder holding 300w/)")
    return root


@pytest.fixture(scope="session")
def data_root() -> Path:
    return _data_root()


def make_300w_subset(dest: Path, n_train: int = 40, n_test: int = 8) -> Path:
    """A 300-W-layout folder of symlinks to the first real faces of lfpw (train and test)."""
    src = _data_root() / "300w" / "lfpw"
    for split, n in (("trainset", n_train), ("testset", n_test)):
        out = dest / "lfpw" / split
        out.mkdir(parents=True, exist_ok=True)
        for pts in sorted((src / split).glob("*.pts"))[:n]:
            for f in (pts, *[pts.with_suffix(e) for e in (".jpg", ".png") if pts.with_suffix(e).exists()]):
                (out / f.name).symlink_to(f)
    return dest


@pytest.fixture(scope="session")
def tiny_300w_root(tmp_path_factory) -> Path:
    return make_300w_subset(tmp_path_factory.mktemp("300w_subset"))


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory, tiny_300w_root) -> Path:
    """Prepared data at input 64 from 40 training faces (36 train + 4 val) and 8 test faces."""
    from edgekd.data.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("prepared") / "300w-64"
    prepare(PrepareConfig(dataset="300w", root=str(tiny_300w_root), input_size=64, val_fraction=0.1), out,
            progress=False)
    return out


@pytest.fixture(scope="session")
def one_epoch_baseline(tiny_prepared, tmp_path_factory) -> Path:
    """A finished one-epoch baseline run at input 64; tests copy it before they change or resume it."""
    from edgekd.training.config import TrainConfig
    from edgekd.training.train import train
    from train_helpers import TINY

    run = tmp_path_factory.mktemp("baseline")
    train(tiny_prepared, run, TrainConfig(stage="baseline", **{**TINY, "epochs": 1}))
    return run
