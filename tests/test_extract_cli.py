"""`yt8m extract` end to end on generated videos, with the real random-weight networks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from yt8m.app.cli import main
from yt8m.data import records, shards
from yt8m.extractor import pipeline
from yt8m.extractor.synthetic import make_labelled_video_set, write_test_video
from yt8m.pca.quantization import NEUTRAL_BYTE


@pytest.fixture(scope="module")
def random_models():
    """The real `load_feature_models(weights="random")`, built once for the module."""
    from yt8m.extractor.backbones import load_feature_models

    return load_feature_models(weights="random")


@pytest.fixture
def loader(random_models, monkeypatch):
    """Hand the command the module's random models instead of rebuilding them for every call.

    Records the arguments the command passes, so tests can check the options arrive.
    """
    from yt8m.extractor import job

    calls: list[dict] = []

    def load(**kwargs):
        calls.append(kwargs)
        assert kwargs["weights"] == "random"
        if not kwargs["audio"]:
            return dataclasses.replace(random_models, vggish=None, audio_pca=None)
        return random_models

    monkeypatch.setattr(job, "load_feature_models", load)
    return calls


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    write_test_video(folder / "tone.mp4", 3.0, audio="sine", motion="right")
    write_test_video(folder / "quiet.mp4", 2.0, audio="silent")
    write_test_video(folder / "nested" / "mute.mp4", 2.0, audio=None)
    write_test_video(folder / "blink.mp4", 0.5, audio="sine")
    return folder


def _records(pattern) -> dict:
    return {video.video_id: video for video in records.read_records(str(pattern))}


def test_extract_folder_with_labels_csv(library, tmp_path, loader, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("id,labels\ntone,4;2\nmute,7\nblink,\n")
    out = tmp_path / "out.tfrecord"
    code = main(["extract", str(library), "-o", str(out), "--weights", "random", "--labels", str(labels),
                 "--batch-size", "4"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert loader[0]["weights"] == "random" and loader[0]["precision"] == "float32" and loader[0]["audio"]
    videos = _records(out)
    assert set(videos) == {"tone", "quiet", "mute", "blink"}
    assert videos["tone"].labels == [2, 4] and videos["mute"].labels == [7]
    assert videos["quiet"].labels == [] and videos["blink"].labels == []
    frames = {"tone": 3, "quiet": 2, "mute": 2, "blink": 1}
    for video_id, video in videos.items():
        assert video.num_frames == frames[video_id] == video.audio.shape[0]
        assert video.extras["weights"] == "random" and int(video.extras["yt8m_compatible"]) == 0
    assert np.all(videos["mute"].audio == NEUTRAL_BYTE) and int(videos["mute"].extras["audio_missing"]) == 1
    assert int(videos["quiet"].extras["audio_missing"]) == 0
    assert "RANDOM" in captured.err
    assert "extracted 4 video(s): 8 frames" in captured.out
    assert "audio missing: 1 video(s)" in captured.out
    assert "no row for 1 of 4" in captured.err  # "quiet" has no labels row

    # `yt8m inspect` reads the output.
    assert main(["inspect", str(out), "--json"]) == 0
    summary = capsys.readouterr().out
    assert '"videos": 4' in summary and '"audio_missing": 1' in summary

    # The starter code's own parsing spec reads it too.
    import tensorflow as tf

    context_spec = {"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64)}
    sequence_spec = {name: tf.io.FixedLenSequenceFeature([], dtype=tf.string) for name in ("rgb", "audio")}
    seen = {}
    for serialized in tf.data.TFRecordDataset(str(out)):
        context, sequence = tf.io.parse_single_sequence_example(serialized, context_spec, sequence_spec)
        video_id = context["id"].numpy().decode()
        rgb = tf.reshape(tf.io.decode_raw(sequence["rgb"], tf.uint8), [-1, 1024]).numpy()
        audio = tf.reshape(tf.io.decode_raw(sequence["audio"], tf.uint8), [-1, 128]).numpy()
        assert np.array_equal(rgb, videos[video_id].rgb) and np.array_equal(audio, videos[video_id].audio)
        seen[video_id] = sorted(tf.sparse.to_dense(context["labels"]).numpy().tolist())
    assert seen == {"tone": [2, 4], "quiet": [], "mute": [7], "blink": []}


def test_labels_from_folders_build_and_reuse_a_label_map(tmp_path, loader, capsys):
    made = make_labelled_video_set(tmp_path / "set", classes=2, per_class=2, seconds=1.0)
    out = tmp_path / "folders.tfrecord"
    assert main(["extract", str(tmp_path / "set"), "-o", str(out), "--weights", "random",
                 "--labels-from-folders"]) == 0
    label_map = (tmp_path / "folders.label_map.txt").read_text().split()
    assert label_map == sorted({name for _, name in made})
    videos = _records(out)
    for path, name in made:
        assert videos[path.stem].labels == [label_map.index(name)]

    given = tmp_path / "given.txt"
    given.write_text("other\ngreen_circle\nred_right\n")
    out2 = tmp_path / "given.tfrecord"
    assert main(["extract", str(tmp_path / "set"), "-o", str(out2), "--weights", "random",
                 "--labels-from-folders", "--label-map", str(given), "--id-from", "path"]) == 0
    videos = _records(out2)
    assert videos["red_right/red_right_000.mp4"].labels == [2]
    assert videos["green_circle/green_circle_001.mp4"].labels == [1]

    given.write_text("red_right\n")
    capsys.readouterr()
    assert main(["extract", str(tmp_path / "set"), "-o", str(out2), "--weights", "random",
                 "--labels-from-folders", "--label-map", str(given), "--overwrite"]) == 1
    assert "green_circle" in capsys.readouterr().err


def test_bad_files_one_line_each_others_written(library, tmp_path, loader, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "garbage.mp4").write_bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (bad / "empty.mp4").write_bytes(b"")
    whole = (library / "tone.mp4").read_bytes()
    (bad / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    text = tmp_path / "notes.txt"
    text.write_text("this is not a video\n")
    out = tmp_path / "mixed.tfrecord"
    code = main(["extract", str(library / "tone.mp4"), str(bad), str(text), str(library / "quiet.mp4"),
                 "-o", str(out), "--weights", "random"])
    captured = capsys.readouterr()
    assert code == 1
    error_lines = [line for line in captured.err.splitlines() if line.startswith("yt8m: error:")]
    assert len(error_lines) == 4
    for name in ("garbage.mp4", "empty.mp4", "truncated.mp4", "notes.txt"):
        assert sum(name in line for line in error_lines) == 1
    assert "failed: 4 file(s)" in captured.err
    assert set(_records(out)) == {"tone", "quiet"}


def test_shards_interrupt_and_resume(library, tmp_path, loader, monkeypatch, capsys):
    out = tmp_path / "shards.tfrecord"
    original = pipeline.FeatureExtractor.extract

    def interrupted(self, items, progress=None):
        for count, result in enumerate(original(self, items, progress), start=1):
            yield result
            if count == 3:
                raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.FeatureExtractor, "extract", interrupted)
    args = ["extract", str(library), "-o", str(out), "--weights", "random", "--shard-size", "2"]
    assert main(args) == 130
    assert "--resume" in capsys.readouterr().err
    kept = shards.existing_ids(out)
    assert len(kept) == 3  # one complete shard of 2, and the third record kept in the cut shard
    monkeypatch.setattr(pipeline.FeatureExtractor, "extract", original)

    assert main(args + ["--resume"]) == 0
    assert "3 video(s) already in" in capsys.readouterr().out
    files = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("shards"))
    assert files == ["shards-00000-of-00002.tfrecord", "shards-00001-of-00002.tfrecord"]
    ids = [video.video_id for video in records.read_records(str(tmp_path / "shards-*.tfrecord"))]
    assert sorted(ids) == ["blink", "mute", "quiet", "tone"]  # each exactly once


def test_no_audio_max_frames_and_legacy_sampling(library, tmp_path, loader, capsys):
    out = tmp_path / "options.tfrecord"
    assert main(["extract", str(library / "tone.mp4"), "-o", str(out), "--weights", "random", "--no-audio",
                 "--max-frames", "2", "--sampling", "legacy", "--workers", "1"]) == 0
    assert "audio disabled" in capsys.readouterr().out
    assert loader[-1]["audio"] is False
    video = _records(out)["tone"]
    assert video.num_frames == 2 and np.all(video.audio == NEUTRAL_BYTE)
    assert video.extras["sampling"] == "legacy" and video.extras["audio"] == "disabled"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--sampling", "nearest"], "sampling"),
        (["--labels", "x.csv", "--labels-from-folders"], "not both"),
        (["--id-from", "hash"], "--id-from"),
    ],
)
def test_bad_options_are_one_line_errors(library, tmp_path, loader, capsys, extra, message):
    code = main(["extract", str(library / "tone.mp4"), "-o", str(tmp_path / "x.tfrecord"), "--weights", "random", *extra])
    assert code == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_input_is_an_error(tmp_path, loader, capsys):
    assert main(["extract", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "x.tfrecord"), "--weights", "random"]) == 1
    assert "nope.mp4: no such file" in capsys.readouterr().err
    assert not loader  # nothing was loaded for a run that could not start


def test_official_yt8m_path_on_tiny_artifacts(library, tmp_path, capsys):
    """`--weights yt8m` through the real loader: a 2015-format GraphDef and the YT8M PCA archive.

    The artifacts come from the backbones tests' builders (small random contents, official
    names and formats); audio is disabled so no VGGish checkpoint is needed.
    """
    from yt8m.extractor.synthetic_models import FEATURE_DIM, npy_bytes, tgz, tiny_inception_graph

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    tgz(models_dir / "inception-2015-12-05.tgz",
        {"classify_image_graph_def.pb": tiny_inception_graph().SerializeToString()})
    rng = np.random.default_rng(4)
    tgz(models_dir / "yt8m_pca.tgz", {
        "mean.npy": npy_bytes(rng.normal(0.3, 0.1, (FEATURE_DIM, 1)).astype(np.float32)),
        "eigenvals.npy": npy_bytes(np.sort(rng.uniform(0.001, 0.1, (1024, 1)))[::-1].astype(np.float32)),
        "eigenvecs.npy": npy_bytes(np.linalg.qr(rng.standard_normal((FEATURE_DIM, 1024)))[0].T.astype(np.float32)),
    })
    out = tmp_path / "official.tfrecord"
    code = main(["extract", str(library / "tone.mp4"), str(library / "blink.mp4"), "-o", str(out),
                 "--weights", "yt8m", "--models-dir", str(models_dir), "--no-audio"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "RANDOM" not in captured.err
    videos = _records(out)
    assert set(videos) == {"tone", "blink"}
    assert videos["tone"].num_frames == 3 and videos["blink"].num_frames == 1
    for video in videos.values():
        assert video.extras["weights"] == "yt8m" and int(video.extras["yt8m_compatible"]) == 1
        assert np.all(video.audio == NEUTRAL_BYTE) and video.extras["audio"] == "disabled"


def test_output_folder_and_all_failed_runs(library, tmp_path, loader, capsys):
    folder = tmp_path / "into"
    folder.mkdir()
    assert main(["extract", str(library / "tone.mp4"), "-o", str(folder), "--weights", "random"]) == 0
    assert set(_records(folder / "tone.tfrecord")) == {"tone"}
    assert "wrote 1 file(s)" in capsys.readouterr().out
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    loader.clear()
    assert main(["extract", str(empty), "-o", f"{tmp_path / 'fresh'}/", "--weights", "random"]) == 1
    captured = capsys.readouterr()
    assert "empty.mp4: empty file" in captured.err and "nothing was written" in captured.err
    assert "wrote" not in captured.out and not loader and not (tmp_path / "fresh").exists()


def test_overwrite_and_trust_model_reach_the_library(library, tmp_path, loader, capsys):
    out = tmp_path / "again.tfrecord"
    args = ["extract", str(library / "blink.mp4"), "-o", str(out), "--weights", "random"]
    assert main(args) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main(args) == 1  # an existing output is never replaced silently
    err = capsys.readouterr().err
    assert "--overwrite" in err and "--resume" in err and err.count("\n") == 1
    assert out.read_bytes() == before and loader[-1]["trust_model"] is False
    assert main(args + ["--overwrite", "--trust-model"]) == 0
    assert loader[-1]["trust_model"] is True and set(_records(out)) == {"blink"}


def test_warnings_keep_their_words_and_folder_skips_are_summarised(tmp_path, loader, capsys):
    folder = tmp_path / "in"
    write_test_video(folder / "clip.mp4", 1.0, audio=None)
    (folder / "notes.txt").write_text("x")
    (folder / "poster.png").write_bytes(b"x")
    assert main(["extract", str(folder), "-o", str(tmp_path / "w.tfrecord"), "--weights", "random"]) == 0
    captured = capsys.readouterr()
    assert "RANDOM weights" in captured.err and "RANDOM --weights" not in captured.err
    assert "weights=random" in captured.err  # a warning's own `name=value` stays as written
    assert "skipped in folders (not video extensions): 1 .png, 1 .txt" in captured.out


def test_file_options_keep_remote_urls(tmp_path, monkeypatch, capsys):
    """gs:// paths reach the library as given (a Path would turn gs://b into gs:/b)."""
    from yt8m.core import Yt8mError
    from yt8m.extractor import job

    seen = []

    def fake_extract(inputs, output, options, progress=None):
        seen.append(options)
        raise Yt8mError("stopped here")

    monkeypatch.setattr(job, "extract", fake_extract)
    urls = {"--models-dir": "gs://b/models", "--rgb-pca": "gs://b/rgb", "--audio-pca": "s3://b/audio",
            "--labels": "gs://b/labels.csv", "--label-map": "gs://b/map.txt"}
    args = [part for option, url in urls.items() for part in (option, url)]
    assert main(["extract", "gs://b/videos/", "-o", "gs://b/out/f.tfrecord", *args]) == 1
    assert "stopped here" in capsys.readouterr().err
    (options,) = seen
    assert (options.models_dir, options.rgb_pca, options.audio_pca, options.labels, options.label_map) == tuple(urls.values())


def test_sampling_help_names_every_rule(capsys):
    assert main(["extract", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for rule in ("mediapipe", "first-after", "legacy"):
        assert f"{rule}:" in text
