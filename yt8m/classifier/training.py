"""Training YT8M classifiers on TF2: the loop, schedules, checkpoints, EMA, TensorBoard, resume, devices.

A custom loop (rather than `model.fit`) so that the starter code's recipe is followed exactly:
Adam with a staircase exponential learning-rate decay every `learning_rate_decay_examples`
examples, gradients summed over replicas and then each tensor clipped to norm 1.0 on its own
(`clip_gradient_mode="global"`: one global norm instead), the
starter's cross-entropy (epsilon 1e-5, summed over classes, averaged over examples) with optional
per-class label weights, plus the model's own losses (L2 on the MoE, distillation) times
`regularization_penalty`. An optional exponential moving average of the weights (with the TF1
`num_updates` warm-up) is kept in the checkpoint and used by eval, predict and export.

The train dir is a model bundle (`yt8m.classifier.bundle`): `config.json` (the `ModelConfig`),
`ckpt-STEP.*` checkpoints (tf.train.Checkpoint + CheckpointManager, with the epoch count and the
position in the epoch) and TensorBoard logs under `logs/`. Training resumes from the latest
checkpoint unless `start_new_model`, continuing the epoch where it stopped; a train dir made for
another model is refused with an error naming its config.json. With several GPUs visible (or
`devices` given) training runs under `tf.distribute.MirroredStrategy`, one per device set and
process (`make_strategy`); `batch_size` is the global batch. Fine-tuning re-initialises and
trains first the model's head (`head_variables()`), keeping its body.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from yt8m._tf import import_tensorflow_quietly
from yt8m.classifier.bundle import (  # noqa: F401 - also re-exported: callers have always found them here
    CHECKPOINT_PREFIX,
    EXPORT_DIR,
    LOG_DIR,
    ModelBundle,
    body_variables,
    build_model,
    checkpoint_step,
    head_variables,
    latest_checkpoint,
    load_trained_model,
    train_dir_label_map,
    weight_average,
)
from yt8m.classifier.compact.distill import TEACHER, Distillation, distillation_loss
from yt8m.classifier.compact.ema import DEFAULT_EMA_HALFLIFE, check_ema_source, ema_stage_config, training_average
from yt8m.classifier.config import (
    CLIP_GLOBAL,
    CLIP_PER_TENSOR,
    CONFIG_FILENAME,
    SEGMENT_ALL_CLASSES,
    SEGMENT_RATED_PAIRS,
    TRAINING_KEYS,
    ModelConfig,
    parse_overrides,
)
from yt8m.classifier.metrics import gap, hit_at_one
from yt8m.classifier.models import canonical_name
from yt8m.classifier.models.layers import CROSS_ENTROPY_EPSILON, cross_entropy  # noqa: F401 - re-exported
from yt8m.classifier.readers import RecordSource
from yt8m.classifier.segments import check_segment_labels, segment_source
from yt8m.core import NUM_CLASSES, FeatureSpec, Yt8mError
from yt8m.data.records import iterate_raw_records, list_record_files, record_extras
from yt8m.data.vocabulary import LABEL_MAP_FILENAME, read_label_map  # noqa: F401 - LABEL_MAP_FILENAME re-exported
from yt8m.data.vocabulary import find_label_map as vocabulary_find_label_map

TRAIN_LOG = "train"
EVAL_LOG = "eval"
RESUME_HINT = "run the same training again (same `train_dir`) to continue from it"
CHECKPOINT_EVERY_SECONDS = 600.0  # also save at least this often (the starter saved every 10 minutes)
_SUMMARY_DATA_CLASS_SCALAR = 1  # summary_pb2.DATA_CLASS_SCALAR
# Checkpoint entries that older checkpoints may lack (restored when present).
_OPTIONAL_STATE = ("ema", "position")

# ----------------------------------------------------------------------------- results


@dataclass
class TrainProgress:
    """One progress report: metrics of the latest batch and the throughput since the previous report."""

    step: int
    epoch: int
    examples: int  # examples trained on in this run
    examples_per_second: float
    loss: float
    hit_at_one: float
    gap: float
    learning_rate: float


@dataclass
class TrainResult:
    """What a training run did."""

    config: ModelConfig
    train_dir: Path
    start_step: int
    step: int
    epochs_completed: int
    checkpoint: str | None
    last: TrainProgress | None = None
    export_dir: Path | None = None
    history: list[TrainProgress] = field(default_factory=list)
    init: "InitReport | None" = None  # set when the weights were initialised from another train dir
    resume_note: str | None = None  # how a resumed run continued its input (or that it restarted the epoch)


@dataclass
class InitReport:
    """What `--init-from` copied: the source, its step, how many weights were kept or re-initialised."""

    source: Path
    source_step: int
    copied: int
    reinitialised: list[str]
    head_reset: bool


# ----------------------------------------------------------------------------- schedule


def learning_rate_schedule(settings):
    """Staircase exponential decay: base * decay ** floor(step * batch_size / decay_examples)."""
    keras = import_tensorflow_quietly().keras
    return keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=settings.base_learning_rate,
        decay_steps=settings.learning_rate_decay_examples / settings.batch_size,
        decay_rate=settings.learning_rate_decay,
        staircase=True,
    )


# ----------------------------------------------------------------------------- TensorBoard


class ScalarLog:
    """TensorBoard scalar summaries, written with `tf.summary.write` so the tensorboard package is optional."""

    def __init__(self, logdir: str | os.PathLike) -> None:
        tf = import_tensorflow_quietly()
        metadata = tf.compat.v1.SummaryMetadata(
            plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars"),
            data_class=_SUMMARY_DATA_CLASS_SCALAR,
        )
        self._metadata = metadata.SerializeToString()
        self._writer = tf.summary.create_file_writer(str(logdir))

    def write(self, step: int, values: dict[str, float | None]) -> None:
        tf = import_tensorflow_quietly()
        with self._writer.as_default():
            for tag, value in values.items():
                if value is not None and math.isfinite(float(value)):
                    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=int(step), metadata=self._metadata)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


# ----------------------------------------------------------------------------- train dir


def config_path(train_dir: str | os.PathLike) -> Path:
    return Path(train_dir) / CONFIG_FILENAME


def clear_train_dir(train_dir: str | os.PathLike) -> None:
    """Remove what training put in a train dir (config, checkpoints, logs, export), nothing else."""
    ModelBundle(Path(train_dir), ModelConfig(model="")).clear()


REPLACE_HINT = "pass `start_new_model=True` to replace it, or use another `train_dir`"
SEGMENT_INPUTS = {(False, False): None, (True, False): "segment", (True, True): "context"}
INPUT_SETTING = "l2_normalize_video_inputs"  # fixed for a train dir and kept by `init_from`
FINE_TUNE_SEGMENTS = "segment"  # the segment mode a video train dir may continue in


def resolve_train_config(
    train_dir: str | os.PathLike,
    model: str | None,
    *,
    set_values: Sequence[str] = (),
    training: dict[str, Any] | None = None,
    feature_spec: FeatureSpec | None = None,
    num_classes: int | None = None,
    start_new_model: bool = False,
    init_from: str | os.PathLike | None = None,
    segment_labels: bool = False,
    segment_context: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> ModelConfig:
    """The config a training run uses: a new one, or the train dir's own with training changes.

    With `init_from` (another train dir) a new config takes that model's architecture and
    features; `num_classes` may differ (a new label space for fine-tuning).

    Resuming keeps the saved architecture; asking for another model, other hyperparameters,
    features or class count is refused with an error naming config.json. Training settings
    (`training`, and training keys among `set_values` / `overrides`) may change between runs.
    `set_values` are `key=value` strings, `overrides` the same as Python values.
    `segment_labels` trains on the 2019 segment labels, `segment_context` (with it) lets the
    model see the whole video too; a resumed train dir keeps its own mode.
    """
    if segment_context and not segment_labels:
        raise Yt8mError("`segment_context` needs `segment_labels`")
    path = config_path(train_dir)
    training = {k: v for k, v in (training or {}).items() if v is not None}
    resuming = path.exists() and not start_new_model
    given = (set_values, dict(overrides or {}))
    if resuming:
        config = _resumed_config(path, model, given, training, feature_spec, num_classes)
    elif init_from is not None:
        config = _config_from_source(init_from, model, given, training, feature_spec, num_classes)
    elif model is None:
        raise Yt8mError(f"{Path(train_dir)}: no {CONFIG_FILENAME} here; `model` is required for a new model")
    else:
        config = ModelConfig.create(
            model,
            feature_spec=feature_spec,
            num_classes=num_classes if num_classes is not None else NUM_CLASSES,
            overrides=_settings(given, model),
            training=training,
        )
    wanted = SEGMENT_INPUTS[(bool(segment_labels), bool(segment_context))]
    if resuming and (config.segments == wanted or (config.segments is not None and wanted is None)):
        return config  # a segment train dir resumes in its own mode without repeating it
    if resuming and config.segments is None and wanted == FINE_TUNE_SEGMENTS:
        # The 2019 9th place's fine-tuning: the video model's train dir continues on segment labels
        # (the same network; weights, optimizer state and learning-rate schedule carry on).
        return _segment_weighting(replace(config, segments=wanted), SEGMENT_ALL_CLASSES)
    if resuming:
        have = f"segment labels ({config.segments})" if config.segments else "video labels"
        raise Yt8mError(f"{path}: this train dir was trained on {have}; {REPLACE_HINT}")
    config = replace(config, segments=wanted)
    return _segment_weighting(config, SEGMENT_RATED_PAIRS) if wanted else config


def _segment_weighting(config: ModelConfig, default: str) -> ModelConfig:
    """`config` with `segment_label_weighting` set to `default` unless the user chose one."""
    if config.training.segment_label_weighting is not None:
        return config
    return config.with_training(segment_label_weighting=default)


def _settings(given: tuple[Sequence[str], dict[str, Any]], model: str) -> dict[str, Any]:
    """`key=value` strings (coerced to the defaults' types) and Python values, checked against `model`'s keys."""
    set_values, values = given
    defaults = ModelConfig.settable_defaults(model)
    settings = parse_overrides(list(set_values), defaults)
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise Yt8mError(f"{', '.join(unknown)}: not a setting of {canonical_name(model)}; known: {', '.join(sorted(defaults))}")
    settings.update(values)
    return settings


def _resumed_config(path: Path, model, given, training, feature_spec, num_classes) -> ModelConfig:
    """The train dir's own config with the training changes asked for; architecture changes are refused."""
    saved = ModelConfig.load(path)
    model = canonical_name(model) if model is not None else None
    if model is not None and model != saved.model:
        raise Yt8mError(f"{path}: this train dir was made for model {saved.model}, not {model}; {REPLACE_HINT}")
    for key, value in _settings(given, saved.model).items():
        if key in TRAINING_KEYS:
            training[key] = value
        elif value != saved.hparams.get(key):
            raise Yt8mError(f"{path}: {key}={saved.hparams.get(key)!r} in this train dir, not {value!r}; {REPLACE_HINT}")
    if feature_spec is not None and feature_spec.to_dict() != saved.feature_spec.to_dict():
        raise Yt8mError(
            f"{path}: this train dir uses features {','.join(saved.feature_spec.names)} "
            f"({','.join(map(str, saved.feature_spec.sizes))}); {REPLACE_HINT}"
        )
    if num_classes is not None and num_classes != saved.num_classes:
        raise Yt8mError(f"{path}: this train dir has {saved.num_classes} classes, not {num_classes}; {REPLACE_HINT}")
    wanted = training.get(INPUT_SETTING, saved.training.l2_normalize_video_inputs)
    if saved.video_level and bool(wanted) != saved.training.l2_normalize_video_inputs:
        raise Yt8mError(
            f"{path}: {INPUT_SETTING}={saved.training.l2_normalize_video_inputs} in this train dir (its weights "
            f"expect those inputs), not {wanted}; {REPLACE_HINT}"
        )
    config = saved.with_training(**training)
    config.training.validate(config.num_classes)
    return config


def _config_from_source(
    source_dir: str | os.PathLike,
    model: str | None,
    given: tuple[Sequence[str], dict[str, Any]],
    training: dict[str, Any],
    feature_spec: FeatureSpec | None,
    num_classes: int | None,
) -> ModelConfig:
    """A new config with `source_dir`'s model, hyperparameters and features (and maybe other classes)."""
    source = ModelConfig.load(config_path(source_dir))
    where = config_path(source_dir)
    if model is not None and canonical_name(model) != source.model:
        raise Yt8mError(f"{where}: `init_from` holds a {source.model} model, not {canonical_name(model)}")
    if feature_spec is not None and feature_spec.to_dict() != source.feature_spec.to_dict():
        raise Yt8mError(
            f"{where}: `init_from` was trained on features {','.join(source.feature_spec.names)} "
            f"({','.join(map(str, source.feature_spec.sizes))}); its weights cannot take other features"
        )
    overrides = dict(source.hparams)
    overrides[INPUT_SETTING] = source.training.l2_normalize_video_inputs  # the inputs its weights learned from
    overrides.update(_settings(given, source.model))
    return ModelConfig.create(
        source.model,
        feature_spec=source.feature_spec,
        num_classes=num_classes if num_classes is not None else source.num_classes,
        overrides=overrides,
        training=training,
    )


# ----------------------------------------------------------------------------- fine-tuning


def _variable_key(variable) -> str:
    """A variable's path without the model's own name, so two builds of one architecture match."""
    path = getattr(variable, "path", None) or variable.name
    return path.split("/", 1)[1] if "/" in path else path


def _is_float(variable) -> bool:
    return np.issubdtype(np.dtype(getattr(variable.dtype, "as_numpy_dtype", variable.dtype)), np.floating)


def initialise_from(model, config: ModelConfig, source_dir: str | os.PathLike, *, reset_head: bool) -> InitReport:
    """Copy a trained model's weights (EMA ones when kept) from `source_dir` into `model`.

    Weights are matched by their path in the model and their shape. With `reset_head` the
    classifier head (the model's `head_variables()`) keeps its fresh initialisation (a new label
    space); weights whose shape differs (e.g. the head of another class count) are re-initialised too.
    """
    source_model, source_config, source_step = load_trained_model(source_dir)
    if source_config.model != config.model or source_config.feature_spec.to_dict() != config.feature_spec.to_dict():
        raise Yt8mError(
            f"{config_path(source_dir)}: a {source_config.model} model on other features cannot initialise {config.model}"
        )
    source = {_variable_key(v): v for v in source_model.variables}
    head = {id(v) for v in head_variables(model)} if reset_head else set()
    copied, reinitialised = 0, []
    for variable in model.variables:
        if not _is_float(variable):  # random-number generator states are not weights
            continue
        key = _variable_key(variable)
        match = source.get(key)
        if id(variable) in head or match is None or tuple(match.shape) != tuple(variable.shape):
            reinitialised.append(key)
            continue
        variable.assign(np.asarray(match.numpy()))
        copied += 1
    if copied == 0 and any(_is_float(v) for v in body_variables(model)):
        # A model without a body (LogisticModel, MoeModel, ...) is all head: nothing to keep is fine.
        raise Yt8mError(f"{config_path(source_dir)}: none of its weights fit this model")
    return InitReport(
        source=Path(source_dir), source_step=source_step, copied=copied, reinitialised=reinitialised, head_reset=reset_head
    )


def frozen_flags(model, freeze_steps: int) -> list[bool] | None:
    """Per trainable variable: frozen during the first `freeze_steps` steps (everything outside the head)."""
    if freeze_steps <= 0:
        return None
    head = {id(v) for v in head_variables(model)}
    if not head & {id(v) for v in model.trainable_variables}:
        raise Yt8mError(f"{type(model).__name__}: its head has no trainable weights; `freeze_pooling_steps` would freeze it all")
    return [id(v) not in head for v in model.trainable_variables]


def _check_init_source(init_from: str | os.PathLike, train_dir: Path) -> None:
    """A missing, broken or identical `init_from` fails before anything is written or deleted."""
    if Path(init_from).resolve() == train_dir.resolve():
        raise Yt8mError(f"{init_from}: `init_from` must be another train dir than `train_dir`")
    bundle = ModelBundle.open(init_from)
    if bundle.latest_checkpoint() is None:
        raise Yt8mError(f"{init_from}: no checkpoint to initialise from (train a model there first)")


def _check_train_dir(train_dir: Path, config: ModelConfig, start_new_model: bool) -> None:
    """Refuse a train dir holding another model (unless it is to be replaced)."""
    if start_new_model:
        return
    path = config_path(train_dir)
    if path.exists():
        saved = ModelConfig.load(path)
        if saved.segments is None and config.segments == FINE_TUNE_SEGMENTS:
            saved = replace(saved, segments=config.segments)  # fine-tuning on segments: the same network
        differences = saved.architecture_differences(config)
        if differences:
            raise Yt8mError(f"{path}: this train dir holds another model ({'; '.join(differences)}); {REPLACE_HINT}")
    elif latest_checkpoint(train_dir) is not None:
        raise Yt8mError(f"{train_dir}: has checkpoints but no {CONFIG_FILENAME}; use another `train_dir`")


def find_label_map(train_data: str | Sequence[str]) -> Path | None:
    """The label map `yt8m extract --labels-from-folders` saved next to the records, if exactly one."""
    return vocabulary_find_label_map(train_data)


def _resolve_label_names(
    train_data, train_dir: Path, config: ModelConfig, init_from, label_map
) -> tuple[list[str] | None, str | None]:
    """The class names to keep in the train dir and where they came from ("given", "records", "train-dir", "init")."""
    names, origin, where = None, None, None
    if label_map is not None:
        names, origin, where = read_label_map(label_map), "given", Path(label_map)
    else:
        found = find_label_map(train_data)
        own = train_dir_label_map(train_dir)
        source = train_dir_label_map(init_from) if init_from is not None else None
        if found is not None:
            names, origin, where = read_label_map(found), "records", found
        elif own is not None:
            names, origin, where = read_label_map(own), "train-dir", own
        elif source is not None and ModelConfig.load(config_path(init_from)).num_classes == config.num_classes:
            names, origin, where = read_label_map(source), "init", source
    if names is not None and len(names) != config.num_classes:
        if origin == "records":  # a stray map next to the records does not block training
            return None, None
        raise Yt8mError(f"{where}: has {len(names)} class names, but the model has {config.num_classes} classes")
    return names, origin


# ----------------------------------------------------------------------------- devices


_STRATEGIES: dict[tuple[str, ...] | None, Any] = {}


def make_strategy(devices: Sequence[str] | None = None):
    """The distribution strategy for `devices` (else every visible GPU when several), made once per process.

    TensorFlow's collective ops are keyed per strategy instance: a second MirroredStrategy over the
    same devices in one process reuses the first one's keys, and a second model then fails with
    mismatched shapes. So one strategy per device set is created and reused by every `train()`.
    """
    tf = import_tensorflow_quietly()
    key = tuple(devices) if devices else None
    if key not in _STRATEGIES:
        if key is not None and len(key) == 1:
            _STRATEGIES[key] = tf.distribute.OneDeviceStrategy(key[0])
        elif key is not None:
            _STRATEGIES[key] = tf.distribute.MirroredStrategy(devices=list(key))
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            _STRATEGIES[key] = tf.distribute.MirroredStrategy()
        else:
            _STRATEGIES[key] = tf.distribute.get_strategy()
    return _STRATEGIES[key]


def clip_gradients(gradients: list, clip_norm: float, mode: str = CLIP_PER_TENSOR) -> list:
    """Clip gradient tensors to `clip_norm` (0: unchanged).

    "per-tensor" clips each tensor to that L2 norm on its own (`tf.clip_by_norm`), as the starter's
    `utils.clip_gradient_norms` and every seed's train.py; "global" scales them all by one factor
    so that their joint norm is at most `clip_norm` (`tf.clip_by_global_norm`).
    """
    tf = import_tensorflow_quietly()
    if clip_norm <= 0:
        return list(gradients)
    if mode == CLIP_GLOBAL:
        return list(tf.clip_by_global_norm(gradients, clip_norm)[0])
    if mode != CLIP_PER_TENSOR:
        raise Yt8mError(f"clip_gradient_mode must be {CLIP_PER_TENSOR} or {CLIP_GLOBAL}, got {mode!r}")
    return [tf.clip_by_norm(g, clip_norm) for g in gradients]


def make_train_step(
    model,
    optimizer,
    strategy,
    settings,
    ema=None,
    frozen: Sequence[bool] | None = None,
    freeze_steps: int = 0,
    distill_lambda: float | None = None,
):
    """The compiled training step: `train_step(batch) -> (loss, predictions, labels)` (per replica).

    Each replica computes the starter's cross-entropy on its share of the global batch (scaled by
    the global batch size) plus `regularization_penalty` x the model's own losses; the gradients
    are summed over replicas, clipped (`clip_gradients`) and applied by Adam; the EMA follows.
    `batch` holds `frames`, `num_frames`, `labels` and optionally `label_weights` [B, C].
    Variables flagged in `frozen` get no updates while the global step is below `freeze_steps`.
    A batch carrying `teacher` probabilities (distillation) is scored with the 2018 first place's
    `distillation_loss` (`distill_lambda` x CE(teacher) + (1 - lambda) x CE(labels)) instead.
    """
    tf = import_tensorflow_quietly()
    replicas = strategy.num_replicas_in_sync
    frozen_flags = list(frozen) if (frozen is not None and freeze_steps > 0) else []
    label_weights = (
        tf.constant(np.asarray(settings.label_weights, dtype=np.float32)) if settings.label_weights else None
    )
    variables = model.trainable_variables
    penalty = float(settings.regularization_penalty)
    clip_norm = float(settings.clip_gradient_norm)
    clip_mode = settings.clip_gradient_mode

    def replica_step(batch):
        context = tf.distribute.get_replica_context()
        local_count = tf.cast(tf.shape(batch["labels"])[0], tf.float32)
        global_count = context.all_reduce(tf.distribute.ReduceOp.SUM, local_count)
        weights = label_weights
        if "label_weights" in batch:  # per-example, per-class weights (segment labels)
            weights = batch["label_weights"] if weights is None else batch["label_weights"] * weights
        with tf.GradientTape() as tape:
            # The labels let models add label losses of their own (MixNeXtVLAD's per-branch CE).
            predictions = model(
                (batch["frames"], batch["num_frames"]), training=True, labels=batch["labels"], label_weights=weights
            )
            if TEACHER in batch:
                per_example = distillation_loss(batch["labels"], predictions, batch[TEACHER], distill_lambda, weights)
            else:
                per_example = cross_entropy(batch["labels"], predictions, weights)
            loss = tf.reduce_sum(per_example) / tf.maximum(global_count, 1.0)
            if model.losses:
                loss = loss + penalty * tf.add_n([tf.cast(l, tf.float32) for l in model.losses]) / replicas
        gradients = tape.gradient(loss, variables)
        gradients = [tf.zeros_like(tf.convert_to_tensor(v)) if g is None else tf.convert_to_tensor(g) for g, v in zip(gradients, variables)]
        gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        if any(frozen_flags):  # zero gradients keep Adam's fresh moments at zero: no update at all
            thawed = tf.cast(optimizer.iterations >= freeze_steps, tf.float32)
            gradients = [g * tf.cast(thawed, g.dtype) if flag else g for g, flag in zip(gradients, frozen_flags)]
        gradients = clip_gradients(gradients, clip_norm, clip_mode)
        # Keras sums the gradients over replicas once more; hand each replica its share.
        optimizer.apply_gradients(zip([g / replicas for g in gradients], variables))
        if ema is not None:
            ema.update(variables)
        total_loss = context.all_reduce(tf.distribute.ReduceOp.SUM, loss)
        return total_loss, predictions, batch["labels"]

    @tf.function
    def train_step(batch):
        return strategy.run(replica_step, args=(batch,))

    return train_step


def make_optimizer(settings):
    """Adam on the staircase-decayed learning rate (clipping is done by the train step)."""
    keras = import_tensorflow_quietly().keras
    return keras.optimizers.Adam(learning_rate=learning_rate_schedule(settings))


# ----------------------------------------------------------------------------- the loop


def record_feature_weights(data: str | Sequence[str]) -> str | None:
    """The `yt8m_weights` field of the first record of `data` (how its features were made), if any."""
    pattern = data if isinstance(data, str) else ",".join(str(part) for part in data)
    for path in list_record_files(pattern):
        for raw in iterate_raw_records(path):
            weights = record_extras(raw).get("weights")
            return str(weights) if weights else None
    return None


def _restore(checkpoint_objects: dict[str, Any], path: str) -> set[str]:
    """Restore a training checkpoint; returns which optional entries (EMA, input position) it held."""
    tf = import_tensorflow_quietly()
    names = [name for name, _ in tf.train.list_variables(path)]
    held = {key for key in _OPTIONAL_STATE if any(name.startswith(f"{key}/") for name in names)}
    required = {k: v for k, v in checkpoint_objects.items() if k not in _OPTIONAL_STATE}
    status = tf.train.Checkpoint(**required).restore(path)
    status.expect_partial()
    status.assert_existing_objects_matched()
    for key in held & set(checkpoint_objects):
        tf.train.Checkpoint(**{key: checkpoint_objects[key]}).restore(path).expect_partial()
    return held


def _first_line(error: BaseException) -> str:
    """The first line of an error's message (TensorFlow's run over many lines)."""
    text = str(getattr(error, "message", None) or error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _next_batch(iterator, source) -> Any:
    """The next input batch, None at the end of the epoch; input errors become a Yt8mError naming the record.

    Only errors raised while reading input are explained this way (a Python re-scan of the record
    files); errors of the training step itself (out of memory, a model bug) are shown as themselves.
    """
    with source.reading():
        return next(iterator, None)


def train(
    train_data: str | Sequence[str],
    train_dir: str | os.PathLike,
    config: ModelConfig,
    *,
    start_new_model: bool = False,
    progress: Callable[[TrainProgress], None] | None = None,
    devices: Sequence[str] | None = None,
    strategy: Any = None,
    init_from: str | os.PathLike | None = None,
    freeze_pooling_steps: int = 0,
    label_map: str | os.PathLike | None = None,
    distill: Distillation | None = None,
    ema_from: str | os.PathLike | None = None,
    ema_halflife: float = DEFAULT_EMA_HALFLIFE,
) -> TrainResult:
    """Train `config`'s model on the records matching `train_data`, checkpointing into `train_dir`.

    Fine-tuning: a new model starts from the weights of `init_from` (another train dir); when its
    label space differs (class count or class names) the classifier head is re-initialised and
    the body kept; for the first `freeze_pooling_steps` steps only the head is trained.
    The class names (`label_map`, else one saved next to the records, else `init_from`'s when
    the classes are the same) are kept in the train dir as label_map.txt.

    Everything is checked (records, `init_from`, the train dir, the label map) before anything
    is written, and `start_new_model` clears the train dir only then. Stops after `max_steps`
    (global step, counting earlier runs) or `num_epochs` (counting earlier runs); with neither it
    runs until interrupted (Ctrl-C saves a checkpoint first). A resumed run continues the epoch
    where the checkpoint left it (the input pipeline is deterministic for a given seed), and says
    so in `resume_note`. `strategy` (else `make_strategy(devices)`) is reused across calls.

    Compact models (the 2018 first place): `distill` trains a student on its labels and a
    teacher's scores (`compact.distill`); `ema_from` runs the seed's EMA stage, a new train dir
    seeded with another one's weights whose moving average of every weight (batch-norm statistics
    included) uses decay 1 - 1/`ema_halflife`, without warm-up (`compact.ema`); `config` must
    describe `ema_from`'s model (resolve it with `init_from=ema_from`).
    """
    tf = import_tensorflow_quietly()
    train_dir = Path(train_dir)
    if ema_from is not None:
        if init_from is not None:
            raise Yt8mError("`ema_from` and `init_from` cannot be combined: the EMA stage starts from `ema_from`'s weights")
        config = ema_stage_config(config, check_ema_source(ema_from, train_dir, start_new_model), ema_halflife)
        init_from = ema_from
    settings = config.training
    settings.validate(config.num_classes)
    if distill is not None:  # batches also carry the teacher's probabilities
        source = distill.source(train_data, config)
    elif config.segments:  # segment labels: one example per rated segment, with label weights
        check_segment_labels(train_data)
        source = segment_source(train_data, config, for_training=True)
    else:
        source = RecordSource.for_model(train_data, config)
    if init_from is not None:
        _check_init_source(init_from, train_dir)
    _check_train_dir(train_dir, config, start_new_model)
    saved_path_config = config_path(train_dir)
    to_segments = (  # a video train dir continuing on segment labels (the 9th place's fine-tuning)
        config.segments is not None
        and not start_new_model
        and saved_path_config.exists()
        and ModelConfig.load(saved_path_config).segments is None
    )
    if config.feature_weights is None:
        config = replace(config, feature_weights=record_feature_weights(train_data))
    label_names, label_source = _resolve_label_names(train_data, train_dir, config, init_from, label_map)
    bundle = ModelBundle(train_dir, config)
    if start_new_model:  # only now, with every input checked
        bundle.clear()
    train_dir.mkdir(parents=True, exist_ok=True)

    strategy = strategy if strategy is not None else make_strategy(devices)
    replicas = strategy.num_replicas_in_sync

    with strategy.scope():
        model = bundle.build_model()  # build_model creates every weight
        optimizer = make_optimizer(settings)
        optimizer.build(model.trainable_variables)
        ema = training_average(model, config)  # the EMA stage's covers every weight, else the trainable ones
        counter = dict(trainable=False, dtype=tf.int64, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        epochs_done = tf.Variable(0, **counter)
        position = tf.Variable(0, **counter)  # batches trained in the current epoch
    objects: dict[str, Any] = {"model": model, "optimizer": optimizer, "epochs": epochs_done, "position": position}
    if ema is not None:
        objects["ema"] = ema
    checkpoint = tf.train.Checkpoint(**objects)
    manager = tf.train.CheckpointManager(
        checkpoint, str(train_dir), max_to_keep=settings.keep_checkpoints, checkpoint_name=CHECKPOINT_PREFIX
    )
    resume_note: str | None = None
    if manager.latest_checkpoint:
        held = _restore(objects, manager.latest_checkpoint)
        if ema is not None and "ema" not in held:
            ema.reset(model.trainable_variables)  # EMA switched on for a model trained without it
        if "position" not in held:
            resume_note = "the checkpoint holds no input position: the current epoch starts over"
        elif int(position.numpy()):
            resume_note = f"continuing epoch {int(epochs_done.numpy()) + 1} after its first {int(position.numpy())} batches"
        if to_segments:  # new data: its first epoch starts at its first batch
            position.assign(0)
            resume_note = (
                f"continuing on segment labels from step {int(optimizer.iterations.numpy())} "
                "(weights, optimizer state and learning-rate schedule kept)"
            )
    init_report: InitReport | None = None
    if init_from is not None and not manager.latest_checkpoint:  # resuming keeps the trained weights
        source_bundle = ModelBundle.open(init_from)
        source_names = source_bundle.label_names() if source_bundle.label_map_path else None
        reset_head = source_bundle.config.num_classes != config.num_classes or (
            label_source != "init" and label_names is not None and label_names != source_names
        )
        init_report = initialise_from(model, config, init_from, reset_head=reset_head)
        if ema is not None:
            ema.reset(model.trainable_variables)
    start_step = int(optimizer.iterations.numpy())
    start_epoch = int(epochs_done.numpy())
    skip = int(position.numpy())

    frozen = frozen_flags(model, freeze_pooling_steps)
    train_step = make_train_step(
        model,
        optimizer,
        strategy,
        settings,
        ema,
        frozen=frozen,
        freeze_steps=freeze_pooling_steps,
        distill_lambda=distill.lambda_ if distill is not None else None,
    )

    logs = ScalarLog(train_dir / LOG_DIR / TRAIN_LOG)
    schedule = learning_rate_schedule(settings)
    step = start_step
    examples = 0
    last: TrainProgress | None = None
    history: list[TrainProgress] = []
    last_saved = step
    last_save_time = time.monotonic()
    window_start = time.monotonic()
    window_examples = 0

    def finished() -> bool:
        return settings.max_steps is not None and step >= settings.max_steps

    def local(values) -> np.ndarray:
        parts = strategy.experimental_local_results(values)
        return np.concatenate([np.asarray(p) for p in parts], axis=0)

    saved_state = (start_epoch, skip)
    latest_loss = None  # the last step's loss tensor: checked before anything is saved

    def check_finite(value: float) -> None:
        """A diverged run stops without saving: the last good checkpoint stays the latest."""
        if not math.isfinite(value):
            kept = f"the last good checkpoint {saved_path} is kept" if saved_path else "no checkpoint was saved"
            raise Yt8mError(
                f"{train_dir}: the loss is {value} at step {step} (training diverged); {kept}; "
                "lower `base_learning_rate` or check the inputs, then train again to resume"
            )

    def save() -> str:
        nonlocal last_saved, last_save_time, saved_state
        if latest_loss is not None:
            check_finite(float(np.asarray(strategy.experimental_local_results(latest_loss)[0])))
        try:
            bundle.save_config()  # written with the first checkpoint, so a failed start leaves nothing
            if label_names is not None:
                bundle.write_label_names(label_names)
            path = manager.save(checkpoint_number=step)  # TensorFlow writes it under temporary names, then renames
        except (OSError, tf.errors.OpError) as error:
            kept = f"the last checkpoint {saved_path} is kept" if saved_path else "no checkpoint was saved"
            raise Yt8mError(f"{train_dir}: cannot save a checkpoint ({_first_line(error)}; is the disk full?); {kept}") from None
        last_saved, last_save_time = step, time.monotonic()
        saved_state = (int(epochs_done.numpy()), int(position.numpy()))
        return path

    saved_path: str | None = manager.latest_checkpoint
    try:
        epochs = itertools.count(start_epoch) if settings.num_epochs is None else range(start_epoch, settings.num_epochs)
        for epoch in epochs:
            if finished():
                break
            dataset = source.dataset(
                settings.batch_size,
                shuffle=True,
                seed=settings.seed + epoch,
                shuffle_buffer=settings.shuffle_buffer,
                drop_remainder=replicas > 1,
                include_ids=False,
                deterministic=True,  # the same order for a seed: a resumed epoch skips what was trained
            )
            if skip:
                dataset = dataset.skip(skip)
            position.assign(skip)
            steps_this_epoch, skip = int(position.numpy()), 0
            epoch_complete = False
            iterator = iter(strategy.experimental_distribute_dataset(dataset))
            while True:
                batch = _next_batch(iterator, source)
                if batch is None:
                    epoch_complete = True
                    break
                loss, predictions, labels = train_step(batch)
                latest_loss = loss
                step += 1
                steps_this_epoch += 1
                position.assign(steps_this_epoch)
                count = int(sum(np.shape(p)[0] for p in strategy.experimental_local_results(labels)))
                examples += count
                window_examples += count
                if step % settings.log_every_steps == 0 or finished():
                    now = time.monotonic()
                    scores, truth = local(predictions), local(labels)
                    # every replica holds the same all-reduced loss
                    loss_value = float(np.asarray(strategy.experimental_local_results(loss)[0]))
                    check_finite(loss_value)
                    last = TrainProgress(
                        step=step,
                        epoch=epoch,
                        examples=examples,
                        examples_per_second=window_examples / max(now - window_start, 1e-9),
                        loss=loss_value,
                        hit_at_one=hit_at_one(scores, truth),
                        gap=gap(scores, truth),
                        learning_rate=float(schedule(step - 1)),
                    )
                    history.append(last)
                    logs.write(
                        step,
                        {
                            "loss": last.loss,
                            "hit_at_one": last.hit_at_one,
                            "gap": last.gap,
                            "learning_rate": last.learning_rate,
                            "examples_per_second": last.examples_per_second,
                        },
                    )
                    if progress is not None:
                        progress(last)
                    window_start, window_examples = time.monotonic(), 0
                if finished():
                    break
                if (
                    step - last_saved >= settings.checkpoint_every_steps
                    or time.monotonic() - last_save_time >= CHECKPOINT_EVERY_SECONDS
                ):
                    saved_path = save()
            if steps_this_epoch == 0:
                raise Yt8mError(
                    f"{train_data}: no training batches (fewer records than one batch of {settings.batch_size} "
                    f"on {replicas} devices, or empty files)"
                )
            if epoch_complete:
                epochs_done.assign(epoch + 1)
                position.assign(0)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM as the CLI's `Terminated`
        try:
            if step > last_saved:
                saved_path = save()
        finally:
            logs.close()
        where = f"checkpoint {saved_path} (step {last_saved})" if saved_path else "no checkpoint yet"
        interrupt.add_note(f"{train_dir}: interrupted at step {step}; {where}; {RESUME_HINT}")
        raise
    except BaseException:
        logs.close()
        raise
    try:
        if step > last_saved or saved_path is None or (int(epochs_done.numpy()), int(position.numpy())) != saved_state:
            saved_path = save()
    finally:
        logs.close()
    return TrainResult(
        config=config,
        train_dir=train_dir,
        start_step=start_step,
        step=step,
        epochs_completed=int(epochs_done.numpy()),
        checkpoint=saved_path,
        last=last,
        history=history,
        init=init_report,
        resume_note=resume_note,
    )
