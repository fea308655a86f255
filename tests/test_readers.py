"""Readers: tf.data over YT8M records -> dequantized, concatenated, L2-normalised, padded model inputs."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from yt8m.data import records, shards
from yt8m.classifier.readers import (
    RecordSource,
    dequantize_tensor,
    features_to_model_inputs,
    labels_to_multi_hot,
)
from yt8m.core import FeatureSpec, VideoFeatures, Yt8mError
from yt8m.pca import dequantize

SPEC = FeatureSpec(max_frames=6)


def make_video(video_id: str, frames: int, labels=(1, 3), seed: int = 0, **kwargs) -> VideoFeatures:
    rng = np.random.default_rng(seed)
    return VideoFeatures(
        video_id=video_id,
        rgb=rng.integers(0, 256, (frames, 1024), dtype=np.uint8),
        audio=rng.integers(0, 256, (frames, 128), dtype=np.uint8),
        labels=list(labels),
        **kwargs,
    )


def write(path, videos) -> str:
    with shards.ShardWriter(path) as writer:
        for video in videos:
            writer.write(video)
    return str(path)


def read_all(pattern, spec=SPEC, num_classes=5, video_level=False, batch_size=4, normalize_video=True) -> dict:
    source = RecordSource(pattern, spec, num_classes, video_level=video_level, normalize_video=normalize_video)
    batches = list(source.iterate(batch_size))
    return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


def numpy_frames(video: VideoFeatures) -> np.ndarray:
    """Dequantize + concatenate with the numpy reference (yt8m.pca.dequantize), unnormalised."""
    return np.concatenate([dequantize(video.rgb), dequantize(video.audio)], axis=1)


def test_dequantize_matches_numpy_and_reference_bytes(tmp_path):
    video = make_video("a", 4)
    video.rgb[0, :256] = np.arange(256, dtype=np.uint8)  # every byte value somewhere
    path = write(tmp_path / "a.tfrecord", [video])
    out = read_all(path)
    reference = numpy_frames(video)
    norms = np.linalg.norm(reference, axis=1, keepdims=True)
    np.testing.assert_allclose(out["frames"][0, :4] * norms, reference, rtol=1e-5, atol=1e-6)
    # REFERENCE.md §2: byte 0 -> -1.992, 127 -> ~0.0, 255 -> 2.008 (before normalisation).
    restored = out["frames"][0, 0, :256] * norms[0]
    np.testing.assert_allclose(restored[[0, 127, 255]], [-1.992, 0.0, 2.008], atol=1e-3)


def test_in_graph_dequantize_is_bit_identical_to_numpy():
    every_byte = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for spec in (SPEC, FeatureSpec(min_value=-1.0, max_value=3.0)):
        graph = dequantize_tensor(tf.constant(every_byte), spec).numpy()
        np.testing.assert_array_equal(graph, dequantize(every_byte, spec.min_value, spec.max_value))


def test_frames_are_unit_norm_and_padding_zero(tmp_path):
    path = write(tmp_path / "a.tfrecord", [make_video("a", 4), make_video("b", 2, seed=1)])
    out = read_all(path)
    norms = np.linalg.norm(out["frames"], axis=2)
    assert out["frames"].shape == (2, SPEC.max_frames, 1152)
    np.testing.assert_array_equal(out["num_frames"], [4, 2])
    np.testing.assert_allclose(norms[0, :4], 1.0, rtol=1e-5)
    np.testing.assert_allclose(norms[1, :2], 1.0, rtol=1e-5)
    assert not out["frames"][0, 4:].any() and not out["frames"][1, 2:].any()


def test_truncates_to_max_frames(tmp_path):
    long = make_video("long", 9)
    out = read_all(write(tmp_path / "a.tfrecord", [long]))
    assert out["num_frames"][0] == SPEC.max_frames
    reference = numpy_frames(long)[: SPEC.max_frames]
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    np.testing.assert_allclose(out["frames"][0], reference, rtol=1e-5, atol=1e-6)


def test_multi_hot_labels_and_ids(tmp_path):
    videos = [make_video("a", 3, labels=(0, 4)), make_video("b", 3, labels=()), make_video("c", 3, labels=(2,))]
    out = read_all(write(tmp_path / "a.tfrecord", videos))
    assert [v.decode() for v in out["video_id"]] == ["a", "b", "c"]
    np.testing.assert_array_equal(out["labels"], [[1, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 0, 1, 0, 0]])


def test_legacy_video_id_key_is_accepted(tmp_path):
    """The 2017 data names the id `video_id`."""
    video = make_video("x", 2, labels=(1,))
    example = records.to_sequence_example(video)
    example.context.feature["video_id"].CopyFrom(example.context.feature["id"])
    del example.context.feature["id"]
    path = tmp_path / "legacy.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(example.SerializeToString())
    out = read_all(str(path))
    assert out["video_id"][0] == b"x"
    assert out["labels"][0, 1] == 1


def test_interleave_reads_every_shard(tmp_path):
    videos = [make_video(f"v{i}", 2 + i % 3, labels=(i % 5,), seed=i) for i in range(23)]
    with shards.ShardWriter(tmp_path / "s.tfrecord", shard_size=5) as writer:
        for video in videos:
            writer.write(video)
    source = RecordSource(str(tmp_path / "s-*"), SPEC, 5)
    assert len(source.files) == 5
    out = read_all(str(tmp_path / "s-*"))
    assert sorted(v.decode() for v in out["video_id"]) == sorted(v.video_id for v in videos)
    by_id = {v.video_id: v for v in videos}
    for video_id, count, labels in zip(out["video_id"], out["num_frames"], out["labels"]):
        video = by_id[video_id.decode()]
        assert count == video.num_frames
        assert np.flatnonzero(labels).tolist() == video.labels


def test_shuffled_dataset_covers_everything_once(tmp_path):
    videos = [make_video(f"v{i}", 2, labels=(i % 5,), seed=i) for i in range(12)]
    with shards.ShardWriter(tmp_path / "s.tfrecord", shard_size=4) as writer:
        for video in videos:
            writer.write(video)
    source = RecordSource(str(tmp_path / "s-*"), SPEC, 5)
    ids = [v for b in source.dataset(5, shuffle=True, seed=3).as_numpy_iterator() for v in b["video_id"]]
    assert sorted(ids) == sorted(v.video_id.encode() for v in videos)


def zero_frame_record(video_id: str) -> bytes:
    """A frame-level record with empty feature lists (yt8m's writer refuses one; other tools may not)."""
    example = records.to_sequence_example(make_video(video_id, 1, labels=()))
    for name in ("rgb", "audio"):
        del example.feature_lists.feature_list[name].feature[:]
    return example.SerializeToString()


def test_numpy_transform_matches_the_graph(tmp_path):
    videos = [make_video("a", 4), make_video("b", 8, seed=2)]
    path = write(tmp_path / "a.tfrecord", videos)
    out = read_all(str(path))
    frames, counts = features_to_model_inputs(videos, SPEC)
    np.testing.assert_array_equal(counts, out["num_frames"])
    np.testing.assert_allclose(frames, out["frames"], rtol=1e-5, atol=1e-7)


def test_video_level_reader_uses_means_or_frame_means(tmp_path):
    with_means = make_video(
        "m", 3,
        mean_rgb=np.linspace(-1, 1, 1024, dtype=np.float32),
        mean_audio=np.linspace(0, 1, 128, dtype=np.float32),
    )
    frames_only = make_video("f", 5, seed=4)
    path = write(tmp_path / "a.tfrecord", [with_means, frames_only])
    raw = read_all(path, video_level=True, normalize_video=False)
    assert raw["frames"].shape == (2, 1152)
    expected = [np.concatenate([with_means.mean_rgb, with_means.mean_audio]), numpy_frames(frames_only).mean(axis=0)]
    np.testing.assert_allclose(raw["frames"][0], expected[0], rtol=1e-6)
    np.testing.assert_allclose(raw["frames"][1], expected[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(raw["num_frames"], [3, 5])
    features, _ = features_to_model_inputs([with_means, frames_only], SPEC, video_level=True, normalize=False)
    np.testing.assert_allclose(features, raw["frames"], rtol=1e-5, atol=1e-6)
    # By default the concatenated vector is L2-normalised, as the starter does to every model input.
    out = read_all(path, video_level=True)
    for row, vector in enumerate(expected):
        np.testing.assert_allclose(out["frames"][row], vector / np.linalg.norm(vector), rtol=1e-5, atol=1e-6)
    features, _ = features_to_model_inputs([with_means, frames_only], SPEC, video_level=True)
    np.testing.assert_allclose(features, out["frames"], rtol=1e-5, atol=1e-6)


def test_plain_video_level_examples(tmp_path):
    video = make_video("e", 0, labels=(2,), mean_rgb=np.full(1024, 0.5, np.float32), mean_audio=np.full(128, -1, np.float32))
    path = tmp_path / "video.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(records.to_video_level_example(video).SerializeToString())
    out = read_all(str(path), video_level=True, normalize_video=False)
    np.testing.assert_allclose(out["frames"][0, :1024], 0.5)
    np.testing.assert_allclose(out["frames"][0, 1024:], -1.0)
    assert out["num_frames"][0] == 1 and out["labels"][0, 2] == 1


def test_custom_feature_names_and_sizes(tmp_path):
    spec = FeatureSpec(names=("rgb",), sizes=(1024,), max_frames=4)
    video = make_video("a", 3)
    out = read_all(write(tmp_path / "a.tfrecord", [video]), spec=spec)
    reference = dequantize(video.rgb)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    np.testing.assert_allclose(out["frames"][0, :3], reference, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- errors


def test_corrupt_shard_names_the_file(tmp_path):
    good = write(tmp_path / "good.tfrecord", [make_video("a", 3)])
    bad = tmp_path / "bad.tfrecord"
    write(bad, [make_video("b", 3), make_video("c", 3)])
    data = bytearray(bad.read_bytes())
    data[200:220] = b"\xff" * 20
    bad.write_bytes(bytes(data))
    with pytest.raises(Yt8mError, match="bad.tfrecord"):
        read_all(f"{good},{bad}")


def test_wrong_feature_size_names_file_and_feature(tmp_path):
    path = write(tmp_path / "a.tfrecord", [make_video("a", 3)])
    spec = FeatureSpec(sizes=(1000, 128), max_frames=4)
    with pytest.raises(Yt8mError, match=r"a\.tfrecord.*'rgb' has 1024 bytes, expected 1000"):
        read_all(path, spec=spec)


def test_missing_feature_is_reported(tmp_path):
    path = write(tmp_path / "a.tfrecord", [make_video("a", 3)])
    spec = FeatureSpec(names=("rgb", "flow"), sizes=(1024, 128), max_frames=4)
    with pytest.raises(Yt8mError, match=r"a\.tfrecord.*'flow'"):
        read_all(path, spec=spec)


def test_label_out_of_range_is_a_clear_error(tmp_path):
    path = write(tmp_path / "a.tfrecord", [make_video("a", 3, labels=(1,)), make_video("b", 3, labels=(7,))])
    with pytest.raises(Yt8mError, match=r"record 1 \(id 'b'\): label 7 is outside 0\.\.4.*`num_classes`"):
        read_all(path, num_classes=5)


def test_labels_to_multi_hot():
    np.testing.assert_array_equal(labels_to_multi_hot([[0, 2], []], 3), [[1, 0, 1], [0, 0, 0]])
    with pytest.raises(Yt8mError, match="outside"):
        labels_to_multi_hot([[3]], 3)


def test_features_with_different_frame_counts(tmp_path):
    example = records.to_sequence_example(make_video("odd", 3))
    del example.feature_lists.feature_list["audio"].feature[-1]
    path = tmp_path / "odd.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(example.SerializeToString())
    with pytest.raises(Yt8mError, match=r"odd\.tfrecord.*different frame counts \('rgb' 3, 'audio' 2\)"):
        read_all(str(path))


def write_examples(path, examples) -> str:
    """Records written with TensorFlow's own writer (ours refuses what these tests need)."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(example.SerializeToString())
    return str(path)


def test_records_without_id_or_frames_are_refused(tmp_path):
    nameless = records.to_sequence_example(make_video("x", 3))
    nameless.context.feature[records.ID_KEY].bytes_list.value[:] = [b""]
    path = write_examples(tmp_path / "nameless.tfrecord", [records.to_sequence_example(make_video("a", 3)), nameless])
    with pytest.raises(Yt8mError, match=r"nameless\.tfrecord: record 1: has no video id"):
        read_all(path)
    path = tmp_path / "empty.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(zero_frame_record("e"))
    with pytest.raises(Yt8mError, match=r"empty\.tfrecord: record 0 \(id 'e'\): has zero frames"):
        read_all(path)


def test_a_file_cut_inside_a_record_header_is_refused_before_reading(tmp_path):
    path = tmp_path / "cut.tfrecord"
    write(path, [make_video("a", 3), make_video("b", 3)])
    whole = path.read_bytes()
    first = len(whole) // 2  # the two records have the same size
    path.write_bytes(whole[: first + 5])  # TensorFlow alone would read one record and stop silently
    with pytest.raises(Yt8mError, match=r"cut\.tfrecord"):
        RecordSource(str(path), SPEC, 5)
