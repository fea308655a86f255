"""Tests of the classifier model registry and every model family (yt8m.classifier.models)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from yt8m.classifier.models import (
    build_model,
    is_video_level,
    list_models,
    model_defaults,
    resolve_hparams,
)
from yt8m.classifier.models.layers import FrameSampler
from yt8m.core import Yt8mError

FEATURE_SIZES = (24, 8)
WIDTH = sum(FEATURE_SIZES)
NUM_CLASSES = 10
MAX_FRAMES = 24
FRAMES = 20

# Small versions of every model: a few clusters / units so that each test takes well under a second.
SMALL: dict[str, dict] = {
    "LogisticModel": {},
    "MoeModel": {},
    "FrameLevelLogisticModel": {},
    "DbofModel": {"dbof_cluster_size": 32, "dbof_hidden_size": 32, "iterations": 8},
    "LstmModel": {"lstm_cells": 16, "lstm_layers": 2},
    "NetVLADModelLF": {"netvlad_cluster_size": 8, "netvlad_hidden_size": 32, "iterations": 16},
    "NetFVModelLF": {"fv_cluster_size": 8, "fv_hidden_size": 32, "iterations": 16},
    "SoftDbofModelLF": {"dbof_cluster_size": 32, "dbof_hidden_size": 32, "iterations": 16},
    "GatedDbofModelLF": {"dbof_cluster_size": 32, "dbof_hidden_size": 32, "iterations": 16},
    "GruModel": {"gru_cells": 16},
    "NeXtVLADModel": {"nextvlad_cluster_size": 8, "nextvlad_hidden_size": 32, "groups": 4},
    "MixNeXtVladModel": {"nextvlad_cluster_size": 8, "nextvlad_hidden_size": 32, "groups": 4, "mix_number": 2},
    "TransformerModel": {"bert_hidden_size": 32, "bert_num_heads": 4, "bert_intermediate_size": 64},
    "Bert": {"bert_attention_heads": 4, "bert_intermediate_size": 32},
    "BertCross": {"bert_attention_heads": 4, "bert_intermediate_size": 32},
    "BERTMean": {"bert_attention_heads": 4, "bert_intermediate_size": 32},
    "BERTFirst": {"bert_attention_heads": 4, "bert_intermediate_size": 32},
    "BERTCrossMean": {"bert_attention_heads": 4, "bert_intermediate_size": 32},
    "BERTCrossAttn": {"bert_attention_heads": 4, "bert_intermediate_size": 32},
}
# Variants that switch on code paths the published defaults leave off.
VARIANTS: dict[str, tuple[str, dict]] = {
    "NetRVLAD": ("NetVLADModelLF", {**SMALL["NetVLADModelLF"], "lightvlad": True, "netvlad_relu": True}),
    "NetVLAD-nobn": ("NetVLADModelLF", {**SMALL["NetVLADModelLF"], "netvlad_add_batch_norm": False}),
    "NetFV-coupled": ("NetFVModelLF", {**SMALL["NetFVModelLF"], "fv_couple_weights": True}),
    "SoftDbof-max": ("SoftDbofModelLF", {**SMALL["SoftDbofModelLF"], "softdbof_maxpool": True, "gating": True}),
    "Dbof-sequence-avg": (
        "DbofModel",
        {**SMALL["DbofModel"], "sample_random_frames": False, "dbof_pooling_method": "average"},
    ),
    "Gru-backward-random": (
        "GruModel",
        {**SMALL["GruModel"], "gru_backward": True, "gru_random_sequence": True, "gru_reset_after": True},
    ),
    "Lstm-random": ("LstmModel", {**SMALL["LstmModel"], "lstm_random_sequence": True, "iterations": 8}),
    "Transformer-mean": ("TransformerModel", {**SMALL["TransformerModel"], "bert_pooling": "mean"}),
    "Transformer-xattn": (
        "TransformerModel",
        {**SMALL["TransformerModel"], "bert_pooling": "cross_attention", "video_level_classifier_model": "LogisticModel"},
    ),
    "Bert-none": ("Bert", {**SMALL["Bert"], "pooling_strategy": "none", "iterations": 4}),
    "NeXtVLAD-moe": ("NeXtVLADModel", {**SMALL["NeXtVLADModel"], "video_level_classifier_model": "MoeModel"}),
}
CASES = {name: (name, hp) for name, hp in SMALL.items()} | VARIANTS


def _build(case: str, max_frames: int = MAX_FRAMES, seed: int = 0) -> keras.Model:
    name, hp = CASES[case]
    keras.utils.set_random_seed(seed)
    return build_model(name, num_classes=NUM_CLASSES, feature_sizes=FEATURE_SIZES, max_frames=max_frames, **hp)


def _frames(batch: int, length: int, num_frames, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame L2-normalised random frames, zero-padded after num_frames (like the readers)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, length, WIDTH)).astype(np.float32)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    nf = np.asarray(num_frames, dtype=np.int32)
    x[np.arange(length)[None, :] >= nf[:, None]] = 0.0
    return x, nf


def _inputs(case: str, batch: int = 3, length: int = FRAMES, num_frames=(FRAMES, 7, 1), seed: int = 0):
    name, _ = CASES[case]
    x, nf = _frames(batch, length, num_frames, seed)
    if is_video_level(name):
        return x.sum(axis=1) / np.maximum(nf, 1)[:, None], nf
    return x, nf


def _predict(model, inputs, training: bool = False) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(inputs, training=training))


# ------------------------------------------------------------------------------------------------
# registry


def test_registry_lists_every_family():
    names = list_models()
    for expected in [
        "LogisticModel", "MoeModel", "FrameLevelLogisticModel", "DbofModel", "LstmModel",
        "NetVLADModelLF", "NetFVModelLF", "SoftDbofModelLF", "GatedDbofModelLF", "GruModel",
        "NeXtVLADModel", "MixNeXtVladModel", "TransformerModel",
    ]:
        assert expected in names
    assert set(SMALL) == set(names), "every registered model needs a small test configuration"
    assert is_video_level("LogisticModel") and is_video_level("MoeModel")
    assert not any(is_video_level(n) for n in names if n not in ("LogisticModel", "MoeModel"))


def test_published_defaults():
    assert model_defaults("MoeModel")["moe_num_mixtures"] == 2
    assert model_defaults("MoeModel")["moe_l2"] == 1e-8
    dbof = model_defaults("DbofModel")
    assert (dbof["iterations"], dbof["dbof_cluster_size"], dbof["dbof_hidden_size"]) == (30, 8192, 1024)
    assert dbof["dbof_pooling_method"] == "max" and dbof["sample_random_frames"] and dbof["dbof_add_batch_norm"]
    assert dbof["video_level_classifier_model"] == "MoeModel"
    assert (model_defaults("LstmModel")["lstm_cells"], model_defaults("LstmModel")["lstm_layers"]) == (1024, 2)
    vlad = model_defaults("NetVLADModelLF")
    assert (vlad["netvlad_cluster_size"], vlad["netvlad_hidden_size"], vlad["moe_num_mixtures"]) == (256, 1024, 2)
    assert vlad["gating"] and vlad["moe_prob_gating"] and not vlad["lightvlad"]
    assert model_defaults("NetFVModelLF")["fv_cluster_size"] == 128
    assert model_defaults("SoftDbofModelLF")["dbof_cluster_size"] == 8000
    assert model_defaults("GatedDbofModelLF")["dbof_cluster_size"] == 4096
    assert (model_defaults("GruModel")["gru_cells"], model_defaults("GruModel")["gru_layers"]) == (1200, 2)
    nx = model_defaults("NeXtVLADModel")
    assert (nx["expansion"], nx["groups"], nx["nextvlad_cluster_size"], nx["nextvlad_hidden_size"]) == (2, 8, 128, 2048)
    assert (nx["gating_reduction"], nx["drop_rate"], nx["video_level_classifier_model"]) == (8, 0.5, "LogisticModel")
    bert = model_defaults("TransformerModel")
    assert 2 <= bert["bert_num_layers"] <= 3 and 8 <= bert["bert_num_heads"] <= 12
    # a copy: changing it does not change the registry
    vlad["netvlad_cluster_size"] = 3
    assert model_defaults("NetVLADModelLF")["netvlad_cluster_size"] == 256


def test_unknown_model_lists_models():
    with pytest.raises(Yt8mError) as info:
        build_model("NoSuchModel")
    message = str(info.value)
    assert "NoSuchModel" in message and "NetVLADModelLF" in message and "DbofModel" in message
    with pytest.raises(Yt8mError):
        model_defaults("NoSuchModel")
    with pytest.raises(Yt8mError):
        is_video_level("NoSuchModel")


def test_unknown_hparam_lists_valid_ones():
    with pytest.raises(Yt8mError) as info:
        build_model("NetVLADModelLF", netvlad_clusters=8)
    message = str(info.value)
    assert "netvlad_clusters" in message and "netvlad_cluster_size" in message and "moe_prob_gating" in message


@pytest.mark.parametrize(
    "name, hp",
    [
        ("DbofModel", {"dbof_cluster_size": "many"}),
        ("DbofModel", {"dbof_cluster_size": 0}),
        ("DbofModel", {"dbof_pooling_method": "median"}),
        ("DbofModel", {"sample_random_frames": "perhaps"}),
        ("NeXtVLADModel", {"drop_rate": 1.5}),
        ("NeXtVLADModel", {"groups": True}),
        ("NeXtVLADModel", {"groups": 5}),  # 2 x 1024 is not divisible by 5 groups
        ("TransformerModel", {"bert_hidden_size": 30, "bert_num_heads": 8}),
        ("TransformerModel", {"bert_pooling": "last"}),
        ("MoeModel", {"moe_l2": -1.0}),
        ("NetVLADModelLF", {"video_level_classifier_model": "SvmModel"}),
    ],
)
def test_bad_hparam_values_are_user_errors(name, hp):
    with pytest.raises(Yt8mError):
        build_model(name, num_classes=NUM_CLASSES, **hp)


def test_bad_sizes_are_user_errors():
    with pytest.raises(Yt8mError):
        build_model("FrameLevelLogisticModel", feature_sizes=(1024, 0))
    with pytest.raises(Yt8mError):
        build_model("FrameLevelLogisticModel", num_classes=0)
    model = build_model("FrameLevelLogisticModel", num_classes=NUM_CLASSES, feature_sizes=FEATURE_SIZES)
    with pytest.raises(Yt8mError, match="size"):
        model((np.zeros((1, 4, WIDTH + 1), np.float32), np.array([4], np.int32)))


def test_string_hparams_are_converted_and_config_rebuilds():
    model = build_model(
        "DbofModel", num_classes=NUM_CLASSES, feature_sizes=FEATURE_SIZES, max_frames=MAX_FRAMES,
        dbof_cluster_size="16", dbof_hidden_size=8.0, sample_random_frames="false", moe_l2="1e-6",
    )
    config = json.loads(json.dumps(model.yt8m_config))  # JSON-ready
    assert config["name"] == "DbofModel"
    assert config["hparams"]["dbof_cluster_size"] == 16 and config["hparams"]["dbof_hidden_size"] == 8
    assert config["hparams"]["sample_random_frames"] is False and config["hparams"]["moe_l2"] == 1e-6
    assert config["hparams"] == resolve_hparams("DbofModel", **config["hparams"])
    rebuilt = build_model(
        config["name"], num_classes=config["num_classes"], feature_sizes=config["feature_sizes"],
        max_frames=config["max_frames"], **config["hparams"],
    )
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in model.weights]
    assert build_model("nextvlad", num_classes=3, feature_sizes=FEATURE_SIZES, **SMALL["NeXtVLADModel"]).model_name == "NeXtVLADModel"


# ------------------------------------------------------------------------------------------------
# every model: forward pass, masking, gradients, weights round trip


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_probabilities_and_padding_invariance(case):
    name, _ = CASES[case]
    model = _build(case)
    inputs = _inputs(case)
    probs = _predict(model, inputs)
    assert probs.shape == (3, NUM_CLASSES)
    assert np.all(np.isfinite(probs)) and probs.min() >= 0.0 and probs.max() <= 1.0
    if not is_video_level(name):
        _check_masking(model, inputs, probs)
    # training mode (last: it moves the batch-norm statistics)
    train_probs = _predict(model, inputs, training=True)
    assert train_probs.shape == (3, NUM_CLASSES) and np.all((train_probs >= 0) & (train_probs <= 1))


def _check_masking(model, inputs, probs):
    x, nf = inputs
    # 1. other values in the padded frames: same output
    noisy = x.copy()
    pad = np.arange(FRAMES)[None, :] >= nf[:, None]
    noisy[pad] = np.random.default_rng(1).normal(size=(int(pad.sum()), WIDTH)) * 5
    np.testing.assert_allclose(_predict(model, (noisy, nf)), probs, atol=1e-5)
    # 2. more padding: same output
    longer = np.concatenate([x, np.zeros((3, MAX_FRAMES - FRAMES, WIDTH), np.float32)], axis=1)
    np.testing.assert_allclose(_predict(model, (longer, nf)), probs, atol=1e-5)
    # 3. each video alone: same output as in the batch
    for i in range(3):
        np.testing.assert_allclose(_predict(model, (x[i : i + 1, : nf[i]], nf[i : i + 1])), probs[i : i + 1], atol=1e-5)
    # 4. the valid frames matter
    changed = x.copy()
    changed[0] = _frames(1, FRAMES, [FRAMES], seed=7)[0][0]
    assert not np.allclose(_predict(model, (changed, nf))[0], probs[0], atol=1e-6)
    # 5. a video without frames still gives probabilities
    empty = _predict(model, (np.zeros((1, FRAMES, WIDTH), np.float32), np.array([0], np.int32)))
    assert np.all(np.isfinite(empty)) and np.all((empty >= 0) & (empty <= 1))


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_reach_every_weight(case):
    model = _build(case)
    x, nf = _inputs(case, batch=4, num_frames=(FRAMES, 9, 3, 12), seed=2)
    labels = (np.random.default_rng(3).random((4, NUM_CLASSES)) < 0.3).astype(np.float32)
    with tf.GradientTape() as tape:
        probs = model((x, nf), training=True)
        loss = tf.reduce_mean(keras.losses.binary_crossentropy(labels, probs)) + tf.add_n(model.losses)
    grads = tape.gradient(loss, model.trainable_variables)
    assert len(grads) == len(model.trainable_weights) > 0
    for var, grad in zip(model.trainable_variables, grads):
        assert grad is not None, var.path
        grad = tf.convert_to_tensor(grad).numpy()
        assert np.all(np.isfinite(grad)), var.path
        assert np.any(grad != 0), f"no gradient reaches {var.path}"


@pytest.mark.parametrize("case", sorted(SMALL))
def test_weights_round_trip_and_tf_checkpoint(case, tmp_path):
    name, hp = CASES[case]
    model = _build(case, seed=0)
    inputs = _inputs(case)
    expected = _predict(model, inputs)
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    other = _build(case, seed=1)
    assert not np.allclose(_predict(other, inputs), expected), "a fresh model should differ before loading"
    other.load_weights(path)
    np.testing.assert_array_equal(_predict(other, inputs), expected)
    # tf.train.Checkpoint sees every weight too (trainers may use either)
    prefix = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    third = _build(case, seed=2)
    tf.train.Checkpoint(model=third).restore(prefix).assert_consumed()
    np.testing.assert_array_equal(_predict(third, inputs), expected)


# ------------------------------------------------------------------------------------------------
# training on a tiny separable set


def _separable_set(count: int = 48, classes: int = 4, seed: int = 0):
    """Videos whose label shows as a class pattern in 3 of their valid frames (the rest noise)."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(size=(classes, WIDTH))
    labels = rng.integers(0, classes, size=count)
    nf = rng.integers(6, FRAMES + 1, size=count).astype(np.int32)
    x = rng.normal(size=(count, FRAMES, WIDTH)) * 0.5
    for i in range(count):
        x[i, rng.choice(nf[i], size=3, replace=False)] += 2.0 * patterns[labels[i]]
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    x[np.arange(FRAMES)[None, :] >= nf[:, None]] = 0.0
    y = np.eye(classes, dtype=np.float32)[labels]
    return x.astype(np.float32), nf, y


