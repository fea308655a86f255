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
import tensorflow as tf
from keras import ops

from yt8m.classifier.models.layers import (
    DEFAULT_L2_PENALTY,
    DEFAULT_MOE_MIXTURES,
    HEAD_DEFAULTS,
    SLIM_BN_DECAY,
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
    slim_batch_norm,
)

DBOF_POOLING = ("max", "average")
DBOF_ACTIVATIONS = ("sigmoid", "relu6")
"""`dbof_activation` values of google/youtube-8m frame_level_models.py (`DbofModel.ACT_FN_MAP`)."""

LOGISTIC_DEFAULTS: dict[str, Any] = {"l2_penalty": DEFAULT_L2_PENALTY}
MOE_DEFAULTS: dict[str, Any] = {
    "moe_num_mixtures": DEFAULT_MOE_MIXTURES,
    "moe_l2": DEFAULT_L2_PENALTY,
    "moe_prob_gating": False,
    "batch_norm_decay": SLIM_BN_DECAY,
}
FRAME_LOGISTIC_DEFAULTS: dict[str, Any] = {"l2_penalty": DEFAULT_L2_PENALTY}
DBOF_DEFAULTS: dict[str, Any] = {
    "iterations": 30,
    "sample_random_frames": True,
    "dbof_add_batch_norm": True,
    "dbof_cluster_size": 8192,
    "dbof_hidden_size": 1024,
    "dbof_pooling_method": "max",
    "dbof_activation": "sigmoid",
    **HEAD_DEFAULTS,
}
LSTM_DEFAULTS: dict[str, Any] = {
    "lstm_cells": 1024,
    "lstm_layers": 2,
    "lstm_random_sequence": False,
    "lstm_backward": False,
    "lstm_full_state": False,
    "iterations": 30,
    **HEAD_DEFAULTS,
}


class LogisticModel(Yt8mModel):
    """Video-level logistic regression with an L2 penalty (starter default 1e-8)."""

    video_level = True

    def __init__(self, num_classes, feature_sizes, max_frames, hparams, **kwargs):
        super().__init__(num_classes, feature_sizes, max_frames, hparams, "LogisticModel", **kwargs)
        self.head = LogisticHead(num_classes, l2_penalty=self.hp["l2_penalty"], name="logistic")

    def head_layers(self):
        return [self.head]

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

    def head_layers(self):
        return [self.head]

    def forward(self, features, num_frames, training):
        return self.head(features, training=training)


class FrameLevelLogisticModel(Yt8mModel):
    """Average of the valid frames, then a logistic layer."""

    def __init__(self, num_classes, feature_sizes, max_frames, hparams, **kwargs):
        super().__init__(num_classes, feature_sizes, max_frames, hparams, "FrameLevelLogisticModel", **kwargs)
        self.head = LogisticHead(num_classes, l2_penalty=self.hp["l2_penalty"], name="logistic")

    def head_layers(self):
        return [self.head]

    def forward(self, frames, num_frames, training):
        mask = frame_mask(num_frames, ops.shape(frames)[1])
        return self.head(masked_mean(frames, mask), training=training)


class DbofModel(Yt8mModel):
    """Deep Bag of Frames (starter): sample frames, BN, project to `dbof_cluster_size` units with
    BN + activation, pool over frames (max by default), hidden layer with BN + activation, video
    classifier. `dbof_activation` is google/youtube-8m frame_level_models.py's flag: `sigmoid`
    (its default today) or `relu6` (the 2017 starter's only choice). Batch norm as slim's.

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
        self.input_bn = slim_batch_norm("input_bn") if bn else None
        self.cluster = keras.layers.Dense(
            k, use_bias=not bn, kernel_initializer=normal_init(d), bias_initializer=normal_init(d), name="cluster"
        )
        self.cluster_bn = slim_batch_norm("cluster_bn") if bn else None
        self.hidden = keras.layers.Dense(
            h,
            use_bias=not bn,
            kernel_initializer=normal_init(k),
            bias_initializer=keras.initializers.RandomNormal(stddev=0.01),
            name="hidden1",
        )
        self.hidden_bn = slim_batch_norm("hidden1_bn") if bn else None
        self.classifier = make_classifier(num_classes, hp)

    def head_layers(self):
        return [self.classifier]

    def forward(self, frames, num_frames, training):
        frames, mask = self.sampler(frames, num_frames, training=training)
        x = frames
        if self.input_bn is not None:
            x = self.input_bn(x, training=training, mask=mask)
        x = self.cluster(x)
        if self.cluster_bn is not None:
            x = self.cluster_bn(x, training=training, mask=mask)
        x = self.activation(x)
        if self.hp["dbof_pooling_method"] == "max":
            pooled = masked_max(x, mask)
        else:
            pooled = masked_mean(x, mask)
        hidden = self.hidden(pooled)
        if self.hidden_bn is not None:
            hidden = self.hidden_bn(hidden, training=training)
        hidden = self.activation(hidden)
        return self.classifier(hidden, training=training)

    def activation(self, x):
        return ops.sigmoid(x) if self.hp["dbof_activation"] == "sigmoid" else ops.relu6(x)


class LstmModel(Yt8mModel):
    """Stacked LSTMs (`lstm_layers` x `lstm_cells`, forget-gate bias 1 as TF1's BasicLSTMCell)
    over the valid frames; the last layer's output at the last valid frame goes to the video
    classifier (google/youtube-8m frame_level_models.py: `state[-1].h`).

    WILLOW options (antoine77340/Youtube-8M-WILLOW frame_level_models.py `LstmModel`):
    `lstm_full_state` feeds the whole final state of every layer to the classifier, [c, h] per
    layer concatenated layer after layer (BasicLSTMCell and MultiRNNCell with
    `state_is_tuple=False`), 4 x `lstm_cells` wide for 2 layers; `lstm_backward` reads the valid
    frames in reverse; `lstm_random_sequence` trains on `iterations` sorted random frames.
    """

    def __init__(self, num_classes, feature_sizes, max_frames, hparams, **kwargs):
        super().__init__(num_classes, feature_sizes, max_frames, hparams, "LstmModel", **kwargs)
        hp = self.hp
        self.sampler = FrameSampler(hp["iterations"], True, inference="all")
        rnns = [
            keras.layers.LSTM(
                hp["lstm_cells"],
                return_sequences=i < hp["lstm_layers"] - 1,
                return_state=True,
                unit_forget_bias=True,
                name=f"lstm_{i}",
            )
            for i in range(hp["lstm_layers"])
        ]
        set_layer_list(self, "lstm", rnns)
        self.classifier = make_classifier(num_classes, hp)

    def head_layers(self):
        return [self.classifier]

    def forward(self, frames, num_frames, training):
        if self.hp["lstm_random_sequence"]:
            frames, mask = self.sampler(frames, num_frames, training=training)
        else:
            mask = frame_mask(num_frames, ops.shape(frames)[1])
        if self.hp["lstm_backward"]:
            lengths = ops.cast(ops.sum(mask, axis=1), "int32")
            frames = tf.reverse_sequence(frames, lengths, seq_axis=1, batch_axis=0)
        bool_mask = ops.cast(mask, "bool")
        x = frames
        states = []
        for rnn in layer_list(self, "lstm"):
            x, h, c = rnn(x, mask=bool_mask, training=training)
            states.extend([c, h])
        if self.hp["lstm_full_state"]:
            return self.classifier(ops.concatenate(states, axis=-1), training=training)
        return self.classifier(x, training=training)
