"""NeXtVLAD (Lin, Xiao, Fan 2018, 3rd place YT8M 2018) and its mixture with on-line distillation.

NeXtVLAD expands each frame by `expansion` (FC), splits it into `groups` lower-dimensional
groups, soft-assigns every group to `nextvlad_cluster_size` clusters, weights each group by a
sigmoid attention, aggregates the residuals over frames and groups, intra-normalises, applies
BN; rgb and audio are pooled separately (audio with half the clusters and half the groups),
concatenated, dropped out, projected to `nextvlad_hidden_size` (+BN), gated by squeeze-excitation
context gating (`gating_reduction`) and classified (logistic by default).

Paper Table 1 best (expansion 2, 8 groups, 128 clusters, hidden 2048, SE reduction 8, rgb 1024 +
audio 128, 3862 classes): about 89M parameters; the final single model (112 clusters, SE
reduction 16): about 79M; the mixture of three of those: about 237M.

As published (linrongc/youtube-8m nextvlad.py, video_level_models.py, scripts/*.sh): every
weight drawn by `slim.variance_scaling_initializer()` (He, truncated normal: Keras' HeNormal),
batch norm as slim's (decay 0.999), the logistic classifier with the L2 penalty (`l2_penalty`
1e-5, the scripts' value) on its weights and biases.

`MixNeXtVladModel` (scripts/train_mix_nextvlad_final_submission.sh): `mix_number` NeXtVLAD
branches with logistic heads; their logits are mixed with softmax weights computed from the
(BN'd) mean frame. While training, the on-line distillation term of the paper, `cl_lambda *
mean_batch(sum_branch KL(softmax(mix_logit/T) || softmax(branch_logit/T)))` with T =
`cl_temperature` (3 and 9 in the final script), is added with `add_loss`. When the trainer
passes the labels (`model(inputs, training=True, labels=..., label_weights=...)`), each
branch's own cross-entropy against the labels (their train.py adds it for every
`aux_predictions`) is added with `add_loss` too (`branch_label_loss`), so a trainer that adds
`model.losses` to its label loss trains the model as published. `branch_logits()` exposes the
per-branch logits and the mixture's.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from yt8m.classifier.models.layers import (
    HEAD_DEFAULTS,
    SLIM_BN_DECAY,
    SqueezeExcitationGating,
    Yt8mModel,
    frame_mask,
    layer_list,
    l2_normalize,
    cross_entropy,
    make_classifier,
    masked_mean,
    set_layer_list,
    slim_batch_norm,
    slim_l2,
)

NEXTVLAD_L2_PENALTY = 1e-5
"""`--l2_penalty` of linrongc's run scripts (both NeXtVLAD and the mixture)."""
KL_EPSILON = 1e-8
"""Added inside the logs of the distillation KL (as in the published code)."""

NEXTVLAD_DEFAULTS: dict[str, Any] = {
    "nextvlad_cluster_size": 128,
    "nextvlad_hidden_size": 2048,
    "groups": 8,
    "expansion": 2,
    "gating_reduction": 8,
    "drop_rate": 0.5,
    **HEAD_DEFAULTS,
    "video_level_classifier_model": "LogisticModel",
    "l2_penalty": NEXTVLAD_L2_PENALTY,
}
MIX_NEXTVLAD_DEFAULTS: dict[str, Any] = {
    "nextvlad_cluster_size": 112,
    "nextvlad_hidden_size": 2048,
    "groups": 8,
    "expansion": 2,
    "gating_reduction": 16,
    "drop_rate": 0.5,
    "mix_number": 3,
    "cl_temperature": 3.0,
    "cl_lambda": 9.0,
    "branch_label_loss": True,
    "l2_penalty": NEXTVLAD_L2_PENALTY,
    "batch_norm_decay": SLIM_BN_DECAY,
}


