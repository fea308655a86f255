"""The model bundle: the one owner of a trained classifier on disk.

A bundle is a directory (the train dir) holding
- `config.json`: the `ModelConfig` (registered model, every hyperparameter, `FeatureSpec`, classes,
  training settings, input kind, the weights the training records were made with, bundle kind),
- `ckpt-STEP.*`: checkpoints (`tf.train.Checkpoint` of the model, the optimizer, the EMA shadow
  weights when kept, the epoch count and the position in the current epoch),
- `label_map.txt` when the model has a label space of its own (else YT8M's vocabulary applies),
- `logs/` (TensorBoard) and, when asked for, `export/` (a SavedModel).

Training fills a bundle; evaluation, prediction, export, `classify` and the segment task open one
with the `use` they need (`USE_VIDEOS` or `USE_SEGMENTS`), and opening refuses misuse with one
`Yt8mError` whoever calls it: a model trained on segments with video context scores segments only.

Kinds: today every bundle is `trained` (float weights in checkpoints). Quantized and merged
bundles (the compact-models work) register a loader for their kind with `register_kind`; every
loader returns the same `LoadedModel` (a Keras-callable `model`, its config, step and checkpoint),
so eval, predict, export and classify take them unchanged.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yt8m._tf import import_tensorflow_quietly
from yt8m.classifier.config import CONFIG_FILENAME, KIND_TRAINED, ModelConfig
from yt8m.classifier.models import build_model as build_registered_model
from yt8m.classifier.segments import wrap_segment_model
from yt8m.core import NUM_CLASSES, Yt8mError
from yt8m.data.files import remove_path
from yt8m.data.vocabulary import (
    LABEL_MAP_FILENAME,
    load_vocabulary,
    read_label_map,
    try_load_vocabulary,
    write_label_map,
)

CHECKPOINT_PREFIX = "ckpt"
CHECKPOINT_FILE = "checkpoint"  # tf.train.CheckpointManager's index of the checkpoints
LOG_DIR = "logs"
EXPORT_DIR = "export"
EMA_WARMUP = (1.0, 10.0)  # TF1 ExponentialMovingAverage(num_updates): decay <= (1 + n) / (10 + n)
_CHECKPOINT_RE = re.compile(rf"{CHECKPOINT_PREFIX}-(\d+)$")

# What a model takes (from `ModelConfig.segments`).
INPUT_VIDEO = "video"  # whole videos (frame- or video-level features)
INPUT_SEGMENT = "segment"  # 5-frame segments (scores whole videos too: the same network)
INPUT_SEGMENT_CONTEXT = "segment-with-context"  # a segment followed by its whole video
_INPUT_KINDS = {None: INPUT_VIDEO, "segment": INPUT_SEGMENT, "context": INPUT_SEGMENT_CONTEXT}
# What a caller wants to score with it.
USE_VIDEOS = "videos"  # evaluate, predict, export, load_predictor, classify
USE_SEGMENTS = "segments"  # the segment task (evaluate / predict with segment_labels)
USES = (USE_VIDEOS, USE_SEGMENTS)
CONTEXT_MODEL_REFUSAL = (
    "{path}: this model was trained on segments with video context; it only scores segments "
    "of segment-rated records (`segment_labels=True`), not whole videos"
)


# ----------------------------------------------------------------------------- loaded models and EMA


@dataclass
class LoadedModel:
    """A bundle's model with its weights restored: call it as `model((frames, num_frames))`."""

    model: Any  # a Keras model (or any callable with the same signature and `trainable_variables`)
    config: ModelConfig
    step: int
    checkpoint: str | None

    def scores(self, frames: np.ndarray, num_frames: np.ndarray) -> np.ndarray:
        """Scores float32 [N, num_classes] for model inputs (see `readers.features_to_model_inputs`)."""
        return np.asarray(self.model((frames, num_frames), training=False), dtype=np.float32)


