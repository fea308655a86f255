"""The seeds' training details kept by yt8m (issue 10 §4): per-tensor gradient clipping and
L2-normalised video-level inputs, each with yt8m's earlier behaviour as an option, and the
settings' round trip through config.json (old configs keep what they were trained with)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from yt8m.classifier import training
from yt8m.classifier.bundle import build_model, load_trained_model
from yt8m.classifier.config import CLIP_GLOBAL, CLIP_PER_TENSOR, ModelConfig
from yt8m.classifier.export import export_model
from yt8m.classifier.readers import RecordSource, features_to_model_inputs
from yt8m.classifier.segments import SegmentSource, segment_source
from yt8m.core import SEGMENT_FRAMES, FeatureSpec, VideoFeatures, Yt8mError
from yt8m.data.shards import ShardWriter
from yt8m.pca import dequantize

CLASSES = 5
SIZES = (12, 4)
SPEC = FeatureSpec(sizes=SIZES, max_frames=8)


# ----------------------------------------------------------------------------- gradient clipping


def test_per_tensor_clipping_clips_each_tensor_on_its_own():
    big = np.array([[3.0, 4.0]], np.float32)  # norm 5
    small = np.array([0.3, 0.4], np.float32)  # norm 0.5
    clipped = [g.numpy() for g in training.clip_gradients([tf.constant(big), tf.constant(small)], 1.0, CLIP_PER_TENSOR)]
    np.testing.assert_allclose(clipped[0], big / 5.0, rtol=1e-6)  # scaled to norm 1
    np.testing.assert_allclose(clipped[1], small, rtol=1e-6)  # under the norm: unchanged
    joint = np.sqrt(25.0 + 0.25)
    scaled = [g.numpy() for g in training.clip_gradients([tf.constant(big), tf.constant(small)], 1.0, CLIP_GLOBAL)]
    np.testing.assert_allclose(scaled[0], big / joint, rtol=1e-6)  # one factor for every tensor
    np.testing.assert_allclose(scaled[1], small / joint, rtol=1e-6)
    unchanged = training.clip_gradients([tf.constant(big)], 0.0, CLIP_PER_TENSOR)
    np.testing.assert_array_equal(unchanged[0].numpy(), big)


def _one_sgd_step(mode: str, clip: float) -> list[np.ndarray]:
    """Weight changes of one train step with SGD(lr=1): minus the clipped gradients."""
    keras.utils.set_random_seed(0)
    config = ModelConfig.create(
        "LogisticModel",
        feature_spec=SPEC,
        num_classes=CLASSES,
        training={"clip_gradient_norm": clip, "clip_gradient_mode": mode},
    )
    model = build_model(config)
    optimizer = keras.optimizers.SGD(learning_rate=1.0)
    before = [v.numpy().copy() for v in model.trainable_variables]
    step = training.make_train_step(model, optimizer, tf.distribute.get_strategy(), config.training)
    rng = np.random.default_rng(1)
    batch = {
        "frames": tf.constant(rng.normal(size=(6, sum(SIZES))).astype(np.float32)),
        "num_frames": tf.constant(np.ones(6, np.int32)),
        "labels": tf.constant((rng.random((6, CLASSES)) < 0.4).astype(np.float32)),
    }
    step(batch)
    return [v.numpy() - b for v, b in zip(model.trainable_variables, before)]


def test_train_step_clips_per_tensor_by_default_and_globally_as_an_option():
    assert ModelConfig.create("LogisticModel").training.clip_gradient_mode == CLIP_PER_TENSOR
    clip = 1e-2  # far below every gradient tensor's norm: each clipped tensor has exactly this norm
    per_tensor = _one_sgd_step(CLIP_PER_TENSOR, clip)
    assert len(per_tensor) == 2  # LogisticModel: kernel and bias
    for delta in per_tensor:
        assert np.linalg.norm(delta) == pytest.approx(clip, rel=1e-3)
    joint = _one_sgd_step(CLIP_GLOBAL, clip)
    assert np.sqrt(sum(np.sum(d * d) for d in joint)) == pytest.approx(clip, rel=1e-3)
    assert all(np.linalg.norm(d) < clip * 0.999 for d in joint)
    # the same direction per tensor, other lengths
    for a, b in zip(per_tensor, joint):
        np.testing.assert_allclose(a / np.linalg.norm(a), b / np.linalg.norm(b), atol=1e-4)


# ----------------------------------------------------------------------------- config round trip


def test_settings_round_trip_and_old_configs_keep_what_they_trained_with(tmp_path):
    config = ModelConfig.create("MoeModel", overrides={"clip_gradient_mode": "global", "l2_normalize_video_inputs": False})
    config.save(tmp_path)
    again = ModelConfig.load(tmp_path)
    assert again.training.clip_gradient_mode == CLIP_GLOBAL and again.training.l2_normalize_video_inputs is False
    fresh = ModelConfig.create("MoeModel")
    assert fresh.training.clip_gradient_mode == CLIP_PER_TENSOR and fresh.training.l2_normalize_video_inputs is True
    fresh.save(tmp_path)
    assert ModelConfig.load(tmp_path).training == fresh.training
    # a config.json written before the settings existed
    data = fresh.to_dict()
    del data["training"]["clip_gradient_mode"], data["training"]["l2_normalize_video_inputs"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    old = ModelConfig.load(tmp_path)
    assert old.training.clip_gradient_mode == CLIP_GLOBAL and old.training.l2_normalize_video_inputs is False
    with pytest.raises(Yt8mError, match="clip_gradient_mode must be one of"):
        ModelConfig.create("MoeModel", overrides={"clip_gradient_mode": "sometimes"})


def test_resuming_keeps_old_settings_and_refuses_other_inputs(tmp_path):
    data = ModelConfig.create("LogisticModel", feature_spec=SPEC, num_classes=CLASSES).to_dict()
    del data["training"]["clip_gradient_mode"], data["training"]["l2_normalize_video_inputs"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    resumed = training.resolve_train_config(tmp_path, None)
    assert resumed.training.clip_gradient_mode == CLIP_GLOBAL
    assert resumed.training.l2_normalize_video_inputs is False
    switched = training.resolve_train_config(tmp_path, None, set_values=["clip_gradient_mode=per-tensor"])
    assert switched.training.clip_gradient_mode == CLIP_PER_TENSOR
    with pytest.raises(Yt8mError, match="l2_normalize_video_inputs=False in this train dir"):
        training.resolve_train_config(tmp_path, None, set_values=["l2_normalize_video_inputs=true"])


# ----------------------------------------------------------------------------- video-level inputs


def starter_video_example(video_id: str, mean_rgb, mean_audio, labels) -> bytes:
    """A video-level record as the YT8M dataset ships them: a tf.train.Example with `id`,
    `labels` and the float lists `mean_rgb`, `mean_audio`."""
    feature = {
        "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[video_id.encode()])),
        "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=list(labels))),
        "mean_rgb": tf.train.Feature(float_list=tf.train.FloatList(value=list(mean_rgb))),
        "mean_audio": tf.train.Feature(float_list=tf.train.FloatList(value=list(mean_audio))),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector, axis=-1, keepdims=True)


@pytest.fixture
def video_records(tmp_path):
    rng = np.random.default_rng(3)
    means = [(rng.normal(size=SIZES[0]).astype(np.float32) * 3, rng.normal(size=SIZES[1]).astype(np.float32)) for _ in range(6)]
    path = tmp_path / "video.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i, (rgb, audio) in enumerate(means):
            writer.write(starter_video_example(f"v{i}", rgb, audio, [i % CLASSES]))
    raw = np.stack([np.concatenate(pair) for pair in means])
    return str(path), raw


def test_video_level_reader_normalises_by_default_and_keeps_raw_means_as_an_option(video_records):
    path, raw = video_records
    batch = next(RecordSource(path, SPEC, CLASSES, video_level=True).iterate(16))
    np.testing.assert_allclose(batch["frames"], unit(raw), rtol=1e-6, atol=1e-7)
    batch = next(RecordSource(path, SPEC, CLASSES, video_level=True, normalize_video=False).iterate(16))
    np.testing.assert_allclose(batch["frames"], raw, rtol=1e-6)


def test_in_memory_video_inputs_match_the_reader():
    rng = np.random.default_rng(5)
    video = VideoFeatures(
        "m",
        rng.integers(0, 256, (7, SIZES[0]), dtype=np.uint8),
        rng.integers(0, 256, (7, SIZES[1]), dtype=np.uint8),
    )
    means = np.concatenate([dequantize(video.rgb).mean(axis=0), dequantize(video.audio).mean(axis=0)])
    inputs, counts = features_to_model_inputs([video], SPEC, video_level=True)
    np.testing.assert_allclose(inputs[0], unit(means), rtol=1e-5, atol=1e-6)
    assert counts.tolist() == [7]
    raw, _ = features_to_model_inputs([video], SPEC, video_level=True, normalize=False)
    np.testing.assert_allclose(raw[0], means, rtol=1e-5, atol=1e-6)


def test_video_level_segments_are_normalised_means(tmp_path):
    rng = np.random.default_rng(7)
    video = VideoFeatures(
        "s",
        rng.integers(0, 256, (12, SIZES[0]), dtype=np.uint8),
        rng.integers(0, 256, (12, SIZES[1]), dtype=np.uint8),
        labels=[1],
        segment_start_times=[5],
        segment_end_times=[10],
        segment_labels=[1],
        segment_scores=[1.0],
    )
    writer = ShardWriter(tmp_path / "s.tfrecord")
    writer.write(video)
    writer.close()
    window = slice(5, 5 + SEGMENT_FRAMES)
    means = np.concatenate([dequantize(video.rgb[window]).mean(axis=0), dequantize(video.audio[window]).mean(axis=0)])
    pattern = str(tmp_path / "s.tfrecord")
    batch = next(SegmentSource(pattern, SPEC, CLASSES, video_level=True).iterate(4))
    np.testing.assert_allclose(batch["frames"][0], unit(means), rtol=1e-5, atol=1e-6)
    batch = next(SegmentSource(pattern, SPEC, CLASSES, video_level=True, normalize_video=False).iterate(4))
    np.testing.assert_allclose(batch["frames"][0], means, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("normalize", [True, False])
def test_training_and_export_feed_the_inputs_the_config_names(video_records, tmp_path, monkeypatch, normalize):
    path, raw = video_records
    seen = []

    class Spy(RecordSource):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.normalize_video)

    monkeypatch.setattr(training, "RecordSource", Spy)
    config = ModelConfig.create(
        "LogisticModel",
        feature_spec=SPEC,
        num_classes=CLASSES,
        training={"batch_size": 3, "max_steps": 2, "l2_normalize_video_inputs": normalize},
    )
    train_dir = tmp_path / "train"
    training.train(path, train_dir, config)
    assert seen == [normalize]
    model, saved, _ = load_trained_model(train_dir)
    assert saved.training.l2_normalize_video_inputs is normalize
    inputs = unit(raw) if normalize else raw
    expected = np.asarray(model((inputs, np.ones(len(raw), np.int32)), training=False))

    exported = tf.saved_model.load(str(export_model(train_dir, tmp_path / "export")))
    serialized = [starter_video_example(f"v{i}", raw[i, : SIZES[0]], raw[i, SIZES[0]:], [0]) for i in range(len(raw))]
    scores = exported.signatures["serialized"](serialized=tf.constant(serialized))["predictions"].numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    # rgb_and_audio: frames whose mean is the video's vector (one frame each)
    frames = tf.constant(raw[:, None, :])
    counts = tf.constant(np.ones((len(raw), 1), np.int32))
    scores = exported.signatures["rgb_and_audio"](rgb_and_audio=frames, num_frames=counts)["predictions"].numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- fine-tuning on segment labels


def _segment_videos(count: int, seed: int) -> list[VideoFeatures]:
    rng = np.random.default_rng(seed)
    return [
        VideoFeatures(
            f"s{i}",
            rng.integers(0, 256, (10, SIZES[0]), dtype=np.uint8),
            rng.integers(0, 256, (10, SIZES[1]), dtype=np.uint8),
            labels=[i % CLASSES],
            segment_start_times=[0, 5],
            segment_end_times=[5, 10],
            segment_labels=[i % CLASSES, (i + 1) % CLASSES],
            segment_scores=[1.0, 0.0],
        )
        for i in range(count)
    ]


def test_video_train_dir_continues_on_segment_labels_as_the_9th_place(tmp_path, monkeypatch):
    data = tmp_path / "seg.tfrecord"
    writer = ShardWriter(data)
    for video in _segment_videos(8, 11):
        writer.write(video)
    writer.close()
    train_dir = tmp_path / "train"
    settings = {"batch_size": 4, "max_steps": 2}
    config = training.resolve_train_config(
        train_dir, "FrameLevelLogisticModel", feature_spec=SPEC, num_classes=CLASSES, training=settings
    )
    first = training.train(str(data), train_dir, config)
    assert first.step == 2
    batches = []
    original = training.make_train_step

    def recording(*args, **kwargs):
        step = original(*args, **kwargs)

        def run(batch):
            batches.append(set(batch))
            return step(batch)

        return run

    monkeypatch.setattr(training, "make_train_step", recording)
    tuned = training.resolve_train_config(train_dir, None, segment_labels=True, training={"max_steps": 4})
    assert tuned.segments == "segment" and tuned.training.segment_label_weighting == "all-classes"
    result = training.train(str(data), train_dir, tuned)
    assert result.start_step == 2 and result.step == 4  # the optimizer's step (and schedule) carried on
    assert "segment labels" in (result.resume_note or "")
    assert batches and all("label_weights" not in keys for keys in batches)  # unrated classes: negatives
    assert ModelConfig.load(train_dir).segments == "segment"
    # the rated-pairs weighting stays an option; a new segment train dir uses it by default
    rated = training.resolve_train_config(train_dir, None, segment_labels=True, set_values=["segment_label_weighting=rated-pairs"])
    assert rated.training.segment_label_weighting == "rated-pairs"
    batch = next(segment_source(str(data), rated, for_training=True).iterate(4, include_ids=False))
    assert "label_weights" in batch
    batch = next(segment_source(str(data), tuned, for_training=True).iterate(4, include_ids=False))
    assert "label_weights" not in batch and batch["labels"].shape == (4, CLASSES)
    fresh = training.resolve_train_config(
        tmp_path / "new", "FrameLevelLogisticModel", feature_spec=SPEC, num_classes=CLASSES, segment_labels=True
    )
    assert fresh.training.segment_label_weighting == "rated-pairs"
    with pytest.raises(Yt8mError, match="trained on segment labels"):  # the train dir now holds a segment model
        training.resolve_train_config(train_dir, None, segment_labels=True, segment_context=True)