@pytest.mark.parametrize("name", sorted(SMALL))
def test_fit_reduces_the_loss(name):
    x, nf, y = _separable_set()
    keras.utils.set_random_seed(0)
    model = build_model(name, num_classes=y.shape[1], feature_sizes=FEATURE_SIZES, max_frames=FRAMES, **SMALL[name])
    if is_video_level(name):
        x = x.sum(axis=1) / nf[:, None]
    # lr 1e-2 keeps this quick for the linear models; every model also learns with the seeds'
    # Adam 1e-3 (checked with longer runs, see the training tests).
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", jit_compile=False)
    history = model.fit((x, nf), y, batch_size=16, epochs=6, shuffle=True, verbose=0)
    losses = history.history["loss"]
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-2:]) < 0.95 * losses[0], losses


# ------------------------------------------------------------------------------------------------
# parameter counts at the published sizes


def _netvlad_formula(num_classes: int, rgb: int = 1024, audio: int = 128, clusters: int = 256, hidden: int = 1024) -> int:
    """Weights of WILLOW's gated NetVLAD (BN, no relu, context gating, gated 2-expert MoE)."""
    bn = lambda n: 4 * n  # noqa: E731 - gamma, beta, moving mean, moving variance
    width = rgb + audio
    total = bn(width)  # input BN
    vlad_dim = 0
    for size, k in ((rgb, clusters), (audio, clusters // 2)):
        total += size * k + bn(k) + size * k  # assignment weights, their BN, cluster centres
        vlad_dim += size * k
    total += vlad_dim * hidden + hidden  # hidden layer with bias (no BN without relu)
    total += hidden * hidden + bn(hidden)  # context gating
    mixtures = 2
    total += hidden * num_classes * (mixtures + 1)  # MoE gates, no bias
    total += hidden * num_classes * mixtures + num_classes * mixtures  # experts
    total += num_classes * num_classes + bn(num_classes)  # label-space gate
    return total


@pytest.fixture
def cheap_initializers(monkeypatch):
    """Zero initial values: filling 300M random weights takes ~20 s on a small CPU and the
    number of weights does not depend on their values."""

    def zeros(self, shape, dtype=None):
        return keras.ops.zeros(shape, dtype=dtype or "float32")

    for cls in (
        keras.initializers.RandomNormal,
        keras.initializers.TruncatedNormal,
        keras.initializers.RandomUniform,
        keras.initializers.VarianceScaling,  # Glorot, He
    ):
        monkeypatch.setattr(cls, "__call__", zeros)


def test_netvlad_parameter_count_matches_the_architecture(cheap_initializers):
    # moderate size, then the published one: WILLOW's gated NetVLAD, about 321M with 3862 classes
    model = build_model("NetVLADModelLF", num_classes=50, netvlad_cluster_size=16, netvlad_hidden_size=64)
    assert model.count_params() == _netvlad_formula(50, clusters=16, hidden=64)
    count = build_model("NetVLADModelLF").count_params()
    assert count == _netvlad_formula(3862)
    assert abs(count - 321e6) / 321e6 < 0.01


def test_nextvlad_parameter_counts_match_the_paper(cheap_initializers):
    best = build_model("NeXtVLADModel")  # paper Table 1: about 89M
    assert abs(best.count_params() - 89e6) / 89e6 < 0.03
    final = build_model("NeXtVLADModel", nextvlad_cluster_size=112, gating_reduction=16)  # about 79M
    assert abs(final.count_params() - 79e6) / 79e6 < 0.03
    mixture = build_model("MixNeXtVladModel")  # three of the final model: about 237M
    assert abs(mixture.count_params() - 237e6) / 237e6 < 0.03


# ------------------------------------------------------------------------------------------------
# pieces checked against independent numpy computations


def _np_softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_moe_with_label_gate_matches_numpy():
    model = build_model("MoeModel", num_classes=5, feature_sizes=(6,), moe_num_mixtures=3, moe_prob_gating=True)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    got = _predict(model, (x, np.ones(4, np.int32)))
    head = model.head
    gates = _np_softmax((x @ head.gates.kernel.numpy()).reshape(4, 5, 4))
    experts = _np_sigmoid((x @ head.experts.kernel.numpy() + head.experts.bias.numpy()).reshape(4, 5, 3))
    probs = (gates[:, :, :3] * experts).sum(-1)  # the 4th gate is the dummy expert's
    bn = head.label_gate_bn
    z = probs @ head.label_gate.kernel.numpy()
    z = (z - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon) * bn.gamma.numpy() + bn.beta.numpy()
    np.testing.assert_allclose(got, probs * _np_sigmoid(z), rtol=1e-5, atol=1e-6)


def test_l2_penalty_follows_slim_convention():
    model = build_model("LogisticModel", num_classes=5, feature_sizes=(6,), l2_penalty=0.5)
    kernel = model.head.dense.kernel.numpy()
    total = float(keras.ops.convert_to_numpy(tf.add_n(model.losses)))
    assert total == pytest.approx(0.5 * np.sum(kernel**2) / 2, rel=1e-5)


def test_netvlad_pool_matches_numpy():
    model = build_model(
        "NetVLADModelLF", num_classes=5, feature_sizes=(6, 4), max_frames=8,
        netvlad_cluster_size=4, netvlad_hidden_size=8, netvlad_add_batch_norm=False,
    )
    pool = model.pool_0
    x, nf = _frames_for(6, 2, 8, [8, 3])
    mask = (np.arange(8)[None, :] < nf[:, None]).astype(np.float32)
    got = keras.ops.convert_to_numpy(pool(x, mask))
    w, b = pool.assign.cluster.kernel.numpy(), pool.assign.cluster.bias.numpy()
    centres = pool.centres.numpy()  # [D, K]
    expected = []
    for i in range(2):
        xi = x[i, : nf[i]]
        a = _np_softmax(xi @ w + b)  # [n, K]
        vlad = np.stack([(a[:, k : k + 1] * (xi - centres[:, k])).sum(0) for k in range(4)], axis=1)  # [D, K]
        vlad /= np.linalg.norm(vlad, axis=0, keepdims=True)
        flat = vlad.reshape(-1)
        expected.append(flat / np.linalg.norm(flat))
    np.testing.assert_allclose(got, np.stack(expected), rtol=1e-4, atol=1e-6)


def _frames_for(width, batch, length, num_frames):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(batch, length, width)).astype(np.float32)
    nf = np.asarray(num_frames, np.int32)
    x[np.arange(length)[None, :] >= nf[:, None]] = 0
    return x, nf


def test_frame_sampler():
    length = 12
    frames = np.tile(np.arange(1, length + 1, dtype=np.float32)[None, :, None], (3, 1, 2))  # value = index + 1
    nf = np.array([12, 5, 1], np.int32)
    random_sampler = FrameSampler(20, random_frames=True, inference="sample")
    for training in (True, False):
        sampled, mask = (keras.ops.convert_to_numpy(t) for t in random_sampler(frames, nf, training=training))
        assert sampled.shape == (3, 20, 2) and np.all(mask == 1)
        values = sampled[..., 0]
        for i in range(3):
            assert values[i].min() >= 1 and values[i].max() <= nf[i]  # only valid frames
            assert np.all(np.diff(values[i]) >= 0)  # in time order
    evenly, _ = random_sampler(frames, nf, training=False)
    again, _ = random_sampler(frames, nf, training=False)
    np.testing.assert_array_equal(evenly, again)  # inference is deterministic
    assert set(np.unique(keras.ops.convert_to_numpy(evenly)[0, :, 0])) == set(range(1, 13))
    window = FrameSampler(4, random_frames=False, inference="sample")
    sampled, mask = (keras.ops.convert_to_numpy(t) for t in window(frames, nf, training=True))
    assert np.all(np.diff(sampled[0, :, 0]) == 1)  # a contiguous window
    assert sampled[0, 0, 0] >= 1 and sampled[0, -1, 0] <= 12
    np.testing.assert_array_equal(mask[2], [1, 0, 0, 0])  # a 1-frame video: one valid position
    everything = FrameSampler(4, random_frames=True, inference="all")
    kept, mask = everything(frames, nf, training=False)
    assert keras.ops.convert_to_numpy(kept).shape == (3, length, 2)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask).sum(1), nf)


