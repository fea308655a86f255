"""Fit a PCA(-whitening) on your own backbone features with scikit-learn and save it in YT8M's layout.

A fitted PCA uses the same formula as the official one (`eigenvals + 1e-4` under the square root)
so that features of a custom dataset have the same scale, but it is never YT8M-compatible:
models trained on the YT8M dataset expect the official projection.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA

from yt8m.core import Yt8mError
from yt8m.pca.matrix_data import atomic_write
from yt8m.pca.pca import (
    EIGENVALS_FILE,
    EIGENVECS_FILE,
    FITTED_INFO_FILE,
    MEAN_FILE,
    PCA_EPSILON,
    Pca,
    yt8m_projection,
)

# scikit-learn solvers: both exact. With at least as many samples as dimensions the eigendecomposition
# of the D x D covariance is much cheaper than the SVD of the N x D data.
SOLVER_MANY_SAMPLES = "covariance_eigh"
SOLVER_FEW_SAMPLES = "full"


@dataclass(frozen=True, eq=False)
class FittedPca:
    """A fitted PCA: mean [D], eigenvalues [k] (explained variance), eigenvectors [k, D] as rows."""

    mean: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    whiten: bool = True
    n_samples: int = 0

    @property
    def input_dim(self) -> int:
        return int(self.eigenvectors.shape[1])

    @property
    def n_components(self) -> int:
        return int(self.eigenvectors.shape[0])

    def to_pca(self, source: str | None = None) -> Pca:
        """The `Pca` with the YT8M formula (whitened by sqrt(eigenvalue + 1e-4) when `whiten`)."""
        label = source or (
            f"fitted PCA ({self.n_samples} samples, {self.input_dim} -> {self.n_components}, "
            f"whiten={self.whiten})"
        )
        projection = yt8m_projection(self.eigenvalues, self.eigenvectors, self.n_components, self.whiten)
        return Pca(mean=self.mean, projection=projection, source=label, compatible_with_yt8m=False)


def fit_pca(features: np.ndarray, n_components: int, whiten: bool = True) -> FittedPca:
    """Fit on features [N, D] (float64 internally); n_components must be <= min(N, D)."""
    data = np.asarray(features, dtype=np.float64)
    if data.ndim != 2:
        raise Yt8mError(f"PCA features must be a 2-D array [N, D], got shape {list(data.shape)}")
    n_samples, dim = data.shape
    if not 1 <= n_components <= min(n_samples, dim):
        raise Yt8mError(
            f"cannot fit {n_components} PCA components on {n_samples} samples of size {dim} "
            f"(at most {min(n_samples, dim)})"
        )
    if n_samples < 2:
        raise Yt8mError(f"PCA needs at least 2 samples, got {n_samples}")
    if not np.isfinite(data).all():
        raise Yt8mError("PCA features contain NaN or infinity")
    solver = SOLVER_MANY_SAMPLES if n_samples >= dim else SOLVER_FEW_SAMPLES
    model = PCA(n_components=n_components, svd_solver=solver, whiten=False).fit(data)
    return FittedPca(
        mean=model.mean_.copy(),
        eigenvalues=np.maximum(model.explained_variance_, 0.0),
        eigenvectors=model.components_.copy(),
        whiten=whiten,
        n_samples=n_samples,
    )


def save_yt8m_npy(directory: str | os.PathLike[str], fitted: FittedPca) -> Path:
    """Write mean.npy [D, 1], eigenvals.npy [k, 1], eigenvecs.npy [k, D] (rows) plus an info file.

    The npy files follow the official layout, truncated to the k fitted components (the official
    eigenvecs.npy holds all D). The info file records k and `whiten` and marks the folder as
    fitted, so `load_yt8m_npy` reads it back as the same, non-YT8M-compatible `Pca`.
    Each file goes to a temporary name first and is renamed into place.
    """
    directory = Path(directory)
    arrays = {
        MEAN_FILE: np.asarray(fitted.mean, dtype=np.float64).reshape(-1, 1),
        EIGENVALS_FILE: np.asarray(fitted.eigenvalues, dtype=np.float64).reshape(-1, 1),
        EIGENVECS_FILE: np.asarray(fitted.eigenvectors, dtype=np.float64),
    }
    info = {
        "fitted": True,
        "n_components": fitted.n_components,
        "whiten": fitted.whiten,
        "epsilon": PCA_EPSILON,
        "n_samples": fitted.n_samples,
    }
    # The marker goes first: a folder left half-written is never mistaken for the official files.
    info_bytes = json.dumps(info, indent=2).encode("utf-8")
    atomic_write(directory / FITTED_INFO_FILE, lambda handle: handle.write(info_bytes))
    for name, array in arrays.items():
        atomic_write(directory / name, lambda handle, a=array: np.save(handle, a, allow_pickle=False))
    return directory
