"""Landmark schemes: what a set of points means (count, mirror image, NME normaliser, test subsets).

Everything that depends on *which* landmarks a model predicts reads it from here, so adding a scheme is one entry:
the three public markups are registered below; a user's own points come from their dataset file
(edgekd/data/described.py) through ``make_scheme``, and a prepared folder carries its scheme whole
(``LandmarkScheme.to_dict``), so training, export and bench read a user's scheme without any registration by hand.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekd.core.errors import DataError, EdgekdError


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
    point_names: tuple[str, ...] = ()  # optional, one per point: for picking a subset of points by name
    # a subset of another scheme's points, e.g. ("300w", (36, 45, 30, 48, 54)): a model of that scheme starts a
    # network of this one (its landmark layer's rows for these points), so the shipped student can be fine-tuned
    subset_of: tuple[str, tuple[int, ...]] | None = None

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
        if points.ndim != 2 or points.shape != (self.num_points, 2):
            raise DataError(f"{source}: expected {self.num_points} points for {self.name}, found shape {points.shape}")


    def to_dict(self) -> dict:
        return {"name": self.name, "num_points": self.num_points, "flip_permutation": list(self.flip_permutation),
                "nme_pair": list(self.nme_pair), "subsets": list(self.subsets), "description": self.description,
                "point_names": list(self.point_names),
                "subset_of": None if self.subset_of is None else [self.subset_of[0], list(self.subset_of[1])]}

    @classmethod
    def from_dict(cls, d: dict, source: str = "scheme") -> "LandmarkScheme":
        """A scheme recorded by ``to_dict`` (a prepared folder's manifest), checked as a new one would be."""
        try:
            return make_scheme(d["name"], d["num_points"], flip_permutation=d["flip_permutation"],
                               nme_pair=d["nme_pair"], subsets=d.get("subsets") or ("full",),
                               description=d.get("description", ""), point_names=d.get("point_names") or (),
                               subset_of=d.get("subset_of"), source=source)
        except (KeyError, TypeError) as e:
            raise DataError(f"{source}: unreadable landmark scheme ({e!r})") from None


def _int(value, what: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{source}: {what} {value!r}: expected a whole number")
    return int(value)


def make_scheme(name, num_points, *, flip_pairs=None, flip_permutation=None, nme_pair, subsets=("full",),
                description: str = "", point_names=(), subset_of=None, source: str = "scheme") -> LandmarkScheme:
    """A scheme from a user's description, every part checked, each error one line naming ``source`` (the file)
    and what was expected: a mirror map that is not a permutation or not its own inverse would relabel points
    wrongly on every flipped training crop, and an NME pair out of range would fail only at the first score."""
    if not isinstance(name, str) or not name.strip() or not all(c.isalnum() or c in "-_." for c in name):
        raise DataError(f"{source}: name {name!r}: expected a short name of letters, digits, - _ or .")
    n = _int(num_points, "points", source)
    if not 1 <= n <= 1000:
        raise DataError(f"{source}: points {n}: expected 1 to 1000 landmarks")
    if (flip_pairs is None) == (flip_permutation is None):
        raise DataError(f"{source}: give the mirror image as flip_pairs (left/right index pairs) or as "
                        f"flip_permutation (one index per point), one of them")
    if flip_pairs is not None:
        if not isinstance(flip_pairs, (list, tuple)) or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 for p in flip_pairs):
            raise DataError(f"{source}: flip_pairs: expected a list of [left, right] index pairs")
        perm = list(range(n))
        for a, b in flip_pairs:
            a, b = _int(a, "flip_pairs index", source), _int(b, "flip_pairs index", source)
            if not (0 <= a < n and 0 <= b < n) or a == b:
                raise DataError(f"{source}: flip_pairs [{a}, {b}]: expected two different indices from 0 to {n - 1}")
            if perm[a] != a or perm[b] != b:
                raise DataError(f"{source}: flip_pairs: point {a if perm[a] != a else b} appears in two pairs")
            perm[a], perm[b] = b, a
    else:
        if not isinstance(flip_permutation, (list, tuple)):
            raise DataError(f"{source}: flip_permutation: expected a list of {n} indices")
        perm = [_int(i, "flip_permutation index", source) for i in flip_permutation]
        if sorted(perm) != list(range(n)):
            raise DataError(f"{source}: flip_permutation: expected each index from 0 to {n - 1} exactly once "
                            f"(a permutation of the {n} points), got {perm}")
        wrong = [i for i in range(n) if perm[perm[i]] != i]
        if wrong:
            raise DataError(f"{source}: flip_permutation: point {wrong[0]} mirrors to {perm[wrong[0]]}, which mirrors "
                            f"to {perm[perm[wrong[0]]]}; expected pairs that swap (its own inverse)")
    if not isinstance(nme_pair, (list, tuple)) or len(nme_pair) != 2:
        raise DataError(f"{source}: nme_points: expected two point indices (e.g. the outer eye corners)")
    a, b = (_int(i, "nme_points index", source) for i in nme_pair)
    if not (0 <= a < n and 0 <= b < n) or a == b:
        raise DataError(f"{source}: nme_points [{a}, {b}]: expected two different indices from 0 to {n - 1}")
    names = tuple(str(x) for x in point_names or ())
    if names and (len(names) != n or len(set(names)) != n):
        raise DataError(f"{source}: point_names: expected {n} different names, one per point, got {len(names)}")
    subsets = tuple(str(s) for s in subsets or ("full",))
    if "full" not in subsets:
        subsets = (*subsets, "full")
    return LandmarkScheme(name=name, num_points=n, flip_permutation=tuple(perm), nme_pair=(a, b), subsets=subsets,
                          description=str(description or f"{n} points ({name}), described by the user's dataset file"),
                          point_names=names, subset_of=_subset(subset_of, n, source))


def _subset(subset_of, n: int, source: str) -> tuple[str, tuple[int, ...]] | None:
    """``subset_of``: {scheme: a registered scheme, points: its indices (or its point names), one per point here}."""
    if subset_of is None:
        return None
    if isinstance(subset_of, (list, tuple)) and len(subset_of) == 2:  # as recorded by to_dict
        subset_of = {"scheme": subset_of[0], "points": subset_of[1]}
    if not isinstance(subset_of, dict) or set(subset_of) != {"scheme", "points"}:
        raise DataError(f"{source}: subset_of: expected {{scheme: NAME, points: [index or name, ...]}}")
    parent = SCHEMES.get(str(subset_of["scheme"]))
    if parent is None:
        raise DataError(f"{source}: subset_of: scheme {subset_of['scheme']!r} is not known; expected one of "
                        f"{', '.join(SCHEMES)}")
    points = subset_of["points"]
    if not isinstance(points, (list, tuple)) or len(points) != n:
        raise DataError(f"{source}: subset_of.points: expected {n} points of {parent.name}, one per point here")
    indices = []
    for p in points:
        if isinstance(p, str) and p in parent.point_names:
            indices.append(parent.point_names.index(p))
            continue
        i = _int(p, "subset_of point", source)
        if not 0 <= i < parent.num_points:
            raise DataError(f"{source}: subset_of.points: {p!r} is not a point of {parent.name} (0 to "
                            f"{parent.num_points - 1}{', or its point names' if parent.point_names else ''})")
        indices.append(i)
    if len(set(indices)) != n:
        raise DataError(f"{source}: subset_of.points: a point of {parent.name} is named twice")
    return parent.name, tuple(indices)


SCHEMES: dict[str, LandmarkScheme] = {}


def register(scheme: LandmarkScheme, source: str = "scheme") -> LandmarkScheme:
    """Make ``scheme`` known by name (``get_scheme``). The same scheme twice is fine (a prepared folder opened again);
    another scheme under a registered name is refused: a model's metadata names its scheme, and one name must mean
    one set of points."""
    def same(s):  # what the scheme means to a model: its points, mirror map, NME pair and parent
        return s.num_points, tuple(s.flip_permutation), tuple(s.nme_pair), s.subset_of

    known = SCHEMES.get(scheme.name)
    if known is not None and same(known) != same(scheme):
        raise DataError(f"{source}: a landmark scheme named {scheme.name!r} already exists with other points or "
                        f"pairs; give your dataset another name")
    return SCHEMES.setdefault(scheme.name, scheme)


register(make_scheme(
    "300w", 68,
    flip_pairs=[
        *_ranges(range(0, 8), range(16, 8, -1)),
        *_ranges(range(17, 22), range(26, 21, -1)),
        (31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
        (48, 54), (49, 53), (50, 52), (60, 64), (61, 63), (67, 65), (59, 55), (58, 56),
    ],
    nme_pair=(36, 45),
    subsets=("common", "challenging", "full"),
    description="iBUG 68-point markup (300-W): common = LFPW+HELEN test, challenging = iBUG, full = both",
))

register(make_scheme(
    "wflw", 98,
    flip_pairs=[
        *_ranges(range(0, 16), range(32, 16, -1)),
        *_ranges(range(33, 38), range(46, 41, -1)),
        *_ranges(range(38, 42), range(50, 46, -1)),
        *_ranges(range(60, 65), range(72, 67, -1)),
        *_ranges(range(65, 68), range(75, 72, -1)),
        (96, 97), (55, 59), (56, 58), (76, 82), (77, 81), (78, 80), (88, 92), (89, 91), (95, 93), (87, 83), (86, 84),
    ],
    nme_pair=(60, 72),
    subsets=("pose", "expression", "illumination", "makeup", "occlusion", "blur", "full"),
    description="WFLW 98-point markup; subsets are its six attribute flags",
))

register(make_scheme(
    "cofw", 29,
    flip_pairs=[
        (0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15), (16, 17), (18, 19), (22, 23),
    ],
    nme_pair=(8, 9),
    subsets=("full",),
    description="COFW 29-point markup (Burgos-Artizzu et al. 2013)",
))

WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")


def get_scheme(name: str) -> LandmarkScheme:
    try:
        return SCHEMES[name.lower()]
    except KeyError:
        raise EdgekdError(f"unknown landmark scheme {name!r}; expected one of {', '.join(SCHEMES)}") from None
