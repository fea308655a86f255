"""The 2019 9th-place BERT models (hughshaoqz/3rd-Youtube8M-TM, src/frame_level_models.py): names,
published defaults, parameter counts at the published sizes, and the layers checked against numpy."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from yt8m.classifier.models import build_model, list_models, model_defaults
from yt8m.core import Yt8mError

SIZES = (16, 8)
WIDTH = sum(SIZES)
CLASSES = 6
SMALL = {"bert_attention_heads": 4, "bert_intermediate_size": 12}


def _frames(batch: int, length: int, num_frames, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, length, WIDTH)).astype(np.float32)
    nf = np.asarray(num_frames, np.int32)
    x[np.arange(length)[None, :] >= nf[:, None]] = 0.0
    return x, nf


def _small(name: str, **hp):
    keras.utils.set_random_seed(0)
    return build_model(name, num_classes=CLASSES, feature_sizes=SIZES, max_frames=12, **{**SMALL, **hp})


def _np(t) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(t))


# ------------------------------------------------------------------------------------------------
# names and defaults


def test_registered_under_their_names_next_to_the_transformer():
    names = list_models()
    for name in ("Bert", "BertCross", "BERTMean", "BERTFirst", "BERTCrossMean", "BERTCrossAttn", "TransformerModel"):
        assert name in names
    assert _small("bert").model_name == "Bert"  # their --model=Bert, any case
    assert _small("BERTCrossAttn").model_name == "BERTCrossAttn"
    transformer = build_model("TransformerModel", num_classes=CLASSES, feature_sizes=SIZES, bert_hidden_size=8, bert_num_heads=2)
    assert type(transformer).__name__ == "TransformerModel" and transformer.model_name == "TransformerModel"


def test_published_defaults():
    bert = model_defaults("Bert")
    assert (bert["bert_hidden_layer"], bert["bert_attention_heads"], bert["bert_intermediate_size"]) == (2, 12, 3072)
    assert (bert["bert_dropout_prob"], bert["pooling_strategy"]) == (0.1, "mean")
    assert (bert["iterations"], bert["sample_random_frames"]) == (5, False)
    assert (bert["video_level_classifier_model"], bert["moe_num_mixtures"], bert["moe_l2"]) == ("MoeModel", 5, 1e-6)
    assert model_defaults("BertCross")["bert_attention_heads"] == 8
    assert model_defaults("BERTFirst")["pooling_strategy"] == "first"
    assert model_defaults("BERTCrossMean")["pooling_strategy"] == "mean"
    assert model_defaults("BERTCrossAttn")["pooling_strategy"] == "attn"


@pytest.mark.parametrize(
    "name, hp",
    [
        ("BertCross", {"bert_attention_heads": 12}),  # 1024 rgb is not a multiple of 12 heads
        ("Bert", {"bert_attention_heads": 7}),
        ("Bert", {"pooling_strategy": "cls"}),
        ("Bert", {"bert_dropout_prob": 1.0}),
    ],
)
def test_impossible_settings_are_user_errors(name, hp):
    with pytest.raises(Yt8mError):
        build_model(name, num_classes=CLASSES, **hp)


def test_bert_cross_needs_two_features():
    with pytest.raises(Yt8mError, match="two features"):
        build_model("BertCross", num_classes=CLASSES, feature_sizes=(16,), **SMALL)


# ------------------------------------------------------------------------------------------------
# parameter counts at the published sizes, against counts derived from the layer shapes


def _bert_layer(h: int, ff: int = 3072) -> int:
    """One Google BERT encoder layer of width h: Q, K, V and output projections with biases, two
    LayerNorms (gamma, beta), the feed-forward h -> ff -> h with biases."""
    attention = 4 * (h * h + h)
    feed_forward = (h * ff + ff) + (ff * h + h)
    return attention + feed_forward + 2 * (2 * h)


def _moe(d: int, classes: int = 3862, mixtures: int = 5) -> int:
    """MoE head: gates d x C(m+1) without bias, experts d x Cm with bias."""
    return d * classes * (mixtures + 1) + d * classes * mixtures + classes * mixtures


@pytest.fixture
def cheap_initializers(monkeypatch):
    """Zero initial values: the count does not depend on them, and filling ~100M random weights is slow."""

    def zeros(self, shape, dtype=None):
        return keras.ops.zeros(shape, dtype=dtype or "float32")

    for cls in (keras.initializers.TruncatedNormal, keras.initializers.VarianceScaling):
        monkeypatch.setattr(cls, "__call__", zeros)


PUBLISHED = {
    # their results table -> (registered name, settings of the run script), expected count
    "BERT(L2H12) [pool none]": (("Bert", {"pooling_strategy": "none"}), 2 * _bert_layer(1152) + _moe(5 * 1152)),
    "BERT(L3H12) [pool none]": (
        ("Bert", {"pooling_strategy": "none", "bert_hidden_layer": 3}),
        3 * _bert_layer(1152) + _moe(5 * 1152),
    ),
    "BERTMean(L2H12)": (("BERTMean", {}), 2 * _bert_layer(1152) + _moe(1152)),
    "BERTFirst(L2H12)": (("BERTFirst", {}), 2 * _bert_layer(1152) + _moe(1152)),
    "BERTCrossMean(L2H8)": (("BERTCrossMean", {}), _bert_layer(1024) + _bert_layer(128) + _bert_layer(1152) + _moe(1152)),
    "BERTCrossAttn(L2H8)": (
        ("BERTCrossAttn", {}),
        _bert_layer(1024) + _bert_layer(128) + _bert_layer(1152) + 1152 + _moe(1152),  # + the attn query
    ),
}


@pytest.mark.parametrize("label", sorted(PUBLISHED))
def test_parameter_count_at_the_published_configuration(label, cheap_initializers):
    (name, hp), expected = PUBLISHED[label]
    model = build_model(name, **hp)  # 3862 classes, 1024 + 128 features
    count = model.count_params()
    print(f"{label}: {count:,} parameters")
    assert count == expected


# ------------------------------------------------------------------------------------------------
# behaviour


def test_no_position_embeddings_and_no_projection():
    """Frames go straight into the encoder: the first layer reads WIDTH-d inputs, and without
    position embeddings, permuting the valid frames does not change mean-pooled scores."""
    model = _small("Bert", bert_hidden_layer=2)
    first = model.encoder_0
    assert tuple(first.attention._query_dense.kernel.shape)[0] == WIDTH
    longer = build_model("Bert", num_classes=CLASSES, feature_sizes=SIZES, max_frames=40, bert_hidden_layer=2, **SMALL)
    assert [tuple(v.shape) for v in longer.weights] == [tuple(v.shape) for v in model.weights]  # no position table
    x, nf = _frames(2, 10, [10, 6])
    probs = _np(model((x, nf)))
    permuted = x.copy()
    permuted[0] = x[0][::-1]
    permuted[1, :6] = x[1, [3, 1, 5, 0, 2, 4]]
    np.testing.assert_allclose(_np(model((permuted, nf))), probs, rtol=1e-5, atol=1e-6)


def test_padding_changes_nothing():
    for name in ("BERTMean", "BERTFirst", "BERTCrossAttn"):
        model = _small(name)
        x, nf = _frames(2, 8, [8, 5])
        probs = _np(model((x, nf)))
        noisy = x.copy()
        noisy[1, 5:] = 7.0
        np.testing.assert_allclose(_np(model((noisy, nf))), probs, rtol=1e-5, atol=1e-6)
        alone = _np(model((x[1:, :5], nf[1:])))
        np.testing.assert_allclose(alone, probs[1:], rtol=1e-5, atol=1e-6)


def test_first_pooling_takes_the_last_valid_frame_and_attn_the_learned_query():
    x, nf = _frames(3, 7, [7, 4, 1], seed=3)
    mask = (np.arange(7)[None, :] < nf[:, None]).astype(np.float32)
    first = _small("BERTFirst")
    np.testing.assert_array_equal(_np(first.pool(x, mask)), x[np.arange(3), nf - 1])
    attn = _small("BERTCrossAttn")
    q = _np(attn.query)[:, 0]
    pooled = _np(attn.pool(x, mask))
    for b in range(3):
        valid = x[b, : nf[b]]
        score = valid @ q / math.sqrt(WIDTH)
        weights = np.exp(score - score.max())
        weights /= weights.sum()
        np.testing.assert_allclose(pooled[b], weights @ valid, rtol=1e-5, atol=1e-6)


def _np_layer_norm(x, layer):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + layer.epsilon) * _np(layer.gamma) + _np(layer.beta)


def _np_bert_layer(layer, x):
    """Google BERT's transformer_model layer (post-LN, tanh GELU) in numpy, for one sequence."""
    att = layer.attention
    q = np.einsum("td,dhk->htk", x, _np(att._query_dense.kernel)) + _np(att._query_dense.bias)[:, None, :]
    k = np.einsum("td,dhk->htk", x, _np(att._key_dense.kernel)) + _np(att._key_dense.bias)[:, None, :]
    v = np.einsum("td,dhk->htk", x, _np(att._value_dense.kernel)) + _np(att._value_dense.bias)[:, None, :]
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = probs @ v  # [heads, T, k]
    attended = np.einsum("htk,hkd->td", context, _np(att._output_dense.kernel)) + _np(att._output_dense.bias)
    x = _np_layer_norm(x + attended, layer.attention_norm)
    h = x @ _np(layer.intermediate.kernel) + _np(layer.intermediate.bias)
    h = 0.5 * h * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (h + 0.044715 * h**3)))
    out = h @ _np(layer.output_dense.kernel) + _np(layer.output_dense.bias)
    return _np_layer_norm(x + out, layer.output_norm)


