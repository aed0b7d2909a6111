"""Your own landmarks: a dataset described by a small file, ``dataset.yaml``, beside the data.

Ultralytics users describe a pose dataset by a YAML file (paths, ``kpt_shape``, ``flip_idx``); MMPose and Model
Maker users bring COCO keypoint JSON. edgekd reads both kinds of data through one description, so any point set
(a 5-point aligner, 98 WFLW points, eyes only) goes through prepare, train, export, bench and predict like 300-W:

    name: eyes5                     # the scheme's name, carried by every export's metadata
    licence: "CC-BY-4.0, my photos" # what users of a model trained on it must know (``license`` also read)
    format: folder                  # folder | coco | 300w | wflw | cofw (the public layouts, as downloaded)
    points: 5                       # or `scheme: 300w` for a registered markup (then no flip/nme keys)
    flip_pairs: [[0, 1], [3, 4]]    # left/right twins; or flip_permutation: one index per point
    nme_points: [0, 1]              # NME = mean point error / the distance between these two points
    point_names: [l_eye, r_eye, nose, l_mouth, r_mouth]   # optional
    subset_of: {scheme: 300w, points: [36, 45, 30, 48, 54]}  # optional: these are points of a known markup, so a
                                    # model of it (the shipped student) starts yours (`--recipe finetune`)
    train: train/                   # folder: images, each with a .pts or .json point file of the same stem
    test: test/                     # coco: an annotation file (images beside it, or under `images:`)

Paths are relative to the file. A ``.json`` point file holds ``{"points": [[x, y], ...]}`` or ``[[x, y], ...]``
in 0-based pixels; ``.pts`` is iBUG's 1-based format. COCO keypoints are ``[x, y, v] * points`` in 0-based pixels;
every annotation needs all its points (v > 0). Everything wrong in a description or its files is one line naming
the file and what was expected, before any cropping starts.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from edgekd.core.errors import DataError, MissingSplit
from edgekd.core.imageio import IMAGE_EXTENSIONS, Sample, read_pts
from edgekd.core.schemes import LandmarkScheme, get_scheme, make_scheme

DESCRIPTION = "dataset.yaml"
OWN_FORMATS = ("folder", "coco")
KEYS = {"name", "licence", "license", "format", "points", "scheme", "flip_pairs", "flip_permutation", "nme_points",
        "point_names", "subsets", "description", "train", "test", "images", "root", "subset_of"}
SIDE_SHARE = 0.5  # a flip pair's points must be each other's mirror image on more than this share of the faces
OUTSIDE_SHARE = 0.25  # how far beyond the image edge a cut face's points may reach, in face sizes
SIDE_MIN_FACES = 10  # below it, head poses decide that check more than the labels


@dataclass
class Description:
    """A parsed dataset.yaml: its scheme, where each split's data lies, and its licence."""

    path: Path
    format: str
    scheme: LandmarkScheme
    licence: str
    splits: dict  # "train" / "test" -> path (folder or annotation file), resolved against the file's folder
    images: Path | None = None  # coco: the folder the annotations' file_name values are relative to
    root: Path | None = None  # public formats: the dataset root as downloaded (default: the file's folder)


def find_description(root) -> Path | None:
    """The description file of a dataset root, or None for a root without one (a public layout as downloaded)."""
    path = Path(root) / DESCRIPTION
    return path if path.is_file() else None


