"""Core types shared by every stage: the user-facing error, the feature spec and one video's features.

These are plain dataclasses with numpy inside so that the extractor, the records module, the
readers and the CLI can exchange them without importing TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__version__ = "0.1.0"
"""yt8m's version (re-exported as `yt8m.__version__`), recorded in every config and export."""

RGB_SIZE = 1024
AUDIO_SIZE = 128
MAX_FRAMES = 300
NUM_CLASSES = 3862
SEGMENT_FRAMES = 5
L2_EPSILON = 1e-12
"""Epsilon of the per-frame L2 normalisation of model inputs (`tf.math.l2_normalize`'s default):
the readers, the exported graphs, the segment reader and the models' own normalisation share it."""

# Compact-model defaults (2018 1st place), here so that the CLI's option defaults name them too.
DISTILL_LAMBDA = 0.5  # train_distill.py --loss_lambda: weight of the teacher's cross-entropy
EMA_HALFLIFE = 2000.0  # the EMA stage's half-life in steps (the seed's README; its flag defaulted to 3000)

# The kinds of backbone weights a record or a model can be made with (the records' `yt8m_weights`).
WEIGHTS_YT8M = "yt8m"  # the official Inception 2015 graph + VGGish with the dataset's PCA
WEIGHTS_KERAS = "keras"  # Keras ImageNet Inception-v3: fine for custom data, not YT8M-compatible
WEIGHTS_RANDOM = "random"  # random weights: for tests and the offline demo, never real features
HUB_PREFIX = "hub:"  # `hub:PATH_OR_URL`, an image feature-vector SavedModel
WEIGHT_KINDS = (WEIGHTS_YT8M, WEIGHTS_KERAS, WEIGHTS_RANDOM, HUB_PREFIX)


def weights_kind(weights: str) -> str:
    """The kind of a weights value (`hub:...` -> `hub:`); a Yt8mError for an unknown one."""
    if weights.startswith(HUB_PREFIX):
        return HUB_PREFIX
    if weights in WEIGHT_KINDS:
        return weights
    raise Yt8mError(
        f"unknown weights {weights!r}; choose {WEIGHTS_YT8M}, {WEIGHTS_KERAS}, {WEIGHTS_RANDOM} or {HUB_PREFIX}PATH"
    )


def is_yt8m_compatible(weights: str | None) -> bool:
    """Only features made with the official weights (or with no mark, like the dataset) match YT8M models."""
    return weights is None or weights == WEIGHTS_YT8M


class Yt8mError(Exception):
    """An error caused by the user's input or environment; the CLI prints it as one line, exit 1."""


@dataclass(frozen=True)
class FeatureSpec:
    """Which per-frame features a model consumes, their sizes and the quantization range.

    Saved with every trained model so that readers and `classify` can refuse a mismatch.
    """

    names: tuple[str, ...] = ("rgb", "audio")
    sizes: tuple[int, ...] = (RGB_SIZE, AUDIO_SIZE)
    max_frames: int = MAX_FRAMES
    min_value: float = -2.0
    max_value: float = 2.0

    def __post_init__(self) -> None:
        if len(self.names) != len(self.sizes):
            raise Yt8mError(
                f"feature names {list(self.names)} and sizes {list(self.sizes)} differ in length"
            )

    @property
    def total_size(self) -> int:
        return int(sum(self.sizes))

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "sizes": [int(s) for s in self.sizes],
            "max_frames": self.max_frames,
            "min_value": self.min_value,
            "max_value": self.max_value,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureSpec":
        return cls(
            names=tuple(data["names"]),
            sizes=tuple(int(s) for s in data["sizes"]),
            max_frames=int(data.get("max_frames", MAX_FRAMES)),
            min_value=float(data.get("min_value", -2.0)),
            max_value=float(data.get("max_value", 2.0)),
        )

    @classmethod
    def parse(cls, names: str, sizes: str, max_frames: int = MAX_FRAMES) -> "FeatureSpec":
        """Build a spec from the CLI's comma-separated `--feature-names` / `--feature-sizes`."""
        name_list = tuple(n.strip() for n in names.split(",") if n.strip())
        try:
            size_list = tuple(int(s) for s in sizes.split(",") if s.strip())
        except ValueError:
            raise Yt8mError(f"--feature-sizes must be comma-separated integers, got {sizes!r}") from None
        return cls(names=name_list, sizes=size_list, max_frames=max_frames)


@dataclass
class VideoFeatures:
    """One video's quantized frame-level features and labels: what the extractor makes and records store.

    `rgb` is uint8 [T, 1024], `audio` is uint8 [T, 128] with the same T. Segment fields follow the
    2019 layout (start/end in frames, one label and score per rated segment). `extras` holds
    yt8m's own context fields (e.g. `weights="random"`, `audio_missing=1`); readers that use the
    starter code's feature spec ignore them.
    """

    video_id: str
    rgb: np.ndarray
    audio: np.ndarray
    labels: list[int] = field(default_factory=list)
    mean_rgb: np.ndarray | None = None
    mean_audio: np.ndarray | None = None
    segment_start_times: list[int] = field(default_factory=list)
    segment_end_times: list[int] = field(default_factory=list)
    segment_labels: list[int] = field(default_factory=list)
    segment_scores: list[float] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def has_segments(self) -> bool:
        return len(self.segment_labels) > 0
