"""The starter code's models (google/youtube-8m), rebuilt in Keras 3.

Video level: `LogisticModel`, `MoeModel` (inputs: mean features [B, D]).
Frame level: `FrameLevelLogisticModel` (mean over valid frames -> logistic), `DbofModel` (deep
bag of frames: frame sampling, input BN, projection to a large "cluster" space, relu6, max pool,
hidden layer, MoE), `LstmModel` (stacked LSTMs over the valid frames, last layer's final output
-> MoE).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from yt8m.classifier.models.layers import (
    DEFAULT_L2_PENALTY,
    DEFAULT_MOE_MIXTURES,
    HEAD_DEFAULTS,
    FrameSampler,
    LogisticHead,
    MoeHead,
    Yt8mModel,
    frame_mask,
    layer_list,
    make_classifier,
    masked_max,
    masked_mean,
    normal_init,
    set_layer_list,
)

DBOF_POOLING = ("max", "average")

LOGISTIC_DEFAULTS: dict[str, Any] = {"l2_penalty": DEFAULT_L2_PENALTY}
MOE_DEFAULTS: dict[str, Any] = {
    "moe_num_mixtures": DEFAULT_MOE_MIXTURES,
    "moe_l2": DEFAULT_L2_PENALTY,
    "moe_prob_gating": False,
}
FRAME_LOGISTIC_DEFAULTS: dict[str, Any] = {"l2_penalty": DEFAULT_L2_PENALTY}
DBOF_DEFAULTS: dict[str, Any] = {
    "iterations": 30,
    "sample_random_frames": True,
    "dbof_add_batch_norm": True,
    "dbof_cluster_size": 8192,
    "dbof_hidden_size": 1024,
    "dbof_pooling_method": "max",
    **HEAD_DEFAULTS,
}
LSTM_DEFAULTS: dict[str, Any] = {
    "lstm_cells": 1024,
    "lstm_layers": 2,
    "lstm_random_sequence": False,
    "iterations": 30,
    **HEAD_DEFAULTS,
}


class LogisticModel(Yt8mModel):
    """Video-level logistic regression with an L2 penalty (starter default 1e-8)."""

    video_level = True

    def __init__(self, num_classes, feature_sizes, max_frames, hparams, **kwargs):
        super().__init__(num_classes, feature_sizes, max_frames, hparams, "LogisticModel", **kwargs)
        self.head = LogisticHead(num_classes, l2_penalty=self.hp["l2_penalty"], name="logistic")

    def forward(self, features, num_frames, training):
        return self.head(features, training=training)


class MoeModel(Yt8mModel):
    """Video-level mixture of experts: `moe_num_mixtures` logistic experts plus a dummy expert."""

    video_level = True

    def __init__(self, num_classes, feature_sizes, max_frames, hparams, **kwargs):
        super().__init__(num_classes, feature_sizes, max_frames, hparams, "MoeModel", **kwargs)
        self.head = MoeHead(
            num_classes,
            num_mixtures=self.hp["moe_num_mixtures"],
            l2_penalty=self.hp["moe_l2"],
            prob_gating=self.hp["moe_prob_gating"],
            name="moe",
        )

    def forward(self, features, num_frames, training):
        return self.head(features, training=training)


class FrameLevelLogisticModel(Yt8mModel):
    """Average of the valid frames, then a logistic layer."""

    def __init__(self, num_classes, feature_sizes, max_frames, hparams, **kwargs):
        super().__init__(num_classes, feature_sizes, max_frames, hparams, "FrameLevelLogisticModel", **kwargs)
        self.head = LogisticHead(num_classes, l2_penalty=self.hp["l2_penalty"], name="logistic")

    def forward(self, frames, num_frames, training):
        mask = frame_mask(num_frames, ops.shape(frames)[1])
        return self.head(masked_mean(frames, mask), training=training)


class DbofModel(Yt8mModel):
    """Deep Bag of Frames (starter): sample frames, BN, project to `dbof_cluster_size` units with
    BN + relu6, pool over frames (max by default), hidden layer with BN + relu6, video classifier.

    Training samples `iterations` frames (random frames with replacement when
    `sample_random_frames`, else a random contiguous sequence); inference takes `iterations`
    evenly spaced frames (or the centred window) so that max pooling sees as many frames as in
    training.
    """

    def __init__(self, num_classes, feature_sizes, max_frames, hparams, **kwargs):
        super().__init__(num_classes, feature_sizes, max_frames, hparams, "DbofModel", **kwargs)
        hp = self.hp
        bn = hp["dbof_add_batch_norm"]
        d, k, h = self.feature_size, hp["dbof_cluster_size"], hp["dbof_hidden_size"]
        self.sampler = FrameSampler(hp["iterations"], hp["sample_random_frames"], inference="sample")
        self.input_bn = keras.layers.BatchNormalization(name="input_bn") if bn else None
        self.cluster = keras.layers.Dense(
            k, use_bias=not bn, kernel_initializer=normal_init(d), bias_initializer=normal_init(d), name="cluster"
        )
        self.cluster_bn = keras.layers.BatchNormalization(name="cluster_bn") if bn else None
        self.hidden = keras.layers.Dense(
            h,
            use_bias=not bn,
            kernel_initializer=normal_init(k),
            bias_initializer=keras.initializers.RandomNormal(stddev=0.01),
            name="hidden1",
        )
        self.hidden_bn = keras.layers.BatchNormalization(name="hidden1_bn") if bn else None
        self.classifier = make_classifier(num_classes, hp)

    def forward(self, frames, num_frames, training):
        frames, mask = self.sampler(frames, num_frames, training=training)
        x = frames
        if self.input_bn is not None:
            x = self.input_bn(x, training=training, mask=mask)
        x = self.cluster(x)
        if self.cluster_bn is not None:
            x = self.cluster_bn(x, training=training, mask=mask)
        x = ops.relu6(x)
        if self.hp["dbof_pooling_method"] == "max":
            pooled = masked_max(x, mask)
        else:
            pooled = masked_mean(x, mask)
        hidden = self.hidden(pooled)
        if self.hidden_bn is not None:
            hidden = self.hidden_bn(hidden, training=training)
        hidden = ops.relu6(hidden)
        return self.classifier(hidden, training=training)


class LstmModel(Yt8mModel):
    """Stacked LSTMs (`lstm_layers` x `lstm_cells`) over the valid frames; the last layer's
    output at the last valid frame goes to the video classifier (starter: `state[-1].h`).

    `lstm_random_sequence` (WILLOW) trains on `iterations` sorted random frames instead.
    """

    def __init__(self, num_classes, feature_sizes, max_frames, hparams, **kwargs):
        super().__init__(num_classes, feature_sizes, max_frames, hparams, "LstmModel", **kwargs)
        hp = self.hp
        self.sampler = FrameSampler(hp["iterations"], True, inference="all")
        rnns = [
            keras.layers.LSTM(
                hp["lstm_cells"],
                return_sequences=i < hp["lstm_layers"] - 1,
                unit_forget_bias=True,
                name=f"lstm_{i}",
            )
            for i in range(hp["lstm_layers"])
        ]
        set_layer_list(self, "lstm", rnns)
        self.classifier = make_classifier(num_classes, hp)

    def forward(self, frames, num_frames, training):
        if self.hp["lstm_random_sequence"]:
            frames, mask = self.sampler(frames, num_frames, training=training)
        else:
            mask = frame_mask(num_frames, ops.shape(frames)[1])
        bool_mask = ops.cast(mask, "bool")
        x = frames
        for rnn in layer_list(self, "lstm"):
            x = rnn(x, mask=bool_mask, training=training)
        return self.classifier(x, training=training)
