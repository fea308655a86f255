"""Training YT8M classifiers on TF2: the loop, schedules, checkpoints, EMA, TensorBoard, resume, devices.

A custom loop (rather than `model.fit`) so that the starter code's recipe is followed exactly:
Adam with a staircase exponential learning-rate decay every `learning_rate_decay_examples`
examples, gradients summed over replicas and then clipped by their global norm (1.0), the
starter's cross-entropy (epsilon 1e-5, summed over classes, averaged over examples) with optional
per-class label weights, plus the model's own losses (L2 on the MoE, distillation) times
`regularization_penalty`. An optional exponential moving average of the weights (with the TF1
`num_updates` warm-up) is kept in the checkpoint and used by eval, predict and export.

The train dir holds `config.json` (the `ModelConfig`), `ckpt-STEP.*` checkpoints
(tf.train.Checkpoint + CheckpointManager) and TensorBoard logs under `logs/`. Training resumes
from the latest checkpoint unless `start_new_model`; a train dir made for another model is
refused with an error naming its config.json. With several GPUs visible (or `devices` given)
training runs under `tf.distribute.MirroredStrategy`; `batch_size` is the global batch.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from yt8m.classifier.config import CONFIG_FILENAME, TRAINING_KEYS, ModelConfig, parse_overrides
from yt8m.core import NUM_CLASSES, FeatureSpec, Yt8mError

CROSS_ENTROPY_EPSILON = 1e-5  # the starter's CrossEntropyLoss epsilon (10e-6)
CHECKPOINT_PREFIX = "ckpt"
LOG_DIR = "logs"
TRAIN_LOG = "train"
EVAL_LOG = "eval"
EXPORT_DIR = "export"
EMA_WARMUP = (1.0, 10.0)  # TF1 ExponentialMovingAverage(num_updates): decay <= (1 + n) / (10 + n)
CHECKPOINT_EVERY_SECONDS = 600.0  # also save at least this often (the starter saved every 10 minutes)
_CHECKPOINT_RE = re.compile(rf"{CHECKPOINT_PREFIX}-(\d+)$")
LABEL_MAP_FILENAME = "label_map.txt"  # a custom label space's class names, kept in the train dir
LABEL_MAP_SUFFIX = ".label_map.txt"  # `yt8m extract --labels-from-folders`: OUT.tfrecord -> OUT.label_map.txt
HEAD_ATTRIBUTES = ("classifier", "head")  # the model attributes holding the classifier head


def _tf():
    from yt8m._tf import import_tensorflow_quietly

    return import_tensorflow_quietly()


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


@dataclass
class InitReport:
    """What `--init-from` copied: the source, its step, how many weights were kept or re-initialised."""

    source: Path
    source_step: int
    copied: int
    reinitialised: list[str]
    head_reset: bool


# ----------------------------------------------------------------------------- losses


def cross_entropy(labels, predictions, label_weights=None):
    """The starter's CrossEntropyLoss per example: -sum_c [y log(p+eps) + (1-y) log(1-p+eps)] * w_c."""
    tf = _tf()
    labels = tf.cast(labels, tf.float32)
    predictions = tf.cast(predictions, tf.float32)
    loss = -(
        labels * tf.math.log(predictions + CROSS_ENTROPY_EPSILON)
        + (1.0 - labels) * tf.math.log(1.0 - predictions + CROSS_ENTROPY_EPSILON)
    )
    if label_weights is not None:
        loss = loss * tf.cast(label_weights, tf.float32)
    return tf.reduce_sum(loss, axis=1)


def learning_rate_schedule(settings):
    """Staircase exponential decay: base * decay ** floor(step * batch_size / decay_examples)."""
    import keras

    return keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=settings.base_learning_rate,
        decay_steps=settings.learning_rate_decay_examples / settings.batch_size,
        decay_rate=settings.learning_rate_decay,
        staircase=True,
    )


# ----------------------------------------------------------------------------- EMA


def _make_weight_average_class():
    tf = _tf()

    class WeightAverage(tf.Module):
        """Shadow copies of the trainable weights, updated as an exponential moving average."""

        def __init__(self, variables, decay: float) -> None:
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

    return WeightAverage


def weight_average(variables, decay: float):
    """A `tf.Module` holding the EMA of `variables` (create it under the strategy's scope)."""
    return _make_weight_average_class()(variables, decay)


