"""`ModelConfig`: everything needed to rebuild a trained classifier exactly, saved as JSON in the train dir.

A config holds the registered model name, every model hyperparameter (the registry's defaults
with the user's `--set key=value` overrides applied), the `FeatureSpec`, the number of classes
and the training settings. `yt8m train` writes it once; eval, predict and export read it back and
refuse a train dir whose `config.json` was made for another model.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from yt8m.classifier.models import FALSE_WORDS, TRUE_WORDS, canonical_name, is_video_level, model_defaults
from yt8m.core import NUM_CLASSES, FeatureSpec, Yt8mError, __version__
from yt8m.data.files import write_text

CONFIG_FILENAME = "config.json"
CONFIG_FORMAT = 1

# Starter-code training defaults (REFERENCE.md §7); a model's registry defaults may override them.
DEFAULT_BATCH_SIZE = 1024
DEFAULT_BASE_LEARNING_RATE = 0.01
DEFAULT_LEARNING_RATE_DECAY = 0.95
DEFAULT_LEARNING_RATE_DECAY_EXAMPLES = 4_000_000
DEFAULT_CLIP_GRADIENT_NORM = 1.0
DEFAULT_REGULARIZATION_PENALTY = 1.0
LABEL_LOSSES = ("CrossEntropyLoss",)
# How `clip_gradient_norm` applies: "per-tensor" clips every gradient tensor to that norm on its
# own (starter utils.clip_gradient_norms, `tf.clip_by_norm`, used by every seed); "global" scales
# all of them by one factor (`tf.clip_by_global_norm`), what yt8m did before.
CLIP_PER_TENSOR = "per-tensor"
CLIP_GLOBAL = "global"
CLIP_GRADIENT_MODES = (CLIP_PER_TENSOR, CLIP_GLOBAL)
# Settings a config.json saved before the setting existed was trained with (see `from_dict`):
# global clipping and raw (not L2-normalised) video-level inputs.
LEGACY_TRAINING = {"clip_gradient_mode": CLIP_GLOBAL, "l2_normalize_video_inputs": False}
# Which classes of a rated segment count in the loss (`segment_label_weighting`): "all-classes"
# (the 2019 9th place's fine-tuning: the rated-present classes are positives, every other class,
# rated or not, a negative) or "rated-pairs" (only the rated (segment, class) pairs, weight 1).
# None: the mode's default, chosen when training starts (`training.resolve_train_config`):
# all-classes when a video train dir continues on segment labels, rated-pairs for a new one.
SEGMENT_ALL_CLASSES = "all-classes"
SEGMENT_RATED_PAIRS = "rated-pairs"
SEGMENT_WEIGHTINGS = (SEGMENT_ALL_CLASSES, SEGMENT_RATED_PAIRS)
# Published training settings per model (REFERENCE.md §7 and the authors' train scripts); every
# other model uses the starter defaults above. WILLOW's scripts decay by 0.8 for the gated NetVLAD
# and NetFV and by 0.9 for the GRU and the DBoF variants. NeXtVLAD trained on 2 GPUs x 80 (global
# 160) with the decay every 2M examples; MixNeXtVLAD's final script decays every 2.5M examples.
# The 2019 9th place's BERT models: batch 128, lr 1e-4, decay 0.9 every 4M examples. The
# transformer's settings were not published: yt8m's choice.
_WILLOW = {"batch_size": 80, "base_learning_rate": 2e-4, "learning_rate_decay": 0.8}
_WILLOW_09 = {**_WILLOW, "learning_rate_decay": 0.9}
_NEXTVLAD = {
    "batch_size": 160,
    "base_learning_rate": 2e-4,
    "learning_rate_decay": 0.8,
    "learning_rate_decay_examples": 2_000_000,
}
_BERT9 = {
    "batch_size": 128,
    "base_learning_rate": 1e-4,
    "learning_rate_decay": 0.9,
    "learning_rate_decay_examples": 4_000_000,
}
PUBLISHED_TRAINING: dict[str, dict[str, Any]] = {
    "LstmModel": {"base_learning_rate": 1e-3},
    "NetVLADModelLF": _WILLOW,
    "NetFVModelLF": _WILLOW,
    "SoftDbofModelLF": _WILLOW_09,
    "GatedDbofModelLF": _WILLOW_09,
    "GruModel": {**_WILLOW_09, "batch_size": 128},
    "NeXtVLADModel": _NEXTVLAD,
    "MixNeXtVladModel": {**_NEXTVLAD, "learning_rate_decay_examples": 2_500_000},
    "TransformerModel": {"batch_size": 128, "base_learning_rate": 1e-4, "learning_rate_decay": 0.8},
    **{name: _BERT9 for name in ("Bert", "BertCross", "BERTMean", "BERTFirst", "BERTCrossMean", "BERTCrossAttn")},
}
# How a model's input is laid out (`ModelConfig.segments`): None for whole videos, else
# "segment" (5-frame segments) or "context" (a segment followed by its whole video).
SEGMENT_MODES = ("segment", "context")
# What a bundle on disk holds (`ModelConfig.kind`): a trained model today; the compact-models work
# adds quantized and merged bundles under their own kinds.
KIND_TRAINED = "trained"


def package_version() -> str:
    """yt8m's version, recorded in every config and export."""
    return __version__


