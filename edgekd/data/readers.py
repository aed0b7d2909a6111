"""Readers: one per on-disk format as users download it, each yielding the same `Sample` record.

Points are float32 (N, 2), 0-based pixel coordinates with pixel centres at integers (300-W .pts and COFW .mat are
1-based MATLAB-style and are shifted here; WFLW lists are already 0-based).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgekd.core.errors import FILE_NOT_FOLDER, DataError, MissingSplit
from edgekd.core.imageio import IMAGE_EXTENSIONS, Sample, as_rgb, read_pts
from edgekd.core.schemes import WFLW_ATTRIBUTES, LandmarkScheme, get_scheme
from edgekd.data.described import DESCRIPTION, find_description, load_description, read_described

log = logging.getLogger(__name__)

# 300-W layout as downloaded (ibug_300W_large_face_landmark_dataset): <root>/{lfpw,helen}/{trainset,testset}/ and
# the flat folders afw/ (training) and ibug/ (the challenging test set); any of them may be missing, but a root must
# hold at least one, so a folder one level too deep or too high is refused instead of half-read.
W300_SPLIT_SUBSETS = ("lfpw", "helen")  # each with trainset/ and/or testset/
W300_FLAT_SUBSETS = {"afw": "train", "ibug": "test"}
_300W_TEST_SUBSET = {"lfpw": "common", "helen": "common", "ibug": "challenging"}
W300_LAYOUT = "lfpw/ and helen/ each with trainset/ and testset/ (afw/ and ibug/ optional)"
ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".7z", ".rar")


def _300w_subsets(root: Path) -> dict[str, Path]:
    """The recognised 300-W subset folders of ``root`` (lower-case name -> folder), or a DataError that says
    what was expected and, where it can tell, which folder the user meant."""
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found")
    children = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    if root.name.lower() in ("trainset", "testset") or "trainset" in children or "testset" in children \
            or any(root.glob("*.pts")):
        raise DataError(f"{root}: one 300-W subset folder, not the dataset root; give the folder that holds "
                        f"{W300_LAYOUT}")
    known = {n: p for n, p in children.items() if n in W300_SPLIT_SUBSETS or n in W300_FLAT_SUBSETS}
    if not known:
        inner = [p for p in children.values()
                 if any((p / n).is_dir() for n in (*W300_SPLIT_SUBSETS, *W300_FLAT_SUBSETS))]
        hint = f" ({inner[0]} looks like one)" if inner else ""
        raise DataError(f"{root}: not a 300-W dataset root{hint}; expected {W300_LAYOUT}")
    subsets = (*W300_SPLIT_SUBSETS, *W300_FLAT_SUBSETS)
    for p in root.iterdir():  # a subset that is a file (or an archive not unpacked) would be dropped without a word
        name = p.name.lower()
        stem = name.split(".", 1)[0]
        if not p.is_dir() and (name in subsets or (stem in subsets and name.endswith(ARCHIVES))):
            what = "an archive; unpack it into a folder" if name != stem else "expected the subset's folder"
            raise DataError(f"{p}: {FILE_NOT_FOLDER} ({what}; 300-W layout: {W300_LAYOUT})")
    for n in W300_SPLIT_SUBSETS:
        if n in known and not any((known[n] / s).is_dir() for s in ("trainset", "testset")):
            raise DataError(f"{known[n]}: expected trainset/ and testset/ inside (300-W layout: {W300_LAYOUT})")
        for s_ in ("trainset", "testset"):
            if n in known and (known[n] / s_).exists() and not (known[n] / s_).is_dir():
                raise DataError(f"{known[n] / s_}: {FILE_NOT_FOLDER} (300-W layout: {W300_LAYOUT})")
    for n, p in children.items():
        if n not in known:
            log.info("%s: not a 300-W subset folder; ignored", p)
    return known


def read_300w(root, split: str, skipped: list | None = None) -> list[Sample]:
    """All faces of the 300-W `split` ("train" or "test") found under `root` (see W300_LAYOUT). Test faces come
    only from testset/ folders and ibug/, training faces only from trainset/ folders and afw/."""
    root = Path(root)
    scheme = get_scheme("300w")
    folders: list[tuple[str, Path]] = []
    for name, folder in sorted(_300w_subsets(root).items()):
        if name in W300_FLAT_SUBSETS:
            if W300_FLAT_SUBSETS[name] == split:
                folders.append((name, folder))
        elif (folder / f"{split}set").is_dir():
            folders.append((name, folder / f"{split}set"))
    samples = []
    for name, folder in folders:
        tags = ()
        if split == "test":
            tags = (_300W_TEST_SUBSET.get(name, "common"), "full")
        samples += read_pts_folder(folder, scheme, prefix=f"{name}/", tags=tags, skipped=skipped)
    if not samples:
        raise MissingSplit(f"{root}: no 300-W {split} annotations found (expected <dataset>/{split}set/*.pts)")
    return samples


def read_pts_folder(folder, scheme: LandmarkScheme, prefix: str = "", tags=(), skipped: list | None = None
                    ) -> list[Sample]:
    """Image + same-stem .pts pairs in one folder. A .pts without an image is skipped with a warning (and its
    path appended to ``skipped``, so reports can count it)."""
    folder = Path(folder)
    samples = []
    for pts_path in sorted(folder.glob("*.pts")):
        image = next((pts_path.with_suffix(e) for e in IMAGE_EXTENSIONS if pts_path.with_suffix(e).is_file()), None)
        if image is None:
            log.warning("%s: no image beside this annotation; skipped", pts_path)
            if skipped is not None:
                skipped.append(str(pts_path))
            continue
        samples.append(Sample(id=prefix + pts_path.stem, image_path=str(image),
                              points=read_pts(pts_path, scheme.num_points), tags=tuple(tags)))
    return samples


# --- WFLW list files ---------------------------------------------------------------------------------------------
def read_wflw_list(list_file, image_root) -> list[Sample]:
    """`list_98pt_rect_attr_{train,test}.txt`: 196 coords, box (x1 y1 x2 y2), 6 attribute flags, image path."""
    list_file, image_root = Path(list_file), Path(image_root)
    scheme = get_scheme("wflw")
    n = 2 * scheme.num_points
    try:
        lines = list_file.read_text().splitlines()
    except OSError as e:
        raise DataError(f"{list_file}: cannot read WFLW list ({e.strerror})") from None
    samples = []
    for lineno, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != n + 4 + 6 + 1:
            raise DataError(f"{list_file}:{lineno}: expected {n + 11} fields (196 coords, box, 6 flags, path), "
                            f"found {len(parts)}")
        try:
            nums = np.asarray(parts[: n + 10], dtype=np.float32)
        except ValueError:
            raise DataError(f"{list_file}:{lineno}: non-numeric coordinate or flag") from None
        x1, y1, x2, y2 = nums[n: n + 4]
        flags = nums[n + 4: n + 10].astype(int)
        attrs = dict(zip(WFLW_ATTRIBUTES, (bool(f) for f in flags)))
        tags = tuple(a for a in WFLW_ATTRIBUTES if attrs[a]) + ("full",)
        samples.append(Sample(id=f"{Path(parts[-1]).stem}#{lineno}", image_path=str(image_root / parts[-1]),
                              points=nums[:n].reshape(-1, 2), box=np.array([x1, y1, x2 - x1, y2 - y1], np.float32),
                              attrs=attrs, tags=tags))
    return samples


def read_wflw(root, split: str, skipped: list | None = None) -> list[Sample]:
    """WFLW as downloaded: `WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{split}.txt`
    and `WFLW_images/`. Also accepts the list file directly inside `root`."""
    root = Path(root)
    name = f"list_98pt_rect_attr_{split}.txt"
    candidates = [root / "WFLW_annotations" / "list_98pt_rect_attr_train_test" / name, root / name]
    list_file = next((c for c in candidates if c.is_file()), None)
    if list_file is None:
        raise MissingSplit(f"{root}: no {name} (looked in WFLW_annotations/list_98pt_rect_attr_train_test/ and the root)")
    image_root = root / "WFLW_images" if (root / "WFLW_images").is_dir() else root
    return read_wflw_list(list_file, image_root)


# --- COFW .mat ---------------------------------------------------------------------------------------------------
def read_cofw_mat(path) -> list[Sample]:
    """COFW_{train,test}_color.mat (MATLAB v7.3/HDF5 or older): images inside the file, 29 points, occlusion flags."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: COFW .mat file not found")
    try:
        images, phis, boxes = _load_cofw_hdf5(path)
    except OSError:  # not HDF5: MATLAB v5/v7 file
        images, phis, boxes = _load_cofw_v5(path)
    n = len(images)
    if phis.shape != (n, 87):
        raise DataError(f"{path}: expected landmarks of shape ({n}, 87) (29 x, 29 y, 29 occlusion), got {phis.shape}")
    samples = []
    for i in range(n):
        pts = np.stack([phis[i, :29], phis[i, 29:58]], axis=1).astype(np.float32) - 1.0
        occluded = phis[i, 58:87].astype(bool)
        box = None if boxes is None else np.asarray(boxes[i], np.float32) - np.array([1, 1, 0, 0], np.float32)
        samples.append(Sample(id=f"{path.stem}#{i}", image_path=f"{path}#{i}", points=pts, box=box,
                              attrs={"occluded": occluded}, tags=("full",), image=as_rgb(images[i], f"{path}#{i}")))
    return samples