# ----------------------------------------------------------------------------- TensorBoard


class ScalarLog:
    """TensorBoard scalar summaries, written with `tf.summary.write` so the tensorboard package is optional."""

    def __init__(self, logdir: str | os.PathLike) -> None:
        tf = _tf()
        from tensorflow.core.framework import summary_pb2

        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
            data_class=summary_pb2.DATA_CLASS_SCALAR,
        )
        self._metadata = metadata.SerializeToString()
        self._writer = tf.summary.create_file_writer(str(logdir))

    def write(self, step: int, values: dict[str, float | None]) -> None:
        tf = _tf()
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


def latest_checkpoint(train_dir: str | os.PathLike) -> str | None:
    """Path prefix of the newest checkpoint in `train_dir`, or None."""
    directory = Path(train_dir)
    if not directory.is_dir():
        return None
    return _tf().train.latest_checkpoint(str(directory))


def checkpoint_step(checkpoint: str) -> int:
    """The global step a `ckpt-STEP` checkpoint was saved at."""
    match = _CHECKPOINT_RE.search(str(checkpoint))
    return int(match.group(1)) if match else 0


def clear_train_dir(train_dir: str | os.PathLike) -> None:
    """Remove what yt8m put in a train dir (config, checkpoints, logs, export), nothing else."""
    directory = Path(train_dir)
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        name = path.name
        if name in (CONFIG_FILENAME, "checkpoint") or name.startswith(f"{CHECKPOINT_PREFIX}-"):
            path.unlink()
        elif name in (LOG_DIR, EXPORT_DIR) and path.is_dir():
            shutil.rmtree(path)


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
) -> ModelConfig:
    """The config a `yt8m train` run uses: a new one, or the train dir's own with training changes.

    With `init_from` (another train dir) a new config takes that model's architecture and
    features; `num_classes` may differ (a new label space for fine-tuning).

    Resuming keeps the saved architecture; asking for another model, other hyperparameters,
    features or class count is refused with an error naming config.json. Training settings
    (`training`, and training keys given with `--set`) may change between runs.
    """
    path = config_path(train_dir)
    training = {k: v for k, v in (training or {}).items() if v is not None}
    if path.exists() and not start_new_model:
        saved = ModelConfig.load(path)
        hint = "pass --start-new-model to replace it, or use another --train-dir"
        if model is not None:
            from yt8m.classifier.models import canonical_name

            model = canonical_name(model)
        if model is not None and model != saved.model:
            raise Yt8mError(f"{path}: this train dir was made for model {saved.model}, not {model}; {hint}")
        overrides = parse_overrides(list(set_values), ModelConfig.settable_defaults(saved.model))
        for key, value in overrides.items():
            if key in TRAINING_KEYS:
                training[key] = value
            elif value != saved.hparams.get(key):
                raise Yt8mError(
                    f"{path}: {key}={saved.hparams.get(key)!r} in this train dir, not {value!r}; {hint}"
                )
        if feature_spec is not None and feature_spec.to_dict() != saved.feature_spec.to_dict():
            raise Yt8mError(
                f"{path}: this train dir uses features {','.join(saved.feature_spec.names)} "
                f"({','.join(map(str, saved.feature_spec.sizes))}); {hint}"
            )
        if num_classes is not None and num_classes != saved.num_classes:
            raise Yt8mError(f"{path}: this train dir has {saved.num_classes} classes, not {num_classes}; {hint}")
        config = saved.with_training(**training)
        config.training.validate(config.num_classes)
        return config
    if init_from is not None:
        return _config_from_source(init_from, model, set_values, training, feature_spec, num_classes)
    if model is None:
        raise Yt8mError(f"{Path(train_dir)}: no {CONFIG_FILENAME} here; --model is required for a new model")
    overrides = parse_overrides(list(set_values), ModelConfig.settable_defaults(model)) if set_values else {}
    return ModelConfig.create(
        model,
        feature_spec=feature_spec,
        num_classes=num_classes if num_classes is not None else NUM_CLASSES,
        overrides=overrides,
        training=training,
    )


