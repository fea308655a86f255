"""PCA-whitening of backbone features: one `Pca` type and loaders for the official file formats.

Every format reduces to `f = (x - mean) @ projection`, projection [in_dim, out_dim] with any
whitening folded in:

- YT8M `yt8m_pca.tgz` (mean.npy, eigenvals.npy, eigenvecs.npy; REFERENCE.md §3):
  `f = ((x - mean) @ eigenvecs.T[:, :k]) / sqrt(eigenvals[:k] + 1e-4)`; eigenvectors are the rows.
- MediaPipe MatrixData pair (mean [in, 1], P [out, in], applied as `P @ (x - mean)`): projection = P.T.
- VGGish `vggish_pca_params.npz` (`E @ (x - mean)`): projection = E.T.

`compatible_with_yt8m` says whether features made with this PCA can feed models trained on the
YT8M dataset. Loaders cannot check file contents against the official ones (the weights module
checks SHA-256 and may pass the flag explicitly); by default a loaded file counts as compatible
when it has the official dimensions and no marker of a yt8m-fitted PCA. Fitted PCAs never are.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yt8m.core import AUDIO_SIZE, RGB_SIZE, Yt8mError
from yt8m.downloads import safe_extract
from yt8m.pca.matrix_data import read_matrix_data
from yt8m.pca.quantization import QUANT_MAX, QUANT_MIN, quantize

# Added to the eigenvalues before whitening, as the YT8M starter code / MediaPipe graphs do.
PCA_EPSILON = 1e-4
INCEPTION_DIM = 2048
VGGISH_DIM = 128
YT8M_RGB_COMPONENTS = RGB_SIZE
# (input dim, output dim) of the PCAs the YT8M dataset was made with: Inception and VGGish audio.
OFFICIAL_SHAPES = frozenset({(INCEPTION_DIM, RGB_SIZE), (VGGISH_DIM, AUDIO_SIZE)})

MEAN_FILE = "mean.npy"
EIGENVALS_FILE = "eigenvals.npy"
EIGENVECS_FILE = "eigenvecs.npy"
YT8M_NPY_FILES = (MEAN_FILE, EIGENVALS_FILE, EIGENVECS_FILE)
# Written by `save_yt8m_npy` next to the npy files: marks a yt8m-fitted PCA (never YT8M-compatible)
# and records what the three official files cannot (how many components, whether to whiten).
FITTED_INFO_FILE = "yt8m_fitted_pca.json"

VGGISH_EIGENVECTORS_KEY = "pca_eigen_vectors"
VGGISH_MEANS_KEY = "pca_means"
TAR_SUFFIXES = (".tgz", ".tar.gz", ".tar")
PAIR_SEPARATOR = ","


@dataclass(frozen=True, eq=False)
class Pca:
    """`f = (x - mean) @ projection`: mean float32 [in_dim], projection float32 [in_dim, out_dim]."""

    mean: np.ndarray
    projection: np.ndarray
    source: str
    compatible_with_yt8m: bool = False

    def __post_init__(self) -> None:
        mean = np.array(self.mean, dtype=np.float32).reshape(-1)
        projection = np.array(self.projection, dtype=np.float32)
        if projection.ndim != 2 or projection.shape[0] != mean.size:
            raise Yt8mError(
                f"{self.source}: PCA mean has {mean.size} values but projection has shape "
                f"{list(projection.shape)} (expected [{mean.size}, out_dim])"
            )
        if not (np.isfinite(mean).all() and np.isfinite(projection).all()):
            raise Yt8mError(f"{self.source}: PCA parameters contain NaN or infinity")
        mean.setflags(write=False)
        projection.setflags(write=False)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "projection", projection)
        object.__setattr__(self, "compatible_with_yt8m", bool(self.compatible_with_yt8m))

    @property
    def input_dim(self) -> int:
        return int(self.projection.shape[0])

    @property
    def output_dim(self) -> int:
        return int(self.projection.shape[1])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Project features [in_dim] or [N, in_dim] to float32 [N, out_dim]."""
        array = np.asarray(x, dtype=np.float32)
        if array.ndim == 1:
            array = array.reshape(1, -1)
        if array.ndim != 2 or array.shape[1] != self.input_dim:
            raise Yt8mError(
                f"{self.source}: PCA expects features of size {self.input_dim}, "
                f"got shape {list(np.shape(x))}"
            )
        return (array - self.mean) @ self.projection

    def apply_and_quantize(
        self, x: np.ndarray, min_value: float = QUANT_MIN, max_value: float = QUANT_MAX
    ) -> np.ndarray:
        """`apply`, then the dataset's 8-bit quantization: uint8 [N, out_dim]."""
        return quantize(self.apply(x), min_value=min_value, max_value=max_value)

    def __repr__(self) -> str:
        return (
            f"Pca({self.input_dim} -> {self.output_dim}, source={self.source!r}, "
            f"compatible_with_yt8m={self.compatible_with_yt8m})"
        )