def _find_key(keys, prefixes) -> str | None:
    return next((k for k in keys for p in prefixes if k.startswith(p)), None)


def _load_cofw_hdf5(path):
    import h5py

    with h5py.File(path, "r") as f:
        ik, pk, bk = _find_key(f.keys(), ("IsT",)), _find_key(f.keys(), ("phisT",)), _find_key(f.keys(), ("bboxesT",))
        if ik is None or pk is None:
            raise DataError(f"{path}: no IsTr/IsT images or phisTr/phisT landmarks inside")
        images = [np.array(f[ref]).T for ref in np.array(f[ik]).ravel()]  # MATLAB stores column-major
        phis = np.array(f[pk]).T
        boxes = np.array(f[bk]).T if bk else None
    return images, phis, boxes


def _load_cofw_v5(path):
    from scipy.io import loadmat

    try:
        m = loadmat(str(path))
    except Exception as e:
        raise DataError(f"{path}: not a readable MATLAB file ({e})") from None
    ik, pk, bk = _find_key(m.keys(), ("IsT",)), _find_key(m.keys(), ("phisT",)), _find_key(m.keys(), ("bboxesT",))
    if ik is None or pk is None:
        raise DataError(f"{path}: no IsTr/IsT images or phisTr/phisT landmarks inside")
    images = list(np.asarray(m[ik], dtype=object).ravel())
    return images, np.asarray(m[pk], dtype=np.float64), (np.asarray(m[bk]) if bk else None)