def test_mixture_adds_the_distillation_loss_only_in_training():
    model = _build("MixNeXtVladModel")
    x, nf = _inputs("MixNeXtVladModel")
    _predict(model, (x, nf))
    penalties = len(model.losses)  # the L2 penalties of the branch heads (weights and biases)
    assert penalties == 4
    _predict(model, (x, nf), training=True)
    assert len(model.losses) == penalties + 1
    _predict(model, (x, nf))
    assert len(model.losses) == penalties
    # the value is the published KL(mixture || branch) at temperature T, in inference mode here
    hp = model.hp
    mask = (np.arange(FRAMES)[None, :] < nf[:, None]).astype(np.float32)
    parts = model.split_features(tf.constant(x))
    logits = np.stack(
        [
            keras.ops.convert_to_numpy(head(branch(parts, tf.constant(mask), training=False)))
            for branch, head in zip([model.branch_0, model.branch_1], [model.head_0, model.head_1])
        ],
        axis=1,
    )
    mean = (x * mask[..., None]).sum(1) / nf[:, None].astype(np.float32)
    bn = model.mix_bn
    mean = (mean - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon) * bn.gamma.numpy() + bn.beta.numpy()
    weights = _np_softmax(mean @ model.mix_weights.kernel.numpy() + model.mix_weights.bias.numpy())
    mix = (weights[..., None] * logits).sum(1)
    np.testing.assert_allclose(_predict(model, (x, nf)), _np_sigmoid(mix), rtol=1e-4, atol=1e-6)
    t = hp["cl_temperature"]
    teacher = _np_softmax(mix / t)[:, None, :]
    students = _np_softmax(logits / t)
    kl = (teacher * (np.log(teacher + 1e-8) - np.log(students + 1e-8))).sum(-1)
    expected = hp["cl_lambda"] * kl.sum(-1).mean()
    loss = model.distillation_loss(tf.constant(mix, tf.float32), tf.constant(logits, tf.float32))
    got = float(keras.ops.convert_to_numpy(loss))
    assert got == pytest.approx(expected, rel=1e-4)
    assert got > 0