def yt8m_projection(
    eigenvals: np.ndarray, eigenvecs: np.ndarray, n_components: int, whiten: bool = True
) -> np.ndarray:
    """Fold the YT8M formula into one [in_dim, k] matrix: `eigenvecs.T[:, :k] / sqrt(eigenvals[:k] + eps)`.

    Eigenvectors are the rows of `eigenvecs`. Computed in float64, returned as float32.
    """
    vectors = np.asarray(eigenvecs, dtype=np.float64)[:n_components].T
    if not whiten:
        return vectors.astype(np.float32)
    scale = np.sqrt(np.asarray(eigenvals, dtype=np.float64).reshape(-1)[:n_components] + PCA_EPSILON)
    return (vectors / scale).astype(np.float32)


def _default_compatible(input_dim: int, output_dim: int) -> bool:
    return (input_dim, output_dim) in OFFICIAL_SHAPES


def _load_npy(path: Path, shown: Path) -> np.ndarray:
    """np.load without pickles; Yt8mError naming the file (as `shown`) when missing or not numeric."""
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise Yt8mError(f"{shown}: file not found") from None
    except (OSError, ValueError, EOFError) as exc:
        raise Yt8mError(f"{shown}: not a readable .npy array ({exc})") from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        raise Yt8mError(f"{shown}: expected a numeric .npy array")
    if not np.isfinite(array).all():
        raise Yt8mError(f"{shown}: contains NaN or infinity")
    return array


