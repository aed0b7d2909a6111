"""`edgekd data prepare`: dataset files -> one prepared folder that training streams.

Layout (all written into a temporary folder, then renamed into place, so a crash never leaves half a dataset):
  manifest.json               config, scheme, CropSpec, counts, ASM summary, sources
  asm.npz                     the Active Shape Model (soft landmarks), fitted on the training split only
  <split>/images.npy          uint8 (M, S, S, 3): each face with context around its crop, S = 1.5 x input size
  <split>/hard.npy, soft.npy  float32 (M, N, 2): ground-truth and ASM landmarks in stored-image pixels
  <split>/faces.json          id, source image and subset tags of each face
Splits: train and val (a seeded share of the training faces; checkpoints are chosen on it) and, when the dataset
root has one, test (for quick ground-truth-crop checks; benchmarks read the original images instead).

Guarantees: a test image never reaches train or val (checked by the image's content, not only its folder: a
training face whose image is also a test image is left out and named in the manifest); the output is never the
dataset root or inside it; ``--force`` replaces only a folder that its manifest and contents show to be prepared
data; a temporary folder left by a killed run is removed at the next run for the same output.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
from tqdm import tqdm

import edgekd
from edgekd.core.crop import CropSpec, check_input_size, transform_points, warp
from edgekd.core.errors import DataError, EdgekdError, MissingSplit, OptionError, OutputError, check_range
from edgekd.core.fileio import check_no_file_in_the_way, check_outside_inputs, remove_stale_temps, umask, write_json
from edgekd.core.imageio import Sample, load_image
from edgekd.core.metrics import batch_nme
from edgekd.core.settings import check_ranges, setting
from edgekd.data.asm import ActiveShapeModel
from edgekd.data.described import find_description
from edgekd.data.readers import DATASETS, DatasetFormat, dataset_format, image_identity

log = logging.getLogger(__name__)

CONTEXT = 1.5  # stored side / crop side: room for rotation and scale augmentation
SPLITS = ("train", "val", "test")
SPLIT_FILES = ("images.npy", "hard.npy", "soft.npy", "faces.json")
PREPARED_FILES = ("manifest.json", "asm.npz", *SPLITS)  # everything prepare writes at the top of its folder
MIN_INSIDE = 0.5  # a face is usable when at least this share of its landmarks lies inside its image
@dataclass
class PrepareConfig:
    """Every setting of `edgekd data prepare`, declared once: the command's options are made from these fields."""

    root: str = setting(help="Dataset root as downloaded (300-W: the folder holding lfpw/ and helen/), or a folder "
                             "with a dataset.yaml describing your own landmarks.", path="dir")
    dataset: str = setting("300w", "Dataset format and landmarks (a --root with a dataset.yaml names its own).",
                           choices=lambda: tuple(DATASETS))
    input_size: int = setting(128, "Model input size: a multiple of 32 from 64 to 224 (64 is for quick tests).")
    margin: float = setting(0.15, "Crop margin on each side, fraction of the box, 0 to 1.",
                            range={"lo": 0.0, "hi": 1.0})
    val_fraction: float = setting(0.1, "Share of training faces kept for validation, above 0 and below 0.5.",
                                  range={"lo": 0.0, "hi": 0.5, "lo_open": True, "hi_open": True})
    asm_variance: float = setting(0.90, "Variance share the ASM keeps (soft landmarks), above 0 and at most 1.",
                                  range={"lo": 0.0, "hi": 1.0, "lo_open": True})
    seed: int = setting(0, "Seed of the validation split.", range={"lo": 0, "hi": 2**32 - 1, "integer": True})
    fit_detector: bool = setting(True, "Fit the MediaPipe face-box -> crop-box mapping on the training faces (stored "
                                       "in the crop spec).")

    def validate(self) -> None:
        """Every field checked before any work, each error naming the option and its valid range."""
        if not str(self.root).strip():
            raise OptionError("--root: expected the dataset folder as downloaded, or a folder with a dataset.yaml")
        if self.dataset not in DATASETS and not (Path(self.root).is_dir() and find_description(self.root)):
            raise OptionError(f"--dataset {self.dataset!r}: expected one of {', '.join(DATASETS)} (or a --root "
                              f"with a dataset.yaml describing your own landmarks)")
        check_range("--input-size", self.input_size, integer=True)
        check_input_size(int(self.input_size), "--input-size")
        check_ranges(self)


