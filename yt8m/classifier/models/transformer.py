"""yt8m's own BERT-style transformer encoder over frames (`TransformerModel`). It is NOT the 2019
9th place's model (that one is `Bert` / `BertCross` in bert9.py, which runs BERT directly on the
1152-d frames); it adds what a BERT for sequences usually has.

Frames are projected to `bert_hidden_size`, get learned position embeddings (and a learned
[CLS] token in front when `bert_pooling="first"`), then `bert_num_layers` post-LayerNorm
encoder layers (multi-head self-attention over the valid frames, exact-GELU feed-forward of
`bert_intermediate_size`, dropout `bert_dropout`). The video vector is the [CLS] output through
BERT's tanh pooler (`first`), the mean of the valid frame outputs (`mean`), or the output of a
learned query attending over the frames (`cross_attention`); a video-level classifier follows.
Defaults: 2 layers, 8 heads, hidden 1024. `EncoderLayer` is shared with bert9.py.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from yt8m.classifier.models.layers import (
    HEAD_DEFAULTS,
    Yt8mModel,
    frame_mask,
    layer_list,
    make_classifier,
    masked_mean,
    set_layer_list,
)

POOLINGS = ("first", "mean", "cross_attention")
LAYER_NORM_EPSILON = 1e-12
"""BERT's LayerNorm epsilon."""
INIT_STDDEV = 0.02
"""BERT's truncated-normal initializer range."""

TRANSFORMER_DEFAULTS: dict[str, Any] = {
    "bert_hidden_size": 1024,
    "bert_num_layers": 2,
    "bert_num_heads": 8,
    "bert_intermediate_size": 4096,
    "bert_dropout": 0.1,
    "bert_pooling": "first",
    **HEAD_DEFAULTS,
}


def _init() -> keras.initializers.Initializer:
    return keras.initializers.TruncatedNormal(stddev=INIT_STDDEV)


class EncoderLayer(keras.layers.Layer):
    """One post-LN transformer encoder layer: x = LN(x + MHA(x)); x = LN(x + FFN(x)).

    `attention_mask` [B, T, T] says which keys each query may attend to. `approximate_gelu`
    uses the tanh form of GELU (Google BERT's modeling.py) instead of the exact one.
    """

    def __init__(
        self, hidden: int, heads: int, intermediate: int, dropout: float, approximate_gelu: bool = False, **kwargs
    ):
        super().__init__(**kwargs)
        self.hidden = int(hidden)
        self.approximate_gelu = bool(approximate_gelu)
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=heads, key_dim=hidden // heads, dropout=dropout, kernel_initializer=_init(), name="attention"
        )
        self.attention_dropout = keras.layers.Dropout(dropout)
        self.attention_norm = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="attention_norm")
        self.intermediate = keras.layers.Dense(
            intermediate, activation=self._gelu, kernel_initializer=_init(), name="intermediate"
        )
        self.output_dense = keras.layers.Dense(hidden, kernel_initializer=_init(), name="output")
        self.output_dropout = keras.layers.Dropout(dropout)
        self.output_norm = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="output_norm")

    def _gelu(self, x):
        # Google BERT's modeling.py uses the tanh approximation; Keras' "gelu" is the exact erf form.
        return keras.activations.gelu(x, approximate=self.approximate_gelu)

    def build(self, input_shape):
        shape = (None, None, self.hidden)
        self.attention.build(shape, shape)
        self.attention_norm.build(shape)
        self.intermediate.build(shape)
        self.output_dense.build((None, None, self.intermediate.units))
        self.output_norm.build(shape)

    def call(self, x, attention_mask, training=False):
        attended = self.attention(x, x, attention_mask=attention_mask, training=training)
        x = self.attention_norm(x + self.attention_dropout(attended, training=training))
        ffn = self.output_dense(self.intermediate(x))
        return self.output_norm(x + self.output_dropout(ffn, training=training))


class TransformerModel(Yt8mModel):
    """BERT-style encoder over the valid frames with first/mean/cross-attention pooling."""

    def __init__(self, num_classes, feature_sizes, max_frames, hparams, **kwargs):
        super().__init__(num_classes, feature_sizes, max_frames, hparams, "TransformerModel", **kwargs)
        hp = self.hp
        hidden = hp["bert_hidden_size"]
        self.pooling = hp["bert_pooling"]
        self.projection = keras.layers.Dense(hidden, kernel_initializer=_init(), name="frame_projection")
        self.embedding_norm = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="embedding_norm")
        self.embedding_dropout = keras.layers.Dropout(hp["bert_dropout"])
        set_layer_list(
            self,
            "encoder",
            [
                EncoderLayer(hidden, hp["bert_num_heads"], hp["bert_intermediate_size"], hp["bert_dropout"], name=f"layer_{i}")
                for i in range(hp["bert_num_layers"])
            ],
        )
        if self.pooling == "first":
            self.pooler = keras.layers.Dense(hidden, activation="tanh", kernel_initializer=_init(), name="pooler")
        elif self.pooling == "cross_attention":
            self.pool_attention = keras.layers.MultiHeadAttention(
                num_heads=hp["bert_num_heads"], key_dim=hidden // hp["bert_num_heads"],
                kernel_initializer=_init(), name="pool_attention",
            )
        self.classifier = make_classifier(num_classes, hp)

    def build(self, input_shape=None):
        hidden = self.hp["bert_hidden_size"]
        extra = 1 if self.pooling == "first" else 0
        self.positions = self.add_weight(
            shape=(self.max_frames + extra, hidden), initializer=_init(), name="position_embeddings"
        )
        if self.pooling == "first":
            self.cls_token = self.add_weight(shape=(1, 1, hidden), initializer=_init(), name="cls_token")
        elif self.pooling == "cross_attention":
            self.query = self.add_weight(shape=(1, 1, hidden), initializer=_init(), name="pool_query")
        self.built = True

    def head_layers(self):
        return [self.classifier]

    def forward(self, frames, num_frames, training):
        batch, length = ops.shape(frames)[0], ops.shape(frames)[1]
        hidden = self.hp["bert_hidden_size"]
        mask = frame_mask(num_frames, length)  # [B, T]
        x = self.projection(frames)
        if self.pooling == "first":
            cls = ops.broadcast_to(self.cls_token, (batch, 1, hidden))
            x = ops.concatenate([cls, x], axis=1)
            mask = ops.concatenate([ops.ones((batch, 1), dtype=mask.dtype), mask], axis=1)
            length = length + 1
        x = x + ops.expand_dims(self.positions[:length], 0)
        x = self.embedding_dropout(self.embedding_norm(x), training=training)
        key_mask = ops.cast(mask, "bool")
        # Every query (padded ones too: their outputs are never used) attends to the valid keys.
        attention_mask = ops.broadcast_to(ops.expand_dims(key_mask, 1), (batch, length, length))
        for encoder in layer_list(self, "encoder"):
            x = encoder(x, attention_mask, training=training)
        if self.pooling == "first":
            pooled = self.pooler(x[:, 0, :])
        elif self.pooling == "mean":
            pooled = masked_mean(x, mask)
        else:
            query = ops.broadcast_to(self.query, (batch, 1, hidden))
            pooled = self.pool_attention(
                query, x, attention_mask=ops.expand_dims(key_mask, 1), training=training
            )
            pooled = pooled[:, 0, :]
        return self.classifier(pooled, training=training)
