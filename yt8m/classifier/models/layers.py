"""Building blocks shared by every YT8M classifier family (Keras 3).

- `Yt8mModel`: the base class. Every model takes `(frames, num_frames)` and returns per-class
  probabilities; frame models receive `frames` float32 [B, T, sum(feature_sizes)] (dequantized,
  rgb then audio, L2-normalised per frame, zero-padded to T) and must ignore padded frames.
- frame masks and masked pooling, the train-time frame sampler of the starter code
  (`iterations`, `sample_random_frames`), L2 normalisation.
- Context Gating (`y = sigmoid(BN(W x)) * x`), the NeXtVLAD squeeze-excitation gate.
- classifier heads: logistic, mixture of experts with a dummy expert, optionally with WILLOW's
  label-space context gate ("gated MoE").

Weight regularisers follow TF1's `slim.l2_regularizer(scale)`, which is `scale * sum(w**2) / 2`;
Keras' `L2(l)` is `l * sum(w**2)`, so penalties are halved when converted. They reach
`model.losses` through Keras' layer regularizers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from yt8m.core import Yt8mError

L2_EPSILON = 1e-12
"""Floor under the squared norm in L2 normalisation (tf.nn.l2_normalize's default)."""
DEFAULT_L2_PENALTY = 1e-8
"""The starter code's L2 penalty on the logistic and MoE classifiers."""
DEFAULT_MOE_MIXTURES = 2
"""The starter code's number of MoE experts (plus one dummy expert that always says 'no')."""
CLASSIFIERS = ("LogisticModel", "MoeModel")
"""Video-level classifier heads that frame models can put on top of their pooled vector."""

# Hyperparameters every model with a video-level classifier head accepts.
HEAD_DEFAULTS: dict[str, Any] = {
    "video_level_classifier_model": "MoeModel",
    "moe_num_mixtures": DEFAULT_MOE_MIXTURES,
    "moe_l2": DEFAULT_L2_PENALTY,
    "moe_prob_gating": False,
    "l2_penalty": DEFAULT_L2_PENALTY,
}


def slim_l2(scale: float) -> keras.regularizers.Regularizer | None:
    """Keras regularizer equal to TF1 `slim.l2_regularizer(scale)` (None when scale is 0)."""
    if scale <= 0:
        return None
    return keras.regularizers.L2(scale / 2.0)


def normal_init(fan_in: int | float) -> keras.initializers.Initializer:
    """The seeds' `random_normal_initializer(stddev=1/sqrt(fan_in))`."""
    return keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(max(float(fan_in), 1.0)))


def set_layer_list(owner: keras.layers.Layer, prefix: str, layers: Sequence[keras.layers.Layer]) -> None:
    """Attach `layers` to `owner` as attributes `<prefix>_0`, `<prefix>_1`, ...

    Keras tracks layers kept in Python lists, but `tf.train.Checkpoint` does not see inside
    those lists; plain attributes are tracked by both, so trainers may use either to save.
    """
    for i, layer in enumerate(layers):
        setattr(owner, f"{prefix}_{i}", layer)
    setattr(owner, f"_{prefix}_count", len(layers))


def layer_list(owner: keras.layers.Layer, prefix: str) -> list[keras.layers.Layer]:
    """The layers attached with `set_layer_list(owner, prefix, ...)`, in order."""
    return [getattr(owner, f"{prefix}_{i}") for i in range(getattr(owner, f"_{prefix}_count"))]


# --------------------------------------------------------------------------------------------
# masks, pooling, normalisation


def frame_mask(num_frames: Any, length: Any) -> tf.Tensor:
    """float32 [B, length]: 1 for the first `num_frames[b]` positions, 0 for padding."""
    return tf.sequence_mask(num_frames, maxlen=length, dtype=tf.float32)


def l2_normalize(x: Any, axis: int = -1) -> Any:
    """x / ||x|| along `axis` with tf.nn.l2_normalize's epsilon (zero vectors stay zero)."""
    square_sum = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(square_sum, L2_EPSILON))


