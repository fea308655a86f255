"""The model bundle: one owner of a trained model on disk, refusing misuse whoever calls it; the root API."""

from __future__ import annotations

import json
import threading
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

import yt8m
from yt8m import api
from yt8m.classifier import bundle as bundle_lib
from yt8m.classifier.bundle import weights_filled_by_a_checkpoint
from yt8m.classifier.bundle import (
    INPUT_SEGMENT,
    INPUT_SEGMENT_CONTEXT,
    INPUT_VIDEO,
    USE_SEGMENTS,
    USE_VIDEOS,
    ModelBundle,
    build_model,
)
from yt8m.classifier.config import ModelConfig
from yt8m.classifier.evaluation import evaluate, evaluate_segments, predict
from yt8m.classifier.export import export_model
from yt8m.classifier.predictor import load_predictor
from yt8m.classifier.synthetic import make_synthetic_records
from yt8m.classification import classify
from yt8m.core import FeatureSpec, Yt8mError

CLASSES = 4
SIZES = (16, 8)
SPEC = FeatureSpec(sizes=SIZES, max_frames=12)


def write_bundle(path, segments=None, steps=1, **changes) -> ModelBundle:
    """A bundle as training leaves it: config.json and a `ckpt-N` checkpoint of the built model."""
    config = ModelConfig.create("FrameLevelLogisticModel", feature_spec=SPEC, num_classes=CLASSES)
    bundle = ModelBundle(path, replace(config, segments=segments, **changes))
    model = bundle.build_model()
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(path), 3, checkpoint_name="ckpt")
    manager.save(checkpoint_number=steps)
    bundle.save_config()
    return bundle


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    make_synthetic_records(root / "seg.tfrecord", 6, CLASSES, frames=(10, 12), segments=True, feature_sizes=SIZES)
    return root / "seg.tfrecord"


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("context") / "model", segments="context")


def test_input_kinds_and_uses(tmp_path, context):
    video = write_bundle(tmp_path / "video")
    segment = write_bundle(tmp_path / "segment", segments="segment")
    assert [b.input_kind for b in (video, segment, context)] == [INPUT_VIDEO, INPUT_SEGMENT, INPUT_SEGMENT_CONTEXT]
    for bundle in (video, segment):
        ModelBundle.open(bundle.path, use=USE_VIDEOS)
    ModelBundle.open(context.path, use=USE_SEGMENTS)
    with pytest.raises(Yt8mError) as error:
        ModelBundle.open(context.path, use=USE_VIDEOS)
    message = str(error.value)
    assert message.startswith(f"{context.path}: ") and "video context" in message and "\n" not in message
    assert "`segment_labels=True`" in message  # a parameter, which the CLI shows as --segment-labels


def test_context_model_is_refused_by_every_library_entry_point(context, records, tmp_path):
    """evaluate / predict / export / load_predictor / classify refuse it, called as a library."""
    calls = {
        "evaluate": lambda: evaluate(str(records), context.path),
        "predict": lambda: predict(str(records), context.path, tmp_path / "p.csv"),
        "export": lambda: export_model(context.path, tmp_path / "export"),
        "load_predictor": lambda: load_predictor(context.path),
        "classify": lambda: classify([tmp_path / "clip.mp4"], context.path),
        "yt8m.evaluate": lambda: yt8m.evaluate(str(records), context.path),
        "yt8m.predict": lambda: yt8m.predict(str(records), context.path, tmp_path / "p.csv"),
        "yt8m.export": lambda: yt8m.export(context.path, tmp_path / "export"),
        "yt8m.load_model": lambda: yt8m.load_model(context.path),
    }
    (tmp_path / "clip.mp4").write_bytes(b"not decoded: the model is refused first")
    calls["yt8m.classify"] = lambda: yt8m.classify([tmp_path / "clip.mp4"], context.path)
    for name, call in calls.items():
        with pytest.raises(Yt8mError, match="trained on segments with video context"):
            call()
        assert not (tmp_path / "p.csv").exists() and not (tmp_path / "export").exists(), name
    # The same bundle scores segments: the refusal is about the use, not a broken bundle.
    results = evaluate_segments(str(records), context.path)
    assert results["num_segments"] > 0 and 0.0 <= results["segment_map"] <= 1.0


