"""The 2019 9th-place BERT models (Shao & Liu, "BERT and frame-level models for large-scale video
segment classification with test-time augmentation"), as published in
hughshaoqz/3rd-Youtube8M-TM, src/frame_level_models.py (`Bert`, `BertCross`, `BertTransformer`)
with src/bert_config.json and the run scripts in shell_scripts/.

`Bert` runs Google BERT's post-LayerNorm encoder (src/modeling.py `transformer_model`) on the
concatenated frames directly: the hidden size is the frame width (1024 + 128 = 1152), with no
input projection, no position embeddings and no [CLS] token; `bert_attention_heads` heads (12),
feed-forward `bert_intermediate_size` (3072, bert_config.json) with tanh-approximated GELU,
dropout `bert_dropout_prob` on the attention probabilities and the hidden outputs,
`bert_hidden_layer` layers (2; 3 in one run). `BertCross` encodes rgb and audio separately with
`bert_hidden_layer - 1` layers each (hidden 1024 and 128), concatenates them and runs one
cross-modal layer (hidden 1152) over the result; the published runs use 8 heads (1024 is not a
multiple of 12).

`pooling_strategy` (their flag): `mean` over frames; `first`, which in their code takes the
output at the LAST position (`sequence_output[:, -1:, :]`); `attn`, one learned query vector q
[D] scoring every frame by softmax(x q / sqrt(D)); `none`, every position's output flattened
(needs a fixed length: the `iterations` sampled frames). A mixture of experts follows (their
video_level_models.py default of 5 mixtures, `moe_l2` 1e-6 as every run script sets).

Frames: training samples `iterations` (5) frames, a random contiguous window with
`sample_random_frames=False` as in every published run. Their encoder has no attention mask: it
reads exactly 5 frames (a segment) or a whole zero-padded video; here padded frames are masked
out of attention and pooling, which is identical for inputs without padding (their segments) and
keeps padding from changing a video's scores. `first` takes the last VALID frame for that reason.
At inference the model reads every valid frame (their eval and inference scripts do not sample),
except with `pooling_strategy=none`, which needs exactly `iterations` frames (the centred window).

Presets under the names of their results table: `BERTMean` and `BERTFirst` (Bert, 2 layers, 12
heads), `BERTCrossMean` and `BERTCrossAttn` (BertCross, 2 layers, 8 heads).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from yt8m.classifier.models.layers import (
    HEAD_DEFAULTS,
    FrameSampler,
    Yt8mModel,
    layer_list,
    make_classifier,
    masked_mean,
    set_layer_list,
)
from yt8m.classifier.models.transformer import EncoderLayer
from yt8m.core import Yt8mError

POOLING_STRATEGIES = ("mean", "first", "attn", "none")
BERT_INTERMEDIATE_SIZE = 3072
"""`intermediate_size` of their src/bert_config.json."""
BERT9_MOE_MIXTURES = 5
"""`moe_num_mixtures` default of their src/video_level_models.py."""
BERT9_MOE_L2 = 1e-6
"""`--moe_l2` of every published run script."""
ATTENTION_LOGIT_FLOOR = -1e9
"""Score given to padded frames before the softmax of `attn` pooling."""

BERT_DEFAULTS: dict[str, Any] = {
    "bert_hidden_layer": 2,
    "bert_attention_heads": 12,
    "bert_intermediate_size": BERT_INTERMEDIATE_SIZE,
    "bert_dropout_prob": 0.1,
    "pooling_strategy": "mean",
    "iterations": 5,
    "sample_random_frames": False,
    **HEAD_DEFAULTS,
    "moe_num_mixtures": BERT9_MOE_MIXTURES,
    "moe_l2": BERT9_MOE_L2,
}
BERT_CROSS_DEFAULTS: dict[str, Any] = {**BERT_DEFAULTS, "bert_attention_heads": 8}

# The named models of their results table (README): a model class and its settings.
BERT_MEAN_DEFAULTS: dict[str, Any] = {**BERT_DEFAULTS, "pooling_strategy": "mean"}
BERT_FIRST_DEFAULTS: dict[str, Any] = {**BERT_DEFAULTS, "pooling_strategy": "first"}
BERT_CROSS_MEAN_DEFAULTS: dict[str, Any] = {**BERT_CROSS_DEFAULTS, "pooling_strategy": "mean"}
BERT_CROSS_ATTN_DEFAULTS: dict[str, Any] = {**BERT_CROSS_DEFAULTS, "pooling_strategy": "attn"}


def _check_heads(model: str, width: int, heads: int, what: str) -> None:
    if width % heads:
        raise Yt8mError(
            f"{model}: the {what} width ({width}) must be a multiple of bert_attention_heads ({heads}),"
            " since BERT's encoder has no input projection"
        )


class _Bert9Model(Yt8mModel):
    """Shared parts: frame sampling, the encoder stack(s), the four poolings, the MoE head."""

    default_name = ""

    def __init__(self, num_classes, feature_sizes, max_frames, hparams, model_name: str | None = None, **kwargs):
        super().__init__(num_classes, feature_sizes, max_frames, hparams, model_name or self.default_name, **kwargs)
        hp = self.hp
        self.pooling = hp["pooling_strategy"]
        inference = "sample" if self.pooling == "none" else "all"
        self.sampler = FrameSampler(hp["iterations"], hp["sample_random_frames"], inference=inference)
        self.build_encoders()
        self.classifier = make_classifier(num_classes, hp)

    def encoder_stack(self, prefix: str, width: int, layers: int) -> None:
        hp = self.hp
        set_layer_list(
            self,
            prefix,
            [
                EncoderLayer(
                    width,
                    hp["bert_attention_heads"],
                    hp["bert_intermediate_size"],
                    hp["bert_dropout_prob"],
                    approximate_gelu=True,
                    name=f"{prefix}_layer_{i}",
                )
                for i in range(layers)
            ],
        )

    def build_encoders(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, x, attention_mask, training):  # pragma: no cover - abstract
        raise NotImplementedError

    def build(self, input_shape=None):
        if self.pooling == "attn":
            # tf.get_variable's default (Glorot uniform) for their [1, D, 1] query: fans D and 1.
            self.query = self.add_weight(
                shape=(self.feature_size, 1), initializer=keras.initializers.GlorotUniform(), name="query"
            )
        self.built = True

    def head_layers(self):
        return [self.classifier]

    def forward(self, frames, num_frames, training):
        x, mask = self.sampler(frames, num_frames, training=training)
        key_mask = ops.cast(mask, "bool")
        length = ops.shape(x)[1]
        attention_mask = ops.broadcast_to(ops.expand_dims(key_mask, 1), (ops.shape(x)[0], length, length))
        x = self.encode(x, attention_mask, training)
        return self.classifier(self.pool(x, mask), training=training)

    def pool(self, x, mask):
        """[B, T, D] frame outputs -> [B, D] (or [B, iterations * D] for `none`)."""
        if self.pooling == "mean":
            return masked_mean(x, mask)
        if self.pooling == "first":  # their 'first' is the output at the last position
            last = ops.maximum(ops.cast(ops.sum(mask, axis=1), "int32") - 1, 0)
            return ops.take_along_axis(x, ops.reshape(last, (-1, 1, 1)), axis=1)[:, 0, :]
        if self.pooling == "attn":
            scores = ops.matmul(x, self.query)[:, :, 0] / math.sqrt(self.feature_size)  # [B, T]
            scores = ops.where(ops.cast(mask, "bool"), scores, ATTENTION_LOGIT_FLOOR)
            weights = ops.softmax(scores, axis=1) * mask
            return ops.sum(ops.expand_dims(weights, -1) * x, axis=1)
        return ops.reshape(x * ops.expand_dims(mask, -1), (-1, self.hp["iterations"] * self.feature_size))


class Bert(_Bert9Model):
    """Their `Bert`: `bert_hidden_layer` BERT layers over the 1152-d frames, pooling, MoE."""

    default_name = "Bert"

    @classmethod
    def check_sizes(cls, model: str, hp: dict[str, Any], feature_sizes: Sequence[int]) -> None:
        _check_heads(model, int(sum(feature_sizes)), hp["bert_attention_heads"], "frame")

    def build_encoders(self) -> None:
        self.encoder_stack("encoder", self.feature_size, self.hp["bert_hidden_layer"])

    def encode(self, x, attention_mask, training):
        for layer in layer_list(self, "encoder"):
            x = layer(x, attention_mask, training=training)
        return x


class BertCross(_Bert9Model):
    """Their `BertCross`: per-feature encoders (`bert_hidden_layer - 1` layers each), then one
    cross-modal layer over the concatenated outputs, pooling, MoE."""

    default_name = "BertCross"

    @classmethod
    def check_sizes(cls, model: str, hp: dict[str, Any], feature_sizes: Sequence[int]) -> None:
        if len(feature_sizes) < 2:
            raise Yt8mError(f"{model}: needs at least two features (rgb and audio), got sizes {list(feature_sizes)}")
        for i, size in enumerate(feature_sizes):
            _check_heads(model, int(size), hp["bert_attention_heads"], f"feature {i}")
        _check_heads(model, int(sum(feature_sizes)), hp["bert_attention_heads"], "frame")

    def build_encoders(self) -> None:
        per_feature = self.hp["bert_hidden_layer"] - 1
        for i, size in enumerate(self.feature_sizes):
            self.encoder_stack(f"feature{i}", size, per_feature)
        self.encoder_stack("cross", self.feature_size, 1)

    def encode(self, x, attention_mask, training):
        parts = []
        for i, part in enumerate(self.split_features(x)):
            for layer in layer_list(self, f"feature{i}"):
                part = layer(part, attention_mask, training=training)
            parts.append(part)
        x = ops.concatenate(parts, axis=-1)
        for layer in layer_list(self, "cross"):
            x = layer(x, attention_mask, training=training)
        return x
