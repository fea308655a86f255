"""Records: VideoFeatures <-> SequenceExample round trips, validation errors, shard writing."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from yt8m.classifier import records
from yt8m.core import VideoFeatures, Yt8mError


def make_video(video_id: str = "vid", frames: int = 4, seed: int = 0, **kwargs) -> VideoFeatures:
    rng = np.random.default_rng(seed)
    return VideoFeatures(
        video_id=video_id,
        rgb=rng.integers(0, 256, (frames, 1024), dtype=np.uint8),
        audio=rng.integers(0, 256, (frames, 128), dtype=np.uint8),
        **kwargs,
    )


def starter_feature_spec():
    """The starter code's frame-level parsing spec (readers.py YT8MFrameFeatureReader)."""
    context = {"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64)}
    sequence = {
        "rgb": tf.io.FixedLenSequenceFeature([], dtype=tf.string),
        "audio": tf.io.FixedLenSequenceFeature([], dtype=tf.string),
    }
    return context, sequence


def test_round_trip_keeps_every_field():
    video = make_video(
        labels=[7, 2, 7],
        mean_rgb=np.linspace(-1, 1, 1024, dtype=np.float32),
        mean_audio=np.linspace(0, 1, 128, dtype=np.float32),
        segment_start_times=[0, 5],
        segment_end_times=[5, 10],
        segment_labels=[2, 7],
        segment_scores=[1.0, 0.0],
        extras={"weights": "random", "audio_missing": 1, "fps": 1.0},
    )
    parsed = records.parse_record(records.serialize(video), source="mem")
    assert parsed.video_id == "vid"
    assert parsed.labels == [2, 7]  # sorted, unique, as the dataset stores them
    np.testing.assert_array_equal(parsed.rgb, video.rgb)
    np.testing.assert_array_equal(parsed.audio, video.audio)
    np.testing.assert_allclose(parsed.mean_rgb, video.mean_rgb)
    np.testing.assert_allclose(parsed.mean_audio, video.mean_audio)
    assert parsed.segment_start_times == [0, 5] and parsed.segment_end_times == [5, 10]
    assert parsed.segment_labels == [2, 7] and parsed.segment_scores == [1.0, 0.0]
    assert parsed.extras == {"weights": "random", "audio_missing": 1, "fps": 1.0}


def test_layout_parses_with_the_starter_feature_spec():
    video = make_video(labels=[1, 5], frames=3)
    context_spec, sequence_spec = starter_feature_spec()
    context, sequence = tf.io.parse_single_sequence_example(
        records.serialize(video), context_features=context_spec, sequence_features=sequence_spec
    )
    assert context["id"].numpy() == b"vid"
    assert list(tf.sparse.to_dense(context["labels"]).numpy()) == [1, 5]
    rgb = tf.reshape(tf.io.decode_raw(sequence["rgb"], tf.uint8), [-1, 1024]).numpy()
    audio = tf.reshape(tf.io.decode_raw(sequence["audio"], tf.uint8), [-1, 128]).numpy()
    np.testing.assert_array_equal(rgb, video.rgb)
    np.testing.assert_array_equal(audio, video.audio)
    # each frame is one bytes value of exactly 1024 / 128 bytes
    proto = records.to_sequence_example(video)
    assert [len(f.bytes_list.value[0]) for f in proto.feature_lists.feature_list["rgb"].feature] == [1024] * 3
    assert [len(f.bytes_list.value[0]) for f in proto.feature_lists.feature_list["audio"].feature] == [128] * 3


def test_legacy_video_id_key_is_accepted():
    proto = records.to_sequence_example(make_video())
    context = proto.context.feature
    context["video_id"].CopyFrom(context["id"])
    del context["id"]
    assert records.parse_record(proto.SerializeToString()).video_id == "vid"


def test_video_level_example_parses():
    video = make_video(labels=[3], mean_rgb=np.ones(1024, np.float32), mean_audio=np.zeros(128, np.float32))
    example = records.to_video_level_example(video)
    assert isinstance(example, tf.train.Example)
    parsed = records.parse_record(example.SerializeToString(), source="video.tfrecord")
    assert parsed.num_frames == 0 and parsed.labels == [3]
    np.testing.assert_allclose(parsed.mean_rgb, 1.0)
    np.testing.assert_allclose(parsed.mean_audio, 0.0)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: p.feature_lists.feature_list["rgb"].feature[1].bytes_list.value.__setitem__(0, b"x" * 1000),
         "frame 1 of 'rgb' has 1000 bytes, expected 1024"),
        (lambda p: p.feature_lists.feature_list["audio"].feature[2].bytes_list.value.__setitem__(0, b"x" * 129),
         "frame 2 of 'audio' has 129 bytes, expected 128"),
        (lambda p: p.feature_lists.feature_list["audio"].feature.pop(),
         "'rgb' has 4 frames but 'audio' has 3"),
        (lambda p: p.context.feature.__delitem__("id"), "missing the video id"),
        (lambda p: p.feature_lists.feature_list.__delitem__("audio"), "has no 'audio' feature list"),
    ],
)
def test_malformed_records_name_file_and_index(mutate, message):
    proto = records.to_sequence_example(make_video())
    mutate(proto)
    with pytest.raises(Yt8mError) as error:
        records.parse_record(proto.SerializeToString(), source="shard.tfrecord", index=12)
    assert "shard.tfrecord: record 12" in str(error.value)
    assert message in str(error.value)


