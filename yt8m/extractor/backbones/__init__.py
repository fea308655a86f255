"""The feature networks and their PCAs, one provider per weights kind (`load_feature_models`).

Weights kinds (yt8m.core): `yt8m` (the 2015 Inception graph + VGGish + YT8M's PCAs, what the
dataset was made with; `inception_graph.py`), `keras` (Keras ImageNet InceptionV3;
`keras_inception.py`), `hub:HANDLE` (a TF Hub image model; `hub.py`) and `random` (fixed-seed
random weights, never YouTube-8M features; `random.py`). Every kind but `random` uses the
official VGGish checkpoint for audio (`vggish.py`). A provider is one class registered by kind
(`provider.py`): adding a backbone touches one module (and its import below).

The rgb and audio networks load concurrently (TensorFlow releases the interpreter while it
reads, parses and traces), so start-up costs the slower of the two, not their sum.

`precision="bfloat16"` runs the networks in bfloat16 (faster on CPUs with AVX512-BF16 or AMX);
features then differ from float32's too often to be YT8M-compatible.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from yt8m._tf import import_tensorflow_quietly
from yt8m.core import HUB_PREFIX, WEIGHTS_KERAS, WEIGHTS_RANDOM, WEIGHTS_YT8M
from yt8m.extractor import weights as weights_lib
from yt8m.extractor.backbones import hub, inception_graph, keras_inception, random  # noqa: F401 - register their providers
from yt8m.extractor.backbones.hub import WaveformBackbone, load_hub_image_backbone, load_hub_vggish
from yt8m.extractor.backbones.inception_graph import load_graphdef_inception, prepare_inception_graph
from yt8m.extractor.backbones.network import (
    BFLOAT16,
    FLOAT32,
    INCEPTION_DIM,
    INCEPTION_IMAGE_SIZE,
    INCEPTION_NAME,
    PRECISIONS,
    VGGISH_DIM,
    VGGISH_NAME,
    Backbone,
    check_precision,
)
from yt8m.extractor.backbones.pcas import (
    AUDIO_PCA_FALLBACK_WARNING,
    official_audio_pca,
    official_pcas_present,
    official_rgb_pca,
    user_pca,
)
from yt8m.extractor.backbones.provider import PROVIDERS, BackboneProvider, provider_for, register
from yt8m.extractor.backbones.random import RANDOM_SEED, RANDOM_WARNING, calibration_frames, calibration_log_mel, random_pca
from yt8m.extractor.backbones.vggish import (
    VGGISH_BANDS,
    VGGISH_FRAMES,
    VGGISH_LAYERS,
    build_vggish_model,
    keras_vggish,
    load_vggish_checkpoint,
)
from yt8m.pca import Pca

PRECISION_WARNING = (
    "precision={precision}: quantized features differ from float32's by more than one step "
    "too often to match YT8M; records are marked not YT8M-compatible"
)

__all__ = [
    "AUDIO_PCA_FALLBACK_WARNING", "BFLOAT16", "FLOAT32", "HUB_PREFIX", "INCEPTION_DIM", "INCEPTION_IMAGE_SIZE",
    "INCEPTION_NAME", "PRECISIONS", "PROVIDERS", "RANDOM_SEED", "RANDOM_WARNING", "VGGISH_BANDS", "VGGISH_DIM",
    "VGGISH_FRAMES", "VGGISH_LAYERS", "VGGISH_NAME", "WEIGHTS_KERAS", "WEIGHTS_RANDOM", "WEIGHTS_YT8M",
    "Backbone", "BackboneProvider", "FeatureModels", "WaveformBackbone", "build_vggish_model",
    "calibration_frames", "calibration_log_mel", "check_precision", "keras_vggish",
    "load_feature_models", "load_graphdef_inception", "prepare_official_networks", "load_hub_image_backbone", "load_hub_vggish",
    "load_vggish_checkpoint", "official_audio_pca", "official_rgb_pca", "prepare_inception_graph",
    "provider_for", "random_pca", "register",
]


@dataclass
class FeatureModels:
    """Everything the extractor runs: the networks, their PCAs, and whether the result is YT8M's."""

    inception: Backbone
    vggish: Backbone | None
    rgb_pca: Pca
    audio_pca: Pca | None
    weights: str
    compatible_with_yt8m: bool
    warnings: list[str] = field(default_factory=list)
    precision: str = FLOAT32
    timings: dict[str, float] = field(default_factory=dict)  # seconds per loading stage (benchmarks)