def load_description(path, public_formats=()) -> Description:
    """Read and check a dataset.yaml; ``public_formats`` are the layouts edgekd reads as downloaded."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a mapping of keys (name, licence, format, points, ...)")
    unknown = sorted(set(doc) - KEYS)
    if unknown:
        raise DataError(f"{path}: unknown key {unknown[0]!r}; expected some of {', '.join(sorted(KEYS))}")
    fmt = doc.get("format", "folder")
    formats = (*OWN_FORMATS, *public_formats)
    if fmt not in formats:
        raise DataError(f"{path}: format {fmt!r}: expected one of {', '.join(formats)}")
    licence = doc.get("licence", doc.get("license"))
    if not isinstance(licence, str) or not licence.strip():
        raise DataError(f"{path}: licence: expected one line saying under which terms the images and points may be "
                        f"used (it goes into every model card)")
    here = path.parent
    if fmt in OWN_FORMATS:
        scheme = _scheme(doc, path)
        splits = {}
        for split in ("train", "test"):
            if doc.get(split) is not None:
                if not isinstance(doc[split], str):
                    raise DataError(f"{path}: {split}: expected a path relative to the file")
                splits[split] = (here / doc[split]).resolve()
        if "train" not in splits:
            raise DataError(f"{path}: train: expected the training data's {'folder' if fmt == 'folder' else 'file'}")
        images = (here / doc["images"]).resolve() if fmt == "coco" and doc.get("images") else None
        return Description(path, fmt, scheme, licence.strip(), splits, images)
    if any(k in doc for k in ("points", "flip_pairs", "flip_permutation", "nme_points")):
        raise DataError(f"{path}: format {fmt} has its own points (scheme {fmt}); leave out points, flip_pairs, "
                        f"flip_permutation and nme_points")
    root = (here / doc["root"]).resolve() if doc.get("root") else here
    return Description(path, fmt, get_scheme(fmt), licence.strip(), {}, None, root)


def _scheme(doc: dict, path: Path) -> LandmarkScheme:
    if "scheme" in doc:
        if "points" in doc:
            raise DataError(f"{path}: give points (your own scheme) or scheme (a registered one), not both")
        return get_scheme(str(doc["scheme"]))
    if "points" not in doc:
        raise DataError(f"{path}: points: expected the number of landmarks per face (or scheme: 300w|wflw|cofw)")
    if "name" not in doc:
        raise DataError(f"{path}: name: expected a short name for your landmarks (exports carry it)")
    return make_scheme(doc["name"], doc["points"], flip_pairs=doc.get("flip_pairs"),
                       flip_permutation=doc.get("flip_permutation"), nme_pair=doc.get("nme_points"),
                       subsets=doc.get("subsets") or ("full",), description=doc.get("description", ""),
                       point_names=doc.get("point_names") or (), subset_of=doc.get("subset_of"), source=str(path))


def read_described(desc: Description, split: str) -> list[Sample]:
    """All faces of one split of an own-format description (folder or coco), checked against its scheme."""
    if split not in desc.splits:
        raise MissingSplit(f"{desc.path}: no {split} split")
    where = desc.splits[split]
    samples = (_read_folder(where, desc.scheme, split) if desc.format == "folder"
               else _read_coco(where, desc.images or where.parent, desc.scheme, split))
    if not samples:
        raise DataError(f"{where}: no annotated images found for the {split} split")
    if split == "train":
        check_sides(samples, desc.scheme, desc.path)
    return samples


def _read_folder(folder: Path, scheme: LandmarkScheme, split: str) -> list[Sample]:
    if not folder.is_dir():
        raise DataError(f"{folder}: the {split} folder was not found (named in {DESCRIPTION})")
    samples = []
    for image in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS):
        points_file = next((image.with_suffix(s) for s in (".json", ".pts") if image.with_suffix(s).is_file()), None)
        if points_file is None:
            raise DataError(f"{image}: an image without points; expected {image.stem}.json or {image.stem}.pts "
                            f"beside it")
        points = read_pts(points_file, scheme.num_points) if points_file.suffix == ".pts" else \
            _read_json_points(points_file, scheme.num_points)
        _check_inside(points, _image_size(image), f"{points_file}: points for {image.name}")
        samples.append(Sample(id=f"{split}/{image.relative_to(folder).with_suffix('')}", image_path=str(image),
                              points=points, tags=("full",)))
    return samples


def _read_json_points(path: Path, num_points: int) -> np.ndarray:
    try:
        doc = json.loads(path.read_text())
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable JSON point file ({e})") from None
    pts = doc.get("points") if isinstance(doc, dict) else doc
    try:
        arr = np.asarray(pts, dtype=np.float32)
    except (TypeError, ValueError):
        arr = np.zeros((0,))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise DataError(f"{path}: expected {{\"points\": [[x, y], ...]}} with {num_points} points")
    if len(arr) != num_points:
        raise DataError(f"{path}: expected {num_points} points, found {len(arr)}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{path}: non-finite coordinates")
    return arr


def _read_coco(annotations: Path, images: Path, scheme: LandmarkScheme, split: str) -> list[Sample]:
    if not annotations.is_file():
        raise DataError(f"{annotations}: the {split} annotation file was not found (named in {DESCRIPTION})")
    try:
        doc = json.loads(annotations.read_text())
        files = {im["id"]: im for im in doc["images"]}
        anns = doc["annotations"]
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise DataError(f"{annotations}: not COCO keypoint JSON with images and annotations ({e!r})") from None
    samples = []
    for k, ann in enumerate(anns):
        where = f"{annotations}: annotation {ann.get('id', k) if isinstance(ann, dict) else k}"
        try:
            im = files[ann["image_id"]]
            kp = np.asarray(ann["keypoints"], dtype=np.float32)
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: expected image_id (of an image listed) and keypoints") from None
        if kp.size != 3 * scheme.num_points:
            raise DataError(f"{where}: expected {scheme.num_points} keypoints ({3 * scheme.num_points} values "
                            f"x, y, v), found {kp.size} values")
        kp = kp.reshape(-1, 3)
        if np.any(kp[:, 2] <= 0):
            raise DataError(f"{where}: points {np.flatnonzero(kp[:, 2] <= 0).tolist()[:5]} are not labelled "
                            f"(v = 0); every point of every face is needed")
        points = kp[:, :2]
        if im.get("width") and im.get("height"):
            _check_inside(points, (im["width"], im["height"]), f"{where} ({im.get('file_name')})")
        samples.append(Sample(id=f"{split}/{ann.get('id', k)}", image_path=str(images / im["file_name"]),
                              points=points, tags=("full",)))
    return samples


def _image_size(path: Path) -> tuple[int, int]:
    """Width and height from the image file's header (no decoding: a large dataset is checked in seconds)."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None