def test_garbage_bytes_are_rejected():
    with pytest.raises(Yt8mError, match="bad.tfrecord: record 3"):
        records.parse_record(b"\xff\xfe not a proto", source="bad.tfrecord", index=3)


def test_writer_refuses_mismatched_lengths():
    video = make_video()
    video.audio = video.audio[:2]
    with pytest.raises(Yt8mError, match="rgb has 4 frames but audio has 2"):
        records.serialize(video)


def test_single_file_written_via_temporary_name(tmp_path):
    out = tmp_path / "out.tfrecord"
    writer = records.ShardWriter(out)
    writer.write(make_video("a"))
    assert not out.exists()  # not visible until complete
    assert [p.name for p in tmp_path.iterdir()] == [".out.tfrecord.inprogress"]
    assert writer.close() == [out]
    assert [v.video_id for v in records.read_records(out)] == ["a"]


def test_shards_get_final_names_and_hold_every_record(tmp_path):
    out = tmp_path / "out.tfrecord"
    with records.ShardWriter(out, shard_size=2) as writer:
        for i in range(5):
            writer.write(make_video(f"v{i}", seed=i))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"out-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert [v.video_id for v in records.read_records(str(tmp_path / "out-*"))] == [f"v{i}" for i in range(5)]
    assert records.existing_ids(out) == {f"v{i}" for i in range(5)}


def test_interrupted_writer_keeps_complete_shards_and_resume_adds(tmp_path):
    out = tmp_path / "out.tfrecord"
    with pytest.raises(KeyboardInterrupt):
        with records.ShardWriter(out, shard_size=2) as writer:
            for i in range(5):
                writer.write(make_video(f"v{i}", seed=i))
                if i == 2:
                    raise KeyboardInterrupt
    # two complete records survive in a hidden complete shard, the partial one is gone
    assert records.existing_ids(out) == {"v0", "v1"}
    assert not list(tmp_path.glob("*.inprogress"))
    with records.ShardWriter(out, shard_size=2, resume=True) as writer:
        for i in range(2, 5):
            writer.write(make_video(f"v{i}", seed=i))
    ids = [v.video_id for v in records.read_records(str(tmp_path / "out-*"))]
    assert ids == [f"v{i}" for i in range(5)]
    assert len(list(tmp_path.glob("out-*-of-00003.tfrecord"))) == 3


def test_resume_of_single_file_copies_forward(tmp_path):
    out = tmp_path / "out.tfrecord"
    with records.ShardWriter(out) as writer:
        writer.write(make_video("a"))
    with records.ShardWriter(out, resume=True) as writer:
        writer.write(make_video("b"))
    assert [v.video_id for v in records.read_records(out)] == ["a", "b"]


def test_new_run_replaces_old_shards(tmp_path):
    out = tmp_path / "out.tfrecord"
    with records.ShardWriter(out, shard_size=1) as writer:
        for i in range(3):
            writer.write(make_video(f"old{i}"))
    with records.ShardWriter(out, shard_size=5) as writer:
        writer.write(make_video("new"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out-00000-of-00001.tfrecord"]
    assert [v.video_id for v in records.read_records(str(tmp_path))] == ["new"]


def test_truncated_and_corrupt_files_are_named(tmp_path):
    good = tmp_path / "good.tfrecord"
    with records.ShardWriter(good) as writer:
        writer.write(make_video("a"))
        writer.write(make_video("b"))
    data = good.read_bytes()
    truncated = tmp_path / "truncated.tfrecord"
    truncated.write_bytes(data[: len(data) - 100])
    with pytest.raises(Yt8mError, match=r"truncated.tfrecord: not a valid TFRecord file: truncated at record 1"):
        list(records.read_records(truncated))
    corrupt = tmp_path / "corrupt.tfrecord"
    corrupt.write_bytes(data[:20] + bytes([data[20] ^ 0xFF]) + data[21:])
    with pytest.raises(Yt8mError, match="corrupt.tfrecord: not a valid TFRecord file"):
        list(records.read_records(corrupt))
    tiny = tmp_path / "tiny.tfrecord"
    tiny.write_bytes(b"garbage")
    with pytest.raises(Yt8mError, match="tiny.tfrecord: not a valid TFRecord file"):
        list(records.read_records(tiny))


def test_list_record_files(tmp_path):
    for name in ["train0000.tfrecord", "train0001.tfrecord", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    files = records.list_record_files(str(tmp_path))
    assert [p.rsplit("/", 1)[-1] for p in files] == ["train0000.tfrecord", "train0001.tfrecord"]
    assert len(records.list_record_files(str(tmp_path / "train*.tfrecord"))) == 2
    both = f"{tmp_path / 'train0000.tfrecord'},{tmp_path / 'train0001.tfrecord'}"
    assert len(records.list_record_files(both)) == 2
    with pytest.raises(Yt8mError, match="matches no record files"):
        records.list_record_files(str(tmp_path / "validate*.tfrecord"))
    with pytest.raises(Yt8mError, match="missing.tfrecord: no such file"):
        records.list_record_files(str(tmp_path / "missing.tfrecord"))
