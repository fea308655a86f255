"""Registry of the YT8M classifiers, under the seeds' names, with their published defaults.

    build_model(name, num_classes=3862, feature_sizes=(1024, 128), max_frames=300, **hparams)

returns a built `keras.Model` taking `(frames float32 [B, T, sum(feature_sizes)], num_frames int32
[B])` (video-level models: `(features [B, sum(feature_sizes)], num_frames)`) and returning
probabilities [B, num_classes]. Hyperparameters use the seeds' flag names; values may be given
as strings (from `--set key=value`) and are converted to the default's type. The model's
`yt8m_config` holds everything needed to rebuild it exactly (`build_model(config["name"],
num_classes=..., feature_sizes=..., max_frames=..., **config["hparams"])`).

Families: starter (LogisticModel, MoeModel, FrameLevelLogisticModel, DbofModel, LstmModel),
WILLOW (NetVLADModelLF, NetFVModelLF, SoftDbofModelLF, GatedDbofModelLF, GruModel), NeXtVLAD
(NeXtVLADModel, MixNeXtVladModel), the 2019 9th place's BERT models (Bert, BertCross and the
named configurations of their results table: BERTMean, BERTFirst, BERTCrossMean, BERTCrossAttn)
and yt8m's own BERT-style TransformerModel (projection, position embeddings, [CLS]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# layers first: it starts TensorFlow quietly before Keras loads it.
from yt8m.classifier.models.layers import Yt8mModel
from yt8m.classifier.models import bert9, netvlad, nextvlad, starter, transformer
from yt8m.core import AUDIO_SIZE, MAX_FRAMES, NUM_CLASSES, RGB_SIZE, Yt8mError

DEFAULT_FEATURE_SIZES = (RGB_SIZE, AUDIO_SIZE)

TRUE_WORDS = frozenset({"true", "1", "yes", "y", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "off"})
"""The words a boolean hyperparameter or training setting accepts as text (`--set key=value`)."""


@dataclass(frozen=True)
class _Entry:
    cls: type[Yt8mModel]
    defaults: dict[str, Any]
    preset: bool = False
    """A named configuration of another registered class (built under the entry's own name)."""

    @property
    def video_level(self) -> bool:
        return bool(self.cls.video_level)


_REGISTRY: dict[str, _Entry] = {
    "LogisticModel": _Entry(starter.LogisticModel, starter.LOGISTIC_DEFAULTS),
    "MoeModel": _Entry(starter.MoeModel, starter.MOE_DEFAULTS),
    "FrameLevelLogisticModel": _Entry(starter.FrameLevelLogisticModel, starter.FRAME_LOGISTIC_DEFAULTS),
    "DbofModel": _Entry(starter.DbofModel, starter.DBOF_DEFAULTS),
    "LstmModel": _Entry(starter.LstmModel, starter.LSTM_DEFAULTS),
    "NetVLADModelLF": _Entry(netvlad.NetVLADModelLF, netvlad.NETVLAD_DEFAULTS),
    "NetFVModelLF": _Entry(netvlad.NetFVModelLF, netvlad.NETFV_DEFAULTS),
    "SoftDbofModelLF": _Entry(netvlad.SoftDbofModelLF, netvlad.SOFTDBOF_DEFAULTS),
    "GatedDbofModelLF": _Entry(netvlad.GatedDbofModelLF, netvlad.GATEDDBOF_DEFAULTS),
    "GruModel": _Entry(netvlad.GruModel, netvlad.GRU_DEFAULTS),
    "NeXtVLADModel": _Entry(nextvlad.NeXtVLADModel, nextvlad.NEXTVLAD_DEFAULTS),
    "MixNeXtVladModel": _Entry(nextvlad.MixNeXtVladModel, nextvlad.MIX_NEXTVLAD_DEFAULTS),
    "TransformerModel": _Entry(transformer.TransformerModel, transformer.TRANSFORMER_DEFAULTS),
    "Bert": _Entry(bert9.Bert, bert9.BERT_DEFAULTS),
    "BertCross": _Entry(bert9.BertCross, bert9.BERT_CROSS_DEFAULTS),
    "BERTMean": _Entry(bert9.Bert, bert9.BERT_MEAN_DEFAULTS, preset=True),
    "BERTFirst": _Entry(bert9.Bert, bert9.BERT_FIRST_DEFAULTS, preset=True),
    "BERTCrossMean": _Entry(bert9.BertCross, bert9.BERT_CROSS_MEAN_DEFAULTS, preset=True),
    "BERTCrossAttn": _Entry(bert9.BertCross, bert9.BERT_CROSS_ATTN_DEFAULTS, preset=True),
}


def _entries() -> dict[str, _Entry]:
    return _REGISTRY


_ALIASES = {
    "nextvlad": "NeXtVLADModel",
    "mixnextvlad": "MixNeXtVladModel",
    "mixnextvladmodel": "MixNeXtVladModel",
    "netrvladmodellf": "NetVLADModelLF",
}
"""Other spellings accepted by `build_model` (lower case) -> registered name."""

_CHOICES: dict[str, tuple[str, ...]] = {
    "video_level_classifier_model": ("LogisticModel", "MoeModel"),
    "dbof_pooling_method": starter.DBOF_POOLING,
    "dbof_activation": starter.DBOF_ACTIVATIONS,
    "bert_pooling": ("first", "mean", "cross_attention"),
    "pooling_strategy": bert9.POOLING_STRATEGIES,
}
_UNIT_INTERVAL = {"drop_rate", "bert_dropout", "bert_dropout_prob", "batch_norm_decay"}  # floats in [0, 1)
_POSITIVE_FLOATS = {"cl_temperature"}


def list_models() -> list[str]:
    """The registered model names (the seeds' class names)."""
    return list(_entries())


def _resolve(name: str) -> str:
    entries = _entries()
    if name in entries:
        return name
    lowered = str(name).lower()
    for registered in entries:
        if registered.lower() == lowered:
            return registered
    if lowered in _ALIASES:
        return _ALIASES[lowered]
    raise Yt8mError(f"unknown model {name!r}; available models: {', '.join(entries)}")


def model_defaults(name: str) -> dict[str, Any]:
    """A copy of the published default hyperparameters of model `name`."""
    return dict(_entries()[_resolve(name)].defaults)


def is_video_level(name: str) -> bool:
    """True for models that read video-level features [B, D] (mean_rgb, mean_audio)."""
    return _entries()[_resolve(name)].video_level


def canonical_name(name: str) -> str:
    """The registered spelling of a model name or alias (Yt8mError if unknown)."""
    return _resolve(name)


def _coerce(model: str, key: str, value: Any, default: Any) -> Any:
    """Convert `value` to the type of `default`, or raise Yt8mError naming the hyperparameter."""
    bad = Yt8mError(f"{model}: hyperparameter {key}={value!r} should be a {type(default).__name__}")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
            return value.strip().lower() in TRUE_WORDS
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise bad
    if isinstance(default, int):
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if isinstance(default, float):
        if isinstance(value, bool):
            raise bad
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(result):
            raise bad
        return result
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad
        return value.strip()
    raise bad  # pragma: no cover - defaults are bool/int/float/str


def _validate(model: str, hp: dict[str, Any], feature_sizes: tuple[int, ...]) -> None:
    _entries()[model].cls.check_sizes(model, hp, feature_sizes)
    for key, value in hp.items():
        if key in _CHOICES and value not in _CHOICES[key]:
            raise Yt8mError(f"{model}: {key} must be one of {list(_CHOICES[key])}, got {value!r}")
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise Yt8mError(f"{model}: {key} must be a positive integer, got {value}")
        if isinstance(value, float):
            if key in _UNIT_INTERVAL and not 0.0 <= value < 1.0:
                raise Yt8mError(f"{model}: {key} must be in [0, 1), got {value}")
            if key in _POSITIVE_FLOATS and value <= 0:
                raise Yt8mError(f"{model}: {key} must be positive, got {value}")
            if (key.endswith("l2") or key == "l2_penalty" or key == "cl_lambda") and value < 0:
                raise Yt8mError(f"{model}: {key} must not be negative, got {value}")
    if "bert_num_heads" in hp and hp["bert_hidden_size"] % hp["bert_num_heads"]:
        raise Yt8mError(
            f"{model}: bert_hidden_size ({hp['bert_hidden_size']}) must be divisible by "
            f"bert_num_heads ({hp['bert_num_heads']})"
        )
    if "groups" in hp:
        for i, size in enumerate(feature_sizes):
            groups = hp["groups"] if i == 0 else max(hp["groups"] // 2, 1)
            if (hp["expansion"] * size) % groups:
                raise Yt8mError(
                    f"{model}: expansion x feature size ({hp['expansion']} x {size}) must be divisible "
                    f"by the {groups} groups of feature {i}"
                )


def resolve_hparams(name: str, **hparams: Any) -> dict[str, Any]:
    """The full, type-checked hyperparameters of `name`: defaults overridden by `hparams`."""
    model = _resolve(name)
    defaults = _entries()[model].defaults
    unknown = sorted(set(hparams) - set(defaults))
    if unknown:
        valid = ", ".join(sorted(defaults)) or "(none)"
        raise Yt8mError(f"{model}: unknown hyperparameter(s) {', '.join(unknown)}; valid: {valid}")
    resolved = dict(defaults)
    for key, value in hparams.items():
        resolved[key] = _coerce(model, key, value, defaults[key])
    return resolved


def build_model(
    name: str,
    num_classes: int = NUM_CLASSES,
    feature_sizes: Sequence[int] = DEFAULT_FEATURE_SIZES,
    max_frames: int = MAX_FRAMES,
    **hparams: Any,
) -> Yt8mModel:
    """Build model `name` (weights created) from the published defaults overridden by `hparams`.

    Raises Yt8mError for an unknown model, an unknown or ill-typed hyperparameter, or sizes
    that cannot work.
    """
    model = _resolve(name)
    entry = _entries()[model]
    try:
        sizes = tuple(int(s) for s in feature_sizes)
    except (TypeError, ValueError):
        raise Yt8mError(f"{model}: feature sizes must be integers, got {feature_sizes!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise Yt8mError(f"{model}: feature sizes must be positive integers, got {list(sizes)}")
    if int(num_classes) < 1:
        raise Yt8mError(f"{model}: num_classes must be positive, got {num_classes}")
    if int(max_frames) < 1:
        raise Yt8mError(f"{model}: max_frames must be positive, got {max_frames}")
    hp = resolve_hparams(model, **hparams)
    _validate(model, hp, sizes)

    extra = {"model_name": model} if entry.preset else {}
    net = entry.cls(int(num_classes), sizes, int(max_frames), hp, **extra)
    net.create_weights()
    return net


__all__ = [
    "Yt8mModel",
    "build_model",
    "canonical_name",
    "is_video_level",
    "list_models",
    "model_defaults",
    "resolve_hparams",
]
