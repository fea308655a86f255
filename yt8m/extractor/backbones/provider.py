"""Backbone providers: one class per weights kind, registered by name (`@register`).

A provider says how to load the rgb network and the audio network of its kind, which PCAs
follow them by default, what a user must be told about its features and whether they are
YouTube-8M's. The defaults here are what every kind but `random` shares: the official VGGish
checkpoint for audio and the official PCAs. Adding a backbone is one module with one class.
"""

from __future__ import annotations

import os
from typing import ClassVar

from yt8m.core import Yt8mError, weights_kind
from yt8m.extractor.backbones.network import FLOAT32, INCEPTION_DIM, Backbone, check_precision
from yt8m.extractor.backbones.pcas import official_audio_pca, official_rgb_pca
from yt8m.extractor.backbones.vggish import official_vggish
from yt8m.pca import Pca

FOREIGN_PCA_WARNING = (
    "the YT8M RGB PCA was fitted on the 2015 graph's features; for other weights fit your own "
    "(yt8m.pca.fit_pca) and pass it as rgb_pca"
)


class BackboneProvider:
    """The networks and default PCAs of one weights kind (`kind`, a weights kind of yt8m.core)."""

    kind: ClassVar[str] = ""
    yt8m_compatible: ClassVar[bool] = False  # with float32 and the official PCAs
    warning: ClassVar[str | None] = None  # said whenever this kind is used ({weights} is filled in)

    def __init__(
        self,
        weights: str,
        models_dir: str | os.PathLike | None = None,
        precision: str = FLOAT32,
        trust_model: bool = False,
    ) -> None:
        self.weights = weights
        self.models_dir = models_dir
        self.precision = check_precision(precision)
        self.trust_model = trust_model  # run a user's SavedModel even if its graph touches files / network

    def notes(self) -> list[str]:
        """What a user must be told about features made with this kind."""
        return [self.warning.format(weights=self.weights)] if self.warning else []

    def load_rgb(self) -> Backbone:
        """The frame network: uint8 RGB frames -> features."""
        raise NotImplementedError

    def load_audio(self) -> Backbone:
        """The audio network: log-mel examples [B, 96, 64] -> 128-d (the official VGGish checkpoint)."""
        return official_vggish(self.models_dir, self.precision)

    def rgb_pca(self, rgb: Backbone, warnings: list[str]) -> Pca:
        """The default RGB PCA: YT8M's (it takes 2048-d features only)."""
        if rgb.output_dim != INCEPTION_DIM:
            raise Yt8mError(
                f"weights={self.weights} gives {rgb.output_dim}-d features but YT8M's PCA takes {INCEPTION_DIM}; "
                "pass a PCA fitted on these features as rgb_pca (see yt8m.pca.fit_pca)"
            )
        pca = official_rgb_pca(self.models_dir)
        if not self.yt8m_compatible:
            warnings.append(FOREIGN_PCA_WARNING)
        return pca

    def audio_pca(self, audio: Backbone, warnings: list[str]) -> Pca:
        """The default audio PCA: YT8M's (MediaPipe's), else AudioSet's with a warning."""
        return official_audio_pca(self.models_dir, warnings)


PROVIDERS: dict[str, type[BackboneProvider]] = {}


def register(provider: type[BackboneProvider]) -> type[BackboneProvider]:
    """Class decorator: `provider` serves its weights kind from now on."""
    PROVIDERS[provider.kind] = provider
    return provider


def provider_for(
    weights: str, models_dir: str | os.PathLike | None = None, precision: str = FLOAT32, trust_model: bool = False
) -> BackboneProvider:
    """The provider of a weights value (`yt8m`, `keras`, `random`, `hub:HANDLE`); Yt8mError otherwise."""
    kind = weights_kind(weights)
    if kind not in PROVIDERS:
        raise Yt8mError(f"weights {weights!r}: no backbone provider is registered for {kind!r}")
    return PROVIDERS[kind](weights, models_dir, precision, trust_model)
