"""`edgekd data prepare`: dataset files -> one prepared folder that training streams.

Layout (all written into a temporary folder, then renamed into place, so a crash never leaves half a dataset):
  manifest.json               config, scheme, CropSpec, counts, ASM summary, sources
  asm.npz                     the Active Shape Model (soft landmarks), fitted on the training split only
  <split>/images.npy          uint8 (M, S, S, 3): each face with context around its crop, S = 1.5 x input size
  <split>/hard.npy, soft.npy  float32 (M, N, 2): ground-truth and ASM landmarks in stored-image pixels
  <split>/faces.json          id, source image and subset tags of each face
Splits: train and val (a seeded share of the training faces; checkpoints are chosen on it) and, when the dataset
root has one, test (for quick ground-truth-crop checks; benchmarks read the original images instead).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

import edgekd
from edgekd.metrics import batch_nme
from edgekd.data.asm import ActiveShapeModel
from edgekd.data.crop import CropSpec, check_input_size, transform_points, warp
from edgekd.data.readers import Sample, load_image, read_dataset
from edgekd.errors import DataError, EdgekdError, MissingSplit
from edgekd.fileio import umask, write_json
from edgekd.schemes import get_scheme

log = logging.getLogger(__name__)

CONTEXT = 1.5  # stored side / crop side: room for rotation and scale augmentation
LICENSES = {
    "300w": "300-W (iBUG, Imperial College London): non-commercial research only",
    "wflw": "WFLW (Wu et al., CVPR 2018): non-commercial research only",
    "cofw": "COFW (Burgos-Artizzu et al., ICCV 2013): non-commercial research only",
}


@dataclass
class PrepareConfig:
    dataset: str = "300w"
    root: str = ""
    input_size: int = 128
    margin: float = 0.15
    val_fraction: float = 0.1
    asm_variance: float = 0.90
    seed: int = 0
    fit_detector: bool = True  # learn the MediaPipe box -> landmark box mapping on the training split

    def validate(self) -> None:
        check_input_size(self.input_size, "--input-size")
        if not 0.0 < self.asm_variance <= 1.0:
            raise EdgekdError(f"--asm-variance must be in (0, 1], got {self.asm_variance}")
        if self.margin < 0:
            raise EdgekdError(f"--margin must be >= 0, got {self.margin}")
        if not 0.0 < self.val_fraction < 0.5:
            raise EdgekdError(f"--val-fraction must be in (0, 0.5), got {self.val_fraction}")


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
                         f"{d['faces_used']} training faces ({d['faces_missed']} missed)")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable faces (see manifest.json)")
        return "\n".join(lines)

    def save(self, path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path) -> "Manifest":
        try:
            d = json.loads(Path(path).read_text())
            return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
        except FileNotFoundError:
            raise DataError(f"{path}: no manifest; run `edgekd data prepare` first") from None
        except (ValueError, TypeError) as e:
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


def store_face(sample: Sample, crop: CropSpec, store_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut one face with context: the stored image's centre square of side input_size is exactly the model crop."""
    wide = CropSpec(input_size=store_size, margin=(1 + 2 * crop.margin) * CONTEXT / 2 - 0.5)
    box = crop.box_from_points(sample.points)
    m = wide.matrix(box)
    return warp(load_image(sample), m, store_size), transform_points(sample.points, m)


def _fit_detector(samples: list[Sample], crop: CropSpec, progress: bool) -> tuple[CropSpec, dict]:
    """Crops cut from a face detector's box must look like the training crops: learn the box mapping here, on
    training faces only, and carry it in the CropSpec that goes into every export's metadata."""
    from edgekd.detector import fit_detector_mapping

    mapping = fit_detector_mapping(samples, progress=progress)
    if mapping.faces_used < 10:
        log.warning("face detector found only %d training faces; keeping the identity box mapping",
                    mapping.faces_used)
        return crop, mapping.to_dict()
    return mapping.apply(crop), mapping.to_dict()