class NeXtVLADPool(keras.layers.Layer):
    """One NeXtVLAD aggregation over frames x [B, T, D] with mask [B, T] -> [B, K * expansion*D/G]."""

    def __init__(self, feature_size: int, cluster_size: int, groups: int, expansion: int, **kwargs):
        super().__init__(**kwargs)
        self.feature_size = int(feature_size)
        self.cluster_size = int(cluster_size)
        self.groups = int(groups)
        self.expansion = int(expansion)
        self.expanded = self.expansion * self.feature_size
        if self.expanded % self.groups:
            raise ValueError(
                f"expansion x feature size ({self.expanded}) must be divisible by the groups ({self.groups})"
            )
        self.group_size = self.expanded // self.groups
        he = keras.initializers.HeNormal()
        self.expand = keras.layers.Dense(self.expanded, kernel_initializer=he, name="expansion")
        self.attention = keras.layers.Dense(self.groups, kernel_initializer=he, name="attention")
        self.cluster = keras.layers.Dense(
            self.groups * self.cluster_size, use_bias=False, kernel_initializer=he, name="cluster_weights"
        )
        self.cluster_bn = slim_batch_norm("cluster_bn")
        self.vlad_bn = slim_batch_norm("vlad_bn")

    def build(self, input_shape):
        self.expand.build((None, None, self.feature_size))
        self.attention.build((None, None, self.expanded))
        self.cluster.build((None, None, self.expanded))
        self.cluster_bn.build((None, None, self.groups * self.cluster_size))
        self.centres = self.add_weight(
            shape=(self.group_size, self.cluster_size),
            initializer=keras.initializers.HeNormal(),
            name="cluster_weights2",
        )
        self.vlad_bn.build((None, self.group_size * self.cluster_size))

    def call(self, x, mask, training=False):
        k, f = self.cluster_size, self.group_size
        x = self.expand(x)  # [B, T, lambda D]
        attention = ops.sigmoid(self.attention(x)) * ops.expand_dims(mask, -1)  # [B, T, G]
        attention = ops.reshape(attention, (ops.shape(x)[0], -1, 1))  # [B, T*G, 1]
        logits = self.cluster_bn(self.cluster(x), training=training, mask=mask)  # [B, T, G*K]
        assign = ops.softmax(ops.reshape(logits, (ops.shape(x)[0], -1, k)), axis=-1) * attention
        groups = ops.reshape(x, (ops.shape(x)[0], -1, f))  # [B, T*G, f]
        a_sum = ops.sum(assign, axis=1, keepdims=True)  # [B, 1, K]
        vlad = ops.einsum("bnk,bnf->bfk", assign, groups) - a_sum * self.centres
        vlad = l2_normalize(vlad, axis=1)
        vlad = ops.reshape(vlad, (-1, f * k))
        return self.vlad_bn(vlad, training=training)


