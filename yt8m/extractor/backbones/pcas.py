"""The PCAs that follow the networks: YT8M's official ones (from the models folder or the cache)
and a user's own file, checked against the network it follows.
"""

from __future__ import annotations

import os

from yt8m.core import Yt8mError
from yt8m.extractor import weights as weights_lib
from yt8m.extractor.backbones.network import Backbone
from yt8m.pca import Pca, load_matrix_data_pair, load_pca, load_vggish_npz, load_yt8m_npy

AUDIO_PCA_FALLBACK_WARNING = (
    "audio PCA: using AudioSet's vggish_pca_params.npz because MediaPipe's YT8M audio PCA "
    "(vggish_mean/projection_matrix_data.pb) is missing; records are marked not YT8M-compatible "
    "(get it with `yt8m models fetch --only mediapipe-pca`)"
)


def user_pca(path: str | os.PathLike, backbone: Backbone, what: str) -> Pca:
    """A PCA file the user passed (`rgb_pca` / `audio_pca`), checked against the network before it."""
    pca = load_pca(path)
    if pca.input_dim != backbone.output_dim:
        raise Yt8mError(
            f"{path}: the {what} PCA takes {pca.input_dim}-d features but {backbone.name} "
            f"({backbone.weights}) gives {backbone.output_dim}"
        )
    return pca


RGB_PCA_PAIR = (weights_lib.MEDIAPIPE_INCEPTION_MEAN, weights_lib.MEDIAPIPE_INCEPTION_PROJECTION)
AUDIO_PCA_PAIR = (weights_lib.MEDIAPIPE_VGGISH_MEAN, weights_lib.MEDIAPIPE_VGGISH_PROJECTION)


def _present(names: tuple[str, ...], models_dir: str | os.PathLike | None) -> bool:
    return all(weights_lib.is_present(name, models_dir) for name in names)


def official_pcas_present(models_dir: str | os.PathLike | None = None) -> bool:
    """Whether `official_rgb_pca` and `official_audio_pca` would find a file to load."""
    rgb = _present((weights_lib.YT8M_PCA,), models_dir) or _present(RGB_PCA_PAIR, models_dir)
    return rgb and (_present(AUDIO_PCA_PAIR, models_dir) or _present((weights_lib.VGGISH_PCA,), models_dir))


def official_rgb_pca(models_dir: str | os.PathLike | None = None) -> Pca:
    """YT8M's RGB PCA: yt8m_pca.tgz's npy files, else MediaPipe's inception3 MatrixData pair."""
    if weights_lib.is_present(weights_lib.YT8M_PCA, models_dir):
        return load_yt8m_npy(weights_lib.locate(weights_lib.YT8M_PCA, models_dir))
    pair = RGB_PCA_PAIR
    if _present(pair, models_dir):
        return load_matrix_data_pair(*(weights_lib.locate(name, models_dir) for name in pair))
    weights_lib.locate(weights_lib.YT8M_PCA, models_dir)  # raises the error naming the file and the fix
    raise AssertionError("unreachable")


def official_audio_pca(models_dir: str | os.PathLike | None, warnings: list[str]) -> Pca:
    """YT8M's audio PCA (MediaPipe's vggish MatrixData pair), else AudioSet's npz with a warning."""
    pair = AUDIO_PCA_PAIR
    if _present(pair, models_dir):
        return load_matrix_data_pair(*(weights_lib.locate(name, models_dir) for name in pair))
    if weights_lib.is_present(weights_lib.VGGISH_PCA, models_dir):
        warnings.append(AUDIO_PCA_FALLBACK_WARNING)
        return load_vggish_npz(weights_lib.locate(weights_lib.VGGISH_PCA, models_dir), compatible_with_yt8m=False)
    where = weights_lib.root(models_dir)
    flag = f" {weights_lib.MODELS_DIR_OPTION} {models_dir}" if models_dir is not None else ""
    raise Yt8mError(
        f"no audio PCA in {where}: neither {weights_lib.get(pair[0]).filename} + {weights_lib.get(pair[1]).filename} "
        f"nor {weights_lib.get(weights_lib.VGGISH_PCA).filename}; run `yt8m models fetch --only mediapipe-pca{flag}` "
        "(or use --no-audio)"
    )
