"""Fine-tuning with `--init-from`: weights copied from another train dir, the head re-initialised for a
new label space, pooling layers frozen for the first steps, the custom label map kept in the train dir."""

from __future__ import annotations

import numpy as np
import pytest

from yt8m.app.cli import main
from yt8m.classifier import training
from yt8m.classifier.bundle import build_model
from yt8m.classifier.config import ModelConfig
from yt8m.classifier.synthetic import make_synthetic_records
from yt8m.core import FeatureSpec, Yt8mError

SIZES = (32, 8)
FRAMES = 6
SPEC = FeatureSpec(sizes=SIZES, max_frames=FRAMES)
SOURCE_CLASSES = 6
TARGET_CLASSES = 3
TINY = {"nextvlad_cluster_size": 4, "nextvlad_hidden_size": 16, "groups": 4}
FAST = {"batch_size": 16, "base_learning_rate": 0.01, "log_every_steps": 5}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict:
    """A small NeXtVLAD trained on 6 classes, and a 3-class dataset with its label map (sharded)."""
    root = tmp_path_factory.mktemp("finetune")
    make_synthetic_records(root / "big.tfrecord", 160, SOURCE_CLASSES, frames=(3, FRAMES), seed=1, feature_sizes=SIZES)
    make_synthetic_records(
        root / "small.tfrecord", 64, TARGET_CLASSES, frames=(3, FRAMES), seed=2, feature_sizes=SIZES, shard_size=32
    )
    (root / "small.label_map.txt").write_text("cats\ndogs\nbirds\n", encoding="utf-8")
    config = ModelConfig.create(
        "NeXtVLADModel", feature_spec=SPEC, num_classes=SOURCE_CLASSES, overrides=TINY, training={**FAST, "max_steps": 20}
    )
    training.train(str(root / "big.tfrecord"), root / "source", config)
    return {"root": root, "train_dir": root / "source", "small": str(root / "small-*")}


def trainable_by_key(model, skip_head: bool) -> dict[str, np.ndarray]:
    head = {id(v) for v in training.head_variables(model)}
    return {
        training._variable_key(v): np.asarray(v.numpy())
        for v in model.trainable_variables
        if not (skip_head and id(v) in head)
    }


def test_new_label_space_resets_head_keeps_and_freezes_pooling(source, tmp_path):
    source_model, _, _ = training.load_trained_model(source["train_dir"])
    source_body = trainable_by_key(source_model, skip_head=True)
    config = training.resolve_train_config(
        tmp_path / "tuned", None, num_classes=TARGET_CLASSES, training={**FAST, "max_steps": 6},
        init_from=source["train_dir"],
    )
    assert config.model == "NeXtVLADModel" and config.num_classes == TARGET_CLASSES
    assert config.feature_spec.to_dict() == SPEC.to_dict()
    result = training.train(source["small"], tmp_path / "tuned", config, init_from=source["train_dir"], freeze_pooling_steps=6)
    assert result.init is not None and result.init.head_reset and result.init.copied > 0
    assert (tmp_path / "tuned" / training.LABEL_MAP_FILENAME).read_text().split() == ["cats", "dogs", "birds"]

    tuned, _, step = training.load_trained_model(tmp_path / "tuned", use_ema=False)
    assert step == 6
    body = trainable_by_key(tuned, skip_head=True)
    assert body.keys() == source_body.keys() and body
    for key, value in body.items():  # frozen for all 6 steps: exactly the source's pooling weights
        np.testing.assert_array_equal(value, source_body[key], err_msg=key)
    head = [np.asarray(v.numpy()) for v in training.head_variables(tuned)]
    assert any(h.shape[-1] == TARGET_CLASSES for h in head)

    # later steps (past the freeze) train the pooling layers too
    config = training.resolve_train_config(tmp_path / "tuned", None, training={"max_steps": 10})
    training.train(source["small"], tmp_path / "tuned", config, init_from=source["train_dir"], freeze_pooling_steps=6)
    tuned, _, step = training.load_trained_model(tmp_path / "tuned", use_ema=False)
    assert step == 10
    changed = trainable_by_key(tuned, skip_head=True)
    assert any(not np.array_equal(changed[k], source_body[k]) for k in changed)


def test_same_label_space_keeps_every_weight(source, tmp_path):
    source_model, source_config, _ = training.load_trained_model(source["train_dir"])
    config = training.resolve_train_config(tmp_path / "more", None, training=FAST, init_from=source["train_dir"])
    assert config.num_classes == SOURCE_CLASSES
    model = build_model(config)
    report = training.initialise_from(model, config, source["train_dir"], reset_head=False)
    assert not report.head_reset and not report.reinitialised
    expected = {training._variable_key(v): np.asarray(v.numpy()) for v in source_model.variables}
    for variable in model.variables:
        if "seed_generator" in variable.path:  # random-number generator states are not weights
            continue
        np.testing.assert_array_equal(np.asarray(variable.numpy()), expected[training._variable_key(variable)])


def test_label_map_is_found_next_to_sharded_records(source, tmp_path):
    assert training.find_label_map(source["small"]) == source["root"] / "small.label_map.txt"
    assert training.find_label_map(str(source["root"] / "big.tfrecord")) is None


def test_init_from_mistakes_are_one_line_errors(source, tmp_path, capsys):
    with pytest.raises(Yt8mError, match="not LogisticModel"):
        training.resolve_train_config(tmp_path / "x", "LogisticModel", init_from=source["train_dir"])
    with pytest.raises(Yt8mError, match="other features"):
        training.resolve_train_config(
            tmp_path / "x", None, init_from=source["train_dir"], feature_spec=FeatureSpec(sizes=(16, 8), max_frames=FRAMES)
        )
    with pytest.raises(Yt8mError, match="config.json"):
        training.resolve_train_config(tmp_path / "x", None, init_from=tmp_path / "missing")
    bad_map = tmp_path / "two.txt"
    bad_map.write_text("a\nb\n", encoding="utf-8")
    code = main([
        "train", "--train-data", source["small"], "--train-dir", str(tmp_path / "y"), "--init-from",
        str(source["train_dir"]), "--num-classes", str(TARGET_CLASSES), "--label-map", str(bad_map), "--max-steps", "1",
    ])
    assert code == 1
    err = capsys.readouterr().err
    assert "two.txt" in err and "2 class names" in err and "Traceback" not in err
    assert not (tmp_path / "y" / "config.json").exists()


def test_cli_fine_tuning_prints_what_was_kept(source, tmp_path, capsys):
    code = main([
        "train", "--train-data", source["small"], "--train-dir", str(tmp_path / "cli"), "--init-from",
        str(source["train_dir"]), "--num-classes", str(TARGET_CLASSES), "--max-steps", "3", "--batch-size", "16",
        "--freeze-pooling-steps", "2",
    ])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "initialised from" in out and "re-initialised" in out
    assert ModelConfig.load(tmp_path / "cli").num_classes == TARGET_CLASSES
    assert (tmp_path / "cli" / "label_map.txt").read_text().split() == ["cats", "dogs", "birds"]