def test_load_restores_the_checkpoint(tmp_path):
    bundle = write_bundle(tmp_path / "run", steps=7)
    loaded = ModelBundle.open(bundle.path).load()
    assert loaded.step == 7 and loaded.checkpoint.endswith("ckpt-7") and loaded.config == bundle.config
    fresh = build_model(bundle.config)
    reader = tf.train.load_checkpoint(loaded.checkpoint)
    saved = [reader.get_tensor(name) for name, _ in tf.train.list_variables(loaded.checkpoint) if "kernel" in name]
    kernels = [v.numpy() for v in loaded.model.trainable_variables if v.numpy().ndim == 2]
    assert saved and any(np.array_equal(k, saved[0]) for k in kernels)
    assert not any(np.array_equal(k, saved[0]) for k in (v.numpy() for v in fresh.trainable_variables if v.numpy().ndim == 2))
    frames = np.zeros((2, SPEC.max_frames, sum(SIZES)), np.float32)
    assert loaded.scores(frames, np.array([3, 5], np.int32)).shape == (2, CLASSES)


def test_a_model_built_for_a_checkpoint_skips_random_weights_and_gets_every_one_restored(tmp_path):
    config = ModelConfig.create("NeXtVLADModel", feature_spec=SPEC, num_classes=CLASSES,
                                overrides={"nextvlad_cluster_size": 4, "nextvlad_hidden_size": 8, "groups": 2})
    bundle = ModelBundle(tmp_path / "run", config)
    other_thread: list = []
    with weights_filled_by_a_checkpoint():
        zeroed = bundle.build_model()
        worker = threading.Thread(target=lambda: other_thread.append(bundle.build_model()))
        worker.start()
        worker.join()
    floats = [v for v in zeroed.variables if "float" in str(v.dtype)]
    assert floats and all(not np.any(v.numpy()) for v in floats)  # nothing drawn at random
    drawn = [v for v in other_thread[0].trainable_variables if v.numpy().ndim == 2]
    assert drawn and all(np.any(v.numpy()) for v in drawn)  # another thread builds as usual
    assert all(np.any(v.numpy()) for v in bundle.build_model().trainable_variables if v.numpy().ndim == 2)

    trained = other_thread[0]
    tf.train.CheckpointManager(tf.train.Checkpoint(model=trained), str(bundle.path), 1, checkpoint_name="ckpt").save(3)
    bundle.save_config()
    loaded = ModelBundle.open(bundle.path).load()
    restored = [v for v in loaded.model.variables if "float" in str(v.dtype)]
    saved = [v for v in trained.variables if "float" in str(v.dtype)]
    assert len(restored) == len(saved) == len(floats)
    for got, want in zip(restored, saved):
        np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=got.path)

    # a checkpoint that leaves some weights unfilled is refused, never served with zeros
    partial = tmp_path / "partial"
    tf.train.CheckpointManager(tf.train.Checkpoint(model=write_bundle(tmp_path / "small").build_model()),
                               str(partial), 1, checkpoint_name="ckpt").save(1)
    ModelBundle(partial, config).save_config()
    with pytest.raises(Yt8mError, match="does not match"):
        ModelBundle.open(partial).load()


def test_class_names_and_label_map(tmp_path):
    bundle = write_bundle(tmp_path / "run")
    assert bundle.label_map_path is None and bundle.label_names() is None and bundle.class_names() is None
    bundle.write_label_names(["cats", "dogs", "birds", "fish"])
    assert bundle.label_names() == ["cats", "dogs", "birds", "fish"] == bundle.class_names()
    (tmp_path / "names.txt").write_text("a\nb\nc\nd\n")
    assert bundle.class_names(tmp_path / "names.txt") == ["a", "b", "c", "d"]
    (tmp_path / "short.txt").write_text("a\nb\n")
    with pytest.raises(Yt8mError, match="short.txt: has 2 classes"):
        bundle.class_names(tmp_path / "short.txt")
    bundle.write_label_names(["cats", "dogs"])
    with pytest.raises(Yt8mError, match="has 2 class names, but the model has 4"):
        bundle.label_names()


