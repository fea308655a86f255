"""The EMA stage: fine-tune a trained model while keeping an exponential moving average of ALL its weights.

The 2018 first place ran EMA as a stage of its own (train.py `--ema_source MODEL --ema_halflife
2000`): a new train dir, every weight and its average seeded from the source model, the average
`tf.train.ExponentialMovingAverage(decay = 1 - 1/halflife)` without the `num_updates` warm-up,
applied to the trainable weights AND the batch-norm moving statistics (slim's model variables),
updated after every step; evaluation then uses the averages. yt8m's EMA during training
(`ema_decay`) covers the trainable weights with TF1's warm-up; this stage is the seed's.

An EMA-stage train dir is a bundle of kind `ema-stage`: checkpoints as for training (the `ema`
entry holds the averages of every float variable), loaded with the averages copied over all of them.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from yt8m._tf import import_tensorflow_quietly
from yt8m.classifier.bundle import (
    LoadedModel,
    ModelBundle,
    build_model,
    checkpoint_step,
    register_kind,
    weight_average,
    weights_filled_by_a_checkpoint,
)
from yt8m.classifier.compact.kinds import KIND_EMA_STAGE
from yt8m.classifier.compact.quantize import float_variables
from yt8m.classifier.config import KIND_TRAINED, ModelConfig
from yt8m.core import EMA_HALFLIFE, Yt8mError

DEFAULT_EMA_HALFLIFE = EMA_HALFLIFE
EMA_CHECKPOINT_KEY = "ema"  # the checkpoint entry training saves the average under


def halflife_decay(halflife: float) -> float:
    """The seed's decay for a half-life in steps: 1 - 1/halflife."""
    halflife = float(halflife)
    if not halflife > 1.0:
        raise Yt8mError(f"`ema_halflife` must be > 1 (steps), got {halflife}")
    return 1.0 - 1.0 / halflife


def stage_variables(model) -> list:
    """What the stage averages: the trainable weights (in their order), then the other float variables
    (batch-norm moving means and variances)."""
    trainable = list(model.trainable_variables)
    seen = {id(v) for v in trainable}
    return trainable + [v for v in float_variables(model) if id(v) not in seen]


_CLASSES: dict[str, type] = {}


def stage_average(model, decay: float):
    """The stage's moving average of every float variable of `model` (create it in the strategy's scope).

    Same interface as `bundle.weight_average` (`update`, `reset`, `copy_to`, `shadows`) so the
    train loop takes either; the variables it is given are ignored: it always covers the whole model.
    """
    if "average" not in _CLASSES:
        tf = import_tensorflow_quietly()

        class _Targets:
            """The averaged variables, kept out of checkpoint tracking (the model saves them itself)."""

            def __init__(self, variables) -> None:
                self.variables = list(variables)

        class StageAverage(tf.Module):
            """Shadow copies of every float variable, updated with a fixed decay (no warm-up)."""

            def __init__(self, variables, decay: float) -> None:
                super().__init__(name="ema")
                self.decay = float(decay)
                self._targets = _Targets(variables)
                aggregation = tf.VariableAggregation.ONLY_FIRST_REPLICA
                self.shadows = [
                    tf.Variable(tf.convert_to_tensor(v), trainable=False, aggregation=aggregation, name=f"ema_{i}")
                    for i, v in enumerate(variables)
                ]

            def update(self, variables=None) -> None:
                for shadow, variable in zip(self.shadows, self._targets.variables):
                    value = tf.cast(tf.convert_to_tensor(variable), shadow.dtype)
                    shadow.assign_sub((1.0 - self.decay) * (shadow - value))

            def reset(self, variables=None) -> None:
                for shadow, variable in zip(self.shadows, self._targets.variables):
                    shadow.assign(tf.convert_to_tensor(variable))

            def copy_to(self, variables=None) -> None:
                for shadow, variable in zip(self.shadows, self._targets.variables):
                    variable.assign(shadow)

        _CLASSES["average"] = StageAverage
    return _CLASSES["average"](stage_variables(model), decay)