def _config_from_source(
    source_dir: str | os.PathLike,
    model: str | None,
    set_values: Sequence[str],
    training: dict[str, Any],
    feature_spec: FeatureSpec | None,
    num_classes: int | None,
) -> ModelConfig:
    """A new config with `source_dir`'s model, hyperparameters and features (and maybe other classes)."""
    from yt8m.classifier.models import canonical_name

    source = ModelConfig.load(config_path(source_dir))
    where = config_path(source_dir)
    if model is not None and canonical_name(model) != source.model:
        raise Yt8mError(f"{where}: --init-from holds a {source.model} model, not {canonical_name(model)}")
    if feature_spec is not None and feature_spec.to_dict() != source.feature_spec.to_dict():
        raise Yt8mError(
            f"{where}: --init-from was trained on features {','.join(source.feature_spec.names)} "
            f"({','.join(map(str, source.feature_spec.sizes))}); its weights cannot take other features"
        )
    overrides = dict(source.hparams)
    overrides.update(parse_overrides(list(set_values), ModelConfig.settable_defaults(source.model)))
    return ModelConfig.create(
        source.model,
        feature_spec=source.feature_spec,
        num_classes=num_classes if num_classes is not None else source.num_classes,
        overrides=overrides,
        training=training,
    )


def find_label_map(train_data: str | Sequence[str]) -> Path | None:
    """The label map `yt8m extract --labels-from-folders` saved next to the records, if exactly one.

    Looks for `OUT.label_map.txt` beside each record file (also for shards `OUT-00000-of-000NN`).
    """
    from yt8m.classifier.records import _SHARD_RE, list_record_files

    patterns = [train_data] if isinstance(train_data, (str, os.PathLike)) else list(train_data)
    found: set[Path] = set()
    for pattern in patterns:
        for name in list_record_files(pattern):
            path = Path(name)
            match = _SHARD_RE.match(path.name)
            stems = [path.with_suffix("")]
            if match:
                stems.append(path.with_name(match.group("stem")))
            for stem in stems:
                candidate = stem.with_name(stem.name + LABEL_MAP_SUFFIX)
                if candidate.is_file():
                    found.add(candidate)
    return found.pop() if len(found) == 1 else None


def train_dir_label_map(train_dir: str | os.PathLike) -> Path | None:
    """The custom label map kept in a train dir, or None (then the YT8M vocabulary applies)."""
    path = Path(train_dir) / LABEL_MAP_FILENAME
    return path if path.is_file() else None


def _read_names(path: str | os.PathLike) -> list[str]:
    from yt8m.classifier.vocabulary import load_label_map

    return list(load_label_map(path).names)


def head_variables(model) -> list:
    """The variables of the model's classifier head (re-initialised for a new label space)."""
    variables = []
    for attribute in HEAD_ATTRIBUTES:
        layer = getattr(model, attribute, None)
        if layer is not None and hasattr(layer, "variables"):
            variables.extend(layer.variables)
    return variables


def _variable_key(variable) -> str:
    """A variable's path without the model's own name, so two builds of one architecture match."""
    path = getattr(variable, "path", None) or variable.name
    return path.split("/", 1)[1] if "/" in path else path


def _is_float(variable) -> bool:
    return np.issubdtype(np.dtype(getattr(variable.dtype, "as_numpy_dtype", variable.dtype)), np.floating)


