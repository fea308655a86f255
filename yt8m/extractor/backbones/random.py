"""Random weights: the `random` provider (smoke tests, benchmarks, the offline demo).

The same architectures as the official networks (Keras InceptionV3, VGGish) with fixed-seed
He-normal weights, and random orthonormal "PCAs" calibrated on fixed frames / log-mel examples
so that the quantized bytes spread over the range. Every run gives the same features; they are
never YouTube-8M's and every record made with them says so.

Building the networks with Keras and calibrating the PCAs takes seconds; the results depend
only on the seeds, the precision and this module's format version, so the first run keeps them
in the cache dir (`$YT8M_HOME/random/`: each network as a small GraphDef plus its weights, see
`frozen.py`, ~390 MB in all) and later runs load them without building anything. A cache that
cannot be read or written is ignored (the networks are built again).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from yt8m import downloads
from yt8m.core import WEIGHTS_RANDOM
from yt8m.data.files import write_bytes
from yt8m._tf import import_tensorflow_quietly
from yt8m.extractor.backbones.frozen import import_lifted, keep_lifted, load_lifted
from yt8m.extractor.backbones.keras_inception import keras_inception, keras_inception_resize
from yt8m.extractor.backbones.network import (
    INCEPTION_DIM,
    INCEPTION_NAME,
    VGGISH_DIM,
    VGGISH_NAME,
    Backbone,
    compile_function,
)
from yt8m.extractor.backbones.provider import BackboneProvider, register
from yt8m.extractor.backbones.vggish import VGGISH_BANDS, VGGISH_FRAMES, keras_vggish, vggish_from_lifted
from yt8m.pca import Pca

RANDOM_SEED = 8  # Inception; VGGish uses RANDOM_SEED + 1, the audio PCA RANDOM_SEED + 1
RANDOM_PCA_STD = 0.5  # target std of each random-PCA output: quantized bytes spread over ~[60, 190]
RANDOM_CALIBRATION_COUNT = 8
RANDOM_PCA_DIM = 1024
RANDOM_FORMAT_VERSION = 1  # bump when the random weights or the calibration change (invalidates the cache)
RANDOM_CACHE_FOLDER = "random"
RANDOM_PCA_SOURCE = "random projection (weights=random)"
RANDOM_WARNING = (
    "weights=random: Inception-v3 and VGGish have RANDOM weights and the PCAs are random projections; "
    "these features are NOT YouTube-8M features (smoke tests and benchmarks only)"
)


def calibration_frames(count: int = RANDOM_CALIBRATION_COUNT, seed: int = RANDOM_SEED) -> np.ndarray:
    """Deterministic uint8 frames [count, 120, 160, 3]: noise, gradients and flat colours."""
    rng = np.random.default_rng(seed)
    height, width = 120, 160
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    frames = []
    for i in range(count):
        if i % 3 == 0:
            frame = rng.integers(0, 256, (height, width, 3))
        elif i % 3 == 1:
            frame = np.broadcast_to(ramp * rng.uniform(0.2, 1.0, 3), (height, width, 3))
        else:
            frame = np.broadcast_to(rng.integers(0, 256, 3), (height, width, 3))
        frames.append(np.asarray(frame, dtype=np.uint8))
    return np.stack(frames)


def calibration_log_mel(count: int = RANDOM_CALIBRATION_COUNT, seed: int = RANDOM_SEED) -> np.ndarray:
    """Deterministic log-mel examples [count, 96, 64] in the range real audio gives (log(0.01) .. ~3)."""
    rng = np.random.default_rng(seed)
    tilt = np.linspace(1.0, -3.0, VGGISH_BANDS, dtype=np.float32)[None, :]
    examples = rng.normal(0.0, 1.0, (count, VGGISH_FRAMES, VGGISH_BANDS)).astype(np.float32) + tilt
    return np.clip(examples, np.log(0.01), 3.0).astype(np.float32)


def random_pca(features: np.ndarray, out_dim: int, seed: int, source: str) -> Pca:
    """A fixed-seed random orthonormal projection, each output scaled to std RANDOM_PCA_STD on `features`.

    Stands in for a PCA with random weights: the quantized bytes spread over the range instead of
    piling up at one value, so downstream code sees realistic data.
    """
    features = np.asarray(features, dtype=np.float64)
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((features.shape[1], out_dim)))
    mean = features.mean(axis=0)
    spread = ((features - mean) @ basis).std(axis=0)
    floor = max(float(np.median(spread)) * 1e-3, 1e-12)
    projection = basis * (RANDOM_PCA_STD / np.maximum(spread, floor))
    return Pca(mean=mean, projection=projection, source=source, compatible_with_yt8m=False)


def network_cache_stem(which: str, seed: int, precision: str) -> Path:
    """Where the random network `which` (inception / vggish) is kept (`.pb` + `.npz`)."""
    return downloads.cache_dir() / RANDOM_CACHE_FOLDER / f"{which}-v{RANDOM_FORMAT_VERSION}-seed{seed}-{precision}"


def cached_network(which: str, seed: int, precision: str, build: Callable[[], Backbone]) -> Backbone:
    """The random network `which`: from the cache, else `build()` (and kept in the cache)."""
    tf = import_tensorflow_quietly()
    stem = network_cache_stem(which, seed, precision)
    stored = load_lifted(stem)
    if stored is None:
        backbone = build()
        keep_lifted(stem, backbone.network)
        return backbone
    source = f"random (seed {seed}), cached in {stem}"
    if which != INCEPTION_NAME:
        return vggish_from_lifted(stored, WEIGHTS_RANDOM, precision, source)
    structure, values, input_name, output_name = stored
    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    preprocess = compile_function(keras_inception_resize, tf.TensorSpec([None, None, None, 3], tf.uint8))
    network, variables = import_lifted(structure, values, input_name, output_name, spec, scope=which)
    return Backbone(
        INCEPTION_NAME, INCEPTION_DIM, WEIGHTS_RANDOM, network, "uint8", (None, None, 3), precision, source,
        owner=variables, preprocess=preprocess,
    )


def pca_cache_path(which: str, seed: int, precision: str) -> Path:
    """Where the calibrated random PCA `which` (rgb / audio) is kept."""
    name = f"pca-v{RANDOM_FORMAT_VERSION}-{which}-seed{seed}-{precision}.npz"
    return downloads.cache_dir() / RANDOM_CACHE_FOLDER / name


def cached_random_pca(which: str, network: Backbone, calibration: np.ndarray, out_dim: int, seed: int) -> Pca:
    """`random_pca` of `network` on `calibration`, from the cache when an earlier run computed it."""
    path = pca_cache_path(which, seed, network.precision)
    try:
        with np.load(path, allow_pickle=False) as stored:
            mean, projection = stored["mean"], stored["projection"]
        if mean.shape == (network.output_dim,) and projection.shape == (network.output_dim, out_dim):
            return Pca(mean=mean, projection=projection, source=RANDOM_PCA_SOURCE, compatible_with_yt8m=False)
    except Exception:  # not there yet, or unreadable (OSError, KeyError, ValueError, BadZipFile): compute it
        pass
    pca = random_pca(network(calibration), out_dim, seed, RANDOM_PCA_SOURCE)
    buffer = io.BytesIO()
    np.savez(buffer, mean=pca.mean, projection=pca.projection)
    try:
        write_bytes(path, buffer.getvalue())
    except OSError:
        pass  # a read-only cache only costs the calibration next time
    return pca


@register
class RandomProvider(BackboneProvider):
    """`weights="random"`: random Keras InceptionV3 and VGGish, calibrated random PCAs."""

    kind = WEIGHTS_RANDOM
    warning = RANDOM_WARNING

    def load_rgb(self) -> Backbone:
        return cached_network(
            INCEPTION_NAME, RANDOM_SEED, self.precision,
            lambda: keras_inception(WEIGHTS_RANDOM, self.precision, seed=RANDOM_SEED),
        )

    def load_audio(self) -> Backbone:
        return cached_network(
            VGGISH_NAME, RANDOM_SEED + 1, self.precision, lambda: keras_vggish(None, self.precision, seed=RANDOM_SEED + 1)
        )

    def rgb_pca(self, rgb: Backbone, warnings: list[str]) -> Pca:
        return cached_random_pca("rgb", rgb, calibration_frames(), RANDOM_PCA_DIM, RANDOM_SEED)

    def audio_pca(self, audio: Backbone, warnings: list[str]) -> Pca:
        return cached_random_pca("audio", audio, calibration_log_mel(), VGGISH_DIM, RANDOM_SEED + 1)
