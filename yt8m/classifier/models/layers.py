"""Building blocks shared by every YT8M classifier family (Keras 3).

- `Yt8mModel`: the base class. Every model takes `(frames, num_frames)` and returns per-class
  probabilities; frame models receive `frames` float32 [B, T, sum(feature_sizes)] (dequantized,
  rgb then audio, L2-normalised per frame, zero-padded to T) and must ignore padded frames.
  Every family names its classifier head (`head_layers()`), which gives `head_variables()` /
  `body_variables()` for fine-tuning.
- `slim_batch_norm`: batch norm as the seeds' TF1 slim (decay 0.999); `cross_entropy`: the
  starter's label loss, for losses a model adds itself.
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

import numpy as np

from yt8m._tf import import_tensorflow_quietly

tf = import_tensorflow_quietly()

import keras  # noqa: E402 - after TensorFlow's quiet start
from keras import ops  # noqa: E402

from yt8m.core import L2_EPSILON, Yt8mError  # noqa: E402
"""Floor under the squared norm in L2 normalisation (tf.nn.l2_normalize's default)."""
DEFAULT_L2_PENALTY = 1e-8
"""The starter code's L2 penalty on the logistic and MoE classifiers."""
DEFAULT_MOE_MIXTURES = 2
"""The starter code's number of MoE experts (plus one dummy expert that always says 'no')."""
SLIM_BN_DECAY = 0.999
"""Moving-average decay of TF1 `slim.batch_norm` (its default, used by every seed that used slim);
Keras calls it `momentum` and defaults to 0.99."""
SLIM_BN_EPSILON = 1e-3
"""`slim.batch_norm`'s default epsilon (Keras' default too)."""
CROSS_ENTROPY_EPSILON = 1e-5
"""The starter's CrossEntropyLoss epsilon (google/youtube-8m losses.py)."""
CLASSIFIERS = ("LogisticModel", "MoeModel")
"""Video-level classifier heads that frame models can put on top of their pooled vector."""

# Hyperparameters every model with a video-level classifier head accepts.
HEAD_DEFAULTS: dict[str, Any] = {
    "video_level_classifier_model": "MoeModel",
    "moe_num_mixtures": DEFAULT_MOE_MIXTURES,
    "moe_l2": DEFAULT_L2_PENALTY,
    "moe_prob_gating": False,
    "l2_penalty": DEFAULT_L2_PENALTY,
    "batch_norm_decay": SLIM_BN_DECAY,
}
BATCH_NORM_DECAY_KEY = "batch_norm_decay"
"""Hyperparameter of every model with batch norm: the moving-average decay of all its BN layers
(slim's 0.999 by default; 0.99, Keras' default, settles in fewer steps for short runs)."""


def slim_l2(scale: float) -> keras.regularizers.Regularizer | None:
    """Keras regularizer equal to TF1 `slim.l2_regularizer(scale)` (None when scale is 0)."""
    if scale <= 0:
        return None
    return keras.regularizers.L2(scale / 2.0)


def slim_batch_norm(name: str) -> keras.layers.BatchNormalization:
    """Batch norm as TF1 `slim.batch_norm(center=True, scale=True)`: decay 0.999, epsilon 1e-3."""
    return keras.layers.BatchNormalization(momentum=SLIM_BN_DECAY, epsilon=SLIM_BN_EPSILON, name=name)


def cross_entropy(labels: Any, predictions: Any, label_weights: Any = None) -> Any:
    """The starter's CrossEntropyLoss per example (google/youtube-8m losses.py):
    -sum_c w_c [y log(p + eps) + (1 - y) log(1 - p + eps)], shape [B]."""
    labels = ops.cast(labels, "float32")
    predictions = ops.cast(predictions, "float32")
    loss = -(
        labels * ops.log(predictions + CROSS_ENTROPY_EPSILON)
        + (1.0 - labels) * ops.log(1.0 - predictions + CROSS_ENTROPY_EPSILON)
    )
    if label_weights is not None:
        loss = loss * ops.cast(label_weights, "float32")
    return ops.sum(loss, axis=1)


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
        self.bn = slim_batch_norm("gating_bn") if self.add_batch_norm else None
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
        self.bn = slim_batch_norm("gating_bn")
        self.bn.build((None, inner))
        self.excite = keras.layers.Dense(dim, use_bias=False, kernel_initializer=he, name="gating_2")
        self.excite.build((None, inner))

    def call(self, x, training=False):
        gates = ops.relu(self.bn(self.squeeze(x), training=training))
        return x * ops.sigmoid(self.excite(gates))


# --------------------------------------------------------------------------------------------
# classifier heads


class LogisticHead(keras.layers.Layer):
    """The starter's LogisticModel: sigmoid(W x + b) with an L2 penalty on W.

    `nextvlad_style` is linrongc/youtube-8m video_level_models.py's LogisticModel instead: the
    penalty on W and b, W drawn by `slim.variance_scaling_initializer()` (He, truncated normal).
    """

    def __init__(
        self, num_classes: int, l2_penalty: float = DEFAULT_L2_PENALTY, nextvlad_style: bool = False, **kwargs
    ):
        super().__init__(**kwargs)
        reg = slim_l2(l2_penalty)
        extra = {"bias_regularizer": slim_l2(l2_penalty), "kernel_initializer": keras.initializers.HeNormal()}
        self.dense = keras.layers.Dense(
            int(num_classes), kernel_regularizer=reg, name="logistic", **(extra if nextvlad_style else {})
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
            self.label_gate_bn = slim_batch_norm("gating_prob_bn")

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


def make_classifier(
    num_classes: int, hparams: dict[str, Any], name: str = "classifier", nextvlad_style: bool = False
) -> keras.layers.Layer:
    """The video-level head named by `video_level_classifier_model` (LogisticModel or MoeModel);
    `nextvlad_style` selects linrongc's LogisticModel (see `LogisticHead`)."""
    kind = hparams["video_level_classifier_model"]
    if kind == "LogisticModel":
        return LogisticHead(num_classes, l2_penalty=hparams["l2_penalty"], nextvlad_style=nextvlad_style, name=name)
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

    Subclasses implement `forward(frames, num_frames, training)` and `head_layers()`.
    `video_level` models receive features [B, sum(feature_sizes)] instead of frames. The
    construction arguments are kept in `yt8m_config` so that the same model can be rebuilt
    with `build_model(**yt8m_config)`.

    Head/body contract (used by fine-tuning: `--init-from` re-initialises the head for a new
    label space, `--freeze-pooling-steps` trains only the head at first): the head is every
    layer whose weights depend on the label space (the video-level classifier, per-class
    gates); the body is everything else (frame pooling, hidden layers, mixture gates).
    `head_variables()` and `body_variables()` split `model.variables` into two disjoint sets.
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
        """Rebuild from `yt8m_config` (its hyperparameters were resolved when first built)."""
        model = cls(config["num_classes"], config["feature_sizes"], config["max_frames"], config["hparams"])
        model.create_weights()
        return model

    def create_weights(self) -> None:
        """Create every weight now (one tiny forward pass), so that `count_params`,
        `load_weights`, optimizers and the head/body split see them all."""
        width = self.feature_size
        if self.video_level:
            dummy = np.zeros((1, width), dtype=np.float32)
        else:
            dummy = np.zeros((1, min(2, self.max_frames), width), dtype=np.float32)
        self((dummy, np.ones((1,), dtype=np.int32)), training=False)
        decay = self.hp.get(BATCH_NORM_DECAY_KEY)
        if decay is not None:  # read by Keras at every training call (the pass above was not one)
            for layer in self._flatten_layers():
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.momentum = float(decay)

    @classmethod
    def check_sizes(cls, model: str, hp: dict[str, Any], feature_sizes: Sequence[int]) -> None:
        """Raise Yt8mError when `hp` cannot work with `feature_sizes` (a family's own rules)."""

    # ---- head/body contract

    def head_layers(self) -> list[keras.layers.Layer]:  # pragma: no cover - abstract
        """The layers that make up the classifier head (each family names its own)."""
        raise NotImplementedError(f"{type(self).__name__} must say which layers are its head")

    def head_variables(self) -> list:
        """Every variable (trainable or not) of the classifier head, in model order."""
        owned = {id(v) for layer in self.head_layers() for v in layer.variables}
        return [v for v in self.variables if id(v) in owned]

    def body_variables(self) -> list:
        """Every variable of the model outside the head (pooling, hidden layers, gates)."""
        head = {id(v) for v in self.head_variables()}
        return [v for v in self.variables if id(v) not in head]

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

    def call(self, inputs, training=None, labels=None, label_weights=None):
        """Probabilities [B, num_classes]. In training, models whose seeds add a loss that needs
        the labels (MixNeXtVladModel's per-branch cross-entropy) add it to `model.losses` when
        `labels` [B, C] (and optionally `label_weights` [B, C]) are given; others ignore them."""
        frames, num_frames = self._split_inputs(inputs)
        training = bool(training) if training is not None else False
        if not self.video_level:
            # Clip lengths to the padded size and zero the padding once, so nothing downstream
            # can read padded values even where it does not mask (e.g. BN statistics).
            length = ops.shape(frames)[1]
            num_frames = ops.clip(num_frames, 0, length)
            frames = frames * ops.expand_dims(frame_mask(num_frames, length), -1)
        if training and labels is not None:
            return self.forward_with_labels(frames, num_frames, training, labels, label_weights)
        return self.forward(frames, num_frames, training)

    def forward(self, frames, num_frames, training: bool):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_with_labels(self, frames, num_frames, training: bool, labels, label_weights):
        """`forward` at training time when the labels are known; override to add label losses."""
        return self.forward(frames, num_frames, training)

    def split_features(self, x):
        """Split the last axis of x into the per-feature parts (rgb, audio, ...)."""
        parts = []
        start = 0
        for size in self.feature_sizes:
            parts.append(x[..., start : start + size])
            start += size
        return parts