def test_mixture_adds_each_branch_cross_entropy_when_given_the_labels():
    """linrongc's train.py adds every branch's own cross-entropy to the label loss."""
    model = build_model(  # no dropout: training-mode calls are deterministic
        "MixNeXtVladModel", num_classes=NUM_CLASSES, feature_sizes=FEATURE_SIZES, **SMALL["MixNeXtVladModel"], drop_rate=0.0
    )
    x, nf = _inputs("MixNeXtVladModel")
    labels = (np.random.default_rng(4).random((3, NUM_CLASSES)) < 0.3).astype(np.float32)
    weights = np.random.default_rng(5).random((3, NUM_CLASSES)).astype(np.float32)

    def total() -> float:
        return float(keras.ops.convert_to_numpy(tf.add_n(model.losses)))

    _predict(model, (x, nf), training=True)
    without, plain = len(model.losses), total()
    model((x, nf), training=False, labels=labels)  # inference: labels are never used
    assert len(model.losses) == without - 1  # L2 only
    model((x, nf), training=True, labels=labels, label_weights=weights)
    assert len(model.losses) == without + 1
    added = total() - plain
    _, logits = model.branch_logits(tf.constant(x), tf.constant(nf), training=True)
    p = _np_sigmoid(keras.ops.convert_to_numpy(logits))
    ce = -(labels[:, None] * np.log(p + 1e-5) + (1 - labels[:, None]) * np.log(1 - p + 1e-5)) * weights[:, None]
    assert added == pytest.approx(ce.sum(-1).mean(0).sum(), rel=1e-4)
    assert added > 0
    off = build_model("MixNeXtVladModel", num_classes=NUM_CLASSES, feature_sizes=FEATURE_SIZES,
                      **{**SMALL["MixNeXtVladModel"], "branch_label_loss": False})
    off((x, nf), training=True, labels=labels)
    assert len(off.losses) == without