def load_feature_models(
    weights: str = WEIGHTS_YT8M,
    models_dir: str | os.PathLike | None = None,
    precision: str = FLOAT32,
    audio: bool = True,
    rgb_pca_path: str | os.PathLike | None = None,
    audio_pca_path: str | os.PathLike | None = None,
    trust_model: bool = False,
) -> FeatureModels:
    """Load the networks and PCAs for `weights` (see the module docstring), ready to run.

    Files come from `models_dir` or the yt8m cache, never from the network (except Keras' and TF
    Hub's own downloads for `keras` / `hub:`); a missing file is a Yt8mError naming it and the
    `yt8m models fetch` command that gets it. `audio=False` loads no VGGish and no audio PCA.
    `rgb_pca_path` / `audio_pca_path` replace the provider's default PCAs. `trust_model` runs a
    user's SavedModel (`hub:`) even when its graph has file, network or Python operations.
    """
    provider = provider_for(weights, models_dir, precision, trust_model)
    timings: dict[str, float] = {}

    def timed(stage: str, function: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            timings[stage] = time.perf_counter() - started

    timed("tensorflow import", import_tensorflow_quietly)  # once, before the threads
    warnings = provider.notes()
    audio_warnings: list[str] = []

    def rgb_part() -> tuple[Backbone, Pca]:
        network = timed("rgb network", provider.load_rgb)
        if rgb_pca_path is not None:
            pca = user_pca(rgb_pca_path, network, "rgb")
        else:
            pca = timed("rgb pca", provider.rgb_pca, network, warnings)
        return network, pca

    def audio_part() -> tuple[Backbone, Pca]:
        network = timed("audio network", provider.load_audio)
        if audio_pca_path is not None:
            pca = user_pca(audio_pca_path, network, "audio")
        else:
            pca = timed("audio pca", provider.audio_pca, network, audio_warnings)
        return network, pca

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="yt8m-load") as pool:
        audio_job = pool.submit(audio_part) if audio else None
        try:
            inception, rgb_pca = rgb_part()
        except BaseException:
            if audio_job is not None:
                audio_job.cancel()
            raise
        vggish, audio_pca = audio_job.result() if audio_job is not None else (None, None)
    warnings.extend(audio_warnings)
    if precision != FLOAT32:
        warnings.append(PRECISION_WARNING.format(precision=precision))
    compatible = (
        provider.yt8m_compatible
        and precision == FLOAT32
        and rgb_pca.compatible_with_yt8m
        and (audio_pca is None or audio_pca.compatible_with_yt8m)
    )
    return FeatureModels(inception, vggish, rgb_pca, audio_pca, weights, compatible, warnings, precision, timings)


def prepare_official_networks(
    models_dir: str | os.PathLike | None = None, progress: Callable[[str], None] | None = None
) -> FeatureModels | None:
    """Load the official networks once, so that the next `yt8m extract` starts warm.

    Loading them the first time folds the 2015 graph's batch norms and builds VGGish from its
    checkpoint (~20 s on 2 cores); the results are kept in the cache dir, keyed by the source
    files, and later loads take about a second. `yt8m models fetch` calls this after downloading,
    where waiting is expected. None (nothing done) while a file they need is missing (a partial
    fetch): the 2015 graph, the VGGish checkpoint, or the PCAs. `progress` is told when the
    preparation starts.
    """
    networks = all(weights_lib.is_present(name, models_dir) for name in (weights_lib.INCEPTION, weights_lib.VGGISH))
    if not (networks and official_pcas_present(models_dir)):
        return None
    if progress is not None:
        progress("preparing the feature networks (once: later runs load them in about a second)")
    return load_feature_models(WEIGHTS_YT8M, models_dir)