class NeXtVLADBackbone(keras.layers.Layer):
    """NeXtVLAD per feature -> concat -> dropout -> hidden FC (no bias) + BN -> SE gating."""

    def __init__(self, feature_sizes, hparams: dict[str, Any], **kwargs):
        super().__init__(**kwargs)
        hp = hparams
        self.feature_sizes = tuple(int(s) for s in feature_sizes)
        pools = []
        for i, size in enumerate(self.feature_sizes):
            divisor = 1 if i == 0 else 2
            pools.append(
                NeXtVLADPool(
                    size,
                    max(hp["nextvlad_cluster_size"] // divisor, 1),
                    max(hp["groups"] // divisor, 1),
                    hp["expansion"],
                    name=f"nextvlad_{i}",
                )
            )
        set_layer_list(self, "pool", pools)
        self.dropout = keras.layers.Dropout(hp["drop_rate"]) if hp["drop_rate"] > 0 else None
        self.hidden = keras.layers.Dense(
            hp["nextvlad_hidden_size"], use_bias=False, kernel_initializer=keras.initializers.HeNormal(), name="hidden1"
        )
        self.hidden_bn = slim_batch_norm("hidden1_bn")
        self.gating = SqueezeExcitationGating(hp["gating_reduction"], name="se_gating")

    def build(self, input_shape):
        for pool, size in zip(layer_list(self, "pool"), self.feature_sizes):
            pool.build((None, None, size))
        vlad_dim = sum(p.group_size * p.cluster_size for p in layer_list(self, "pool"))
        self.hidden.build((None, vlad_dim))
        hidden = self.hidden.units
        self.hidden_bn.build((None, hidden))
        self.gating.build((None, hidden))

    def call(self, parts, mask, training=False):
        pooled = [pool(part, mask, training=training) for pool, part in zip(layer_list(self, "pool"), parts)]
        vlad = ops.concatenate(pooled, axis=-1) if len(pooled) > 1 else pooled[0]
        if self.dropout is not None:
            vlad = self.dropout(vlad, training=training)
        activation = self.hidden_bn(self.hidden(vlad), training=training)
        return self.gating(activation, training=training)


class NeXtVLADModel(Yt8mModel):
    """NeXtVLAD pooling of rgb and audio, SE context gating, video-level classifier."""

    def __init__(self, num_classes, feature_sizes, max_frames, hparams, **kwargs):
        super().__init__(num_classes, feature_sizes, max_frames, hparams, "NeXtVLADModel", **kwargs)
        self.backbone = NeXtVLADBackbone(self.feature_sizes, self.hp, name="backbone")
        self.classifier = make_classifier(num_classes, self.hp, nextvlad_style=True)

    def head_layers(self):
        return [self.classifier]

    def forward(self, frames, num_frames, training):
        mask = frame_mask(num_frames, ops.shape(frames)[1])
        activation = self.backbone(self.split_features(frames), mask, training=training)
        return self.classifier(activation, training=training)


class MixNeXtVladModel(Yt8mModel):
    """A gated mixture of `mix_number` NeXtVLAD models with on-line knowledge distillation.

    Output: sigmoid(sum_m w_m logit_m), w = softmax(FC(BN(mean valid frame))). In training mode
    the distillation loss (see the module docstring) is added with `add_loss`.
    """

    def __init__(self, num_classes, feature_sizes, max_frames, hparams, **kwargs):
        super().__init__(num_classes, feature_sizes, max_frames, hparams, "MixNeXtVladModel", **kwargs)
        hp = self.hp
        self.mix_bn = slim_batch_norm("mix_weights_bn")
        self.mix_weights = keras.layers.Dense(
            hp["mix_number"], kernel_initializer=keras.initializers.HeNormal(), name="mix_weights"
        )
        set_layer_list(
            self, "branch", [NeXtVLADBackbone(self.feature_sizes, hp, name=f"branch_{m}") for m in range(hp["mix_number"])]
        )
        set_layer_list(
            self,
            "head",
            [
                keras.layers.Dense(
                    num_classes,
                    kernel_initializer=keras.initializers.HeNormal(),
                    kernel_regularizer=slim_l2(hp["l2_penalty"]),
                    bias_regularizer=slim_l2(hp["l2_penalty"]),
                    name=f"logistic_{m}",
                )
                for m in range(hp["mix_number"])
            ],
        )

    def head_layers(self):
        return layer_list(self, "head")

    def branch_logits(self, frames, num_frames, training: bool = False):
        """(mixture logits [B, C], every branch's logits [B, M, C]) for zero-padded frames."""
        mask = frame_mask(num_frames, ops.shape(frames)[1])
        weights = self.mix_bn(masked_mean(frames, mask), training=training)
        weights = ops.softmax(self.mix_weights(weights), axis=-1)  # [B, M]
        parts = self.split_features(frames)
        branches = zip(layer_list(self, "branch"), layer_list(self, "head"))
        logits = ops.stack([head(branch(parts, mask, training=training)) for branch, head in branches], axis=1)  # [B, M, C]
        mix_logit = ops.sum(ops.expand_dims(weights, -1) * logits, axis=1)
        return mix_logit, logits

    def forward(self, frames, num_frames, training):
        mix_logit, logits = self.branch_logits(frames, num_frames, training)
        if training:
            self.add_loss(self.distillation_loss(mix_logit, logits))
        return ops.sigmoid(mix_logit)

    def forward_with_labels(self, frames, num_frames, training, labels, label_weights):
        mix_logit, logits = self.branch_logits(frames, num_frames, training)
        self.add_loss(self.distillation_loss(mix_logit, logits))
        if self.hp["branch_label_loss"]:
            self.add_loss(self.branch_loss(logits, labels, label_weights))
        return ops.sigmoid(mix_logit)

    def branch_loss(self, branch_logits, labels, label_weights=None):
        """Sum over branches of the starter's cross-entropy of sigmoid(branch logits), averaged
        over the batch (linrongc's train.py: `label_loss += loss(aux_prediction, labels)`)."""
        probabilities = ops.sigmoid(branch_logits)
        per_branch = [
            ops.mean(cross_entropy(labels, probabilities[:, m, :], label_weights)) for m in range(self.hp["mix_number"])
        ]
        return ops.sum(ops.stack(per_branch))

    def distillation_loss(self, mix_logit, branch_logits):
        """cl_lambda * mean over the batch of sum over branches of KL(mixture || branch) at T."""
        temperature = float(self.hp["cl_temperature"])
        teacher = ops.expand_dims(ops.softmax(mix_logit / temperature, axis=-1), 1)  # [B, 1, C]
        students = ops.softmax(branch_logits / temperature, axis=-1)  # [B, M, C]
        kl = ops.sum(teacher * (ops.log(teacher + KL_EPSILON) - ops.log(students + KL_EPSILON)), axis=-1)
        return float(self.hp["cl_lambda"]) * ops.mean(ops.sum(kl, axis=-1))
