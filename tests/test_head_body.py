"""The head/body contract of every registered model (`head_variables()` / `body_variables()`), and
fine-tuning through the library with it: `init_from` re-initialises the head for a new label space,
`freeze_pooling_steps` trains only the head first, then the body too."""

from __future__ import annotations

import numpy as np
import pytest

from yt8m.classifier import training
from yt8m.classifier.config import ModelConfig
from yt8m.classifier.models import build_model, list_models
from yt8m.classifier.synthetic import make_synthetic_records
from yt8m.core import FeatureSpec

SIZES = (16, 8)
FRAMES = 6
SPEC = FeatureSpec(sizes=SIZES, max_frames=FRAMES)
SOURCE_CLASSES = 5
TARGET_CLASSES = 3
FREEZE = 2

# A tiny configuration of every registered model (a few clusters / units: each trains in seconds).
TINY: dict[str, dict] = {
    "LogisticModel": {},
    "MoeModel": {},
    "FrameLevelLogisticModel": {},
    "DbofModel": {"dbof_cluster_size": 16, "dbof_hidden_size": 16, "iterations": 4},
    "LstmModel": {"lstm_cells": 8, "lstm_layers": 2},
    "NetVLADModelLF": {"netvlad_cluster_size": 4, "netvlad_hidden_size": 16, "iterations": 4},
    "NetFVModelLF": {"fv_cluster_size": 4, "fv_hidden_size": 16, "iterations": 4},
    "SoftDbofModelLF": {"dbof_cluster_size": 16, "dbof_hidden_size": 16, "iterations": 4},
    "GatedDbofModelLF": {"dbof_cluster_size": 16, "dbof_hidden_size": 16, "iterations": 4},
    "GruModel": {"gru_cells": 8},
    "NeXtVLADModel": {"nextvlad_cluster_size": 4, "nextvlad_hidden_size": 16, "groups": 4},
    "MixNeXtVladModel": {"nextvlad_cluster_size": 4, "nextvlad_hidden_size": 16, "groups": 4, "mix_number": 2},
    "TransformerModel": {"bert_hidden_size": 16, "bert_num_heads": 2, "bert_intermediate_size": 16},
    "Bert": {"bert_attention_heads": 4, "bert_intermediate_size": 16, "bert_hidden_layer": 1},
    "BertCross": {"bert_attention_heads": 4, "bert_intermediate_size": 16},
    "BERTMean": {"bert_attention_heads": 4, "bert_intermediate_size": 16, "bert_hidden_layer": 1},
    "BERTFirst": {"bert_attention_heads": 4, "bert_intermediate_size": 16, "bert_hidden_layer": 1},
    "BERTCrossMean": {"bert_attention_heads": 4, "bert_intermediate_size": 16},
    "BERTCrossAttn": {"bert_attention_heads": 4, "bert_intermediate_size": 16},
}
NO_BODY = {"LogisticModel", "MoeModel", "FrameLevelLogisticModel"}
"""Models whose classifier reads the (video-level or frame-averaged) features directly: no body weights."""
FAST = {"batch_size": 8, "base_learning_rate": 0.01, "log_every_steps": 1, "checkpoint_every_steps": 1}


def test_every_registered_model_has_a_tiny_configuration():
    assert set(list_models()) <= set(TINY), "add the new model to TINY"


def _ids(variables) -> list[int]:
    return [id(v) for v in variables]


def _weights(model) -> list:
    """The model's float variables (random-number generator states are not weights)."""
    return [v for v in model.variables if "float" in str(v.dtype)]


