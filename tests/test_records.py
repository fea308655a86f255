"""Records: VideoFeatures <-> SequenceExample round trips, validation errors, shard writing."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from yt8m.data import records, shards
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
        (lambda p: p.context.feature["id"].bytes_list.value.__setitem__(0, b""), "empty video id"),
        (lambda p: p.context.feature["id"].bytes_list.value.__setitem__(0, b"a,b"), "contains ','"),
        (lambda p: [p.feature_lists.feature_list[key].ClearField("feature") for key in ("rgb", "audio")],
         "has zero frames"),
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


def test_truncated_and_corrupt_files_are_named(tmp_path):
    good = tmp_path / "good.tfrecord"
    with shards.ShardWriter(good) as writer:
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


def _file_of(tmp_path, count: int, name: str = "good.tfrecord"):
    path = tmp_path / name
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(count):
            writer.write(records.serialize(make_video(f"v{i:02d}", frames=2, seed=i)))
    return path


def _record_starts(data: bytes) -> list[int]:
    """Byte offsets where each record starts, read from the length headers (independent of records.py)."""
    starts, offset = [], 0
    while offset < len(data):
        starts.append(offset)
        offset += 12 + int.from_bytes(data[offset:offset + 8], "little") + 4
    return starts


def test_file_cut_inside_a_record_header_is_refused_everywhere(tmp_path):
    data = _file_of(tmp_path, 40).read_bytes()
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(data[: _record_starts(data)[20] + 5])  # 5 bytes into record 20's header
    expected = r"cut.tfrecord: not a valid TFRecord file: truncated at record 20"
    with pytest.raises(Yt8mError, match=expected):
        records.count_records(cut)
    with pytest.raises(Yt8mError, match=expected):
        records.check_record_files([str(tmp_path / "good.tfrecord"), str(cut)])
    with pytest.raises(Yt8mError, match=expected):
        list(records.read_records(cut))
    kept, layout = records.complete_records(cut)  # what a resume recovers
    assert len(kept) == 20 and not layout.complete
    assert [records.parse_record(d).video_id for d in kept] == [f"v{i:02d}" for i in range(20)]
    records.check_record_files([str(tmp_path / "good.tfrecord")])
    assert records.count_records(tmp_path / "good.tfrecord") == 40


def test_five_byte_file_and_garbage_after_the_last_record(tmp_path):
    five = tmp_path / "five.tfrecord"
    five.write_bytes(b"\x05\x00\x00\x00\x00")
    with pytest.raises(Yt8mError, match="five.tfrecord: not a valid TFRecord file: truncated at record 0"):
        records.check_record_files([str(five)])
    data = _file_of(tmp_path, 3).read_bytes()
    padded = tmp_path / "padded.tfrecord"
    padded.write_bytes(data + bytes(16))  # zeros where a header should be: its checksum fails
    with pytest.raises(Yt8mError, match="padded.tfrecord: not a valid TFRecord file: corrupted at record 3"):
        records.count_records(padded)
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    assert records.count_records(empty) == 0


@pytest.mark.parametrize("bad", ["a,b", 'say "hi"', "two\nlines", "tab\there", "cr\r", ""])
def test_video_ids_that_would_break_the_csv_are_refused(bad):
    with pytest.raises(Yt8mError, match="clip.mp4: "):
        records.check_video_id(bad, "clip.mp4")
    with pytest.raises(Yt8mError):
        records.serialize(make_video(bad))


def test_ordinary_video_ids_pass():
    for good in ["Ab3d", "my clip (2)", "été-2019_x", "a.b/c"]:
        assert records.check_video_id(good) == good


def test_zero_frame_records_are_not_written():
    with pytest.raises(Yt8mError, match="zero frames"):
        records.serialize(make_video(frames=0))


@pytest.mark.parametrize("bad", ["1e20", "1.5", "-1", "x", str(2**40)])
def test_labels_a_record_cannot_hold_are_refused(bad):
    with pytest.raises(Yt8mError, match="labels.csv: label"):
        records.check_labels([bad], "labels.csv")
    assert records.check_labels(["3", 7, " 12 "]) == (3, 7, 12)
    with pytest.raises(Yt8mError, match="out of range: more than the 10 classes"):
        records.check_labels([10], num_classes=10)
    with pytest.raises(Yt8mError, match="label"):
        records.serialize(make_video(labels=[2**40]))


def test_label_map_lines_bom_and_blank_lines():
    assert records.validate_label_map_lines(["\ufeffcat", "dog", "", ""]) == ["cat", "dog"]
    with pytest.raises(Yt8mError, match="map.txt: line 2 is blank"):
        records.validate_label_map_lines(["cat", "  ", "dog"], "map.txt")
