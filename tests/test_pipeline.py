"""Files -> VideoFeatures with the real (random-weight) networks; input and label helpers."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from yt8m.core import Yt8mError
from yt8m.extractor import audio as audio_lib
from yt8m.extractor import inputs, pipeline
from yt8m.extractor import video as video_lib
from yt8m.extractor.synthetic import make_labelled_video_set, write_test_video
from yt8m.pca.quantization import NEUTRAL_BYTE, dequantize, quantize


@pytest.fixture(scope="module")
def models():
    from yt8m.extractor.backbones import load_feature_models

    return load_feature_models(weights="random")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "sine": write_test_video(folder / "sine.mp4", 3.0, audio="sine", tone_hz=660.0, motion="right"),
        "silent": write_test_video(folder / "silent.mp4", 2.0, audio="silent"),
        "mute": write_test_video(folder / "mute.mp4", 2.0, audio=None),
        "short": write_test_video(folder / "short.mp4", 0.4, audio="sine"),
        "long": write_test_video(folder / "long.mp4", 5.0, audio="sine", motion="circle"),
    }


def _items(*paths: Path) -> list[pipeline.VideoInput]:
    return [pipeline.VideoInput(path, path.stem, (3, 1)) for path in paths]


def _by_id(results) -> dict[str, pipeline.ExtractResult]:
    return {result.input.video_id: result for result in results}


def test_frames_audio_lengths_and_extras(models, clips):
    extractor = pipeline.FeatureExtractor(models, batch_size=4, max_frames=4)
    results = list(extractor.extract(_items(*clips.values())))
    assert [r.input.video_id for r in results] == list(clips)  # input order
    expected_frames = {"sine": 3, "silent": 2, "mute": 2, "short": 1, "long": 4}  # long: capped at 4
    for name, result in _by_id(results).items():
        assert result.ok, result.error
        features = result.features
        frames = expected_frames[name]
        assert result.frames == frames and features.num_frames == frames
        assert result.capped == (name == "long")  # 5 s at 1 fps, cut at 4
        assert features.rgb.shape == (frames, 1024) and features.rgb.dtype == np.uint8
        assert features.audio.shape == (frames, 128) and features.audio.dtype == np.uint8
        assert features.labels == [1, 3]
        assert features.mean_rgb.shape == (1024,) and features.mean_rgb.dtype == np.float32
        # mean_rgb is the mean of the float features: within one quantization step of the bytes'
        # mean wherever no frame was clipped to the quantization range.
        unclipped = np.all((features.rgb > 0) & (features.rgb < 255), axis=0)
        assert unclipped.mean() > 0.5
        np.testing.assert_allclose(
            features.mean_rgb[unclipped], dequantize(features.rgb).mean(axis=0)[unclipped], atol=4 / 255 + 1e-6
        )
        assert features.extras["weights"] == "random"
        assert features.extras["yt8m_compatible"] == 0
        assert features.extras["sampling"] == "mediapipe" and features.extras["fps"] == 1.0
    by_id = _by_id(results)
    assert by_id["mute"].features.extras["audio_missing"] == 1
    assert by_id["mute"].audio == pipeline.AUDIO_MISSING
    assert np.all(by_id["mute"].features.audio == NEUTRAL_BYTE)
    assert np.all(by_id["mute"].features.mean_audio == 0.0)
    for name in ("sine", "silent", "short", "long"):
        assert by_id[name].features.extras["audio_missing"] == 0
        assert not np.all(by_id[name].features.audio == NEUTRAL_BYTE)
    # Digital silence gives the same audio example every second, hence identical rows.
    silent = by_id["silent"].features.audio
    assert np.array_equal(silent[0], silent[1])
    # The frames differ from second to second (colours change), so the rgb rows do too.
    assert not np.array_equal(by_id["sine"].features.rgb[0], by_id["sine"].features.rgb[1])


def test_rows_match_the_networks_applied_frame_by_frame(models, clips):
    """Frame k and audio example k (both at t = k s) go through the networks, PCA and quantization."""
    path = clips["long"]
    features = pipeline.FeatureExtractor(models, batch_size=3).extract_file(path)
    images = np.stack([frame.image for frame in video_lib.iter_frames(path)])
    expected_rgb = quantize(models.rgb_pca.apply(models.inception(images)))
    examples = audio_lib.pad_examples(np.stack(list(audio_lib.iter_audio_examples(path))), len(images))
    expected_audio = quantize(models.audio_pca.apply(models.vggish(examples)))
    assert features.rgb.shape == expected_rgb.shape == (5, 1024)
    # Different batch compositions may round differently: at most one step apart, nearly all equal.
    for ours, theirs in ((features.rgb, expected_rgb), (features.audio, expected_audio)):
        difference = np.abs(ours.astype(int) - theirs.astype(int))
        assert difference.max() <= 1 and (difference == 0).mean() > 0.99


def test_batch_size_and_decode_threads_follow_the_device(models, clips, monkeypatch):
    """With no batch size / decode threads given, the CPU gets 32 / 2; a GPU (as TensorFlow would
    report one) 128 / one per core up to 8; given values are kept; features are the same."""
    monkeypatch.setattr(pipeline, "networks_on_gpu", lambda: False)
    cpu = pipeline.FeatureExtractor(models)
    assert (cpu.batch_size, cpu.workers) == (pipeline.DEFAULT_BATCH_SIZE, pipeline.DEFAULT_WORKERS) == (32, 2)
    monkeypatch.setattr(pipeline, "networks_on_gpu", lambda: True)
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 16)
    gpu = pipeline.FeatureExtractor(models)
    assert (gpu.batch_size, gpu.workers) == (pipeline.GPU_BATCH_SIZE, pipeline.GPU_MAX_WORKERS) == (128, 8)
    assert pipeline.sized_for_device(16, None) == (16, 8) and pipeline.sized_for_device(None, 3) == (128, 3)
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 1)
    assert pipeline.sized_for_device(None, None) == (128, pipeline.DEFAULT_WORKERS)
    paths = [clips["sine"], clips["short"], clips["long"]]
    on_cpu = list(cpu.extract(_items(*paths)))
    on_gpu_sizes = list(gpu.extract(_items(*paths)))
    for a, b in zip(on_cpu, on_gpu_sizes):
        for field in ("rgb", "audio"):
            difference = np.abs(getattr(a.features, field).astype(int) - getattr(b.features, field).astype(int))
            assert difference.max() <= 1 and (difference == 0).mean() > 0.99


def test_batches_and_workers_do_not_change_results(models, clips):
    paths = [clips["sine"], clips["mute"], clips["short"], clips["silent"]]
    one = list(pipeline.FeatureExtractor(models, batch_size=1, workers=1).extract(_items(*paths)))
    many = list(pipeline.FeatureExtractor(models, batch_size=5, workers=2).extract(_items(*paths)))
    assert [r.input.video_id for r in many] == [p.stem for p in paths]
    for a, b in zip(one, many):
        for field in ("rgb", "audio"):
            difference = np.abs(getattr(a.features, field).astype(int) - getattr(b.features, field).astype(int))
            assert difference.max() <= 1 and (difference == 0).mean() > 0.99


def test_audio_disabled_writes_neutral_bytes(models, clips):
    features = pipeline.FeatureExtractor(models, audio=False).extract_file(clips["sine"])
    assert features.audio.shape == (3, 128) and np.all(features.audio == NEUTRAL_BYTE)
    assert features.extras["audio_missing"] == 1 and features.extras["audio"] == pipeline.AUDIO_DISABLED


def test_bad_files_fail_alone(models, clips, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 30)
    whole = clips["long"].read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole[: len(whole) // 2])
    paths = [clips["sine"], garbage, empty, clips["mute"], text, truncated]
    results = list(pipeline.FeatureExtractor(models, batch_size=2, workers=2).extract(_items(*paths)))
    assert [r.input.path for r in results] == paths
    assert [r.ok for r in results] == [True, False, False, True, False, False]
    for result in results:
        if not result.ok:
            assert str(result.input.path) in result.error and "\n" not in result.error
            assert result.features is None
    with pytest.raises(Yt8mError, match="empty file"):
        pipeline.FeatureExtractor(models).extract_file(empty)


def test_progress_and_interruption_stop_the_decoders(models, clips):
    events: list[pipeline.ExtractProgress] = []

    def progress(event: pipeline.ExtractProgress) -> None:
        events.append(event)
        if event.result is not None and event.videos_done == 2:
            raise KeyboardInterrupt

    extractor = pipeline.FeatureExtractor(models, batch_size=2, workers=2)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for result in extractor.extract(_items(*clips.values(), *clips.values()), progress=progress):
            seen.append(result.input.video_id)
    assert seen == ["sine"]  # the second result's callback raised before it was yielded
    assert events[-1].videos_done == 2 and events[-1].result is not None
    assert any(event.result is None and event.frames_done > 0 for event in events)
    alive = [t for t in threading.enumerate() if t.name.startswith("yt8m-decode")]
    assert not alive


def test_short_clip_gives_one_frame_and_one_padded_example(models, clips):
    result = next(pipeline.FeatureExtractor(models).extract(_items(clips["short"])))
    assert result.frames == 1 and result.features.audio.shape == (1, 128)
    assert result.features.extras["audio_missing"] == 0


def test_options_are_validated(models):
    with pytest.raises(Yt8mError, match="batch_size"):
        pipeline.FeatureExtractor(models, batch_size=0)
    with pytest.raises(Yt8mError, match="sampling"):
        pipeline.FeatureExtractor(models, sampling="every")
    with pytest.raises(Yt8mError, match="max_frames"):
        pipeline.FeatureExtractor(models, max_frames=-1)


# ----------------------------------------------------------------------------- inputs and labels


def test_collect_videos_from_files_folders_and_globs(tmp_path):
    made = make_labelled_video_set(tmp_path / "set", classes=2, per_class=2, seconds=1.0)
    (tmp_path / "set" / "readme.txt").write_text("not a video")
    (tmp_path / "set" / ".hidden").mkdir()
    write_test_video(tmp_path / "set" / ".hidden" / "skip.mp4", 1.0, audio=None)
    found = inputs.collect_videos([tmp_path / "set"])
    assert sorted(f.path for f in found) == sorted(path for path, _ in made)
    assert all(f.root == tmp_path / "set" for f in found)
    by_glob = inputs.collect_videos([str(tmp_path / "set" / "*" / "*_000.mp4"), made[0][0]])
    assert len(by_glob) == 2  # the file named twice is kept once
    ids = {inputs.video_id_for(f, "path") for f in found}
    assert ids == {f"{name}/{name}_{k:03d}.mp4" for name in ("red_right", "green_circle") for k in range(2)}
    assert {inputs.video_id_for(f) for f in found} == {f"{n}_{k:03d}" for n in ("red_right", "green_circle") for k in range(2)}
    with pytest.raises(Yt8mError, match="no such file"):
        inputs.collect_videos([tmp_path / "nope.mp4"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(Yt8mError, match="no video files"):
        inputs.collect_videos([tmp_path / "empty"])
    with pytest.raises(Yt8mError, match="matches no files"):
        inputs.collect_videos([str(tmp_path / "*.mkv")])


def test_duplicate_ids_are_refused(tmp_path):
    items = [pipeline.VideoInput(Path("a/clip.mp4"), "clip"), pipeline.VideoInput(Path("b/clip.mp4"), "clip")]
    with pytest.raises(Yt8mError, match="set id_from to path"):
        inputs.check_unique_ids(items)


def test_labels_csv_formats(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text("videos/a.mp4,1;5\nb,7\nb,2\nc,\n")
    assert inputs.read_labels_csv(plain) == {"videos/a.mp4": (1, 5), "b": (2, 7), "c": ()}
    headed = tmp_path / "headed.csv"
    headed.write_text("labels,id\n3 4,x\n")
    assert inputs.read_labels_csv(headed) == {"x": (3, 4)}
    names = tmp_path / "names.csv"
    names.write_text("id,labels\nx,cat;dog\n")
    assert inputs.read_labels_csv(names, ["dog", "cat"]) == {"x": (0, 1)}
    with pytest.raises(Yt8mError, match="line 2.*label_map"):
        inputs.read_labels_csv(names)
    with pytest.raises(Yt8mError, match="not in the label map"):
        inputs.read_labels_csv(names, ["dog"])
    bad = tmp_path / "bad.csv"
    bad.write_text("a,-1\n")
    with pytest.raises(Yt8mError, match="out of range"):
        inputs.read_labels_csv(bad)
    with pytest.raises(Yt8mError, match="not found"):
        inputs.read_labels_csv(tmp_path / "missing.csv")


def test_label_lookup_by_id_path_or_name(tmp_path):
    found = inputs.FoundVideo(tmp_path / "folder" / "clip.mp4", tmp_path)
    assert inputs.lookup_labels({"clip": (1,)}, "clip", found) == (1,)
    assert inputs.lookup_labels({"folder/clip.mp4": (2,)}, "other", found) == (2,)
    assert inputs.lookup_labels({str((tmp_path / "folder" / "clip.mp4").resolve()): (3,)}, "x", found) == (3,)
    assert inputs.lookup_labels({"elsewhere": (4,)}, "x", found) is None


def test_label_maps(tmp_path):
    videos = [Path("d/cats/a.mp4"), Path("d/dogs/b.mp4"), Path("d/cats/c.mp4")]
    assert inputs.folder_label_map(videos) == ["cats", "dogs"]
    assert inputs.folder_label_map(videos + [Path("d/birds/x.mp4")], ["dogs", "cats"]) == ["dogs", "cats", "birds"]
    saved = inputs.write_label_map(inputs.label_map_path_for(tmp_path / "out.tfrecord"), ["cats", "dogs"])
    assert saved == tmp_path / "out.label_map.txt"
    assert saved.read_text() == "cats\ndogs\n"
    assert inputs.read_label_map(saved) == ["cats", "dogs"]
    (tmp_path / "dup.txt").write_text("a\nb\na\n")
    with pytest.raises(Yt8mError, match="more than once"):
        inputs.read_label_map(tmp_path / "dup.txt")