@dataclass
class Manifest:
    config: dict
    scheme: str
    num_points: int
    crop: dict
    store_size: int
    counts: dict
    asm: dict
    soft_vs_hard_nme: float  # mean NME (%) between soft and hard landmarks on the training split
    sources: dict
    skipped: list = field(default_factory=list)
    detector_fit: dict = field(default_factory=dict)  # how the MediaPipe box maps to the crop box (CropSpec)
    license: str = ""
    edgekd_version: str = edgekd.__version__
    # Training faces left out because their image is also a test image (by content): "<train image>: <test image>"
    excluded_test_overlap: list = field(default_factory=list)
    # the scheme whole (LandmarkScheme.to_dict): a user's own points need no registration to be read back
    scheme_spec: dict = field(default_factory=dict)
    # True on the manifest `prepare` returns when it found this very data already prepared and did nothing
    reused: ClassVar[bool] = False

    @property
    def crop_spec(self) -> CropSpec:
        return CropSpec.from_dict(self.crop)

    def summary(self) -> str:
        c = self.counts
        lines = [
            f"{self.scheme}: {c['train'] + c['val']} training faces ({c['train']} train + {c['val']} val)"
            + (f", {c['test']} test faces" if c.get("test") else ""),
            f"input {self.crop['input_size']} px, margin {self.crop['margin']}, stored at {self.store_size} px",
            f"ASM: {self.asm['components']} components explain {100 * self.asm['explained']:.1f}% "
            f"(asked {100 * self.asm['variance']:.0f}%); soft vs hard landmarks: mean NME {self.soft_vs_hard_nme:.2f}%",
        ]
        if self.detector_fit:
            d = self.detector_fit
            lines.append(f"face detector box -> crop box: offset ({d['detector_offset'][0]:+.3f}, "
                         f"{d['detector_offset'][1]:+.3f}), scale {d['detector_scale']:.3f}, fitted on "
                         f"{d['faces_used']} training faces ({d['faces_missed']} missed)"
                         + ("; keypoint mapping fitted too (used where the detector gives its 6 keypoints)"
                            if d.get("keypoint_weights") else ""))
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable faces (see manifest.json)")
        if self.excluded_test_overlap:
            lines.append(f"left out {len(self.excluded_test_overlap)} training faces whose image is also a test "
                         f"image (see manifest.json)")
        return "\n".join(lines)

    def save(self, path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path) -> "Manifest":
        try:
            d = json.loads(Path(path).read_text())
            manifest = cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
            manifest.crop_spec  # noqa: B018  (a crop that CropSpec refuses is an unreadable manifest, said here)
            return manifest
        except FileNotFoundError:
            raise DataError(f"{path}: no manifest; run `edgekd data prepare` first") from None
        except (ValueError, TypeError, AttributeError) as e:
            raise DataError(f"{path}: unreadable manifest ({e})") from None


def _fingerprint(samples: list[Sample]) -> str:
    h = hashlib.sha1()
    for s in samples:
        h.update(s.id.encode())
        h.update(np.round(s.points, 2).tobytes())
    return h.hexdigest()[:16]


