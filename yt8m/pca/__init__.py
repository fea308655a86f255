"""PCA-whitening and 8-bit quantization of backbone features (no TensorFlow here)."""

from yt8m.pca.quantization import NEUTRAL_BYTE, QUANT_MAX, QUANT_MIN, dequantize, quantize
from yt8m.pca.fit import FittedPca, fit_pca, save_yt8m_npy
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
    "FittedPca",
    "Pca",
    "fit_pca",
    "load_matrix_data_pair",
    "load_pca",
    "load_vggish_npz",
    "load_yt8m_npy",
    "read_matrix_data",
    "save_matrix_data",
    "save_yt8m_npy",
]
