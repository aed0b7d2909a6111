"""Pictures of prepared data: a grid of (augmented) training crops with their landmarks, to check by eye that
crops, augmentation and mirror relabelling are right."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from edgekd.core.errors import check_range
from edgekd.core.fileio import check_no_file_in_the_way, check_outside_inputs, write_image
from edgekd.data.augment import AugmentConfig
from edgekd.data.pipeline import PreparedData

log = logging.getLogger(__name__)


def draw_points(img: np.ndarray, points: np.ndarray, color, radius: int = 1) -> None:
    for x, y in np.asarray(points):
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(img, (int(round(x)), int(round(y))), radius, color, -1, cv2.LINE_AA)


MAX_COUNT = 400  # a grid of 100 rows of 192 px tiles is already a 19,200 px tall picture


def draw_prepared_samples(prepared, out, split: str = "train", count: int = 12, augment: bool | str = "light",
                          seed: int = 0, tile: int = 192) -> Path:
    """Hard landmarks green, soft red; the scheme's first eye-corner point (image left in an upright face) is
    drawn large in blue and the second in yellow, so a wrong mirror relabelling shows as swapped colours.
    ``augment``: a preset name as `train --augment` takes (default: the fast-cpu recipe's "light"), True (the
    full preset) or False (canonical crops).
    The picture goes outside the prepared folder: ``data prepare --force`` replaces only what it wrote there."""
    check_range("--count", count, 1, MAX_COUNT, integer=True)
    check_range("--seed", seed, 0, 2**32 - 1, integer=True)
    check_range("tile", tile, 16, 1024, integer=True)
    check_outside_inputs(out, "--out", {"PREPARED": prepared})
    check_no_file_in_the_way(out, "--out")
    aug = AugmentConfig.preset(augment) if isinstance(augment, str) else AugmentConfig() if augment else None
    data = PreparedData(prepared)
    rng = np.random.default_rng(seed)
    n = len(data.split(split))
    if count > n:
        log.info("--count %d: the %s split of %s holds %d faces; drawing all %d", count, split, prepared, n, n)
    left, right = data.scheme.nme_pair
    tiles = []
    for i in rng.choice(n, size=min(count, n), replace=False):
        crop, hard, soft, flipped = data.sample(split, int(i), rng if aug is not None else None, aug)
        scale = tile / data.input_size
        img = cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_LINEAR)
        draw_points(img, soft * scale + (scale - 1) / 2, (255, 0, 0))
        draw_points(img, hard * scale + (scale - 1) / 2, (0, 255, 0))
        draw_points(img, hard[[left]] * scale + (scale - 1) / 2, (0, 80, 255), radius=4)
        draw_points(img, hard[[right]] * scale + (scale - 1) / 2, (255, 220, 0), radius=4)
        if flipped:
            cv2.putText(img, "flipped", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(img)
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[r:r + cols]) for r in range(0, len(tiles), cols)])
    return write_image(out, grid)