def weight_average(variables, decay: float):
    """A `tf.Module` keeping the exponential moving average of `variables` (create it in the strategy's scope).

    `update` follows TF1's `ExponentialMovingAverage(num_updates)`: the decay is capped by
    (1 + n) / (10 + n) while few updates were made.
    """
    tf = import_tensorflow_quietly()

    class WeightAverage(tf.Module):
        """Shadow copies of the trainable weights, updated as an exponential moving average."""

        def __init__(self) -> None:
            super().__init__(name="ema")
            self.decay = float(decay)
            aggregation = tf.VariableAggregation.ONLY_FIRST_REPLICA
            self.shadows = [
                tf.Variable(tf.convert_to_tensor(v), trainable=False, aggregation=aggregation, name=f"ema_{i}")
                for i, v in enumerate(variables)
            ]
            self.num_updates = tf.Variable(0, dtype=tf.int64, trainable=False, aggregation=aggregation, name="ema_updates")

        def update(self, variables) -> None:
            count = tf.cast(self.num_updates.assign_add(1), tf.float32)
            decay = tf.minimum(self.decay, (EMA_WARMUP[0] + count) / (EMA_WARMUP[1] + count))
            for shadow, variable in zip(self.shadows, variables):
                shadow.assign_sub((1.0 - decay) * (shadow - tf.cast(tf.convert_to_tensor(variable), shadow.dtype)))

        def reset(self, variables) -> None:
            for shadow, variable in zip(self.shadows, variables):
                shadow.assign(tf.convert_to_tensor(variable))

        def copy_to(self, variables) -> None:
            for shadow, variable in zip(self.shadows, variables):
                variable.assign(shadow)

    return WeightAverage()


def has_ema(checkpoint: str) -> bool:
    """Whether a checkpoint holds EMA shadow weights."""
    tf = import_tensorflow_quietly()
    return any(name.startswith("ema/") for name, _ in tf.train.list_variables(checkpoint))


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_step(checkpoint: str) -> int:
    """The global step a `ckpt-STEP` checkpoint was saved at."""
    match = _CHECKPOINT_RE.search(str(checkpoint))
    return int(match.group(1)) if match else 0


def latest_checkpoint(train_dir: str | Path) -> str | None:
    """Path prefix of the newest checkpoint in `train_dir`, or None."""
    directory = Path(train_dir)
    if not directory.is_dir():
        return None
    return import_tensorflow_quietly().train.latest_checkpoint(str(directory))


def build_model(config: ModelConfig):
    """The Keras model `config` describes, weights created and untrained (segment wrapper included)."""
    model = build_registered_model(
        config.model,
        num_classes=config.num_classes,
        feature_sizes=tuple(config.feature_spec.sizes),
        max_frames=config.feature_spec.max_frames,
        **config.hparams,
    )
    return wrap_segment_model(model, config)


try:  # Keras 3's TensorFlow variable class: the only hook for zero-filled weights (no public switch)
    from keras.src.backend.tensorflow.core import Variable as _KerasVariable
except ImportError:  # pragma: no cover - another Keras layout: models build with their initialisers
    _KerasVariable = None

_restoring = threading.local()  # this thread builds a model that a checkpoint fills: no random draws
_patch_lock = threading.Lock()


def _install_zero_fill() -> bool:
    """Make Keras variables created while `_restoring.active` start as zeros (float ones only).

    Keras 3 has no public switch for this; the hook is its TensorFlow variable's initialisation
    method. Without it (another Keras version), models are built as usual, only slower.
    """
    tf = import_tensorflow_quietly()
    if _KerasVariable is None:  # pragma: no cover - another Keras layout
        return False
    with _patch_lock:
        original = getattr(_KerasVariable, "_initialize_with_initializer", None)
        if original is None:  # pragma: no cover - another Keras version
            return False
        if getattr(original, "yt8m_zero_fill", False):
            return True

        def initialize(self, initializer) -> None:
            dtype = tf.as_dtype(self._dtype)
            if getattr(_restoring, "active", False) and dtype.is_floating:
                shape = self._shape
                self._initialize(lambda: tf.zeros(shape, dtype))
            else:
                original(self, initializer)

        initialize.yt8m_zero_fill = True  # type: ignore[attr-defined]
        _KerasVariable._initialize_with_initializer = initialize
    return True


