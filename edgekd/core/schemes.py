"""Landmark schemes: what a set of points means (count, mirror image, NME normaliser, test subsets).

Everything that depends on *which* landmarks a model predicts reads it from here, so adding a scheme is one entry.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _permutation(num_points: int, pairs: list[tuple[int, int]]) -> tuple[int, ...]:
    """Flip permutation from left/right pairs: flipped[i] = mirrored(points[perm[i]])."""
    perm = list(range(num_points))
    for a, b in pairs:
        if perm[a] != a or perm[b] != b:
            raise ValueError(f"point {a} or {b} appears in two flip pairs")
        perm[a], perm[b] = b, a
    return tuple(perm)


def _ranges(left: range, right: range) -> list[tuple[int, int]]:
    return list(zip(left, right))


@dataclass(frozen=True)
class LandmarkScheme:
    name: str
    num_points: int
    flip_permutation: tuple[int, ...]
    nme_pair: tuple[int, int]  # outer eye corners: NME = mean point error / distance between these two points
    subsets: tuple[str, ...]  # named test subsets, in report order ("full" always last)
    description: str

    def flip(self, points: np.ndarray, width: float) -> np.ndarray:
        """Mirror (N, 2) points of an image `width` pixels wide (pixel centres at integers) and relabel left/right."""
        flipped = np.array(points, dtype=np.float32, copy=True)
        flipped[:, 0] = (width - 1) - flipped[:, 0]
        return flipped[list(self.flip_permutation)]

    def interocular(self, points: np.ndarray) -> np.ndarray:
        """NME normaliser for points of shape (..., N, 2)."""
        a, b = self.nme_pair
        return np.linalg.norm(points[..., a, :] - points[..., b, :], axis=-1)

    def check(self, points: np.ndarray, source: str) -> None:
        from edgekd.core.errors import DataError

        if points.ndim != 2 or points.shape != (self.num_points, 2):
            raise DataError(f"{source}: expected {self.num_points} points for {self.name}, found shape {points.shape}")


SCHEMES: dict[str, LandmarkScheme] = {}


def _register(scheme: LandmarkScheme) -> None:
    SCHEMES[scheme.name] = scheme


_register(LandmarkScheme(
    name="300w",
    num_points=68,
    flip_permutation=_permutation(68, [
        *_ranges(range(0, 8), range(16, 8, -1)),
        *_ranges(range(17, 22), range(26, 21, -1)),
        (31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
        (48, 54), (49, 53), (50, 52), (60, 64), (61, 63), (67, 65), (59, 55), (58, 56),
    ]),
    nme_pair=(36, 45),
    subsets=("common", "challenging", "full"),
    description="iBUG 68-point markup (300-W): common = LFPW+HELEN test, challenging = iBUG, full = both",
))

_register(LandmarkScheme(
    name="wflw",
    num_points=98,
    flip_permutation=_permutation(98, [
        *_ranges(range(0, 16), range(32, 16, -1)),
        *_ranges(range(33, 38), range(46, 41, -1)),
        *_ranges(range(38, 42), range(50, 46, -1)),
        *_ranges(range(60, 65), range(72, 67, -1)),
        *_ranges(range(65, 68), range(75, 72, -1)),
        (96, 97), (55, 59), (56, 58), (76, 82), (77, 81), (78, 80), (88, 92), (89, 91), (95, 93), (87, 83), (86, 84),
    ]),
    nme_pair=(60, 72),
    subsets=("pose", "expression", "illumination", "makeup", "occlusion", "blur", "full"),
    description="WFLW 98-point markup; subsets are its six attribute flags",
))

_register(LandmarkScheme(
    name="cofw",
    num_points=29,
    flip_permutation=_permutation(29, [
        (0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15), (16, 17), (18, 19), (22, 23),
    ]),
    nme_pair=(8, 9),
    subsets=("full",),
    description="COFW 29-point markup (Burgos-Artizzu et al. 2013)",
))

WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")


def get_scheme(name: str) -> LandmarkScheme:
    from edgekd.core.errors import EdgekdError

    try:
        return SCHEMES[name.lower()]
    except KeyError:
        raise EdgekdError(f"unknown landmark scheme {name!r}; expected one of {', '.join(SCHEMES)}") from None
