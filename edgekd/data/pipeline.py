"""tf.data input pipeline over a prepared folder: (image in [0, 1], {"hard", "soft"} normalised landmarks).

Augmentation runs in numpy/OpenCV inside `tf.numpy_function` (parallel map), seeded per element from a tf.data
random stream that is re-drawn every epoch, so runs are reproducible for a given seed yet never repeat a variant.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.core.crop import CropSpec
from edgekd.core.errors import DataError
from edgekd.core.schemes import LandmarkScheme, get_scheme, register
from edgekd.data.augment import AugmentConfig, augment_sample
from edgekd.data.prepare import Manifest


@dataclass
class SplitArrays:
    images: np.ndarray  # uint8 (M, S, S, 3), memory-mapped
    hard: np.ndarray  # float32 (M, N, 2) stored-image pixels
    soft: np.ndarray
    faces: list[dict]

    def __len__(self) -> int:
        return len(self.images)


class PreparedData:
    """A prepared folder (see prepare.py): manifest, scheme, crop and the arrays of each split."""

    def __init__(self, root):
        self.root = Path(root)
        self.manifest = Manifest.load(self.root / "manifest.json")
        spec = self.manifest.scheme_spec  # a user's own scheme travels whole in the manifest; registered here so
        # that every later step (training, export's metadata, bench) finds it by name
        self.scheme: LandmarkScheme = (register(LandmarkScheme.from_dict(spec, str(self.root / "manifest.json")),
                                                str(self.root)) if spec else get_scheme(self.manifest.scheme))
        self.crop: CropSpec = self.manifest.crop_spec
        self._splits: dict[str, SplitArrays] = {}
        # extra point sets of the training split (stored-image pixels, like hard.npy) that every sample carries
        # through the same augmentation: the teachers' cached outputs (edgekd.training.teacher_targets)
        self.guides: dict[str, np.ndarray] = {}

    open = classmethod(lambda cls, root: cls(root))

    @property
    def input_size(self) -> int:
        return self.crop.input_size

    @property
    def num_points(self) -> int:
        return self.scheme.num_points

    def split(self, name: str) -> SplitArrays:
        """A split's arrays, checked: a split the manifest does not list is said as such; a listed one whose file
        is gone, unreadable, of the wrong shape or holding NaN is a damaged prepared folder, naming the file."""
        if name not in self._splits:
            d = self.root / name
            if name not in self.manifest.counts:
                have = ", ".join(sorted(self.manifest.counts))
                raise DataError(f"{self.root}: no '{name}' split (this folder has: {have})")
            for f in SPLIT_FILES:
                if not (d / f).is_file():
                    raise DataError(f"{d / f}: {MISSING}; {REDO}")
            arrays = SplitArrays(images=_load(d / "images.npy", mmap_mode="r"), hard=_load(d / "hard.npy"),
                                 soft=_load(d / "soft.npy"), faces=_load_faces(d / "faces.json"))
            self._check(d, name, arrays)
            self._splits[name] = arrays
        return self._splits[name]

    def _check(self, d: Path, name: str, arrays: SplitArrays) -> None:
        m, size, n = self.manifest.counts[name], self.manifest.store_size, self.num_points
        expected = {"images.npy": ((m, size, size, 3), np.uint8), "hard.npy": ((m, n, 2), np.float32),
                    "soft.npy": ((m, n, 2), np.float32)}
        for (f, (shape, dtype)), a in zip(expected.items(), (arrays.images, arrays.hard, arrays.soft)):
            if a.shape != shape or (a.dtype != dtype if dtype is np.uint8 else a.dtype.kind != "f"):
                raise DataError(f"{d / f}: {DAMAGED} (shape {a.shape} {a.dtype}, expected {shape} {np.dtype(dtype)} "
                                f"for the {m} faces manifest.json counts); {REDO}")
        for f, a in (("hard.npy", arrays.hard), ("soft.npy", arrays.soft)):
            if not np.isfinite(a).all():
                bad = int((~np.isfinite(a)).any(axis=(1, 2)).sum())
                raise DataError(f"{d / f}: {DAMAGED} (NaN or infinite landmarks for {bad} faces); {REDO}")
        if len(arrays.faces) != m:
            raise DataError(f"{d / 'faces.json'}: {DAMAGED} ({len(arrays.faces)} faces, manifest.json counts {m}); "
                            f"{REDO}")

    def attach_guides(self, guides: dict[str, np.ndarray]) -> None:
        """Point sets (M, N, 2) in stored-image pixels, one per training face, that the training split's samples
        carry under their names, moved by each sample's augmentation like the landmarks."""
        n = len(self.split("train"))
        for name, points in guides.items():
            if points.shape != (n, self.num_points, 2):
                raise DataError(f"{self.root}: {name} points have shape {points.shape}, expected "
                                f"({n}, {self.num_points}, 2)")
        self.guides = {k: np.asarray(v, np.float32) for k, v in guides.items()}

    def sample(self, split: str, index: int, rng=None, augment: AugmentConfig | None = None):
        """One model-ready sample in numpy: (crop uint8, hard (N,2) crop px, soft (N,2) crop px, flipped)."""
        crop, points, flipped = self.sample_points(split, index, rng, augment)
        return crop, points["hard"], points["soft"], flipped

    def sample_points(self, split: str, index: int, rng=None, augment: AugmentConfig | None = None):
        """(crop uint8, {"hard", "soft", and on the training split every attached guide: (N,2) crop px}, flipped)."""
        s = self.split(split)
        sets = {"hard": s.hard[index], "soft": s.soft[index]}
        if split == "train":
            sets.update({k: v[index] for k, v in self.guides.items()})
        crop, moved, flipped = augment_sample(np.asarray(s.images[index]), list(sets.values()), self.scheme,
                                              self.input_size, rng, augment)
        return crop, dict(zip(sets, moved)), flipped

    def arrays(self, split: str, limit: int | None = None):
        """Canonical (un-augmented) crops of a split: (images uint8 (M,S,S,3), hard (M,N,2) crop px)."""
        s = self.split(split)
        n = len(s) if limit is None else min(limit, len(s))
        offset = (self.manifest.store_size - self.input_size) / 2.0
        lo, hi = int(offset), int(offset) + self.input_size
        assert lo == offset, "stored context must be an integer margin"
        return np.ascontiguousarray(s.images[:n, lo:hi, lo:hi]), s.hard[:n] - offset


