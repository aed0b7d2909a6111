"""Active Shape Model that turns hard (ground-truth) landmarks into the Tolerant teacher's soft landmarks.

PCA on normalised training shapes (flattened x0, y0, x1, y1, ...), keeping the fewest eigenvectors that explain
`variance` of the shape variance; a shape is projected onto them with each coefficient clipped to +-3 sqrt(lambda)
(the paper's soft landmarks). No Procrustes alignment, as in the paper: the crop normalisation is the alignment.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.core.errors import DataError


@dataclass
class ActiveShapeModel:
    mean: np.ndarray  # (D,)
    components: np.ndarray  # (k, D), orthonormal rows
    eigenvalues: np.ndarray  # (k,)
    variance: float  # share of variance the kept components explain (requested)
    explained: float  # share they really explain

    @classmethod
    def fit(cls, shapes: np.ndarray, variance: float = 0.90) -> "ActiveShapeModel":
        if not 0.0 < variance <= 1.0:
            raise ValueError(f"variance share must be in (0, 1], got {variance}")
        x = np.asarray(shapes, dtype=np.float64).reshape(len(shapes), -1)
        if len(x) < 2:
            raise DataError(f"ASM needs at least 2 training shapes, got {len(x)}")
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        eig = s ** 2 / (len(x) - 1)
        ratio = np.cumsum(eig) / eig.sum()
        k = int(np.searchsorted(ratio, variance - 1e-12) + 1)
        k = min(k, len(eig))
        return cls(mean=mean, components=vt[:k], eigenvalues=eig[:k], variance=variance, explained=float(ratio[k - 1]))

    def project(self, shapes: np.ndarray) -> np.ndarray:
        """Soft landmarks: the closest shape the model allows, same shape and dtype layout as the input."""
        arr = np.asarray(shapes, dtype=np.float64)
        x = arr.reshape(-1, self.mean.size)
        b = (x - self.mean) @ self.components.T
        limit = 3.0 * np.sqrt(self.eigenvalues)
        b = np.clip(b, -limit, limit)
        return (self.mean + b @ self.components).reshape(arr.shape).astype(np.float32)

    @property
    def num_components(self) -> int:
        return len(self.eigenvalues)

    def save(self, path) -> None:
        tmp = Path(str(path) + ".tmp.npz")
        np.savez(tmp, mean=self.mean, components=self.components, eigenvalues=self.eigenvalues,
                 variance=self.variance, explained=self.explained)
        tmp.replace(path)

    @classmethod
    def load(cls, path) -> "ActiveShapeModel":
        try:
            with np.load(path) as z:
                return cls(mean=z["mean"], components=z["components"], eigenvalues=z["eigenvalues"],
                           variance=float(z["variance"]), explained=float(z["explained"]))
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"{path}: not a readable ASM file ({e})") from None
