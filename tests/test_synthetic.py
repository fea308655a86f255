"""Synthetic YT8M records: format, determinism, skewed labels, patterns only in some frames, segments."""

from __future__ import annotations

import numpy as np
import pytest

from yt8m.app.cli import main
from yt8m.data import records
from yt8m.classifier.synthetic import class_patterns, make_synthetic_records, synthetic_videos
from yt8m.core import SEGMENT_FRAMES, Yt8mError
from yt8m.pca import dequantize


def projections(video, patterns) -> np.ndarray:
    """[frames, classes]: each dequantized rgb frame projected on each class's unit pattern direction."""
    directions = patterns[0] / np.linalg.norm(patterns[0], axis=1, keepdims=True)
    return dequantize(video.rgb) @ directions.T


def test_records_are_yt8m_format_and_readable(tmp_path):
    files = make_synthetic_records(tmp_path / "s.tfrecord", 12, 6, frames=(5, 9), seed=3, shard_size=5)
    assert [f.name for f in files] == [f"s-0000{i}-of-00003.tfrecord" for i in range(3)]
    videos = list(records.read_records(str(tmp_path / "s-*")))
    assert len(videos) == 12 and len({v.video_id for v in videos}) == 12
    for video in videos:
        assert video.rgb.dtype == np.uint8 and video.rgb.shape[1] == 1024 and video.audio.shape[1] == 128
        assert 5 <= video.num_frames <= 9 and video.audio.shape[0] == video.num_frames
        assert 1 <= len(video.labels) <= 3 and all(0 <= label < 6 for label in video.labels)
        np.testing.assert_allclose(video.mean_rgb, dequantize(video.rgb).mean(axis=0), rtol=1e-5, atol=1e-6)
        assert video.extras["source"] == "synthetic"


def test_deterministic_per_seed_and_patterns_shared_across_seeds():
    first = list(synthetic_videos(4, 5, seed=1))
    again = list(synthetic_videos(4, 5, seed=1))
    other = list(synthetic_videos(4, 5, seed=2))
    assert all(np.array_equal(a.rgb, b.rgb) and a.labels == b.labels for a, b in zip(first, again))
    assert not np.array_equal(first[0].rgb[:5], other[0].rgb[:5])
    assert first[0].video_id != other[0].video_id
    patterns = class_patterns(5)
    for video in first + other:  # both seeds carry the same class patterns
        scores = projections(video, patterns)
        for label in video.labels:
            assert scores[:, label].max() > 3.0


def test_label_frequency_is_skewed():
    counts = np.zeros(8)
    for video in synthetic_videos(600, 8, frames=(2, 3), seed=0):
        counts[video.labels] += 1
    assert counts[0] == counts.max() and counts[0] > 3 * counts[-1] > 0
    assert np.all(np.diff(counts[:4]) < 0)  # the most frequent classes come first


def test_patterns_appear_only_in_some_frames():
    patterns = class_patterns(6)
    fractions = []
    for video in synthetic_videos(30, 6, frames=(20, 40), seed=5, labels_per_video=(1, 1)):
        scores = projections(video, patterns)[:, video.labels[0]]
        present = scores > 3.0  # the pattern has norm 6; noise along a direction has std 0.5
        fractions.append(present.mean())
        others = np.delete(projections(video, patterns), video.labels[0], axis=1)
        assert np.abs(others).max() < 3.0  # classes the video does not have never show up
    assert 0.15 < np.mean(fractions) < 0.35  # about the default signal fraction (0.25)
    assert max(fractions) < 1.0


def test_segments_mark_the_windows_holding_the_pattern():
    patterns = class_patterns(4)
    for video in synthetic_videos(10, 4, frames=(20, 32), seed=7, segments=True):
        assert video.has_segments
        scores = projections(video, patterns)
        for start, end, label, score in zip(
            video.segment_start_times, video.segment_end_times, video.segment_labels, video.segment_scores
        ):
            assert start % SEGMENT_FRAMES == 0 and end == start + SEGMENT_FRAMES and label in video.labels
            window = scores[start:end, label]
            if score == 1.0:
                assert np.all(window > 3.0)
            else:
                assert np.all(window < 3.0)
        positives = {(s, l) for s, l, v in zip(video.segment_start_times, video.segment_labels, video.segment_scores) if v}
        for label in video.labels:  # outside its positive windows a class never appears
            outside = [t for t in range(video.num_frames) if (t - t % SEGMENT_FRAMES, label) not in positives]
            assert np.all(scores[outside, label] < 3.0)


def test_segment_records_round_trip(tmp_path):
    make_synthetic_records(tmp_path / "seg.tfrecord", 3, 4, frames=(10, 15), segments=True)
    for video in records.read_records(str(tmp_path / "seg.tfrecord")):
        assert video.has_segments and set(video.segment_scores) == {0.0, 1.0}


def test_small_feature_sizes(tmp_path):
    videos = list(synthetic_videos(2, 3, feature_sizes=(16, 4)))
    assert videos[0].rgb.shape[1] == 16 and videos[0].audio.shape[1] == 4


def test_bad_arguments():
    with pytest.raises(Yt8mError, match="frames"):
        list(synthetic_videos(1, 3, frames=(5, 2)))
    with pytest.raises(Yt8mError, match="at least 5 frames"):
        list(synthetic_videos(1, 3, frames=(3, 4), segments=True))


def test_synth_command(tmp_path, capsys):
    out = tmp_path / "demo.tfrecord"
    code = main(["synth", "-o", str(out), "--videos", "7", "--classes", "4", "--frames", "3,6", "--seed", "9"])
    assert code == 0
    videos = list(records.read_records(str(out)))
    assert len(videos) == 7 and all(3 <= v.num_frames <= 6 for v in videos)
    assert "7 synthetic videos" in capsys.readouterr().out
    assert main(["synth", "-o", str(out), "--frames", "9,3"]) == 1
    assert "--frames" in capsys.readouterr().err


def test_existing_output_is_replaced_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "data.tfrecord"
    make_synthetic_records(out, 3, 4, frames=(3, 4), feature_sizes=(16, 4))
    before = out.read_bytes()
    with pytest.raises(Yt8mError, match="overwrite"):
        make_synthetic_records(out, 5, 4, frames=(3, 4), feature_sizes=(16, 4), seed=1)
    assert out.read_bytes() == before  # refused before anything was written
    make_synthetic_records(out, 5, 4, frames=(3, 4), feature_sizes=(16, 4), seed=1, overwrite=True)
    assert len(list(records.iterate_raw_records(str(out)))) == 5
    args = ["synth", "-o", str(out), "--videos", "2", "--classes", "4", "--frames", "3,4", "--feature-sizes", "16,4"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err and "Traceback" not in err, err
    assert main([*args, "--overwrite"]) == 0
    assert len(list(records.iterate_raw_records(str(out)))) == 2
