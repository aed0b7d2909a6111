"""Accuracy metrics, measured in the original image (the paper's protocol: NME normalised by the outer-eye-corner distance).

Per-image NME = mean point-to-point error / distance between the scheme's outer eye corners (ground truth). A face
the detector missed has NME = inf: it counts as a failure in FR and contributes 0 to AUC, and the mean NME is taken
over the faces that were found (``detected``), with the misses reported beside it.
"""
from __future__ import annotations

import numpy as np

from edgekd.core.schemes import LandmarkScheme

FAILURE_THRESHOLD = 0.1


def batch_nme(pred, target, nme_pair) -> np.ndarray:
    """Per-face NME fractions of (B, N, 2) or (B, 2N) arrays. Scale-free: crop pixels or normalised crop
    coordinates give the same numbers (training validation, export checks and data preparation all use this)."""
    p = np.asarray(pred, np.float64).reshape(len(pred), -1, 2)
    g = np.asarray(target, np.float64).reshape(len(target), -1, 2)
    a, b = nme_pair
    return np.linalg.norm(p - g, axis=-1).mean(-1) / np.linalg.norm(g[:, a] - g[:, b], axis=-1)


def tf_batch_nme(pred, target, nme_pair):
    """``batch_nme`` in TensorFlow and in % (the running training NME inside ``train_step``)."""
    import tensorflow as tf

    p = tf.reshape(pred, (tf.shape(pred)[0], -1, 2))
    g = tf.reshape(target, (tf.shape(target)[0], -1, 2))
    a, b = nme_pair
    return 100.0 * tf.reduce_mean(tf.norm(p - g, axis=-1), axis=-1) / tf.norm(g[:, a] - g[:, b], axis=-1)


def nme(pred: np.ndarray | None, gt: np.ndarray, scheme: LandmarkScheme) -> float:
    """One face's NME as a fraction (not %), ``batch_nme`` of one face; inf when there is no prediction."""
    if pred is None:
        return float("inf")
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth {gt.shape}")
    if not float(scheme.interocular(gt)) > 0:
        raise ValueError("ground truth has coincident normalising points")
    return float(batch_nme(pred[None], gt[None], scheme.nme_pair)[0])


def failure_rate(errors, threshold: float = FAILURE_THRESHOLD) -> float:
    """Fraction of faces with NME > threshold (misses included)."""
    e = np.asarray(errors, np.float64)
    return float(np.mean(e > threshold)) if e.size else float("nan")


def ced(errors, threshold: float = FAILURE_THRESHOLD, steps: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: (thresholds, fraction of faces with NME <= threshold)."""
    t = np.linspace(0.0, threshold, steps)
    e = np.sort(np.asarray(errors, np.float64))
    frac = np.searchsorted(e, t, side="right") / max(len(e), 1)
    return t, frac


def auc(errors, threshold: float = FAILURE_THRESHOLD) -> float:
    """Standard AUC@threshold: area under the CED from 0 to threshold, divided by threshold (1 = every NME is 0).

    Exact for the step CED: (1/t) * integral of F = mean over faces of max(0, 1 - e/t).
    """
    e = np.asarray(errors, np.float64)
    if not e.size:
        return float("nan")
    return float(np.mean(np.clip(1.0 - e / threshold, 0.0, 1.0)))


def auc_paper(errors, threshold: float = FAILURE_THRESHOLD, steps: int = 20) -> float:
    """The KD-Loss code's AUC variant (the authors' released evaluation): sum_j CED(t_j) * (t_{j-1} + t_j) / 2 over 20 thresholds in
    [0, 0.1]; at most 0.95 and weighting large thresholds more. Reported only beside the standard AUC, labelled."""
    e = np.asarray(errors, np.float64)
    if not e.size:
        return float("nan")
    t = np.linspace(0.0, threshold, steps)
    frac = np.array([np.mean(e <= tj) for tj in t])
    return float(np.sum(frac[1:] * (t[:-1] + t[1:]) / 2.0))


def summarize(errors) -> dict:
    """Headline numbers of one set of faces: NME % over detected faces, FR % and AUCs counting misses."""
    e = np.asarray(errors, np.float64)
    found = np.isfinite(e)
    return {
        "count": int(e.size),
        "detector_failures": int((~found).sum()),
        "nme": float(100.0 * e[found].mean()) if found.any() else float("nan"),
        "fr": float(100.0 * failure_rate(e)) if e.size else float("nan"),
        "fr_detected": float(100.0 * failure_rate(e[found])) if found.any() else float("nan"),
        "auc": auc(e),
        "auc_paper": auc_paper(e),
    }


def subset_names(tags_per_face, scheme: LandmarkScheme) -> list[str]:
    """Subsets present in the data, in the scheme's report order, then "full" (every face scored).

    "full" is left out when one named subset already holds every face (300-W without iBUG is "common" only:
    calling that "full" would mislabel it against published 300-W full numbers).
    """
    tags = [set(t) for t in tags_per_face]
    present = set().union(*tags) if tags else set()
    names = [s for s in scheme.subsets if s in present and s != "full"]
    if any(all(n in t for t in tags) for n in names):
        return names
    return names + ["full"]


def summarize_subsets(errors, tags_per_face, scheme: LandmarkScheme) -> dict[str, dict]:
    """``summarize`` for every subset present; faces without tags count in "full" only."""
    e = np.asarray(errors, np.float64)
    tags = [tuple(t) for t in tags_per_face]
    out = {}
    for name in subset_names(tags, scheme):
        mask = np.ones(len(e), bool) if name == "full" else np.array([name in t for t in tags], bool)
        out[name] = summarize(e[mask])
    return out