@dataclass
class TrainingSettings:
    """How a model is trained; a model's registry defaults may override any of these by name.

    `batch_size` is the global batch (split across replicas). `label_weights` are optional
    per-class loss weights. (Frame sampling, the seeds' `iterations` / `sample_random_frames`,
    is a model hyperparameter: the models sample inside their graph.) `clip_gradient_norm` (0:
    off) applies to every gradient tensor on its own by default, as the seeds' train.py does.
    """

    batch_size: int = DEFAULT_BATCH_SIZE
    base_learning_rate: float = DEFAULT_BASE_LEARNING_RATE
    learning_rate_decay: float = DEFAULT_LEARNING_RATE_DECAY
    learning_rate_decay_examples: int = DEFAULT_LEARNING_RATE_DECAY_EXAMPLES
    clip_gradient_norm: float = DEFAULT_CLIP_GRADIENT_NORM
    clip_gradient_mode: str = CLIP_PER_TENSOR  # CLIP_GRADIENT_MODES
    regularization_penalty: float = DEFAULT_REGULARIZATION_PENALTY
    label_loss: str = "CrossEntropyLoss"
    num_epochs: int | None = None
    max_steps: int | None = None
    ema_decay: float | None = None
    shuffle_buffer: int = 1024
    seed: int = 0
    checkpoint_every_steps: int = 1000
    keep_checkpoints: int = 5
    log_every_steps: int = 10
    label_weights: list[float] | None = None
    # Video-level models only: L2-normalise the concatenated mean_rgb + mean_audio vector, as the
    # starter's train.py / eval.py / export_model.py do for every model's input. False feeds the
    # raw means (yt8m's earlier behaviour). Fixed for a train dir: its weights expect one or the other.
    l2_normalize_video_inputs: bool = True
    segment_label_weighting: str | None = None  # SEGMENT_WEIGHTINGS; segment-label training only

    def validate(self, num_classes: int) -> None:
        """Raise `Yt8mError` for settings no training run can use."""
        if self.batch_size < 1:
            raise Yt8mError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (math.isfinite(self.base_learning_rate) and self.base_learning_rate > 0):
            raise Yt8mError(f"base_learning_rate must be a finite number > 0, got {self.base_learning_rate}")
        for name in ("regularization_penalty", "clip_gradient_norm"):  # 0 switches them off
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise Yt8mError(f"{name} must be a finite number >= 0, got {value}")
        if not 0 < self.learning_rate_decay <= 1:
            raise Yt8mError(f"learning_rate_decay must be in (0, 1], got {self.learning_rate_decay}")
        if self.learning_rate_decay_examples < 1:
            raise Yt8mError("learning_rate_decay_examples must be >= 1")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise Yt8mError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.label_loss not in LABEL_LOSSES:
            raise Yt8mError(f"label_loss must be one of {', '.join(LABEL_LOSSES)}, got {self.label_loss!r}")
        if self.segment_label_weighting not in (None, *SEGMENT_WEIGHTINGS):
            raise Yt8mError(
                f"segment_label_weighting must be one of {', '.join(SEGMENT_WEIGHTINGS)}, got {self.segment_label_weighting!r}"
            )
        if self.clip_gradient_mode not in CLIP_GRADIENT_MODES:
            raise Yt8mError(
                f"clip_gradient_mode must be one of {', '.join(CLIP_GRADIENT_MODES)}, got {self.clip_gradient_mode!r}"
            )
        for name in ("num_epochs", "max_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise Yt8mError(f"{name} must be >= 1, got {value}")
        for name in ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints", "shuffle_buffer"):
            value = getattr(self, name)
            if value < 1:
                raise Yt8mError(f"{name} must be >= 1, got {value}")
        if self.label_weights is not None:
            if len(self.label_weights) != num_classes:
                raise Yt8mError(
                    f"label weights have {len(self.label_weights)} values, expected one per class ({num_classes})"
                )
            if any(not math.isfinite(w) or w < 0 for w in self.label_weights):
                raise Yt8mError("label weights must be finite and >= 0")


TRAINING_KEYS = frozenset(f.name for f in fields(TrainingSettings))


def coerce_value(key: str, text: str, default: Any) -> Any:
    """Convert a `--set key=value` string to the type of the key's default value."""
    text = text.strip()
    if isinstance(default, bool):
        lowered = text.lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
        raise Yt8mError(f"{key}={text}: expected a boolean (true/false)")
    if default is None:
        if text.lower() in ("none", "null", ""):
            return None
        for convert in (int, float):
            try:
                return convert(text)
            except ValueError:
                pass
        return text
    if isinstance(default, int):
        try:
            number = float(text)
        except ValueError:
            raise Yt8mError(f"{key}={text}: expected an integer") from None
        if not number.is_integer():
            raise Yt8mError(f"{key}={text}: expected an integer")
        return int(number)
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise Yt8mError(f"{key}={text}: expected a number") from None
    if isinstance(default, (list, tuple)):
        element = default[0] if default else ""
        items = [coerce_value(key, part, element) for part in text.split(",") if part.strip()]
        return type(default)(items)
    return text


def parse_overrides(assignments: list[str] | None, defaults: dict[str, Any]) -> dict[str, Any]:
    """Parse `key=value` strings against `defaults` (unknown keys -> `Yt8mError` listing the known ones)."""
    overrides: dict[str, Any] = {}
    for assignment in assignments or []:
        key, sep, value = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise Yt8mError(f"{assignment!r}: expected key=value")
        if key not in defaults:
            known = ", ".join(sorted(defaults))
            raise Yt8mError(f"{key}: unknown setting; known: {known}")
        overrides[key] = coerce_value(key, value, defaults[key])
    return overrides


def _normalise(value: Any) -> Any:
    """JSON round-trip form of a value (tuples become lists) so saved and given values compare equal."""
    return json.loads(json.dumps(value))


@dataclass
class ModelConfig:
    """A classifier's identity: registered model, hyperparameters, features, classes, training settings."""

    model: str
    hparams: dict[str, Any] = field(default_factory=dict)
    feature_spec: FeatureSpec = field(default_factory=FeatureSpec)
    num_classes: int = NUM_CLASSES
    video_level: bool = False
    training: TrainingSettings = field(default_factory=TrainingSettings)
    segments: str | None = None  # None (videos), "segment" or "context" (SEGMENT_MODES)
    # The feature networks' weights the training records were made with (their `yt8m_weights`
    # field, e.g. "random"); None for records without it, such as the YT8M data itself.
    feature_weights: str | None = None
    kind: str = KIND_TRAINED  # what the bundle holds (saved only when not a plain trained model)

    @classmethod
    def create(
        cls,
        model: str,
        *,
        feature_spec: FeatureSpec | None = None,
        num_classes: int = NUM_CLASSES,
        overrides: dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
    ) -> "ModelConfig":
        """Resolve a registered model's defaults, split off training keys, apply overrides.

        `overrides` may name model hyperparameters or training settings (as `--set` does);
        `training` holds settings given by dedicated options (e.g. `--batch-size`), which win.
        """
        model = canonical_name(model)
        if num_classes < 1:
            raise Yt8mError(f"num_classes must be >= 1, got {num_classes}")
        defaults = dict(model_defaults(model))
        settings = asdict(TrainingSettings())
        settings.update(PUBLISHED_TRAINING.get(model, {}))
        hparams = {}
        for key, value in defaults.items():
            if key in TRAINING_KEYS:
                settings[key] = value
            else:
                hparams[key] = value
        for key, value in (overrides or {}).items():
            if key in TRAINING_KEYS:
                settings[key] = value
            elif key in hparams:
                hparams[key] = value
            else:
                raise Yt8mError(f"{key}: not a setting of {model}")
        for key, value in (training or {}).items():
            if key not in TRAINING_KEYS:
                raise Yt8mError(f"unknown training setting {key!r}")
            if value is not None:
                settings[key] = value
        config = cls(
            model=model,
            hparams=_normalise(hparams),
            feature_spec=feature_spec or FeatureSpec(),
            num_classes=int(num_classes),
            video_level=bool(is_video_level(model)),
            training=TrainingSettings(**settings),
        )
        config.training.validate(config.num_classes)
        return config

    @staticmethod
    def settable_defaults(model: str) -> dict[str, Any]:
        """Every key `--set` accepts for `model` with its default (model hparams + training settings)."""
        model = canonical_name(model)
        merged = asdict(TrainingSettings())
        merged.update(PUBLISHED_TRAINING.get(model, {}))
        merged.update(model_defaults(model))
        return merged

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CONFIG_FORMAT,
            "yt8m_version": package_version(),
            "model": self.model,
            "video_level": self.video_level,
            "num_classes": self.num_classes,
            "feature_spec": self.feature_spec.to_dict(),
            "hparams": _normalise(self.hparams),
            "training": asdict(self.training),
            **({"segments": self.segments} if self.segments else {}),
            **({"feature_weights": self.feature_weights} if self.feature_weights else {}),
            **({"kind": self.kind} if self.kind != KIND_TRAINED else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = CONFIG_FILENAME) -> "ModelConfig":
        """The config `to_dict` wrote. A config saved before a setting of `LEGACY_TRAINING` existed
        gets the value it was trained with (global clipping, raw video-level inputs), so that an
        old train dir resumes, evaluates and exports as it was trained."""
        try:
            known = TRAINING_KEYS
            training = {k: v for k, v in dict(data.get("training", {})).items() if k in known}
            training = {**LEGACY_TRAINING, **training}
            return cls(
                model=str(data["model"]),
                hparams=dict(data.get("hparams", {})),
                feature_spec=FeatureSpec.from_dict(data["feature_spec"]),
                num_classes=int(data["num_classes"]),
                video_level=bool(data.get("video_level", False)),
                training=TrainingSettings(**training),
                segments=data.get("segments") or None,
                feature_weights=data.get("feature_weights") or None,
                kind=str(data.get("kind") or KIND_TRAINED),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise Yt8mError(f"{source}: not a yt8m model config ({type(error).__name__}: {error})") from None

    def with_training(self, **changes: Any) -> "ModelConfig":
        """A copy with some training settings changed (they never change the architecture)."""
        return replace(self, training=replace(self.training, **changes))

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `config.json` into `directory` (atomically)."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        return write_text(Path(directory) / CONFIG_FILENAME, text)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ModelConfig":
        """Read `config.json` from a train dir (or from the file itself)."""
        path = Path(directory)
        if path.is_dir() or not path.name.endswith(".json"):
            path = path / CONFIG_FILENAME
        if not path.exists():
            raise Yt8mError(f"{path}: no such file (is this a yt8m train dir?)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise Yt8mError(f"{path}: unreadable model config ({error})") from None
        if not isinstance(data, dict):
            raise Yt8mError(f"{path}: not a yt8m model config")
        return cls.from_dict(data, source=str(path))

    def architecture_differences(self, other: "ModelConfig") -> list[str]:
        """What would make `other`'s weights incompatible with this config (model, hparams, features, classes)."""
        differences = []
        if self.model != other.model:
            differences.append(f"model {self.model} vs {other.model}")
        if self.num_classes != other.num_classes:
            differences.append(f"num_classes {self.num_classes} vs {other.num_classes}")
        if self.feature_spec.to_dict() != other.feature_spec.to_dict():
            differences.append(
                f"features {','.join(self.feature_spec.names)}:{','.join(map(str, self.feature_spec.sizes))} vs "
                f"{','.join(other.feature_spec.names)}:{','.join(map(str, other.feature_spec.sizes))}"
            )
        if self.segments != other.segments:
            differences.append(f"segments {self.segments} vs {other.segments}")
        if self.model == other.model:
            for key in sorted(set(self.hparams) | set(other.hparams)):
                mine, theirs = _normalise(self.hparams.get(key)), _normalise(other.hparams.get(key))
                if mine != theirs:
                    differences.append(f"{key} {mine} vs {theirs}")
        return differences


def load_label_weights(path: str | os.PathLike) -> list[float]:
    """Per-class loss weights from a `.npy` file or a text file of numbers (one per class, in class order)."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False).astype(np.float64).ravel()
        else:
            text = path.read_text(encoding="utf-8").replace(",", " ")
            values = np.asarray([float(token) for token in text.split()], dtype=np.float64)
    except FileNotFoundError:
        raise Yt8mError(f"{path}: no such file") from None
    except (OSError, ValueError) as error:
        raise Yt8mError(f"{path}: not a list of label weights ({error})") from None
    if values.size == 0:
        raise Yt8mError(f"{path}: has no label weights")
    return [float(v) for v in values]