# one wording for a prepared folder's files, whichever verb reads them
MISSING, DAMAGED = "missing from the prepared folder", "damaged prepared file"
REDO = "run `edgekd data prepare --force` to rewrite the folder"
SPLIT_FILES = ("images.npy", "hard.npy", "soft.npy", "faces.json")


def _load(path: Path, mmap_mode=None) -> np.ndarray:
    try:  # a truncated or hand-edited array: one line naming it, not numpy's traceback
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        raise DataError(f"{path}: {DAMAGED} ({' '.join(str(e).split()) or type(e).__name__}); {REDO}") from None


def _load_faces(path: Path) -> list:
    try:
        faces = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: {DAMAGED} (not JSON: {e}); {REDO}") from None
    if not isinstance(faces, list):
        raise DataError(f"{path}: {DAMAGED} (expected a list of faces); {REDO}")
    return faces


def _loader(data: PreparedData, split: str, aug):
    """The tf.data map function: (index, element seed) -> (image float32 in [0, 1], {"hard", "soft", guides...})
    with every point set in normalised crop coordinates (B, 2N)."""
    import tensorflow as tf

    size, k = data.input_size, data.num_points
    names = ["hard", "soft", *(data.guides if split == "train" else ())]

    def load(index, element_seed):
        rng = np.random.default_rng(int(element_seed)) if aug is not None else None
        crop, points, _ = data.sample_points(split, int(index), rng, aug)
        return (crop, *(data.crop.normalize(points[n]).reshape(-1) for n in names))

    def tf_load(index, element_seed):
        img, *sets = tf.numpy_function(load, [index, element_seed], [tf.uint8] + [tf.float32] * len(names))
        img.set_shape((size, size, 3))
        for t in sets:
            t.set_shape((2 * k,))
        return tf.cast(img, tf.float32) / 255.0, dict(zip(names, sets))

    return tf_load


def _augmentation(augment):
    return AugmentConfig() if augment is True else (augment or None)


def make_dataset(prepared, split: str, batch_size: int, augment: bool | AugmentConfig = True, seed: int = 0,
                 shuffle: bool = True, repeat: bool = False, drop_remainder: bool = False):
    """Batches of (images float32 (B,S,S,3) in [0,1], {"hard": (B,2N), "soft": (B,2N)}) in normalised crop space."""
    import tensorflow as tf

    data = prepared if isinstance(prepared, PreparedData) else PreparedData(prepared)
    n = len(data.split(split))
    indices = tf.data.Dataset.range(n)
    if shuffle:
        indices = indices.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((indices, seeds))
    if repeat:
        ds = ds.repeat()
    ds = ds.map(_loader(data, split, _augmentation(augment)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def epoch_order(n: int, seed: int, epoch: int, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sample indices, augmentation seeds) of one training epoch, a pure function of (seed, epoch).

    That makes a resumed run see exactly the data an uninterrupted one would have seen from that epoch on.
    ``count`` > n chains further permutations (fixed steps per epoch larger than the split).
    """
    rng = np.random.default_rng([seed, epoch])
    count = n if count is None else count
    order = np.concatenate([rng.permutation(n) for _ in range(-(-count // n))])[:count]
    return order.astype(np.int64), rng.integers(0, 2**31 - 1, size=count, dtype=np.int64)


def make_training_dataset(prepared, batch_size: int, augment, seed: int, first_epoch: int, epochs: int,
                          steps_per_epoch: int | None = None):
    """The training stream for epochs ``first_epoch`` .. ``epochs - 1``, each ordered by ``epoch_order``.

    Each epoch is batched on its own (its last batch may be smaller), so ``fit(steps_per_epoch=...)`` stays on
    epoch boundaries, and a run resumed at epoch k continues with the very batches of an uninterrupted run.
    """
    import tensorflow as tf

    data = prepared if isinstance(prepared, PreparedData) else PreparedData(prepared)
    n = len(data.split("train"))
    count = None if steps_per_epoch is None else steps_per_epoch * batch_size
    tables = [epoch_order(n, seed, e, count) for e in range(first_epoch, epochs)]
    idx = np.stack([t[0] for t in tables]) if tables else np.zeros((0, count or n), np.int64)
    seeds = np.stack([t[1] for t in tables]) if tables else np.zeros((0, count or n), np.int64)
    load = _loader(data, "train", _augmentation(augment))

    def one_epoch(i, s):
        ds = tf.data.Dataset.from_tensor_slices((i, s))
        return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(batch_size)

    ds = tf.data.Dataset.from_tensor_slices((idx, seeds)).flat_map(one_epoch)
    return ds.prefetch(tf.data.AUTOTUNE)