def test_seed_details_defaults():
    """Issue 10 section 4: the seeds' values, checked against their reference code."""
    assert model_defaults("DbofModel")["dbof_activation"] == "sigmoid"  # google/youtube-8m today
    assert model_defaults("NeXtVLADModel")["l2_penalty"] == 1e-5  # linrongc scripts
    mix = model_defaults("MixNeXtVladModel")
    assert (mix["cl_temperature"], mix["cl_lambda"], mix["l2_penalty"]) == (3.0, 9.0, 1e-5)
    assert mix["branch_label_loss"] is True
    assert model_defaults("LstmModel")["lstm_full_state"] is False  # the starter's state[-1].h


@pytest.mark.parametrize("name", sorted(SMALL))
def test_batch_norm_decays_like_slim(name):
    model = _build(name)
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        assert layer.momentum == 0.999 and layer.epsilon == 1e-3, layer.path
    if norms:  # Keras' 0.99 stays available for short runs
        _, hp = CASES[name]
        faster = build_model(name, num_classes=NUM_CLASSES, feature_sizes=FEATURE_SIZES, **hp, batch_norm_decay=0.99)
        assert {layer.momentum for layer in faster._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)} == {0.99}


@pytest.mark.parametrize("activation", ["sigmoid", "relu6"])
def test_dbof_activation_matches_numpy(activation):
    model = build_model(
        "DbofModel", num_classes=5, feature_sizes=(6, 2), max_frames=8, dbof_cluster_size=7, dbof_hidden_size=4,
        dbof_add_batch_norm=False, iterations=8, video_level_classifier_model="LogisticModel", dbof_activation=activation,
    )
    x, nf = _frames_for(8, 2, 8, [8, 8])
    act = _np_sigmoid if activation == "sigmoid" else (lambda z: np.clip(z, 0.0, 6.0))
    cluster = act(x @ model.cluster.kernel.numpy() + model.cluster.bias.numpy()).max(axis=1)  # all 8 frames sampled
    hidden = act(cluster @ model.hidden.kernel.numpy() + model.hidden.bias.numpy())
    dense = model.classifier.dense
    expected = _np_sigmoid(hidden @ dense.kernel.numpy() + dense.bias.numpy())
    np.testing.assert_allclose(_predict(model, (x, nf)), expected, rtol=1e-5, atol=1e-6)