def masked_mean(x: Any, mask: Any) -> Any:
    """Mean over axis 1 of x [B, T, D] counting only positions where mask [B, T] is 1."""
    mask = ops.cast(mask, x.dtype)
    total = ops.sum(x * ops.expand_dims(mask, -1), axis=1)
    count = ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)
    return total / count


def masked_max(x: Any, mask: Any) -> Any:
    """Max over axis 1 of x [B, T, D] over valid positions (0 for a video without frames)."""
    valid = ops.expand_dims(ops.cast(mask, "bool"), -1)
    lowest = ops.full_like(x, -1e30)
    pooled = ops.max(ops.where(valid, x, lowest), axis=1)
    any_valid = ops.any(valid, axis=1)
    return ops.where(any_valid, pooled, ops.zeros_like(pooled))


# --------------------------------------------------------------------------------------------
# frame sampling


class FrameSampler(keras.layers.Layer):
    """The starter code's frame sampling, done inside the model so readers never sample.

    At training time it draws `num_samples` frames per video: random frames with replacement
    among the valid ones (sorted, so recurrent models still read them in order) when
    `random_frames`, else a random contiguous window. At inference it is deterministic:
    `inference="all"` keeps every valid frame (the expectation of the random draw for the sum
    poolings of NetVLAD/NetFV/soft-DBoF), `inference="sample"` takes `num_samples` evenly spaced
    frames (or the centred window), which keeps max pooling (DBoF) on the same footing as in
    training.

    call(frames [B, T, D], num_frames [B], training) -> (frames [B, S, D], mask [B, S] float32)
    """

    def __init__(self, num_samples: int, random_frames: bool, inference: str = "all", **kwargs):
        super().__init__(**kwargs)
        if inference not in ("all", "sample"):
            raise ValueError(f"inference must be 'all' or 'sample', got {inference!r}")
        self.num_samples = int(num_samples)
        self.random_frames = bool(random_frames)
        self.inference = inference

    def call(self, frames, num_frames, training=False):
        num_frames = tf.cast(num_frames, tf.int32)
        length = tf.shape(frames)[1]
        if not training and self.inference == "all":
            return frames, frame_mask(num_frames, length)
        batch = tf.shape(frames)[0]
        samples = self.num_samples
        n = tf.cast(tf.maximum(num_frames, 1), tf.float32)[:, None]
        steps = tf.range(samples, dtype=tf.float32)[None, :]
        if self.random_frames:
            if training:
                u = tf.random.uniform([batch, samples])
                index = tf.sort(tf.cast(tf.floor(u * n), tf.int32), axis=1)
            else:
                index = tf.cast(tf.floor((steps + 0.5) * n / float(samples)), tf.int32)
            index = tf.minimum(index, tf.cast(n, tf.int32) - 1)
            valid = tf.broadcast_to((num_frames > 0)[:, None], tf.shape(index))
        else:
            slack = tf.maximum(n - float(samples), 0.0)
            if training:
                start = tf.floor(tf.random.uniform([batch, 1]) * (slack + 1.0))
            else:
                start = tf.floor(slack / 2.0)
            index = tf.cast(start + steps, tf.int32)
            valid = index < num_frames[:, None]
        index = tf.clip_by_value(index, 0, tf.maximum(length - 1, 0))
        sampled = tf.gather(frames, index, batch_dims=1)
        mask = tf.cast(valid, tf.float32)
        return sampled * mask[:, :, None], mask


# --------------------------------------------------------------------------------------------
# gating


