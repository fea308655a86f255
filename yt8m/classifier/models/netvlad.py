"""WILLOW's 2017 winning models (Miech, Laptev, Sivic: "Learnable pooling with Context Gating").

Late-fusion ("LF") models pool each feature (rgb, audio) separately with a learnable pooling
layer, concatenate, project to a hidden layer, optionally apply Context Gating (`gating`) and
finish with a video-level classifier, by default WILLOW's MoE with the label-space gate
(`moe_prob_gating`). The first feature gets the full number of clusters, the others a fraction
(NetVLAD/NetFV: half, soft-DBoF: an eighth), as in WILLOW's code.

- `NetVLADModelLF`: NetVLAD (soft-assignment residuals, intra- and global L2 normalisation);
  `lightvlad=True` gives NetRVLAD (no cluster centres, no residual).
- `NetFVModelLF`: NetFV (first- and second-order Fisher-vector statistics).
- `SoftDbofModelLF`: soft bag of words (softmax assignments summed over frames).
- `GatedDbofModelLF`: gated soft-DBoF on rgb (max-pooled assignments gate the summed ones),
  soft-DBoF on audio.
- `GruModel`: stacked GRUs, the final states of all layers concatenated (TF1 MultiRNNCell with
  `state_is_tuple=False`) -> classifier.

Published settings (WILLOW README): 300 frames (`iterations`), batch 80, lr 2e-4, decay 0.8,
`moe_l2` 1e-6; NetVLAD 256 clusters / NetFV 128, hidden 1024, no relu, gating, gated MoE;
soft-DBoF 8000 and gated DBoF 4096 clusters, hidden 1024, no relu; GRU 2 x 1200 cells.
Frames are sampled as in the seeds at training time (`sample_random_frames`: `iterations` random
frames with replacement); inference uses every valid frame, which is the expectation of that
draw for these sum poolings (the seeds drew random frames at inference too).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from yt8m.classifier.models.layers import (
    HEAD_DEFAULTS,
    ContextGating,
    FrameSampler,
    Yt8mModel,
    frame_mask,
    layer_list,
    l2_normalize,
    make_classifier,
    masked_max,
    normal_init,
    set_layer_list,
    slim_batch_norm,
)

WILLOW_MOE_L2 = 1e-6
GRU_GATE_BIAS = 1.0
"""Initial bias of the reset and update gates of TF1's GRUCell (tensorflow r1.x
python/ops/rnn_cell_impl.py, `GRUCell.build`: `constant_initializer(1.0)`; candidate bias 0)."""
FV_EPSILON = 1e-6
"""Added to the squared NetFV variances (WILLOW's `covar_weights` floor)."""

_WILLOW_HEAD = {**HEAD_DEFAULTS, "moe_l2": WILLOW_MOE_L2}
_SAMPLING = {"iterations": 300, "sample_random_frames": True}

NETVLAD_DEFAULTS: dict[str, Any] = {
    **_SAMPLING,
    "netvlad_add_batch_norm": True,
    "netvlad_cluster_size": 256,
    "netvlad_hidden_size": 1024,
    "netvlad_relu": False,
    "gating": True,
    "lightvlad": False,
    **_WILLOW_HEAD,
    "moe_prob_gating": True,
}
NETFV_DEFAULTS: dict[str, Any] = {
    **_SAMPLING,
    "netvlad_add_batch_norm": True,
    "fv_cluster_size": 128,
    "fv_hidden_size": 1024,
    "fv_relu": False,
    "fv_couple_weights": False,
    "fv_coupling_factor": 0.01,
    "gating": True,
    **_WILLOW_HEAD,
    "moe_prob_gating": True,
}
SOFTDBOF_DEFAULTS: dict[str, Any] = {
    **_SAMPLING,
    "dbof_add_batch_norm": True,
    "dbof_cluster_size": 8000,
    "dbof_hidden_size": 1024,
    "dbof_relu": False,
    "fc_dimred": True,
    "softdbof_maxpool": False,
    "gating": False,
    **HEAD_DEFAULTS,
}
GATEDDBOF_DEFAULTS: dict[str, Any] = {
    **_SAMPLING,
    "dbof_add_batch_norm": True,
    "dbof_cluster_size": 4096,
    "dbof_hidden_size": 1024,
    "dbof_relu": False,
    "fc_dimred": True,
    "softdbof_maxpool": False,
    "gating": False,
    **_WILLOW_HEAD,
    "moe_prob_gating": True,
}
GRU_DEFAULTS: dict[str, Any] = {
    "gru_cells": 1200,
    "gru_layers": 2,
    "gru_random_sequence": False,
    "gru_backward": False,
    "gru_reset_after": False,
    "iterations": 30,
    **_WILLOW_HEAD,
}


# --------------------------------------------------------------------------------------------
# pooling layers: call(x [B, T, D], mask [B, T], training) -> [B, out]


class _SoftAssignment(keras.layers.Layer):
    """softmax(BN(x W)) per frame, zeroed on padding: the cluster assignments [B, T, K]."""

    def __init__(self, feature_size: int, cluster_size: int, add_batch_norm: bool, **kwargs):
        super().__init__(**kwargs)
        self.feature_size = int(feature_size)
        self.cluster_size = int(cluster_size)
        self.add_batch_norm = bool(add_batch_norm)
        init = normal_init(self.feature_size)
        self.cluster = keras.layers.Dense(
            self.cluster_size, use_bias=not self.add_batch_norm, kernel_initializer=init,
            bias_initializer=init, name="cluster_weights",
        )
        self.cluster_bn = slim_batch_norm("cluster_bn") if self.add_batch_norm else None

    def build(self, input_shape):
        self.cluster.build((None, None, self.feature_size))
        if self.cluster_bn is not None:
            self.cluster_bn.build((None, None, self.cluster_size))

    def call(self, x, mask, training=False):
        logits = self.cluster(x)
        if self.cluster_bn is not None:
            logits = self.cluster_bn(logits, training=training, mask=mask)
        return ops.softmax(logits, axis=-1) * ops.expand_dims(mask, -1)


class NetVLADPool(keras.layers.Layer):
    """NetVLAD: sum_t a_tk (x_t - c_k), intra-normalised over D, flattened, L2-normalised.

    With `light=True` it is NetRVLAD: sum_t a_tk x_t (no centres). Output [B, D * K].
    """

    def __init__(self, feature_size: int, cluster_size: int, add_batch_norm: bool, light: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.feature_size = int(feature_size)
        self.cluster_size = int(cluster_size)
        self.light = bool(light)
        self.assign = _SoftAssignment(feature_size, cluster_size, add_batch_norm, name="assign")

    def build(self, input_shape):
        self.assign.build(input_shape)
        if not self.light:
            self.centres = self.add_weight(
                shape=(self.feature_size, self.cluster_size),
                initializer=normal_init(self.feature_size),
                name="cluster_weights2",
            )

    def call(self, x, mask, training=False):
        a = self.assign(x, mask, training=training)
        vlad = ops.einsum("btk,btd->bdk", a, x)
        if not self.light:
            a_sum = ops.sum(a, axis=1, keepdims=True)  # [B, 1, K]
            vlad = vlad - a_sum * self.centres
        vlad = l2_normalize(vlad, axis=1)
        vlad = ops.reshape(vlad, (-1, self.feature_size * self.cluster_size))
        return l2_normalize(vlad, axis=-1)


class NetFVPool(keras.layers.Layer):
    """NetFV: first- and second-order Fisher-vector statistics of soft assignments.

    Learnable centres (`cluster_weights2`, or `coupling_factor` x the assignment weights when
    `couple_weights`) and diagonal variances (squared `covar_weights` + 1e-6). Output [B, 2 D K].
    """

    def __init__(
        self,
        feature_size: int,
        cluster_size: int,
        add_batch_norm: bool,
        couple_weights: bool = False,
        coupling_factor: float = 0.01,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.feature_size = int(feature_size)
        self.cluster_size = int(cluster_size)
        self.couple_weights = bool(couple_weights)
        self.coupling_factor = float(coupling_factor)
        self.assign = _SoftAssignment(feature_size, cluster_size, add_batch_norm, name="assign")

    def build(self, input_shape):
        self.assign.build(input_shape)
        d, k = self.feature_size, self.cluster_size
        self.covar = self.add_weight(
            shape=(d, k),
            initializer=keras.initializers.RandomNormal(mean=1.0, stddev=1.0 / d**0.5),
            name="covar_weights",
        )
        if not self.couple_weights:
            self.centres = self.add_weight(shape=(d, k), initializer=normal_init(d), name="cluster_weights2")

    def call(self, x, mask, training=False):
        d, k = self.feature_size, self.cluster_size
        a = self.assign(x, mask, training=training)
        if self.couple_weights:
            centres = self.coupling_factor * self.assign.cluster.kernel
        else:
            centres = self.centres
        covar = ops.square(self.covar) + FV_EPSILON
        a_sum = ops.sum(a, axis=1, keepdims=True)  # [B, 1, K]
        fv1 = ops.einsum("btk,btd->bdk", a, x)
        fv2 = ops.einsum("btk,btd->bdk", a, ops.square(x))
        fv2 = a_sum * ops.square(centres) + fv2 - 2.0 * fv1 * centres
        fv2 = fv2 / ops.square(covar) - a_sum
        fv2 = l2_normalize(ops.reshape(fv2, (-1, d * k)), axis=-1)
        fv1 = (fv1 - a_sum * centres) / covar
        fv1 = l2_normalize(fv1, axis=1)
        fv1 = l2_normalize(ops.reshape(fv1, (-1, d * k)), axis=-1)
        return ops.concatenate([fv1, fv2], axis=-1)


class SoftDBoFPool(keras.layers.Layer):
    """Soft bag of words: L2-normalised sum of the soft assignments (plus their max if `max_pool`)."""

    def __init__(self, feature_size: int, cluster_size: int, add_batch_norm: bool, max_pool: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.max_pool = bool(max_pool)
        self.assign = _SoftAssignment(feature_size, cluster_size, add_batch_norm, name="assign")

    def build(self, input_shape):
        self.assign.build(input_shape)

    def call(self, x, mask, training=False):
        a = self.assign(x, mask, training=training)
        pooled = l2_normalize(ops.sum(a, axis=1), axis=-1)
        if self.max_pool:
            pooled = ops.concatenate([pooled, l2_normalize(masked_max(a, mask), axis=-1)], axis=-1)
        return pooled


class GatedDBoFPool(keras.layers.Layer):
    """Gated soft-DBoF: the summed assignments gated by sigmoid(BN(max_assign @ R @ W)), L2-normalised.

    R [K, D] and W [D, K] are WILLOW's `dim_red` and `cluster_weights_2`. Output [B, K].
    """

    def __init__(self, feature_size: int, cluster_size: int, add_batch_norm: bool, **kwargs):
        super().__init__(**kwargs)
        self.feature_size = int(feature_size)
        self.cluster_size = int(cluster_size)
        self.add_batch_norm = bool(add_batch_norm)
        d, k = self.feature_size, self.cluster_size
        self.assign = _SoftAssignment(d, k, add_batch_norm, name="assign")
        self.dim_red = keras.layers.Dense(d, use_bias=False, kernel_initializer=normal_init(d), name="dim_red")
        self.gate = keras.layers.Dense(
            k, use_bias=not self.add_batch_norm, kernel_initializer=normal_init(d), bias_initializer=normal_init(d),
            name="cluster_weights_2",
        )
        self.gate_bn = slim_batch_norm("cluster_bn_2") if self.add_batch_norm else None

    def build(self, input_shape):
        d, k = self.feature_size, self.cluster_size
        self.assign.build(input_shape)
        self.dim_red.build((None, k))
        self.gate.build((None, d))
        if self.gate_bn is not None:
            self.gate_bn.build((None, k))

    def call(self, x, mask, training=False):
        a = self.assign(x, mask, training=training)
        a_sum = ops.sum(a, axis=1)
        a_max = l2_normalize(masked_max(a, mask), axis=-1)
        gates = self.gate(self.dim_red(a_max))
        if self.gate_bn is not None:
            gates = self.gate_bn(gates, training=training)
        return l2_normalize(ops.sigmoid(gates) * a_sum, axis=-1)


# --------------------------------------------------------------------------------------------
# late-fusion models


class _LateFusionModel(Yt8mModel):
    """Input BN -> one pooling layer per feature -> concat -> hidden (+BN/relu6) -> gating -> head.

    Subclasses set the hyperparameter names and build the pooling layers in `make_pools`.
    """

    registry_name = ""
    bn_key = "netvlad_add_batch_norm"
    cluster_key = ""
    hidden_key = ""
    relu_key = ""

    def __init__(self, num_classes, feature_sizes, max_frames, hparams, **kwargs):
        super().__init__(num_classes, feature_sizes, max_frames, hparams, self.registry_name, **kwargs)
        hp = self.hp
        bn = hp[self.bn_key]
        self.relu = bool(hp[self.relu_key])
        self.sampler = FrameSampler(hp["iterations"], hp["sample_random_frames"], inference="all")
        self.input_bn = slim_batch_norm("input_bn") if bn else None
        set_layer_list(self, "pool", self.make_pools())
        self.use_hidden = bool(hp.get("fc_dimred", True))
        if self.use_hidden:
            hidden = hp[self.hidden_key]
            self.hidden = keras.layers.Dense(
                hidden,
                use_bias=not (bn and self.relu),
                kernel_initializer=normal_init(hp[self.cluster_key]),
                bias_initializer=keras.initializers.RandomNormal(stddev=0.01),
                name="hidden1",
            )
            self.hidden_bn = slim_batch_norm("hidden1_bn") if (bn and self.relu) else None
        self.gating = ContextGating(add_batch_norm=bn, name="context_gating") if hp["gating"] else None
        self.classifier = make_classifier(num_classes, hp)

    def make_pools(self) -> list[keras.layers.Layer]:  # pragma: no cover - abstract
        raise NotImplementedError

    def head_layers(self):
        return [self.classifier]

    def forward(self, frames, num_frames, training):
        frames, mask = self.sampler(frames, num_frames, training=training)
        x = frames
        if self.input_bn is not None:
            x = self.input_bn(x, training=training, mask=mask)
        pooled = [pool(part, mask, training=training) for pool, part in zip(layer_list(self, "pool"), self.split_features(x))]
        activation = ops.concatenate(pooled, axis=-1) if len(pooled) > 1 else pooled[0]
        if self.use_hidden:
            activation = self.hidden(activation)
            if self.hidden_bn is not None:
                activation = self.hidden_bn(activation, training=training)
            if self.relu:
                activation = ops.relu6(activation)
        if self.gating is not None:
            activation = self.gating(activation, training=training)
        return self.classifier(activation, training=training)


def branch_clusters(cluster_size: int, index: int, divisor: int) -> int:
    """Clusters for feature `index`: the full count for the first (rgb), 1/divisor for the others."""
    return int(cluster_size) if index == 0 else max(int(cluster_size) // divisor, 1)


class NetVLADModelLF(_LateFusionModel):
    """WILLOW's (gated) NetVLAD; `lightvlad=True` for NetRVLAD. Audio gets half the clusters."""

    registry_name = "NetVLADModelLF"
    cluster_key, hidden_key, relu_key = "netvlad_cluster_size", "netvlad_hidden_size", "netvlad_relu"

    def make_pools(self):
        hp = self.hp
        return [
            NetVLADPool(
                size,
                branch_clusters(hp["netvlad_cluster_size"], i, 2),
                hp["netvlad_add_batch_norm"],
                light=hp["lightvlad"],
                name=f"vlad_{i}",
            )
            for i, size in enumerate(self.feature_sizes)
        ]


class NetFVModelLF(_LateFusionModel):
    """WILLOW's (gated) NetFV. Audio gets half the clusters."""

    registry_name = "NetFVModelLF"
    cluster_key, hidden_key, relu_key = "fv_cluster_size", "fv_hidden_size", "fv_relu"

    def make_pools(self):
        hp = self.hp
        return [
            NetFVPool(
                size,
                branch_clusters(hp["fv_cluster_size"], i, 2),
                hp["netvlad_add_batch_norm"],
                couple_weights=hp["fv_couple_weights"],
                coupling_factor=hp["fv_coupling_factor"],
                name=f"fv_{i}",
            )
            for i, size in enumerate(self.feature_sizes)
        ]


class SoftDbofModelLF(_LateFusionModel):
    """WILLOW's soft-DBoF on each feature (audio: an eighth of the clusters)."""

    registry_name = "SoftDbofModelLF"
    bn_key = "dbof_add_batch_norm"
    cluster_key, hidden_key, relu_key = "dbof_cluster_size", "dbof_hidden_size", "dbof_relu"

    def make_pools(self):
        hp = self.hp
        return [
            SoftDBoFPool(
                size,
                branch_clusters(hp["dbof_cluster_size"], i, 8),
                hp["dbof_add_batch_norm"],
                max_pool=hp["softdbof_maxpool"],
                name=f"dbof_{i}",
            )
            for i, size in enumerate(self.feature_sizes)
        ]


class GatedDbofModelLF(_LateFusionModel):
    """WILLOW's gated soft-DBoF on rgb and plain soft-DBoF (an eighth of the clusters) on audio."""

    registry_name = "GatedDbofModelLF"
    bn_key = "dbof_add_batch_norm"
    cluster_key, hidden_key, relu_key = "dbof_cluster_size", "dbof_hidden_size", "dbof_relu"

    def make_pools(self):
        hp = self.hp
        pools: list[keras.layers.Layer] = []
        for i, size in enumerate(self.feature_sizes):
            clusters = branch_clusters(hp["dbof_cluster_size"], i, 8)
            if i == 0:
                pools.append(GatedDBoFPool(size, clusters, hp["dbof_add_batch_norm"], name=f"dbof_{i}"))
            else:
                pools.append(
                    SoftDBoFPool(size, clusters, hp["dbof_add_batch_norm"], max_pool=hp["softdbof_maxpool"], name=f"dbof_{i}")
                )
        return pools


class GruGateBias(keras.initializers.Initializer):
    """Keras GRU bias initial values equal to TF1 GRUCell's: 1 for the update and reset gates, 0 for
    the candidate. Keras orders the bias [z, r, h]; with `reset_after` it has an input row and a
    recurrent row, and only the input row gets the 1 (their sum is TF1's single bias)."""

    def __init__(self, units: int, value: float = GRU_GATE_BIAS):
        self.units = int(units)
        self.value = float(value)

    def __call__(self, shape, dtype=None):
        gates = ops.concatenate(
            [ops.full((2 * self.units,), self.value, dtype=dtype or "float32"), ops.zeros((self.units,), dtype=dtype or "float32")]
        )
        if len(shape) == 1:
            return gates
        return ops.stack([gates] + [ops.zeros_like(gates)] * (int(shape[0]) - 1))

    def get_config(self) -> dict[str, Any]:
        return {"units": self.units, "value": self.value}


class GruModel(Yt8mModel):
    """Stacked GRUs (`gru_layers` x `gru_cells`) over the valid frames; the final states of all
    layers are concatenated (as TF1's MultiRNNCell with `state_is_tuple=False`) -> classifier.

    `gru_reset_after=False` is TF1's GRUCell (reset gate before the recurrent matmul);
    True is the cuDNN-compatible variant (one more bias vector, much faster on GPU). Gate biases
    start at 1 as in TF1's GRUCell (`GruGateBias`); WILLOW used `tf.contrib.rnn.GRUCell`
    (antoine77340/Youtube-8M-WILLOW frame_level_models.py `GruModel`).
    `gru_backward` reads the valid frames in reverse; `gru_random_sequence` trains on
    `iterations` sorted random frames.
    """

    def __init__(self, num_classes, feature_sizes, max_frames, hparams, **kwargs):
        super().__init__(num_classes, feature_sizes, max_frames, hparams, "GruModel", **kwargs)
        hp = self.hp
        self.sampler = FrameSampler(hp["iterations"], True, inference="all")
        rnns = [
            keras.layers.GRU(
                hp["gru_cells"],
                return_sequences=True,
                return_state=True,
                reset_after=hp["gru_reset_after"],
                bias_initializer=GruGateBias(hp["gru_cells"]),
                name=f"gru_{i}",
            )
            for i in range(hp["gru_layers"])
        ]
        set_layer_list(self, "gru", rnns)
        self.classifier = make_classifier(num_classes, hp)

    def head_layers(self):
        return [self.classifier]

    def forward(self, frames, num_frames, training):
        if self.hp["gru_random_sequence"]:
            frames, mask = self.sampler(frames, num_frames, training=training)
            lengths = ops.cast(ops.sum(mask, axis=1), "int32")
        else:
            mask = frame_mask(num_frames, ops.shape(frames)[1])
            lengths = num_frames
        if self.hp["gru_backward"]:
            frames = tf.reverse_sequence(frames, lengths, seq_axis=1, batch_axis=0)
        bool_mask = ops.cast(mask, "bool")
        x = frames
        states = []
        for rnn in layer_list(self, "gru"):
            x, state = rnn(x, mask=bool_mask, training=training)
            states.append(state)
        state = ops.concatenate(states, axis=-1) if len(states) > 1 else states[0]
        return self.classifier(state, training=training)