def test_gru_gate_biases_start_at_one_as_tf1_grucell():
    for reset_after in (False, True):
        model = build_model("GruModel", num_classes=3, feature_sizes=(4,), gru_cells=5, gru_reset_after=reset_after)
        bias = model.gru_0.cell.bias.numpy().reshape(-1, 15)
        np.testing.assert_array_equal(bias[0], [1.0] * 10 + [0.0] * 5)  # update, reset gates; candidate
        assert not bias[1:].any()


def _np_lstm(x, layer):
    """Keras LSTM (gates i, f, c, o) over x [T, D] in numpy: final (h, c)."""
    cell = layer.cell
    w, u, b = cell.kernel.numpy(), cell.recurrent_kernel.numpy(), cell.bias.numpy()
    n = u.shape[0]
    h, c = np.zeros(n), np.zeros(n)
    outputs = []
    for t in range(x.shape[0]):
        z = x[t] @ w + h @ u + b
        i, f, g, o = _np_sigmoid(z[:n]), _np_sigmoid(z[n : 2 * n]), np.tanh(z[2 * n : 3 * n]), _np_sigmoid(z[3 * n :])
        c = f * c + i * g
        h = o * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs), h, c


@pytest.mark.parametrize("backward", [False, True])
def test_willow_lstm_full_state_matches_numpy(backward):
    """WILLOW: MultiRNNCell of BasicLSTMCell with state_is_tuple=False -> [c1, h1, c2, h2] to the head."""
    model = build_model(
        "LstmModel", num_classes=4, feature_sizes=(5,), max_frames=6, lstm_cells=3, lstm_full_state=True,
        lstm_backward=backward, video_level_classifier_model="LogisticModel",
    )
    x, nf = _frames_for(5, 2, 6, [6, 4])
    got = _predict(model, (x, nf))
    for b in range(2):
        frames = x[b, : nf[b]][::-1] if backward else x[b, : nf[b]]
        seq, h1, c1 = _np_lstm(frames, model.lstm_0)
        _, h2, c2 = _np_lstm(seq, model.lstm_1)
        state = np.concatenate([c1, h1, c2, h2])
        dense = model.classifier.dense
        np.testing.assert_allclose(got[b], _np_sigmoid(state @ dense.kernel.numpy() + dense.bias.numpy()), rtol=1e-4, atol=1e-5)