def read_cofw(root, split: str, skipped: list | None = None) -> list[Sample]:
    root = Path(root)
    name = "COFW_train_color.mat" if split == "train" else "COFW_test_color.mat"
    for cand in (root / name, root / name.replace("_color", "")):
        if cand.is_file():
            return read_cofw_mat(cand)
    raise MissingSplit(f"{root}: no {name} found")


@dataclass(frozen=True)
class DatasetFormat:
    """One kind of dataset edgekd reads: its landmark scheme, its reader and its licence. The public layouts are
    the entries of ``DATASETS``; a root with a dataset.yaml (edgekd/data/described.py) makes one of its own, so a
    user's points and the public sets take the same path through prepare, training and bench."""

    name: str
    scheme: LandmarkScheme
    read: Callable  # (root, split, skipped) -> list[Sample]
    licence: str
    strict: bool = False  # a user's own files (folder, coco): a face that cannot be cropped stops prepare


DATASETS = {
    "300w": DatasetFormat("300w", get_scheme("300w"), read_300w,
                          "300-W (iBUG, Imperial College London): non-commercial research only"),
    "wflw": DatasetFormat("wflw", get_scheme("wflw"), read_wflw,
                          "WFLW (Wu et al., CVPR 2018): non-commercial research only"),
    "cofw": DatasetFormat("cofw", get_scheme("cofw"), read_cofw,
                          "COFW (Burgos-Artizzu et al., ICCV 2013): non-commercial research only"),
}


def dataset_format(dataset: str, root) -> DatasetFormat:
    """How to read the data at ``root``: its dataset.yaml when it has one (``dataset`` is then ignored), else the
    public layout named ``dataset``."""
    path = find_description(root) if Path(root).is_dir() else None
    if path is None:
        known = DATASETS.get(str(dataset).lower())
        if known is None:
            raise DataError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)} or a folder with "
                            f"a {DESCRIPTION} (your own landmarks)")
        return known
    desc = load_description(path, tuple(DATASETS))
    if desc.format in DATASETS:
        public = DATASETS[desc.format]
        return DatasetFormat(public.name, public.scheme,
                             lambda _root, split, skipped=None: public.read(desc.root, split, skipped), desc.licence)
    return DatasetFormat(desc.scheme.name, desc.scheme, lambda _root, split, skipped=None: read_described(desc, split),
                         desc.licence, strict=True)


def image_identity(sample: Sample) -> str:
    """What makes two faces' images the same picture, whatever their names or folders: the SHA-1 of the image
    file's bytes (or of the pixels, for images stored inside a .mat). Prepare uses it to keep every test image
    out of training and validation, also when a download or a copy put one under a training folder."""
    h = hashlib.sha1()
    if sample.image is not None:
        img = np.ascontiguousarray(sample.image)
        h.update(str(img.shape).encode())
        h.update(img.tobytes())
        return "pixels:" + h.hexdigest()
    try:
        with open(sample.image_path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise DataError(f"{sample.image_path}: cannot read image ({e.strerror})") from None
    return "file:" + h.hexdigest()


def read_dataset(dataset: str, root, split: str, skipped: list | None = None) -> list[Sample]:
    """All faces of one split ("train" or "test") of a dataset as downloaded. Annotations that cannot be used
    (e.g. a .pts without its image) are skipped with a warning and, given a list, recorded in ``skipped``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    return dataset_format(dataset, root).read(root, split, skipped)