def test_bundle_kinds(tmp_path):
    """A bundle of a kind this version cannot load is refused by name; once registered, it loads."""
    other = write_bundle(tmp_path / "other", kind="from-the-future")
    assert json.loads(other.config_path.read_text())["kind"] == "from-the-future"
    assert "kind" not in json.loads(write_bundle(tmp_path / "plain").config_path.read_text())
    with pytest.raises(Yt8mError, match="a 'from-the-future' bundle, which this yt8m cannot load"):
        ModelBundle.open(other.path)
    calls = []

    def loader(bundle, checkpoint, use_ema):
        calls.append(bundle.path)
        return bundle_lib.LoadedModel(model=None, config=bundle.config, step=0, checkpoint=None)

    bundle_lib.register_kind("from-the-future", loader)
    try:
        assert ModelBundle.open(other.path).load().step == 0 and calls == [other.path]
    finally:
        bundle_lib._LOADERS.pop("from-the-future")


def test_clear_keeps_what_is_not_training_output(tmp_path):
    bundle = write_bundle(tmp_path / "run")
    bundle.write_label_names(["a", "b", "c", "d"])
    (tmp_path / "run" / "notes.txt").write_text("mine")
    (tmp_path / "run" / "logs").mkdir()
    bundle.clear()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["label_map.txt", "notes.txt"]


def test_the_root_api_is_lazy():
    """`import yt8m` loads no TensorFlow; the API functions come from yt8m.api on first use."""
    assert set(yt8m.API) <= set(dir(yt8m)) and set(yt8m.API) <= set(yt8m.__all__)
    for name in yt8m.API:
        assert getattr(yt8m, name) is getattr(api, name)
    with pytest.raises(AttributeError):
        yt8m.no_such_function  # noqa: B018
    code = "import sys, yt8m; print('tensorflow' in sys.modules, callable(yt8m.classify), 'tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "True", "True"], result.stderr[-2000:]


def test_api_rules_speak_of_parameters(tmp_path, records):
    with pytest.raises(Yt8mError, match="`segment_context` needs `segment_labels`"):
        api.train(str(records), tmp_path / "t", "FrameLevelLogisticModel", segment_context=True)
    with pytest.raises(Yt8mError, match="`predictions` needs `segment_labels=True`"):
        api.evaluate(str(records), tmp_path / "t", predictions=tmp_path / "p.csv")
    with pytest.raises(Yt8mError, match="`model` is required"):
        api.train(str(records), tmp_path / "t")
    with pytest.raises(Yt8mError, match="no_such_setting: not a setting of FrameLevelLogisticModel"):
        api.train(str(records), tmp_path / "t", "FrameLevelLogisticModel", no_such_setting=3)
    assert not (tmp_path / "t").exists()


def test_classify_feeds_a_model_the_weights_of_its_training_records(tmp_path):
    """The library and the CLI share one default: the weights recorded in the train dir, else yt8m."""
    from yt8m.classification import default_weights

    recorded = write_bundle(tmp_path / "random", feature_weights="random")
    plain = write_bundle(tmp_path / "plain")
    assert load_predictor(recorded.path).feature_weights == "random"
    assert default_weights(load_predictor(recorded.path)) == "random"
    assert default_weights(load_predictor(plain.path)) == "yt8m"


def test_the_cli_shows_parameters_as_its_options():
    from yt8m.app.flags import cli_message

    message = "x: pass `start_new_model=True` or another `train_dir`; `num_classes`, `max_pred`, `yt8m models fetch`"
    assert cli_message(message) == "x: pass --start-new-model or another --train-dir; --num-classes, --segment-max-pred, `yt8m models fetch`"
