"""tf.data input pipeline over a prepared folder: (image in [0, 1], {"hard", "soft"} normalised landmarks).

Augmentation runs in numpy/OpenCV inside `tf.numpy_function` (parallel map), seeded per element from a tf.data
random stream that is re-drawn every epoch, so runs are reproducible for a given seed yet never repeat a variant.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.data.augment import AugmentConfig, augment_sample
from edgekd.data.crop import CropSpec
from edgekd.data.prepare import Manifest
from edgekd.errors import DataError
from edgekd.schemes import LandmarkScheme, get_scheme


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
        self.scheme: LandmarkScheme = get_scheme(self.manifest.scheme)
        self.crop: CropSpec = self.manifest.crop_spec
        self._splits: dict[str, SplitArrays] = {}

    open = classmethod(lambda cls, root: cls(root))

    @property
    def input_size(self) -> int:
        return self.crop.input_size

    @property
    def num_points(self) -> int:
        return self.scheme.num_points

    def split(self, name: str) -> SplitArrays:
        if name not in self._splits:
            d = self.root / name
            if not (d / "images.npy").is_file():
                have = ", ".join(sorted(self.manifest.counts))
                raise DataError(f"{self.root}: no '{name}' split (this folder has: {have})")
            self._splits[name] = SplitArrays(
                images=np.load(d / "images.npy", mmap_mode="r"), hard=np.load(d / "hard.npy"),
                soft=np.load(d / "soft.npy"), faces=json.loads((d / "faces.json").read_text()))
        return self._splits[name]

    def sample(self, split: str, index: int, rng=None, augment: AugmentConfig | None = None):
        """One model-ready sample in numpy: (crop uint8, hard (N,2) crop px, soft (N,2) crop px, flipped)."""
        s = self.split(split)
        crop, (hard, soft), flipped = augment_sample(np.asarray(s.images[index]), [s.hard[index], s.soft[index]],
                                                     self.scheme, self.input_size, rng, augment)
        return crop, hard, soft, flipped

    def arrays(self, split: str, limit: int | None = None):
        """Canonical (un-augmented) crops of a split: (images uint8 (M,S,S,3), hard (M,N,2) crop px)."""
        s = self.split(split)
        n = len(s) if limit is None else min(limit, len(s))
        offset = (self.manifest.store_size - self.input_size) / 2.0
        lo, hi = int(offset), int(offset) + self.input_size
        assert lo == offset, "stored context must be an integer margin"
        return np.ascontiguousarray(s.images[:n, lo:hi, lo:hi]), s.hard[:n] - offset


def make_dataset(prepared, split: str, batch_size: int, augment: bool | AugmentConfig = True, seed: int = 0,
                 shuffle: bool = True, repeat: bool = False, drop_remainder: bool = False):
    """Batches of (images float32 (B,S,S,3) in [0,1], {"hard": (B,2N), "soft": (B,2N)}) in normalised crop space."""
    import tensorflow as tf

    data = prepared if isinstance(prepared, PreparedData) else PreparedData(prepared)
    arrays = data.split(split)
    n, size, k = len(arrays), data.input_size, data.num_points
    aug = AugmentConfig() if augment is True else (augment or None)

    def load(index, element_seed):
        rng = np.random.default_rng(int(element_seed)) if aug is not None else None
        crop, hard, soft, _ = data.sample(split, int(index), rng, aug)
        norm = data.crop.normalize
        return crop, norm(hard).reshape(-1), norm(soft).reshape(-1)

    def tf_load(index, element_seed):
        img, hard, soft = tf.numpy_function(load, [index, element_seed], [tf.uint8, tf.float32, tf.float32])
        img.set_shape((size, size, 3))
        hard.set_shape((2 * k,))
        soft.set_shape((2 * k,))
        return tf.cast(img, tf.float32) / 255.0, {"hard": hard, "soft": soft}

    indices = tf.data.Dataset.range(n)
    if shuffle:
        indices = indices.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((indices, seeds))
    if repeat:
        ds = ds.repeat()
    ds = ds.map(tf_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