def _check_inside(points: np.ndarray, size: tuple[int, int], where: str) -> None:
    """Points well outside their image are a wrong file (swapped x and y, a wrong scale, another image's points).
    A face cut by the image's edge keeps its points a little outside (a chin below the frame, as in 300-W): within
    ``OUTSIDE_SHARE`` of the face's size they pass."""
    w, h = size
    slack = OUTSIDE_SHARE * float(np.max(points.max(axis=0) - points.min(axis=0)))
    outside = ((points[:, 0] < -0.5 - slack) | (points[:, 0] > w - 0.5 + slack) | (points[:, 1] < -0.5 - slack)
               | (points[:, 1] > h - 0.5 + slack))
    if np.any(outside):
        raise DataError(f"{where}: {int(outside.sum())} of its {len(points)} points lie outside the {w}x{h} image "
                        f"(first: point {int(np.flatnonzero(outside)[0])}); expected points on the image (a face "
                        f"cut by its edge may reach {OUTSIDE_SHARE:.0%} of its size beyond it)")


def check_sides(samples: list[Sample], scheme: LandmarkScheme, source) -> None:
    """Each flip pair joins a point with its mirror twin: mirrored about the face's middle, a point lands among the
    nearest points of its declared twin on most training faces. A pair of two left points (or a shifted pair)
    would teach every mirrored training crop wrong labels. With fewer than ``SIDE_MIN_FACES`` faces the head poses
    weigh more than the labels, and the check is left out."""
    if len(samples) < SIDE_MIN_FACES:
        return
    perm = list(scheme.flip_permutation)
    k = max(2, math.ceil(0.05 * scheme.num_points))  # twins may sit among dense contour points: the k nearest
    hits = np.zeros(scheme.num_points)
    for s in samples:
        p = np.asarray(s.points, np.float64)
        mirrored = p.copy()
        mirrored[:, 0] = 2 * p[:, 0].mean() - p[:, 0]
        nearest = np.argsort(np.linalg.norm(mirrored[:, None] - p[None], axis=2), axis=1)[:, :k]
        hits += [perm[a] in nearest[a] for a in range(scheme.num_points)]
    share = hits / len(samples)
    for a, b in enumerate(perm):
        if a < b and min(share[a], share[b]) <= SIDE_SHARE:
            raise DataError(f"{source}: flip pair [{a}, {b}]: mirrored, point {a} lands near point {b} on only "
                            f"{min(share[a], share[b]):.0%} of the training faces; expected a point and its mirror "
                            f"twin (left eye corner with right eye corner)")