def test_nextvlad_logistic_penalises_weights_and_biases():
    model = build_model("NeXtVLADModel", num_classes=5, feature_sizes=FEATURE_SIZES, **SMALL["NeXtVLADModel"], l2_penalty=0.5)
    dense = model.classifier.dense
    total = float(keras.ops.convert_to_numpy(tf.add_n(model.losses)))
    expected = 0.5 * (np.sum(dense.kernel.numpy() ** 2) + np.sum(dense.bias.numpy() ** 2)) / 2
    assert total == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------------------------------------
# several devices


@pytest.mark.slow
def test_mirrored_strategy_training_step():
    """Build and train under MirroredStrategy on 2 logical CPUs (own process: devices are fixed
    once TensorFlow starts)."""
    script = textwrap.dedent(
        f"""
        import os
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np, tensorflow as tf, keras
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from yt8m.classifier.models import build_model
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        small = {SMALL!r}
        rng = np.random.default_rng(0)
        x = rng.normal(size=(8, 10, {WIDTH})).astype("float32")
        nf = rng.integers(1, 11, size=8).astype("int32")
        y = (rng.random((8, 5)) < 0.3).astype("float32")
        for name in ["DbofModel", "GruModel", "MixNeXtVladModel"]:
            with strategy.scope():
                model = build_model(name, num_classes=5, feature_sizes={FEATURE_SIZES!r}, max_frames=10, **small[name])
                optimizer = keras.optimizers.Adam(1e-3)
                optimizer.build(model.trainable_variables)  # in scope, not lazily in a replica
            data = strategy.experimental_distribute_dataset(
                tf.data.Dataset.from_tensor_slices(((x, nf), y)).batch(8))

            @tf.function(jit_compile=False)
            def step(batch):
                def replica(inputs, labels):
                    with tf.GradientTape() as tape:
                        probs = model(inputs, training=True)
                        loss = tf.reduce_mean(keras.losses.binary_crossentropy(labels, probs))
                        loss = loss / strategy.num_replicas_in_sync + tf.add_n(model.losses) / strategy.num_replicas_in_sync
                    grads = tape.gradient(loss, model.trainable_variables)
                    optimizer.apply_gradients(zip(grads, model.trainable_variables))
                    return loss
                return strategy.reduce("sum", strategy.run(replica, args=batch), axis=None)

            before = [v.numpy().copy() for v in model.trainable_variables]
            for batch in data:
                loss = float(step(batch))
            assert np.isfinite(loss), name
            assert any(not np.allclose(a, v.numpy()) for a, v in zip(before, model.trainable_variables)), name
            print("ok", name)
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("ok ") == 3