@contextlib.contextmanager
def weights_filled_by_a_checkpoint() -> Iterator[None]:
    """Build models in this block with zero-filled float weights, for a checkpoint to overwrite.

    Drawing a large model's random initial weights costs more than reading its checkpoint
    (NeXtVLAD, 89M weights: ~1.3 s against ~0.3 s on 2 cores), and `classify` pays it in every
    process. Only the calling thread is affected (another may be building a random network at
    the same time), and the restore must then match every variable: one left unfilled would
    keep its zeros, so `_restore_trained` asserts that every existing object was matched.
    """
    _install_zero_fill()
    previous = getattr(_restoring, "active", False)
    _restoring.active = True
    try:
        yield
    finally:
        _restoring.active = previous


def head_variables(model) -> list:
    """The model's classifier head (the weights that depend on the label space), by its own contract."""
    method = getattr(model, "head_variables", None)
    if method is None:
        raise Yt8mError(f"{type(model).__name__} does not say which weights are its head (no head_variables())")
    return list(method())


def body_variables(model) -> list:
    """Every weight of the model outside its head (pooling, hidden layers, gates)."""
    method = getattr(model, "body_variables", None)
    if method is not None:
        return list(method())
    head = {id(v) for v in head_variables(model)}
    return [v for v in model.variables if id(v) not in head]


def _restore_trained(bundle: "ModelBundle", checkpoint: str | None, use_ema: bool) -> LoadedModel:
    """The loader of `trained` bundles: rebuild from config.json, restore a checkpoint (EMA weights when kept)."""
    tf = import_tensorflow_quietly()
    checkpoint = checkpoint or bundle.latest_checkpoint()
    if checkpoint is None:
        raise Yt8mError(f"{bundle.path}: no checkpoint to load (train a model there first)")
    with weights_filled_by_a_checkpoint():
        model = build_model(bundle.config)
    objects: dict[str, Any] = {"model": model}
    ema = None
    if use_ema and bundle.config.training.ema_decay and has_ema(checkpoint):
        ema = weight_average(model.trainable_variables, bundle.config.training.ema_decay)
        objects["ema"] = ema
    try:
        status = tf.train.Checkpoint(**objects).restore(checkpoint)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Yt8mError(f"{checkpoint}: does not match {bundle.config_path} ({reason})") from None
    if ema is not None:
        ema.copy_to(model.trainable_variables)
    return LoadedModel(model=model, config=bundle.config, step=checkpoint_step(checkpoint), checkpoint=checkpoint)


Loader = Callable[["ModelBundle", "str | None", bool], LoadedModel]
_LOADERS: dict[str, Loader] = {KIND_TRAINED: _restore_trained}


def register_kind(kind: str, loader: Loader) -> None:
    """Teach bundles a new kind (e.g. quantized, merged): `loader(bundle, checkpoint, use_ema)`."""
    _LOADERS[kind] = loader


# ----------------------------------------------------------------------------- the bundle