def split_train_val(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def check_face(sample: Sample, image_shape) -> None:
    """A face that cannot give a real crop (landmarks with no extent, or mostly outside a tiny or wrong image) is
    a DataError naming its file, so it is skipped and counted instead of becoming an all-black training crop."""
    pts = np.asarray(sample.points, dtype=np.float64)
    extent = float(np.max(pts.max(axis=0) - pts.min(axis=0))) if pts.size else 0.0
    if not np.isfinite(extent) or extent < 2.0:
        raise DataError(f"{sample.image_path}: degenerate face {sample.id} (its landmarks span {extent:.1f} px)")
    h, w = image_shape[:2]
    inside = int(np.sum((pts[:, 0] >= -0.5) & (pts[:, 0] <= w - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] <= h - 0.5)))
    if inside < MIN_INSIDE * len(pts):
        raise DataError(f"{sample.image_path}: only {inside} of {len(pts)} landmarks of face {sample.id} lie inside "
                        f"the {w}x{h} image")


def store_face(sample: Sample, crop: CropSpec, store_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut one face with context: the stored image's centre square of side input_size is exactly the model crop."""
    image = load_image(sample)
    check_face(sample, image.shape)
    wide = CropSpec(input_size=store_size, margin=(1 + 2 * crop.margin) * CONTEXT / 2 - 0.5)
    box = crop.box_from_points(sample.points)
    m = wide.matrix(box)
    return warp(image, m, store_size), transform_points(sample.points, m)


def _fit_detector(samples: list[Sample], crop: CropSpec, progress: bool) -> tuple[CropSpec, dict]:
    """Crops cut from a face detector's box must look like the training crops: learn the box mapping here, on
    training faces only, and carry it in the CropSpec that goes into every export's metadata."""
    from edgekd.core.detector import fit_detector_mapping

    mapping = fit_detector_mapping(samples, progress=progress)
    if mapping.faces_used < 10:
        log.warning("the face detector found only %d training faces; keeping the identity box mapping "
                    "(--no-fit-detector skips this fit)", mapping.faces_used)
        return crop, mapping.to_dict()
    if mapping.keypoint_weights is None:
        from edgekd.core.detector import MIN_KEYPOINT_FACES

        log.info("no keypoint mapping: it needs keypoints on %d training faces, and the face detector found %d "
                 "faces; crops are placed from its box alone (the keypoint mapping, fitted on a full dataset, "
                 "places them closer to the training crops)", MIN_KEYPOINT_FACES, mapping.faces_used)
    return mapping.apply(crop), mapping.to_dict()


# --- the output folder ---------------------------------------------------------------------------------------------
def _existing_prepared(out: Path) -> Manifest | None:
    """The manifest of the prepared folder at ``out``, None when there is nothing there (or an empty folder), and
    an OutputError for anything else: prepare replaces only what it made."""
    if not out.exists() and not out.is_symlink():
        return None
    if not out.is_dir() or out.is_symlink():
        raise OutputError(f"{out}: exists and is not a prepared folder; refusing to replace it (choose another "
                          f"--out-dir)")
    if not any(out.iterdir()):
        return None
    try:
        return Manifest.load(out / "manifest.json")
    except DataError:
        raise OutputError(f"{out}: exists and is not a prepared folder (no readable manifest.json); refusing to "
                          f"replace it (choose another --out-dir)") from None


def _check_replaceable(out: Path) -> None:
    """Before ``--force`` (or a rewrite) deletes a prepared folder: it must hold only what prepare writes."""
    foreign = sorted(p.name for p in out.iterdir() if p.name not in PREPARED_FILES)
    foreign += sorted(f"{s}/{p.name}" for s in SPLITS if (out / s).is_dir() and not (out / s).is_symlink()
                      for p in (out / s).iterdir() if p.name not in SPLIT_FILES)
    links = [p.name for p in out.iterdir() if p.is_symlink()]
    if foreign or links:
        raise OutputError(f"{out}: also holds files prepare did not write ({', '.join((foreign + links)[:3])}); "
                          f"move them or choose another --out-dir")


def _install(tmp: Path, out: Path) -> None:
    """Move the finished temporary folder into place. A folder being replaced goes first into a fresh temporary
    holder (never a fixed name such as ``X.old``, which could be the user's) and is deleted from there."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        tmp.rename(out)
        return
    holder = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.tmp-", dir=out.parent))
    try:
        out.rename(holder / "replaced")
    except OSError:
        holder.rmdir()  # nothing moved: no empty holder left behind
        raise
    tmp.rename(out)
    shutil.rmtree(holder, ignore_errors=True)


# --- reading -------------------------------------------------------------------------------------------------------
def leave_out_test_images(train: list[Sample], test: list[Sample]) -> tuple[list[Sample], list[str]]:
    """Training faces whose image is also a test image (same content, whatever its name or folder) are left out;
    returns the kept faces and one "<train image>: same image as <test image>" line per face left out."""
    test_images = {}
    for s in test:
        test_images.setdefault(image_identity(s), s.image_path)
    known: dict[str, str] = {}
    kept, excluded = [], []
    for s in train:
        key = s.image_path if s.image is None else f"{s.image_path}#{s.id}"
        ident = known.setdefault(key, image_identity(s))
        if ident in test_images:
            excluded.append(f"{s.image_path}: same image as test image {test_images[ident]}")
        else:
            kept.append(s)
    if excluded:
        log.warning("left out %d training faces whose image is also a test image (listed in manifest.json)",
                    len(excluded))
    if not kept:
        raise DataError("every training image is also a test image; the dataset root mixes its splits")
    return kept, excluded


def _read_splits(cfg: PrepareConfig, fmt: DatasetFormat) -> tuple[list[Sample], list[Sample], list[str]]:
    train = fmt.read(cfg.root, "train")
    try:
        test = fmt.read(cfg.root, "test")
    except MissingSplit:  # a root without a test set is fine; a broken test file is not
        test = []
    train, excluded = leave_out_test_images(train, test)
    return train, test, excluded


def prepare(cfg: PrepareConfig, out, force: bool = False, progress: bool = True) -> Manifest:
    """Read, split, crop, fit the ASM and write the prepared folder. Safe to rerun: an identical one is kept (the
    returned manifest then has ``reused`` set)."""
    cfg.validate()
    if str(out) == "" or Path(out).resolve() == Path.cwd().resolve():
        raise OutputError(f"--out-dir {str(out)!r}: the current folder; name the prepared folder to write, e.g. "
                          f"runs/data/300w-{cfg.input_size}")
    out = Path(out)
    check_outside_inputs(out, "--out-dir", {"--root": cfg.root})
    check_no_file_in_the_way(out, "--out-dir")  # a file where a parent folder goes: said now, not after cropping
    existing = _existing_prepared(out)
    remove_stale_temps(out)
    fmt = dataset_format(cfg.dataset, cfg.root)
    strict = fmt.strict
    if find_description(cfg.root) is not None:
        cfg = replace(cfg, dataset=fmt.name)  # the manifest names the data it holds, not --dataset's default
    train_samples, test_samples, excluded = _read_splits(cfg, fmt)
    sources = {"root": str(Path(cfg.root).resolve()), "train": _fingerprint(train_samples),
               "test": _fingerprint(test_samples)}
    if existing is not None:
        same_config = {**existing.config, "root": ""} == {**asdict(cfg), "root": ""}  # sources["root"] is resolved
        if same_config and existing.sources == sources and not force:
            log.info("%s: already prepared with these settings; nothing to do (--force rewrites it)", out)
            if cfg.fit_detector and existing.detector_fit and "keypoint_weights" not in existing.detector_fit:
                log.info("%s: its detector mapping has no keypoint part (prepared before edgekd fitted one; crops "
                         "placed from the detector's keypoints are closer to the training crops); --force refits it",
                         out)
            existing.reused = True
            return existing
        if not force:
            raise EdgekdError(f"{out}: holds data prepared with other settings or sources; use --force or another "
                              f"--out-dir")
        _check_replaceable(out)

    train_idx, val_idx = split_train_val(len(train_samples), cfg.val_fraction, cfg.seed)
    splits = {"train": [train_samples[i] for i in train_idx], "val": [train_samples[i] for i in val_idx]}
    if test_samples:
        splits["test"] = test_samples
    crop = CropSpec(input_size=cfg.input_size, margin=cfg.margin)
    detector_fit = {}
    if cfg.fit_detector:
        crop, detector_fit = _fit_detector(splits["train"], crop, progress)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes a 0700 folder; the prepared folder gets the usual mode
    try:
        manifest = _write(cfg, fmt, tmp, splits, crop, progress, strict)
        manifest.sources, manifest.detector_fit, manifest.excluded_test_overlap = sources, detector_fit, excluded
        manifest.save(tmp / "manifest.json")
        _install(tmp, out)
        return manifest
    except OSError as e:
        # a write into the hidden temporary folder (a full disk: numpy says only "N requested and M written", with
        # no errno and no path) is said of the folder the user asked for
        if e.filename is None or str(tmp) in str(e.filename):
            raise OSError(e.errno or errno.ENOSPC, e.strerror or os.strerror(errno.ENOSPC), str(out)) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- writing -------------------------------------------------------------------------------------------------------
def _crop_split(cfg: PrepareConfig, name: str, samples: list[Sample], crop: CropSpec, store_size: int,
                skipped: list, progress: bool, strict: bool = False):
    images, hard, kept = [], [], []
    for s in tqdm(samples, desc=f"crop {name}", unit="face", disable=not progress):
        try:
            img, pts = store_face(s, crop, store_size)
        except DataError as e:
            if strict:  # a user's own files: said and stopped, for the user to fix, not dropped from the data
                raise
            log.warning("skipped: %s", e)
            skipped.append(str(e))
            continue
        images.append(img)
        hard.append(pts)
        kept.append(s)
    if not kept:
        raise DataError(f"{cfg.root}: no usable faces in the {name} split ({len(samples)} read, all skipped)")
    return np.stack(images), np.stack(hard).astype(np.float32), kept


def _write(cfg: PrepareConfig, fmt: DatasetFormat, tmp: Path, splits: dict, crop: CropSpec, progress: bool,
           strict: bool = False) -> Manifest:
    """Crop every split, fit the ASM on the training split and write the arrays into ``tmp``; returns the
    manifest (sources and detector fit filled in by the caller)."""
    scheme = fmt.scheme
    store_size = int(round(cfg.input_size * CONTEXT))
    skipped: list[str] = []
    stored = {name: _crop_split(cfg, name, samples, crop, store_size, skipped, progress, strict)
              for name, samples in splits.items()}

    # ASM on normalised canonical-crop shapes of the training split, mirrored copies included so that
    # soft landmarks of flipped faces stay plausible.
    offset = (store_size - cfg.input_size) / 2.0
    train_hard = stored["train"][1]
    canon = crop.normalize(train_hard - offset)
    mirrored = np.stack([crop.normalize(scheme.flip(p - offset, cfg.input_size)) for p in train_hard])
    asm = ActiveShapeModel.fit(np.concatenate([canon, mirrored]), cfg.asm_variance)
    asm.save(tmp / "asm.npz")

    counts, soft_nme = {}, 0.0
    for name, (images, hard, kept) in stored.items():
        soft = (asm.project(crop.normalize(hard - offset)) + 0.5) * cfg.input_size + offset
        d = tmp / name
        d.mkdir()
        np.save(d / "images.npy", images)
        np.save(d / "hard.npy", hard)
        np.save(d / "soft.npy", soft.astype(np.float32))
        write_json(d / "faces.json", [{"id": s.id, "image": s.image_path, "tags": list(s.tags)} for s in kept])
        counts[name] = len(kept)
        if name == "train":
            soft_nme = float(100 * np.mean(batch_nme(soft, hard, scheme.nme_pair)))
    return Manifest(config=asdict(cfg), scheme=scheme.name, num_points=scheme.num_points, crop=crop.to_dict(),
                    store_size=store_size, counts=counts,
                    asm={"variance": asm.variance, "explained": asm.explained, "components": asm.num_components},
                    soft_vs_hard_nme=soft_nme, sources={}, skipped=skipped, license=fmt.licence,
                    scheme_spec=scheme.to_dict())