@pytest.mark.parametrize("name", list_models())
def test_head_and_body_split_the_variables(name):
    model = build_model(name, num_classes=SOURCE_CLASSES, feature_sizes=SIZES, max_frames=FRAMES, **TINY[name])
    head, body = model.head_variables(), model.body_variables()
    assert head, f"{name}: empty head"
    assert not set(_ids(head)) & set(_ids(body)), "head and body overlap"
    assert sorted(_ids(head) + _ids(body)) == sorted(_ids(model.variables)), "together: every variable"
    trainable = set(_ids(model.trainable_variables))
    assert trainable <= set(_ids(head)) | set(_ids(body))
    assert trainable & set(_ids(head))
    assert bool(trainable & set(_ids(body))) == (name not in NO_BODY)
    # The head is exactly the weights that depend on the label space: every variable whose shape
    # changes with the number of classes (the final classifier above all) is in it, nothing else.
    other = build_model(name, num_classes=SOURCE_CLASSES + 2, feature_sizes=SIZES, max_frames=FRAMES, **TINY[name])
    weights, other_weights = _weights(model), _weights(other)
    assert [v.path for v in other_weights] == [v.path for v in weights]
    label_dependent = {id(v) for v, w in zip(weights, other_weights) if tuple(v.shape) != tuple(w.shape)}
    assert label_dependent, "no variable depends on the number of classes?"
    assert label_dependent == set(_ids(head))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("headbody")
    make_synthetic_records(root / "source.tfrecord", 24, SOURCE_CLASSES, frames=(3, FRAMES), seed=1, feature_sizes=SIZES)
    make_synthetic_records(root / "target.tfrecord", 24, TARGET_CLASSES, frames=(3, FRAMES), seed=2, feature_sizes=SIZES)
    (root / "source.txt").write_text("".join(f"s{i}\n" for i in range(SOURCE_CLASSES)), encoding="utf-8")
    (root / "target.txt").write_text("".join(f"t{i}\n" for i in range(TARGET_CLASSES)), encoding="utf-8")
    return {"root": root, "source": str(root / "source.tfrecord"), "target": str(root / "target.tfrecord")}


def _values(variables) -> dict[str, np.ndarray]:
    return {v.path: np.asarray(v.numpy()).copy() for v in variables if v.trainable}


def _checkpoint(train_dir, step: int) -> str:
    return str(train_dir / f"{training.CHECKPOINT_PREFIX}-{step}")


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_init_from_and_freeze_pooling_steps(name, data, tmp_path):
    """Train on 5 classes; fine-tune on 3 (new head) with the body frozen for 2 steps, then thawed."""
    config = ModelConfig.create(
        name, feature_spec=SPEC, num_classes=SOURCE_CLASSES, overrides=TINY[name], training={**FAST, "max_steps": 2}
    )
    training.train(data["source"], tmp_path / "source", config, label_map=data["root"] / "source.txt")
    source, _, _ = training.load_trained_model(tmp_path / "source", use_ema=False)
    source_body = _values(source.body_variables())

    tuned_dir = tmp_path / "tuned"
    target_map = {"label_map": data["root"] / "target.txt"}
    config = training.resolve_train_config(
        tuned_dir, None, num_classes=TARGET_CLASSES, training={**FAST, "max_steps": FREEZE}, init_from=tmp_path / "source"
    )
    result = training.train(data["target"], tuned_dir, config, init_from=tmp_path / "source", freeze_pooling_steps=FREEZE, **target_map)
    assert result.init is not None and result.init.head_reset
    fresh = build_model(name, num_classes=TARGET_CLASSES, feature_sizes=SIZES, max_frames=FRAMES, **TINY[name])
    target_head = [tuple(v.shape) for v in fresh.head_variables()]
    states = [training.load_trained_model(tuned_dir, _checkpoint(tuned_dir, s), use_ema=False)[0] for s in (1, FREEZE)]
    for model in states:
        assert [tuple(v.shape) for v in model.head_variables()] == target_head  # the head of the new label space
        body = _values(model.body_variables())
        assert body.keys() == source_body.keys()
        for key, value in body.items():  # frozen: exactly the source's body
            np.testing.assert_array_equal(value, source_body[key], err_msg=key)
    first, second = (_values(m.head_variables()) for m in states)
    assert any(not np.array_equal(first[k], second[k]) for k in first), "the head does not train while frozen"

    # past the freeze the body trains too
    config = training.resolve_train_config(tuned_dir, None, training={"max_steps": FREEZE + 1})
    training.train(data["target"], tuned_dir, config, init_from=tmp_path / "source", freeze_pooling_steps=FREEZE, **target_map)
    thawed, _, step = training.load_trained_model(tuned_dir, use_ema=False)
    assert step == FREEZE + 1
    body = _values(thawed.body_variables())
    if name in NO_BODY:
        assert not body
    else:
        assert any(not np.array_equal(body[k], source_body[k]) for k in body), "the body never trains"