@dataclass
class ModelBundle:
    """A classifier on disk: its directory and config; everything else is read on demand."""

    path: Path
    config: ModelConfig

    @classmethod
    def open(cls, path: str | Path, use: str | None = None) -> "ModelBundle":
        """Read the bundle at `path` (Yt8mError if it is none); with `use`, refuse a model that cannot serve it."""
        path = Path(path)
        bundle = cls(path, ModelConfig.load(path / CONFIG_FILENAME))
        if bundle.kind not in _LOADERS:
            raise Yt8mError(
                f"{bundle.config_path}: a {bundle.kind!r} bundle, which this yt8m cannot load "
                f"(it loads {', '.join(sorted(_LOADERS))})"
            )
        if use is not None:
            bundle.require(use)
        return bundle

    @staticmethod
    def is_bundle(path: str | Path) -> bool:
        """Whether `path` looks like a bundle (a directory with config.json)."""
        return (Path(path) / CONFIG_FILENAME).is_file()

    # ---- identity

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILENAME

    @property
    def input_kind(self) -> str:
        """INPUT_VIDEO, INPUT_SEGMENT or INPUT_SEGMENT_CONTEXT."""
        return _INPUT_KINDS.get(self.config.segments, INPUT_VIDEO)

    @property
    def feature_weights(self) -> str | None:
        """The weights the training records' features were made with (None: unmarked, like YT8M's)."""
        return self.config.feature_weights

    def require(self, use: str) -> None:
        """Refuse to serve `use` with a model that cannot (one line naming the bundle)."""
        if use not in USES:
            raise Yt8mError(f"unknown use {use!r}; choose {' or '.join(USES)}")
        if use == USE_VIDEOS and self.input_kind == INPUT_SEGMENT_CONTEXT:
            raise Yt8mError(CONTEXT_MODEL_REFUSAL.format(path=self.path))

    def save_config(self) -> Path:
        return self.config.save(self.path)

    # ---- checkpoints and weights

    def latest_checkpoint(self) -> str | None:
        return latest_checkpoint(self.path)

    def build_model(self):
        """The untrained Keras model of this bundle's config."""
        return build_model(self.config)

    def load(self, checkpoint: str | None = None, use_ema: bool = True) -> LoadedModel:
        """The model with its trained weights (latest checkpoint, EMA weights when kept unless `use_ema=False`)."""
        return _LOADERS[self.kind](self, checkpoint, use_ema)

    def clear(self) -> None:
        """Remove what training put here (config, checkpoints, logs, export), nothing else.

        The label map stays: a new model on the same records keeps its class names.
        """
        if not self.path.is_dir():
            return
        for path in self.path.iterdir():
            name = path.name
            ours = name in (CONFIG_FILENAME, CHECKPOINT_FILE, LOG_DIR, EXPORT_DIR)
            if ours or name.startswith(f"{CHECKPOINT_PREFIX}-"):
                remove_path(path)

    # ---- class names

    @property
    def label_map_path(self) -> Path | None:
        """The model's own label map (label_map.txt), or None (then YT8M's vocabulary applies)."""
        path = self.path / LABEL_MAP_FILENAME
        return path if path.is_file() else None

    def label_names(self) -> list[str] | None:
        """The model's own class names, checked against its class count; None without a label map."""
        path = self.label_map_path
        if path is None:
            return None
        names = read_label_map(path)
        if len(names) != self.config.num_classes:
            raise Yt8mError(f"{path}: has {len(names)} class names, but the model has {self.config.num_classes} classes")
        return names

    def write_label_names(self, names: list[str]) -> Path:
        return write_label_map(self.path / LABEL_MAP_FILENAME, names)

    def class_names(self, vocabulary: str | Path | None = None) -> list[str] | None:
        """Names to show or ship: `vocabulary` (checked), else the model's own, else the cached YT8M one."""
        if vocabulary is not None:
            names = list(load_vocabulary(vocabulary).names)
            if len(names) != self.config.num_classes:
                raise Yt8mError(f"{vocabulary}: has {len(names)} classes, the model {self.config.num_classes}")
            return names
        own = self.label_names()
        return own if own is not None else yt8m_class_names(self.config.num_classes)


def yt8m_class_names(num_classes: int) -> list[str] | None:
    """The cached YT8M vocabulary's names for a 3862-class model; None otherwise or when not cached."""
    if num_classes != NUM_CLASSES:
        return None
    vocabulary = try_load_vocabulary()
    return list(vocabulary.names) if vocabulary is not None and len(vocabulary.names) == num_classes else None


def train_dir_label_map(train_dir: str | Path) -> Path | None:
    """The custom label map kept in a train dir, or None (then the YT8M vocabulary applies)."""
    path = Path(train_dir) / LABEL_MAP_FILENAME
    return path if path.is_file() else None


def load_trained_model(
    train_dir: str | Path, checkpoint: str | None = None, use_ema: bool = True, use: str | None = None
):
    """`(model, config, step)` of a bundle (see `ModelBundle.load`); `use` refuses a misuse first."""
    loaded = ModelBundle.open(train_dir, use=use).load(checkpoint, use_ema)
    return loaded.model, loaded.config, loaded.step