class ContextGating(keras.layers.Layer):
    """Context Gating (Miech et al. 2017): y = sigmoid(BN(W x)) * x.

    Without batch norm the gate gets a bias instead (as in WILLOW's code).
    """

    def __init__(self, add_batch_norm: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.add_batch_norm = bool(add_batch_norm)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.gate = keras.layers.Dense(
            dim, use_bias=not self.add_batch_norm, kernel_initializer=normal_init(dim), name="gating"
        )
        self.gate.build(input_shape)
        self.bn = keras.layers.BatchNormalization(name="gating_bn") if self.add_batch_norm else None
        if self.bn is not None:
            self.bn.build(tuple(input_shape[:-1]) + (dim,))

    def call(self, x, training=False):
        gates = self.gate(x)
        if self.bn is not None:
            gates = self.bn(gates, training=training)
        return x * ops.sigmoid(gates)


class SqueezeExcitationGating(keras.layers.Layer):
    """NeXtVLAD's SE context gate: y = x * sigmoid(W2 relu(BN(W1 x))), W1 reduces by `reduction`."""

    def __init__(self, reduction: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.reduction = int(reduction)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        inner = max(dim // self.reduction, 1)
        he = keras.initializers.HeNormal()
        self.squeeze = keras.layers.Dense(inner, use_bias=False, kernel_initializer=he, name="gating_1")
        self.squeeze.build(input_shape)
        self.bn = keras.layers.BatchNormalization(name="gating_bn")
        self.bn.build((None, inner))
        self.excite = keras.layers.Dense(dim, use_bias=False, kernel_initializer=he, name="gating_2")
        self.excite.build((None, inner))

    def call(self, x, training=False):
        gates = ops.relu(self.bn(self.squeeze(x), training=training))
        return x * ops.sigmoid(self.excite(gates))


# --------------------------------------------------------------------------------------------
# classifier heads


class LogisticHead(keras.layers.Layer):
    """The starter's LogisticModel: sigmoid(W x + b) with an L2 penalty on W."""

    def __init__(self, num_classes: int, l2_penalty: float = DEFAULT_L2_PENALTY, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(
            int(num_classes), kernel_regularizer=slim_l2(l2_penalty), name="logistic"
        )

    def build(self, input_shape):
        self.dense.build(input_shape)

    def logits(self, x):
        return self.dense(x)

    def call(self, x, training=False):
        return ops.sigmoid(self.dense(x))


class MoeHead(keras.layers.Layer):
    """Mixture of logistic experts (starter's MoeModel) with WILLOW's optional label-space gate.

    Per class, a softmax over `num_mixtures + 1` gates weights `num_mixtures` sigmoid experts; the
    last gate belongs to a dummy expert that always predicts 0. The gate layer has no bias, both
    layers carry the L2 penalty. With `prob_gating`, the probabilities p are multiplied by
    sigmoid(BN(p W)), W [C, C] (WILLOW's "gated MoE", no penalty on W).
    """

    def __init__(
        self,
        num_classes: int,
        num_mixtures: int = DEFAULT_MOE_MIXTURES,
        l2_penalty: float = DEFAULT_L2_PENALTY,
        prob_gating: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.num_mixtures = int(num_mixtures)
        self.prob_gating = bool(prob_gating)
        reg = slim_l2(l2_penalty)
        c, m = self.num_classes, self.num_mixtures
        self.gates = keras.layers.Dense(c * (m + 1), use_bias=False, kernel_regularizer=reg, name="gates")
        self.experts = keras.layers.Dense(c * m, kernel_regularizer=reg, name="experts")
        if self.prob_gating:
            self.label_gate = keras.layers.Dense(
                c, use_bias=False, kernel_initializer=normal_init(c), name="gating_prob"
            )
            self.label_gate_bn = keras.layers.BatchNormalization(name="gating_prob_bn")

    def build(self, input_shape):
        self.gates.build(input_shape)
        self.experts.build(input_shape)
        if self.prob_gating:
            self.label_gate.build((None, self.num_classes))
            self.label_gate_bn.build((None, self.num_classes))

    def call(self, x, training=False):
        c, m = self.num_classes, self.num_mixtures
        gate = ops.softmax(ops.reshape(self.gates(x), (-1, c, m + 1)), axis=-1)
        expert = ops.sigmoid(ops.reshape(self.experts(x), (-1, c, m)))
        probabilities = ops.sum(gate[:, :, :m] * expert, axis=-1)
        if self.prob_gating:
            label_gates = self.label_gate_bn(self.label_gate(probabilities), training=training)
            probabilities = probabilities * ops.sigmoid(label_gates)
        return probabilities


def make_classifier(num_classes: int, hparams: dict[str, Any], name: str = "classifier") -> keras.layers.Layer:
    """The video-level head named by `video_level_classifier_model` (LogisticModel or MoeModel)."""
    kind = hparams["video_level_classifier_model"]
    if kind == "LogisticModel":
        return LogisticHead(num_classes, l2_penalty=hparams["l2_penalty"], name=name)
    if kind == "MoeModel":
        return MoeHead(
            num_classes,
            num_mixtures=hparams["moe_num_mixtures"],
            l2_penalty=hparams["moe_l2"],
            prob_gating=hparams["moe_prob_gating"],
            name=name,
        )
    raise Yt8mError(f"video_level_classifier_model must be one of {list(CLASSIFIERS)}, got {kind!r}")


# --------------------------------------------------------------------------------------------
# base model


class Yt8mModel(keras.Model):
    """Base class: `(frames, num_frames) -> probabilities [B, num_classes]`.

    Subclasses implement `forward(frames, num_frames, training)`. `video_level` models receive
    features [B, sum(feature_sizes)] instead of frames. The construction arguments are kept in
    `yt8m_config` so that the same model can be rebuilt with `build_model(**yt8m_config)`.
    """

    video_level: bool = False

    def __init__(
        self,
        num_classes: int,
        feature_sizes: Sequence[int],
        max_frames: int,
        hparams: dict[str, Any],
        model_name: str,
        **kwargs,
    ):
        super().__init__(name=kwargs.pop("name", model_name), **kwargs)
        self.num_classes = int(num_classes)
        self.feature_sizes = tuple(int(s) for s in feature_sizes)
        self.feature_size = int(sum(self.feature_sizes))
        self.max_frames = int(max_frames)
        self.hp = dict(hparams)
        self.model_name = model_name

    @property
    def yt8m_config(self) -> dict[str, Any]:
        """JSON-ready arguments of `build_model` that rebuild this exact architecture."""
        return {
            "name": self.model_name,
            "num_classes": self.num_classes,
            "feature_sizes": list(self.feature_sizes),
            "max_frames": self.max_frames,
            "hparams": dict(self.hp),
        }

    def get_config(self) -> dict[str, Any]:
        return self.yt8m_config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Yt8mModel":
        from yt8m.classifier.models import build_model

        return build_model(
            config["name"],
            num_classes=config["num_classes"],
            feature_sizes=config["feature_sizes"],
            max_frames=config["max_frames"],
            **config["hparams"],
        )

    def _split_inputs(self, inputs):
        if isinstance(inputs, dict):
            frames = inputs.get("frames", inputs.get("rgb_and_audio", inputs.get("features")))
            num_frames = inputs["num_frames"]
        else:
            frames, num_frames = inputs
        frames = ops.convert_to_tensor(frames, dtype="float32")
        expected_rank = 2 if self.video_level else 3
        if len(frames.shape) != expected_rank:
            raise ValueError(
                f"{self.model_name} expects {'features [B, D]' if self.video_level else 'frames [B, T, D]'},"
                f" got shape {tuple(frames.shape)}"
            )
        width = frames.shape[-1]
        if width is not None and int(width) != self.feature_size:
            raise Yt8mError(
                f"{self.model_name} was built for features of size {self.feature_size} "
                f"({'+'.join(map(str, self.feature_sizes))}), got inputs of size {int(width)}"
            )
        num_frames = ops.reshape(ops.cast(num_frames, "int32"), (-1,))
        return frames, num_frames

    def build(self, input_shape=None):
        # Sub-layers build themselves on the first call (build_model makes one tiny call).
        self.built = True

    def call(self, inputs, training=None):
        frames, num_frames = self._split_inputs(inputs)
        training = bool(training) if training is not None else False
        if not self.video_level:
            # Clip lengths to the padded size and zero the padding once, so nothing downstream
            # can read padded values even where it does not mask (e.g. BN statistics).
            length = ops.shape(frames)[1]
            num_frames = ops.clip(num_frames, 0, length)
            frames = frames * ops.expand_dims(frame_mask(num_frames, length), -1)
        return self.forward(frames, num_frames, training)

    def forward(self, frames, num_frames, training: bool):  # pragma: no cover - abstract
        raise NotImplementedError

    def split_features(self, x):
        """Split the last axis of x into the per-feature parts (rgb, audio, ...)."""
        parts = []
        start = 0
        for size in self.feature_sizes:
            parts.append(x[..., start : start + size])
            start += size
        return parts
