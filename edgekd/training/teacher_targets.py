"""Teacher targets: the teachers' outputs on every training face, computed once and streamed with the data.

Why: on 2 CPU cores a KD-Loss step with two flip-averaged teachers costs about 2 x a plain step, because the
teachers run on the batch and on its mirror at every step. The teachers are frozen, so their outputs can be
computed once, on each training face's canonical crop, and then moved by each sample's augmentation like the
landmarks (``PreparedData.attach_guides``): a KD step then costs what a plain step costs. It also lets a teacher be
what no single network is at training time: the mean of several networks (an ensemble), each run on the prepared
folder of its own input size, each averaged with its mirror (``flip``).

What differs from teachers run online (``edgekd train --teachers-dir``): the teacher sees the canonical crop, not
the augmented one; its output is carried by the augmentation's geometry (rotation, scale, shift, mirror), not
recomputed, and the photometric changes do not reach it. That makes it a different teacher: on augmented
training crops the cached Tough teacher is closer to the truth than the same network run on them (4.37 against
4.77 % NME), and KD-Loss, whose assistive terms use only how far the teacher is, trained a worse student from it
than from the online teachers (1.076 against 0.892 x the plain control, benchmarks/README.md, "What we tried"). Use it
where the teachers' positions are passed on (``KDLossConfig.teacher_blend``) or to try ensembles cheaply.

File (``edgekd data teach``): an .npz holding ``tough`` and ``tolerant`` (M, N, 2) float32 in box coordinates
(``to_box``: the same at every input size), ``face_ids`` (the training faces, in the prepared folder's order) and
``meta`` (JSON: the teachers of each role, flip, scheme, crop margin, each teacher's NME on the training faces).
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from edgekd.core.crop import from_box, to_box
from edgekd.core.errors import DataError, OptionError

ROLES = ("tough", "tolerant")  # KD-Loss's two teachers (losses.kd_loss: A and S)
FORMAT = "edgekd-teacher-targets-1"


def teacher_outputs(model, data, split: str = "train", flip: bool = False, batch_size: int = 64) -> np.ndarray:
    """A network's predictions (M, N, 2) on a split's canonical crops, in box coordinates (``to_box``); with
    ``flip``, flip-averaged by the Distiller's own function (``trainers.teach``), so a cached teacher and an online
    one average the mirror the same way."""
    import tensorflow as tf  # here: train.py imports this module without TensorFlow (`edgekd train --help`)

    from edgekd.training.trainers import teach  # with TensorFlow, for the same reason

    images, _ = data.arrays(split)
    permutation = list(data.scheme.flip_permutation) if flip else None
    out = [teach(model, tf.constant(images[i:i + batch_size], tf.float32) / 255.0, permutation).numpy()
           for i in range(0, len(images), batch_size)]
    pred = np.concatenate(out) if out else np.zeros((0, 2 * data.num_points), np.float32)
    return to_box(pred.reshape(len(images), data.num_points, 2), data.input_size)


def face_ids(data) -> list[str]:
    return [f["id"] for f in data.split("train").faces]


def _check_same_faces(folders: list) -> None:
    """Every prepared folder must hold the same training faces (ids, in order), landmark scheme and crop margin:
    only the input size may differ."""
    first = folders[0]
    for other in folders[1:]:
        if other.scheme.name != first.scheme.name or other.crop.margin != first.crop.margin:
            raise DataError(f"{other.root}: {other.scheme.name} data with margin {other.crop.margin}, but "
                            f"{first.root} holds {first.scheme.name} data with margin {first.crop.margin}")
        if face_ids(other) != face_ids(first):
            raise DataError(f"{other.root}: not the same training faces as {first.root}; prepare both from the "
                            f"same dataset with the same --val-fraction and --seed")


def _folder_for(path: Path, model, folders: list):
    """The prepared folder of the checkpoint's input size."""
    size = model.input_shape[1]
    for data in folders:
        if data.input_size == size:
            return data
    have = ", ".join(str(d.input_size) for d in folders)
    raise OptionError(f"{path}: takes {size} px crops, but no prepared folder has that size (have: {have}); add one "
                      f"with --also-prepared")