def _as_vector(array: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Accept [n], [n, 1] or [1, n]; anything else is an error naming the file."""
    if array.ndim == 1 or (array.ndim == 2 and 1 in array.shape):
        return array.reshape(-1)
    raise Yt8mError(f"{path}: expected the {what} as a vector [n] or [n, 1], got shape {list(array.shape)}")


def _read_fitted_info(directory: Path, shown: Path) -> dict | None:
    """The info file `save_yt8m_npy` writes, or None for a folder without one (e.g. the official files)."""
    info_path = directory / FITTED_INFO_FILE
    if not info_path.exists():
        return None
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Yt8mError(f"{shown / FITTED_INFO_FILE}: not a valid fitted-PCA info file ({exc})") from None
    if not isinstance(info, dict):
        raise Yt8mError(f"{shown / FITTED_INFO_FILE}: expected a JSON object")
    return info


def load_yt8m_npy(
    directory: str | os.PathLike[str],
    n_components: int | None = None,
    compatible_with_yt8m: bool | None = None,
) -> Pca:
    """Load the YT8M `mean.npy` / `eigenvals.npy` / `eigenvecs.npy` from a folder.

    `n_components=None`: 1024 for the official files, the count `save_yt8m_npy` recorded for a
    fitted folder. A fitted folder is never YT8M-compatible, and whitening follows what was fitted.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise Yt8mError(f"{directory}: not a folder with {', '.join(YT8M_NPY_FILES)}")
    return _load_npy_folder(directory, directory, n_components, compatible_with_yt8m)


def _load_npy_folder(
    directory: Path, shown: Path, n_components: int | None, compatible_with_yt8m: bool | None
) -> Pca:
    """Load the three npy files from `directory`; messages and `source` name them under `shown`."""
    info = _read_fitted_info(directory, shown)
    mean_path, vals_path, vecs_path = (shown / name for name in YT8M_NPY_FILES)
    mean = _as_vector(_load_npy(directory / MEAN_FILE, mean_path), mean_path, "mean")
    eigenvals = _as_vector(_load_npy(directory / EIGENVALS_FILE, vals_path), vals_path, "eigenvalues")
    eigenvecs = _load_npy(directory / EIGENVECS_FILE, vecs_path)
    if eigenvecs.ndim != 2 or eigenvecs.shape[1] != mean.size:
        raise Yt8mError(
            f"{vecs_path}: expected eigenvectors as rows [k, {mean.size}] matching {MEAN_FILE}, "
            f"got shape {list(eigenvecs.shape)}"
        )
    if eigenvals.size != eigenvecs.shape[0]:
        raise Yt8mError(
            f"{vals_path}: has {eigenvals.size} eigenvalues but {EIGENVECS_FILE} has "
            f"{eigenvecs.shape[0]} eigenvectors"
        )
    if n_components is None:
        n_components = int(info.get("n_components", eigenvecs.shape[0])) if info else YT8M_RGB_COMPONENTS
    if not 1 <= n_components <= eigenvecs.shape[0]:
        raise Yt8mError(
            f"{vecs_path}: cannot take {n_components} components, the file has {eigenvecs.shape[0]}"
        )
    whiten = bool(info.get("whiten", True)) if info else True
    if whiten and np.any(eigenvals[:n_components] + PCA_EPSILON <= 0):
        raise Yt8mError(f"{vals_path}: eigenvalues must be >= 0 to whiten")
    if compatible_with_yt8m is None:
        compatible_with_yt8m = info is None and _default_compatible(mean.size, n_components)
    return Pca(
        mean=mean,
        projection=yt8m_projection(eigenvals, eigenvecs, n_components, whiten=whiten),
        source=f"yt8m npy {shown}" + (" (fitted)" if info else ""),
        compatible_with_yt8m=compatible_with_yt8m,
    )


def load_matrix_data_pair(
    mean_pb: str | os.PathLike[str],
    projection_pb: str | os.PathLike[str],
    compatible_with_yt8m: bool | None = None,
) -> Pca:
    """Load MediaPipe's mean [in, 1] and projection P [out, in] MatrixData files (`P @ (x - mean)`)."""
    mean_pb, projection_pb = Path(mean_pb), Path(projection_pb)
    mean = read_matrix_data(mean_pb)
    matrix = read_matrix_data(projection_pb)
    if 1 not in mean.shape:
        hint = " (give the mean file first)" if 1 in matrix.shape else ""
        raise Yt8mError(f"{mean_pb}: expected a mean vector [n, 1], got shape {list(mean.shape)}{hint}")
    if matrix.shape[1] != mean.size:
        raise Yt8mError(
            f"{projection_pb}: projection has shape {list(matrix.shape)} but the mean in {mean_pb} "
            f"has {mean.size} values (expected [out_dim, {mean.size}])"
        )
    if compatible_with_yt8m is None:
        compatible_with_yt8m = _default_compatible(matrix.shape[1], matrix.shape[0])
    return Pca(
        mean=mean.reshape(-1),
        projection=matrix.T,
        source=f"MatrixData {mean_pb} + {projection_pb}",
        compatible_with_yt8m=compatible_with_yt8m,
    )


def load_vggish_npz(path: str | os.PathLike[str], compatible_with_yt8m: bool = False) -> Pca:
    """Load AudioSet's `vggish_pca_params.npz` (`E @ (x - mean)`, whitening folded into E).

    Not YT8M-compatible by default: the dataset's own audio PCA is MediaPipe's vggish MatrixData
    pair (REFERENCE.md §4); pass True when this file is known to be the same transform.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in (VGGISH_EIGENVECTORS_KEY, VGGISH_MEANS_KEY) if k not in npz.files]
            if missing:
                raise Yt8mError(f"{path}: missing key(s) {missing} (found {sorted(npz.files)})")
            vectors = np.asarray(npz[VGGISH_EIGENVECTORS_KEY], dtype=np.float64)
            means = np.asarray(npz[VGGISH_MEANS_KEY], dtype=np.float64)
    except FileNotFoundError:
        raise Yt8mError(f"{path}: file not found") from None
    except (OSError, ValueError, EOFError, AttributeError) as exc:
        raise Yt8mError(f"{path}: not a readable .npz archive ({exc})") from None
    means = _as_vector(means, path, VGGISH_MEANS_KEY)
    if vectors.ndim != 2 or vectors.shape[1] != means.size:
        raise Yt8mError(
            f"{path}: {VGGISH_EIGENVECTORS_KEY} has shape {list(vectors.shape)}, expected "
            f"[out_dim, {means.size}] to match {VGGISH_MEANS_KEY}"
        )
    return Pca(
        mean=means,
        projection=vectors.T,
        source=f"vggish npz {path}",
        compatible_with_yt8m=compatible_with_yt8m,
    )


def _load_yt8m_tar(archive: Path, n_components: int | None, compatible_with_yt8m: bool | None) -> Pca:
    """Extract a yt8m_pca.tgz-style archive safely into a temp folder and load the npy files from it."""
    if not archive.exists():
        raise Yt8mError(f"{archive}: file not found")
    with tempfile.TemporaryDirectory(prefix="yt8m_pca_") as tmp:
        extracted = safe_extract(archive, Path(tmp) / "pca")
        folders = sorted(path.parent for path in extracted.rglob(MEAN_FILE))
        if len(folders) != 1:
            raise Yt8mError(
                f"{archive}: expected one folder with {', '.join(YT8M_NPY_FILES)}, "
                f"found {MEAN_FILE} in {len(folders)}"
            )
        inner = folders[0].relative_to(extracted)
        return _load_npy_folder(folders[0], archive / inner, n_components, compatible_with_yt8m)


def load_pca(
    path: str | os.PathLike[str],
    n_components: int | None = None,
    compatible_with_yt8m: bool | None = None,
) -> Pca:
    """Load a PCA from whatever `path` is.

    - a folder with mean.npy / eigenvals.npy / eigenvecs.npy (YT8M layout or `save_yt8m_npy`),
    - a `.tgz` / `.tar.gz` / `.tar` holding those files (extracted safely to a temp folder),
    - a `.npz` (VGGish PCA params),
    - `"MEAN.pb,PROJECTION.pb"`: a MediaPipe MatrixData pair.

    `n_components` only applies to the npy layout (None: 1024, or what `save_yt8m_npy` recorded).
    """
    text = os.fspath(path)
    if PAIR_SEPARATOR in text and not Path(text).exists():
        parts = [p.strip() for p in text.split(PAIR_SEPARATOR)]
        if len(parts) != 2 or not all(parts):
            raise Yt8mError(f"{text}: a MatrixData pair is given as MEAN.pb,PROJECTION.pb")
        return load_matrix_data_pair(parts[0], parts[1], compatible_with_yt8m)
    p = Path(text)
    if p.is_dir():
        return load_yt8m_npy(p, n_components, compatible_with_yt8m)
    if not p.exists():
        raise Yt8mError(f"{p}: PCA file or folder not found")
    name = p.name.lower()
    if name.endswith(".npz"):
        return load_vggish_npz(p, bool(compatible_with_yt8m))
    if name.endswith(TAR_SUFFIXES):
        return _load_yt8m_tar(p, n_components, compatible_with_yt8m)
    if name.endswith(".pb"):
        raise Yt8mError(f"{p}: a MatrixData PCA needs two files, given as MEAN.pb,PROJECTION.pb")
    raise Yt8mError(
        f"{p}: unrecognized PCA file (expected a folder of .npy files, .tgz, .npz or MEAN.pb,PROJECTION.pb)"
    )
