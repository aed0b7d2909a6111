"""Face Mesh's 468 points -> the 68 300-W points: a linear (ridge) map fitted once on the 300-W training faces
(benchmarks/fit_facemesh_map.py) and shipped as edgekd/assets/face_landmark_to_300w.npz."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.core.detector import ASSETS_DIR
from edgekd.core.errors import ModelError
from edgekd.core.fileio import write_bytes

MAP_FILE = ASSETS_DIR / "face_landmark_to_300w.npz"
NUM_MESH = 468

# --- ------------------------------------------------------------------------------
@dataclass(frozen=True)
class MeshMap:
    """Linear map from the mesh's (x, y) in the crop's normalised frame to the 68 300-W points in the same frame:
    ``points68 = [mesh.ravel(), 1] @ weights`` (weights: (2 * 468 + 1, 136)), plus the gt ROI's convention.
    ``info``: how it was fitted (faces, ridge, residual NME on the validation faces)."""

    weights: np.ndarray
    gt_offset: tuple[float, float]
    gt_scale: float
    info: dict

    @property
    def num_points(self) -> int:
        return self.weights.shape[1] // 2

    def apply(self, mesh_xy: np.ndarray) -> np.ndarray:
        """(468, 2) or (B, 468, 2) normalised mesh points -> (68, 2) or (B, 68, 2) normalised 300-W points."""
        m = np.asarray(mesh_xy, np.float64)
        flat = m.reshape(-1, 2 * NUM_MESH)
        out = flat @ self.weights[:-1] + self.weights[-1]
        return out.reshape(*m.shape[:-2], self.num_points, 2)

    def save(self, path) -> Path:
        """Atomic .npz write (edgekd.core.fileio): float32 weights, the gt ROI convention and the fit's record."""
        buf = io.BytesIO()
        np.savez_compressed(buf, weights=self.weights.astype(np.float32),
                            gt_offset=np.asarray(self.gt_offset, np.float64), gt_scale=np.float64(self.gt_scale),
                            info=np.array(json.dumps(self.info, indent=1)))
        return write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path=None) -> "MeshMap":
        path = Path(path) if path else MAP_FILE
        try:
            with np.load(path, allow_pickle=False) as z:
                weights = z["weights"].astype(np.float64)
                info = json.loads(str(z["info"]))
                offset, scale = tuple(float(v) for v in z["gt_offset"]), float(z["gt_scale"])
        except FileNotFoundError:
            raise ModelError(f"{path}: the Face Mesh -> 300-W point map is missing (it ships with edgekd; reinstall "
                             f"the package or refit it with benchmarks/fit_facemesh_map.py)") from None
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"{path}: not a Face Mesh point map ({type(e).__name__}); refit it with "
                             f"benchmarks/fit_facemesh_map.py") from None
        if weights.ndim != 2 or weights.shape[0] != 2 * NUM_MESH + 1 or weights.shape[1] % 2:
            raise ModelError(f"{path}: map weights of shape {weights.shape}, expected ({2 * NUM_MESH + 1}, 2N)")
        return cls(weights, offset, scale, info)


def fit_ridge(features: np.ndarray, targets: np.ndarray, ridge: float) -> np.ndarray:
    """Ridge least squares with an unpenalised bias: (F + 1, T) weights of ``targets ~ [features, 1] @ W``.
    Centred first, so the penalty shrinks towards the mean shape's offset, not towards zero."""
    x, y = np.asarray(features, np.float64), np.asarray(targets, np.float64)
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + ridge * len(x) * np.eye(x.shape[1]), xc.T @ (y - my))
    return np.vstack([w, my - mx @ w])