def compute(folders: list, teachers: dict[str, list], flip: bool = False, progress=None) -> tuple[dict, dict]:
    """({role: (M, N, 2) box coordinates}, meta) for ``teachers`` = {"tough": [checkpoints], "tolerant": [...]}.

    Each role's target is the mean of its networks' outputs, each network run on the folder of its input size.
    ``progress(message)``, when given, hears about each network.
    """
    from edgekd.core.checkpoint import check_loaded, check_matches_data, load_model
    from edgekd.core.metrics import batch_nme

    _check_same_faces(folders)
    base = folders[0]
    _, hard = base.arrays("train")
    hard = to_box(base.crop.normalize(hard), base.input_size)
    targets, meta = {}, {"format": FORMAT, "flip": flip, "scheme": base.scheme.name, "margin": base.crop.margin,
                         "faces": len(hard), "teachers": {}}
    for role in ROLES:
        paths = [Path(p) for p in teachers.get(role) or ()]
        if not paths:
            raise OptionError(f"--{role}: give at least one {role} teacher checkpoint")
        outputs, rows = [], []
        for path in paths:
            model = load_model(path)
            data = _folder_for(path, model, folders)
            check_matches_data(path, f"{role} teacher", data)
            check_loaded(path, f"{role} teacher", model, data)
            if progress:
                progress(f"{role}: {path} on {data.root} ({len(hard)} faces{', and mirrored' if flip else ''})")
            out = teacher_outputs(model, data, "train", flip)
            outputs.append(out)
            rows.append({"checkpoint": str(path.resolve()), "input_size": data.input_size,
                         "train_nme": float(100 * batch_nme(out, hard, base.scheme.nme_pair).mean())})
        targets[role] = np.mean(outputs, axis=0).astype(np.float32)
        meta["teachers"][role] = {"networks": rows,
                                  "train_nme": float(100 * batch_nme(targets[role], hard,
                                                                     base.scheme.nme_pair).mean())}
    return targets, meta


def save(path, targets: dict, meta: dict, ids: list[str]) -> Path:
    """Write the .npz atomically (never half a file under the name)."""
    from edgekd.core.fileio import write_bytes

    buf = io.BytesIO()
    np.savez(buf, **{r: targets[r] for r in ROLES}, face_ids=np.array(ids), meta=np.array(json.dumps(meta)))
    return write_bytes(path, buf.getvalue())


def load(path, data) -> dict[str, np.ndarray]:
    """{role: (M, N, 2) stored-image pixels of ``data``'s training faces}, ready for ``PreparedData.attach_guides``.

    Refuses a file made for other faces, landmarks or another crop margin, with one line naming the file.
    """
    path = Path(path)
    if path.is_dir():
        raise OptionError(f"--teacher-targets {path}: is a folder, expected a file (the .npz of `edgekd data teach`)")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: not a teacher-targets file of `edgekd data teach` (an empty file)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays["meta"]))
    except FileNotFoundError:
        raise OptionError(f"--teacher-targets {path}: file not found") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # EOFError: a truncated file
        raise DataError(f"{path}: not a teacher-targets file of `edgekd data teach` ({e or type(e).__name__})") \
            from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: not a teacher-targets file of `edgekd data teach` (its meta is not an object)")
    if meta.get("format") != FORMAT or any(r not in arrays for r in ROLES) or "face_ids" not in arrays:
        raise DataError(f"{path}: not a teacher-targets file of `edgekd data teach` (format {meta.get('format')!r})")
    if meta.get("scheme") != data.scheme.name or meta.get("margin") != data.crop.margin:
        raise DataError(f"{path}: targets for {meta.get('scheme')} crops with margin {meta.get('margin')}, but "
                        f"{data.root} holds {data.scheme.name} crops with margin {data.crop.margin}")
    if [str(i) for i in arrays["face_ids"]] != face_ids(data):
        raise DataError(f"{path}: made for other training faces than {data.root}'s; run `edgekd data teach` on it")
    offset = (data.manifest.store_size - data.input_size) / 2.0
    out = {}
    for role in ROLES:
        t = arrays[role]
        if t.shape != (len(arrays["face_ids"]), data.num_points, 2) or not np.isfinite(t).all():
            raise DataError(f"{path}: {role} targets have shape {t.shape} or non-finite values")
        out[role] = ((from_box(t, data.input_size) + 0.5) * data.input_size + offset).astype(np.float32)
    return out


def describe(path) -> dict:
    """The meta of a teacher-targets file and its sha256 (recorded in the student's run config: a resumed run
    refuses a file that changed)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
    return {**meta, "sha256": sha256(path)}


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()

