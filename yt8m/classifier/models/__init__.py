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
(NeXtVLADModel, MixNeXtVladModel) and a BERT-style TransformerModel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from yt8m.core import MAX_FRAMES, NUM_CLASSES, RGB_SIZE, AUDIO_SIZE, Yt8mError

DEFAULT_FEATURE_SIZES = (RGB_SIZE, AUDIO_SIZE)

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


@dataclass(frozen=True)
class _Entry:
    module: str
    cls: str
    defaults: dict[str, Any]
    video_level: bool = False


def _entries() -> dict[str, _Entry]:
    # Imported lazily so that `import yt8m.classifier.models` stays cheap for the CLI.
    from yt8m.classifier.models import nextvlad, netvlad, starter, transformer

    s, w, n, t = starter, netvlad, nextvlad, transformer
    return {
        "LogisticModel": _Entry("starter", "LogisticModel", s.LOGISTIC_DEFAULTS, video_level=True),
        "MoeModel": _Entry("starter", "MoeModel", s.MOE_DEFAULTS, video_level=True),
        "FrameLevelLogisticModel": _Entry("starter", "FrameLevelLogisticModel", s.FRAME_LOGISTIC_DEFAULTS),
        "DbofModel": _Entry("starter", "DbofModel", s.DBOF_DEFAULTS),
        "LstmModel": _Entry("starter", "LstmModel", s.LSTM_DEFAULTS),
        "NetVLADModelLF": _Entry("netvlad", "NetVLADModelLF", w.NETVLAD_DEFAULTS),
        "NetFVModelLF": _Entry("netvlad", "NetFVModelLF", w.NETFV_DEFAULTS),
        "SoftDbofModelLF": _Entry("netvlad", "SoftDbofModelLF", w.SOFTDBOF_DEFAULTS),
        "GatedDbofModelLF": _Entry("netvlad", "GatedDbofModelLF", w.GATEDDBOF_DEFAULTS),
        "GruModel": _Entry("netvlad", "GruModel", w.GRU_DEFAULTS),
        "NeXtVLADModel": _Entry("nextvlad", "NeXtVLADModel", n.NEXTVLAD_DEFAULTS),
        "MixNeXtVladModel": _Entry("nextvlad", "MixNeXtVladModel", n.MIX_NEXTVLAD_DEFAULTS),
        "TransformerModel": _Entry("transformer", "TransformerModel", t.TRANSFORMER_DEFAULTS),
    }


_ALIASES = {
    "nextvlad": "NeXtVLADModel",
    "mixnextvlad": "MixNeXtVladModel",
    "mixnextvladmodel": "MixNeXtVladModel",
    "netrvladmodellf": "NetVLADModelLF",
    "bert": "TransformerModel",
    "bertmodel": "TransformerModel",
}
"""Other spellings accepted by `build_model` (lower case) -> registered name."""

_CHOICES: dict[str, tuple[str, ...]] = {
    "video_level_classifier_model": ("LogisticModel", "MoeModel"),
    "dbof_pooling_method": ("max", "average"),
    "bert_pooling": ("first", "mean", "cross_attention"),
}
_UNIT_INTERVAL = {"drop_rate", "bert_dropout"}  # floats in [0, 1)
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
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
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
):
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

    import importlib

    import numpy as np

    module = importlib.import_module(f"yt8m.classifier.models.{entry.module}")
    cls = getattr(module, entry.cls)
    net = cls(int(num_classes), sizes, int(max_frames), hp)
    # Create every weight now (one tiny forward pass) so that count_params, load_weights and
    # optimizers see them.
    width = int(sum(sizes))
    if entry.video_level:
        dummy = np.zeros((1, width), dtype=np.float32)
    else:
        dummy = np.zeros((1, min(2, int(max_frames)), width), dtype=np.float32)
    net((dummy, np.ones((1,), dtype=np.int32)), training=False)
    return net


__all__ = [
    "build_model",
    "canonical_name",
    "is_video_level",
    "list_models",
    "model_defaults",
    "resolve_hparams",
]