def prepare(cfg: PrepareConfig, out, force: bool = False, progress: bool = True) -> Manifest:
    """Read, split, crop, fit the ASM and write the prepared folder. Safe to rerun: an identical one is kept."""
    cfg.validate()
    out = Path(out)
    scheme = get_scheme(cfg.dataset)
    train_samples = read_dataset(cfg.dataset, cfg.root, "train")
    try:
        test_samples = read_dataset(cfg.dataset, cfg.root, "test")
    except MissingSplit:  # a root without a test set is fine; a broken test file is not
        test_samples = []
    sources = {"root": str(Path(cfg.root).resolve()), "train": _fingerprint(train_samples),
               "test": _fingerprint(test_samples)}
    if out.exists() and not (out / "manifest.json").is_file() and (not out.is_dir() or any(out.iterdir())):
        raise EdgekdError(f"{out}: exists and is not a prepared folder; refusing to replace it (choose another --out)")
    if (out / "manifest.json").is_file() and not force:
        old = Manifest.load(out / "manifest.json")
        same_config = {**old.config, "root": ""} == {**asdict(cfg), "root": ""}  # sources["root"] is resolved
        if same_config and old.sources == sources:
            log.info("%s already holds this prepared data; nothing to do (use --force to rewrite)", out)
            return old
        raise EdgekdError(f"{out}: holds data prepared with other settings or sources; use --force or another --out")

    crop = CropSpec(input_size=cfg.input_size, margin=cfg.margin)
    store_size = int(round(cfg.input_size * CONTEXT))
    train_idx, val_idx = split_train_val(len(train_samples), cfg.val_fraction, cfg.seed)
    splits = {"train": [train_samples[i] for i in train_idx], "val": [train_samples[i] for i in val_idx]}
    if test_samples:
        splits["test"] = test_samples

    detector_fit = {}
    if cfg.fit_detector:
        crop, detector_fit = _fit_detector(splits["train"], crop, progress)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes a 0700 folder; the prepared folder gets the usual mode
    try:
        stored, skipped = {}, []
        for name, samples in splits.items():
            images, hard, kept = [], [], []
            for s in tqdm(samples, desc=f"crop {name}", unit="face", disable=not progress):
                try:
                    img, pts = store_face(s, crop, store_size)
                except DataError as e:
                    log.warning("skipped: %s", e)
                    skipped.append(str(e))
                    continue
                images.append(img)
                hard.append(pts)
                kept.append(s)
            if not kept:
                raise DataError(f"{cfg.root}: no readable faces in the {name} split")
            stored[name] = (np.stack(images), np.stack(hard).astype(np.float32), kept)

        # ASM on normalised canonical-crop shapes of the training split, mirrored copies included so that
        # soft landmarks of flipped faces stay plausible.
        offset = (store_size - cfg.input_size) / 2.0
        train_hard = stored["train"][1]
        canon = crop.normalize(train_hard - offset)
        mirrored = np.stack([crop.normalize(scheme.flip(p - offset, cfg.input_size)) for p in train_hard])
        asm = ActiveShapeModel.fit(np.concatenate([canon, mirrored]), cfg.asm_variance)
        asm.save(tmp / "asm.npz")

        counts = {}
        for name, (images, hard, kept) in stored.items():
            soft = (asm.project(crop.normalize(hard - offset)) + 0.5) * cfg.input_size + offset
            d = tmp / name
            d.mkdir()
            np.save(d / "images.npy", images)
            np.save(d / "hard.npy", hard)
            np.save(d / "soft.npy", soft.astype(np.float32))
            faces = [{"id": s.id, "image": s.image_path, "tags": list(s.tags)} for s in kept]
            write_json(d / "faces.json", faces)
            counts[name] = len(kept)
            if name == "train":
                soft_nme = float(100 * np.mean(batch_nme(soft, hard, scheme.nme_pair)))

        manifest = Manifest(config=asdict(cfg), scheme=scheme.name, num_points=scheme.num_points,
                            crop=crop.to_dict(), store_size=store_size, counts=counts,
                            asm={"variance": asm.variance, "explained": asm.explained,
                                 "components": asm.num_components},
                            soft_vs_hard_nme=soft_nme, sources=sources, skipped=skipped, detector_fit=detector_fit,
                            license=LICENSES.get(scheme.name, ""))
        manifest.save(tmp / "manifest.json")
        if out.exists():
            old = out.with_name(out.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
        return manifest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