def test_bert_cross_matches_a_numpy_bert():
    """rgb and audio through their own BERT layers, then one layer over both, pooled by the mean."""
    model = _small("BERTCrossMean", bert_hidden_layer=2)
    assert model.feature0_0.hidden == SIZES[0] and model.feature1_0.hidden == SIZES[1]
    assert model.cross_0.hidden == WIDTH
    x, nf = _frames(2, 6, [6, 6], seed=4)
    encoded = _np(model.encode(x, np.ones((2, 6, 6), bool), False))
    for b in range(2):
        rgb = _np_bert_layer(model.feature0_0, x[b, :, : SIZES[0]])
        audio = _np_bert_layer(model.feature1_0, x[b, :, SIZES[0] :])
        both = _np_bert_layer(model.cross_0, np.concatenate([rgb, audio], -1))
        np.testing.assert_allclose(encoded[b], both, rtol=1e-4, atol=1e-5)


def test_none_pooling_flattens_the_sampled_window():
    model = _small("Bert", pooling_strategy="none", iterations=5)
    assert tuple(model.classifier.experts.kernel.shape)[0] == 5 * WIDTH
    x, nf = _frames(2, 12, [12, 3])
    for training in (False, True):
        probs = _np(model((x, nf), training=training))
        assert probs.shape == (2, CLASSES) and np.all(np.isfinite(probs))


def test_training_samples_a_window_of_iterations_frames():
    model = _small("BERTMean")
    frames, mask = model.sampler(*_frames(1, 12, [12]), training=True)
    assert _np(frames).shape[1] == 5 and _np(mask).sum() == 5