def training_average(model, config: ModelConfig):
    """The moving average a training run of `config` keeps: the stage's for an EMA-stage config,
    else `bundle.weight_average` of the trainable weights when `ema_decay` is set, else None."""
    decay = config.training.ema_decay
    if config.kind == KIND_EMA_STAGE:
        return stage_average(model, decay)
    return weight_average(model.trainable_variables, decay) if decay else None


def as_ema_stage(config: ModelConfig, halflife: float = DEFAULT_EMA_HALFLIFE) -> ModelConfig:
    """`config` (resolved with `init_from` = the source) made an EMA stage with decay 1 - 1/halflife."""
    if config.segments == "context":
        raise Yt8mError("the EMA stage takes models of whole videos or segments, not segment-with-context models")
    if config.kind not in (KIND_TRAINED, KIND_EMA_STAGE):
        raise Yt8mError(f"a {config.kind} model cannot go through the EMA stage")
    return replace(config.with_training(ema_decay=halflife_decay(halflife)), kind=KIND_EMA_STAGE)


def check_ema_source(
    source_dir: str | os.PathLike, train_dir: str | os.PathLike, start_new_model: bool = False
) -> ModelBundle:
    """The source of an EMA stage: a trained (or EMA-stage) bundle with a checkpoint, other than `train_dir`.

    As the seed ("for your safety create a new model"), the stage writes a new train dir; one that
    already holds another model (not an EMA stage to resume) is refused unless `start_new_model`.
    """
    source = ModelBundle.open(source_dir)
    if source.kind not in (KIND_TRAINED, KIND_EMA_STAGE):
        raise Yt8mError(f"{source_dir}: `ema_from` needs a trained bundle, not a {source.kind} one")
    if source.latest_checkpoint() is None:
        raise Yt8mError(f"{source_dir}: `ema_from` has no checkpoint (train a model there first)")
    if Path(source_dir).resolve() == Path(train_dir).resolve():
        raise Yt8mError(f"{train_dir}: the EMA stage writes a new train dir; `ema_from` must be another one")
    if not start_new_model and ModelBundle.is_bundle(train_dir) and ModelConfig.load(train_dir).kind != KIND_EMA_STAGE:
        raise Yt8mError(
            f"{train_dir}: already holds a model; the EMA stage starts a new train dir (or resumes an EMA stage; "
            "pass `start_new_model=True` to replace it)"
        )
    return source


def ema_stage_config(config: ModelConfig, source: ModelBundle, halflife: float = DEFAULT_EMA_HALFLIFE) -> ModelConfig:
    """The config of an EMA stage of `source`: `config` (its architecture must be the source's) as an EMA stage.

    A config resolved from the source (`init_from`) passes; another architecture is refused, since
    the stage continues the source's weights one for one.
    """
    differences = source.config.architecture_differences(config)
    if differences:
        raise Yt8mError(f"{source.config_path}: `ema_from` holds another model ({'; '.join(differences)})")
    return as_ema_stage(config, halflife)


def _load_ema_stage(bundle: ModelBundle, checkpoint: str | None, use_ema: bool) -> LoadedModel:
    """The loader of `ema-stage` bundles: the checkpoint's averages copied over every float variable."""
    tf = import_tensorflow_quietly()
    checkpoint = checkpoint or bundle.latest_checkpoint()
    if checkpoint is None:
        raise Yt8mError(f"{bundle.path}: no checkpoint to load (the EMA stage has not saved one yet)")
    with weights_filled_by_a_checkpoint():  # the restore below fills (and checks) every weight
        model = build_model(bundle.config)
    average = stage_average(model, bundle.config.training.ema_decay or halflife_decay(DEFAULT_EMA_HALFLIFE))
    try:
        status = tf.train.Checkpoint(model=model, **{EMA_CHECKPOINT_KEY: average}).restore(checkpoint)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Yt8mError(f"{checkpoint}: does not match {bundle.config_path} ({reason})") from None
    if use_ema:
        average.copy_to()
    return LoadedModel(model=model, config=bundle.config, step=checkpoint_step(checkpoint), checkpoint=checkpoint)


register_kind(KIND_EMA_STAGE, _load_ema_stage)
