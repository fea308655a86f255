"""PCA-whitening and 8-bit quantization of backbone features (no TensorFlow here).

Fitting a PCA (`fit_pca`, `FittedPca`, `save_yt8m_npy`, defined in `yt8m.pca.fit`) is loaded on
first use: it needs scikit-learn and SciPy, which extraction never uses (about 1.6 s of start-up).
"""

from typing import Any

from yt8m.pca.quantization import NEUTRAL_BYTE, QUANT_MAX, QUANT_MIN, dequantize, quantize
from yt8m.pca.matrix_data import read_matrix_data, save_matrix_data
from yt8m.pca.pca import (
    PCA_EPSILON,
    Pca,
    load_matrix_data_pair,
    load_pca,
    load_vggish_npz,
    load_yt8m_npy,
)

__all__ = [
    "NEUTRAL_BYTE",
    "QUANT_MAX",
    "QUANT_MIN",
    "dequantize",
    "quantize",
    "PCA_EPSILON",
    "Pca",
    "load_matrix_data_pair",
    "load_pca",
    "load_vggish_npz",
    "load_yt8m_npy",
    "read_matrix_data",
    "save_matrix_data",
    "FittedPca",
    "fit_pca",
    "save_yt8m_npy",
]

_FIT_NAMES = frozenset({"FittedPca", "fit_pca", "save_yt8m_npy"})


def __getattr__(name: str) -> Any:
    """Load the scikit-learn side only when one of its names is asked for."""
    if name in _FIT_NAMES:
        from yt8m.pca import fit

        return getattr(fit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