def initialise_from(model, config: ModelConfig, source_dir: str | os.PathLike, *, reset_head: bool) -> InitReport:
    """Copy a trained model's weights (EMA ones when kept) from `source_dir` into `model`.

    Weights are matched by their path in the model and their shape. With `reset_head` the
    classifier head keeps its fresh initialisation (a new label space); weights whose shape
    differs (e.g. the head of another class count) are re-initialised too.
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
    if copied == 0:
        raise Yt8mError(f"{config_path(source_dir)}: none of its weights fit this model")
    return InitReport(
        source=Path(source_dir), source_step=source_step, copied=copied, reinitialised=reinitialised, head_reset=reset_head
    )


def _check_train_dir(train_dir: Path, config: ModelConfig, start_new_model: bool) -> None:
    path = config_path(train_dir)
    if start_new_model:
        clear_train_dir(train_dir)
        return
    if path.exists():
        saved = ModelConfig.load(path)
        differences = saved.architecture_differences(config)
        if differences:
            raise Yt8mError(
                f"{path}: this train dir holds another model ({'; '.join(differences)}); "
                "pass --start-new-model to replace it, or use another --train-dir"
            )
    elif latest_checkpoint(train_dir) is not None:
        raise Yt8mError(f"{train_dir}: has checkpoints but no {CONFIG_FILENAME}; use another --train-dir")


def _resolve_label_names(
    train_data, train_dir: Path, config: ModelConfig, init_from, label_map
) -> tuple[list[str] | None, str | None]:
    """The class names to keep in the train dir and where they came from ("given", "records", "train-dir", "init")."""
    names, origin, where = None, None, None
    if label_map is not None:
        names, origin, where = _read_names(label_map), "given", Path(label_map)
    else:
        found = find_label_map(train_data)
        if found is not None:
            names, origin, where = _read_names(found), "records", found
        elif train_dir_label_map(train_dir) is not None:
            names, origin, where = _read_names(train_dir / LABEL_MAP_FILENAME), "train-dir", train_dir / LABEL_MAP_FILENAME
        elif init_from is not None and train_dir_label_map(init_from) is not None:
            source_classes = ModelConfig.load(config_path(init_from)).num_classes
            if source_classes == config.num_classes:
                names, origin, where = _read_names(train_dir_label_map(init_from)), "init", train_dir_label_map(init_from)
    if names is not None and len(names) != config.num_classes:
        if origin == "records":  # a stray map next to the records does not block training
            return None, None
        raise Yt8mError(f"{where}: has {len(names)} class names, but the model has {config.num_classes} classes")
    return names, origin


# ----------------------------------------------------------------------------- model plumbing


def make_strategy(devices: Sequence[str] | None = None):
    """MirroredStrategy over `devices` or over every visible GPU when there are several; else the default."""
    tf = _tf()
    if devices:
        devices = list(devices)
        if len(devices) == 1:
            return tf.distribute.OneDeviceStrategy(devices[0])
        return tf.distribute.MirroredStrategy(devices=devices)
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def load_trained_model(train_dir: str | os.PathLike, checkpoint: str | None = None, use_ema: bool = True):
    """Rebuild a train dir's model from config.json and restore a checkpoint (latest by default).

    Returns `(model, config, step)`. With EMA enabled in the config the averaged weights are
    loaded into the model unless `use_ema=False`.
    """
    tf = _tf()
    config = ModelConfig.load(config_path(train_dir))
    checkpoint = checkpoint or latest_checkpoint(train_dir)
    if checkpoint is None:
        raise Yt8mError(f"{train_dir}: no checkpoint to load (train a model there first)")
    model = config.build()
    objects: dict[str, Any] = {"model": model}
    ema = None
    if use_ema and config.training.ema_decay and _has_ema(checkpoint):
        ema = weight_average(model.trainable_variables, config.training.ema_decay)
        objects["ema"] = ema
    try:
        status = tf.train.Checkpoint(**objects).restore(checkpoint)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Yt8mError(f"{checkpoint}: does not match {config_path(train_dir)} ({reason})") from None
    if ema is not None:
        ema.copy_to(model.trainable_variables)
    return model, config, checkpoint_step(checkpoint)


def _has_ema(checkpoint: str) -> bool:
    tf = _tf()
    return any(name.startswith("ema/") for name, _ in tf.train.list_variables(checkpoint))


def make_train_step(model, optimizer, strategy, settings, ema=None, frozen: Sequence[bool] | None = None, freeze_steps: int = 0):
    """The compiled training step: `train_step(batch) -> (loss, predictions, labels)` (per replica).

    Each replica computes the starter's cross-entropy on its share of the global batch (scaled by
    the global batch size) plus `regularization_penalty` x the model's own losses; the gradients
    are summed over replicas, clipped by their global norm and applied by Adam; the EMA follows.
    `batch` holds `frames`, `num_frames`, `labels` and optionally `label_weights` [B, C].
    Variables flagged in `frozen` get no updates while the global step is below `freeze_steps`.
    """
    tf = _tf()
    replicas = strategy.num_replicas_in_sync
    frozen_flags = list(frozen) if (frozen is not None and freeze_steps > 0) else []
    label_weights = (
        tf.constant(np.asarray(settings.label_weights, dtype=np.float32)) if settings.label_weights else None
    )
    variables = model.trainable_variables
    penalty = float(settings.regularization_penalty)
    clip_norm = float(settings.clip_gradient_norm)

    def replica_step(batch):
        context = tf.distribute.get_replica_context()
        local_count = tf.cast(tf.shape(batch["labels"])[0], tf.float32)
        global_count = context.all_reduce(tf.distribute.ReduceOp.SUM, local_count)
        weights = label_weights
        if "label_weights" in batch:  # per-example, per-class weights (segment labels)
            weights = batch["label_weights"] if weights is None else batch["label_weights"] * weights
        with tf.GradientTape() as tape:
            predictions = model((batch["frames"], batch["num_frames"]), training=True)
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
        if clip_norm > 0:
            gradients, _ = tf.clip_by_global_norm(gradients, clip_norm)
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
    import keras

    return keras.optimizers.Adam(learning_rate=learning_rate_schedule(settings))


# ----------------------------------------------------------------------------- the loop


def record_feature_weights(data: str | Sequence[str]) -> str | None:
    """The `yt8m_weights` field of the first record of `data` (how its features were made), if any."""
    from yt8m.classifier.records import iterate_raw_records, list_record_files, record_extras

    pattern = data if isinstance(data, str) else ",".join(str(part) for part in data)
    for path in list_record_files(pattern):
        for raw in iterate_raw_records(path):
            weights = record_extras(raw).get("weights")
            return str(weights) if weights else None
    return None


def train(
    train_data: str | Sequence[str],
    train_dir: str | os.PathLike,
    config: ModelConfig,
    *,
    start_new_model: bool = False,
    progress: Callable[[TrainProgress], None] | None = None,
    devices: Sequence[str] | None = None,
    export: bool | str | os.PathLike = False,
    init_from: str | os.PathLike | None = None,
    freeze_pooling_steps: int = 0,
    label_map: str | os.PathLike | None = None,
) -> TrainResult:
    """Train `config`'s model on the records matching `train_data`, checkpointing into `train_dir`.

    Fine-tuning: a new model starts from the weights of `init_from` (another train dir); when its
    label space differs (class count or class names) the classifier head is re-initialised and
    the pooling layers kept; for the first `freeze_pooling_steps` steps only the head is trained.
    The class names (`label_map`, else one saved next to the records, else `init_from`'s when
    the classes are the same) are kept in the train dir as label_map.txt.

    Stops after `max_steps` (global step, counting earlier runs) or `num_epochs` (counting earlier
    runs); with neither it runs until interrupted (Ctrl-C saves a checkpoint first). `export=True`
    writes a SavedModel to `train_dir/export` at the end (or to the given path).
    """
    from yt8m.classifier.metrics import gap, hit_at_one
    from yt8m.classifier.readers import RecordSource

    tf = _tf()
    settings = config.training
    settings.validate(config.num_classes)
    train_dir = Path(train_dir)
    if config.segments:  # segment labels: one example per rated segment, with label weights
        from yt8m.classifier.segments import segment_source

        source = segment_source(train_data, config)
    else:
        source = RecordSource(train_data, config.feature_spec, config.num_classes, video_level=config.video_level)
    _check_train_dir(train_dir, config, start_new_model)
    if config.feature_weights is None:
        config = replace(config, feature_weights=record_feature_weights(train_data))
    label_names, label_source = _resolve_label_names(train_data, train_dir, config, init_from, label_map)
    if init_from is not None and Path(init_from).resolve() == train_dir.resolve():
        raise Yt8mError(f"{init_from}: --init-from must be another train dir than --train-dir")
    if init_from is not None:
        ModelConfig.load(config_path(init_from))  # a missing or broken source fails before anything is written
    train_dir.mkdir(parents=True, exist_ok=True)

    strategy = make_strategy(devices)
    replicas = strategy.num_replicas_in_sync

    with strategy.scope():
        model = config.build()  # build_model creates every weight
        optimizer = make_optimizer(settings)
        optimizer.build(model.trainable_variables)
        ema = weight_average(model.trainable_variables, settings.ema_decay) if settings.ema_decay else None
        epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    objects: dict[str, Any] = {"model": model, "optimizer": optimizer, "epochs": epochs_done}
    if ema is not None:
        objects["ema"] = ema
    checkpoint = tf.train.Checkpoint(**objects)
    manager = tf.train.CheckpointManager(
        checkpoint, str(train_dir), max_to_keep=settings.keep_checkpoints, checkpoint_name=CHECKPOINT_PREFIX
    )
    if manager.latest_checkpoint:
        status = checkpoint.restore(manager.latest_checkpoint)
        status.expect_partial()
        try:
            status.assert_existing_objects_matched()
        except AssertionError:
            if ema is None or _has_ema(manager.latest_checkpoint):
                raise
        if ema is not None and not _has_ema(manager.latest_checkpoint):
            ema.reset(model.trainable_variables)  # EMA switched on for a model trained without it
    init_report: InitReport | None = None
    if init_from is not None and not manager.latest_checkpoint:  # resuming keeps the trained weights
        source_names = _read_names(train_dir_label_map(init_from)) if train_dir_label_map(init_from) else None
        source_classes = ModelConfig.load(config_path(init_from)).num_classes
        reset_head = source_classes != config.num_classes or (
            label_source != "init" and label_names is not None and label_names != source_names
        )
        init_report = initialise_from(model, config, init_from, reset_head=reset_head)
        if ema is not None:
            ema.reset(model.trainable_variables)
    start_step = int(optimizer.iterations.numpy())
    start_epoch = int(epochs_done.numpy())

    head = {id(v) for v in head_variables(model)}
    frozen = [id(v) not in head for v in model.trainable_variables] if freeze_pooling_steps > 0 else None
    train_step = make_train_step(model, optimizer, strategy, settings, ema, frozen=frozen, freeze_steps=freeze_pooling_steps)

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
    epoch = start_epoch

    def finished() -> bool:
        return settings.max_steps is not None and step >= settings.max_steps

    def local(values) -> np.ndarray:
        parts = strategy.experimental_local_results(values)
        return np.concatenate([np.asarray(p) for p in parts], axis=0)

    saved_epochs = start_epoch

    def save() -> str:
        nonlocal last_saved, last_save_time, saved_epochs
        config.save(train_dir)  # written with the first checkpoint, so a failed start leaves nothing
        if label_names is not None:
            from yt8m.classifier.vocabulary import save_label_map

            save_label_map(train_dir / LABEL_MAP_FILENAME, label_names)
        path = manager.save(checkpoint_number=step)
        last_saved, last_save_time, saved_epochs = step, time.monotonic(), int(epochs_done.numpy())
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
            )
            steps_this_epoch = 0
            epoch_complete = False
            with source.reading():
                for batch in strategy.experimental_distribute_dataset(dataset):
                    loss, predictions, labels = train_step(batch)
                    step += 1
                    steps_this_epoch += 1
                    count = int(sum(np.shape(p)[0] for p in strategy.experimental_local_results(labels)))
                    examples += count
                    window_examples += count
                    if step % settings.log_every_steps == 0 or finished():
                        now = time.monotonic()
                        scores, truth = local(predictions), local(labels)
                        # every replica holds the same all-reduced loss
                        loss_value = float(np.asarray(strategy.experimental_local_results(loss)[0]))
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
                    if (
                        step - last_saved >= settings.checkpoint_every_steps
                        or time.monotonic() - last_save_time >= CHECKPOINT_EVERY_SECONDS
                    ):
                        saved_path = save()
                    if finished():
                        break
                else:
                    epoch_complete = True
            if steps_this_epoch == 0:
                raise Yt8mError(
                    f"{train_data}: no training batches (fewer records than one batch of {settings.batch_size} "
                    f"on {replicas} devices, or empty files)"
                )
            if epoch_complete:
                epochs_done.assign(epoch + 1)
    except KeyboardInterrupt:
        if step > last_saved:
            save()
        logs.close()
        raise
    if step > last_saved or saved_path is None or int(epochs_done.numpy()) != saved_epochs:
        saved_path = save()
    logs.close()
    result = TrainResult(
        config=config,
        train_dir=train_dir,
        start_step=start_step,
        step=step,
        epochs_completed=int(epochs_done.numpy()),
        checkpoint=saved_path,
        last=last,
        history=history,
        init=init_report,
    )
    if export:
        from yt8m.classifier.export import export_model

        target = train_dir / EXPORT_DIR if export is True else Path(export)
        result.export_dir = export_model(train_dir, target, overwrite=True)
    return result

