"""Predictor (train dir, yt8m export, starter-signature SavedModel, `baseline`) and `yt8m classify`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from yt8m.app.cli import main
from yt8m.classifier import training
from yt8m.classifier.config import ModelConfig
from yt8m.classifier.export import export_model
from yt8m.classifier.predictor import BASELINE_NAME, KIND_STARTER, dequantized_frames, load_predictor
from yt8m.classifier.synthetic import make_synthetic_records
from yt8m import classification
from yt8m.classification import check_model_features
from yt8m.classifier.results import THUMBNAIL_HEIGHT
from yt8m.core import AUDIO_SIZE, NUM_CLASSES, RGB_SIZE, FeatureSpec, VideoFeatures, Yt8mError
from yt8m.extractor import video as video_lib
from yt8m.extractor import weights as weights_lib
from yt8m.extractor.backbones import load_feature_models
from yt8m.extractor.synthetic import write_test_video
from yt8m.pca import dequantize

STARTER_CLASSES = 7
WIDTH = RGB_SIZE + AUDIO_SIZE
CLASSES = 4
SPEC = FeatureSpec(max_frames=12)


def starter_weights(classes: int = STARTER_CLASSES) -> np.ndarray:
    return np.random.default_rng(5).normal(size=(WIDTH, classes)).astype(np.float32)


def save_starter_model(directory: Path, classes: int = STARTER_CLASSES) -> Path:
    """A SavedModel with the starter/MediaPipe signature: rgb_and_audio [N,T,1152] + num_frames -> predictions."""
    matrix = tf.constant(starter_weights(classes))

    class Starter(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None, WIDTH], tf.float32, name="rgb_and_audio"),
                tf.TensorSpec([None], tf.int32, name="num_frames"),
            ]
        )
        def serve(self, rgb_and_audio, num_frames):
            mask = tf.sequence_mask(num_frames, tf.shape(rgb_and_audio)[1], dtype=tf.float32)[:, :, None]
            mean = tf.reduce_sum(rgb_and_audio * mask, 1) / tf.cast(tf.maximum(num_frames, 1), tf.float32)[:, None]
            return {"predictions": tf.sigmoid(tf.matmul(mean, matrix))}

    module = Starter()
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})
    return directory


def save_tf1_starter_model(directory: Path) -> Path:
    """The same model as a TF1 SavedModel (graph + signature_def), as the official baseline was exported."""
    graph = tf.Graph()
    with graph.as_default():
        frames = tf.compat.v1.placeholder(tf.float32, [None, None, WIDTH], name="rgb_and_audio")
        counts = tf.compat.v1.placeholder(tf.int32, [None], name="num_frames")
        matrix = tf.compat.v1.get_variable("weights", initializer=starter_weights())
        mask = tf.sequence_mask(counts, tf.shape(frames)[1], dtype=tf.float32)[:, :, None]
        mean = tf.reduce_sum(frames * mask, 1) / tf.cast(tf.maximum(counts, 1), tf.float32)[:, None]
        predictions = tf.sigmoid(tf.matmul(mean, matrix))
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(str(directory))
            signature = tf.compat.v1.saved_model.predict_signature_def(
                {"rgb_and_audio": frames, "num_frames": counts}, {"predictions": predictions}
            )
            builder.add_meta_graph_and_variables(
                session, [tf.compat.v1.saved_model.tag_constants.SERVING], signature_def_map={"serving_default": signature}
            )
            builder.save()
    return directory


def random_video(video_id: str, frames: int, seed: int) -> VideoFeatures:
    rng = np.random.default_rng(seed)
    return VideoFeatures(
        video_id=video_id,
        rgb=rng.integers(0, 256, size=(frames, RGB_SIZE), dtype=np.uint8),
        audio=rng.integers(0, 256, size=(frames, AUDIO_SIZE), dtype=np.uint8),
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A tiny 4-class MoE model on YT8M-sized features, its export, and a clip to classify."""
    root = tmp_path_factory.mktemp("classify")
    make_synthetic_records(root / "train.tfrecord", 64, CLASSES, frames=(3, 8), seed=3)
    config = ModelConfig.create(
        "FrameLevelLogisticModel", feature_spec=SPEC, num_classes=CLASSES, training={"batch_size": 16, "max_steps": 4}
    )
    (root / "names.txt").write_text("alpha\nbeta\ngamma\ndelta\n", encoding="utf-8")
    training.train(str(root / "train.tfrecord"), root / "model", config, label_map=root / "names.txt")
    export_model(root / "model", root / "export")  # ships the train dir's label_map.txt
    clip = write_test_video(root / "clip.mp4", 6.0, colors=[(200, 30, 30)], motion="right", audio="sine")
    return {"root": root, "model": root / "model", "export": root / "export", "clip": clip}


@pytest.fixture(scope="module")
def random_home(tmp_path_factory) -> dict:
    """A YT8M_HOME holding the random feature networks, built once for this module (the build is
    the slow part of a random-weights run), and the networks loaded from it."""
    home = tmp_path_factory.mktemp("random_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YT8M_HOME", str(home))
        models = load_feature_models("random")
    return {"home": home, "models": models}


def test_starter_signature_savedmodel_loads_and_predicts(tmp_path):
    path = save_starter_model(tmp_path / "starter")
    (path / "label_map.txt").write_text("".join(f"thing {i}\n" for i in range(STARTER_CLASSES)), encoding="utf-8")
    predictor = load_predictor(path)
    assert predictor.kind == KIND_STARTER and predictor.num_classes == STARTER_CLASSES
    assert predictor.feature_spec.sizes == (RGB_SIZE, AUDIO_SIZE)
    assert predictor.class_name(3) == "thing 3"
    videos = [random_video("a", 4, 1), random_video("b", 9, 2)]
    scores = predictor.predict(videos)
    for row, video in enumerate(videos):  # the graph gets dequantized frames: compute it independently
        frames = np.concatenate([dequantize(video.rgb), dequantize(video.audio)], axis=1)
        expected = 1.0 / (1.0 + np.exp(-(frames.mean(axis=0) @ starter_weights())))
        np.testing.assert_allclose(scores[row], expected, rtol=1e-4, atol=1e-5)
    windows = predictor.predict_segments([videos[1]])[0]
    assert [(w.start_frame, w.end_frame) for w in windows] == [(0, 5), (5, 9)]
    frames = np.concatenate([dequantize(videos[1].rgb), dequantize(videos[1].audio)], axis=1)
    expected = 1.0 / (1.0 + np.exp(-(frames[5:9].mean(axis=0) @ starter_weights())))
    np.testing.assert_allclose(windows[1].scores, expected, rtol=1e-4, atol=1e-5)
    assert windows[1].start_seconds == 5.0 and windows[1].end_seconds == 9.0


def test_tf1_starter_savedmodel_loads_and_predicts(tmp_path):
    predictor = load_predictor(save_tf1_starter_model(tmp_path / "tf1"))
    assert predictor.kind == KIND_STARTER and predictor.num_classes == STARTER_CLASSES
    video = random_video("c", 6, 3)
    frames = np.concatenate([dequantize(video.rgb), dequantize(video.audio)], axis=1)
    expected = 1.0 / (1.0 + np.exp(-(frames.mean(axis=0) @ starter_weights())))
    np.testing.assert_allclose(predictor.predict([video])[0], expected, rtol=1e-4, atol=1e-5)


def test_baseline_name_resolves_to_the_cache(tmp_path):
    with pytest.raises(Yt8mError, match="yt8m models fetch --only baseline-model"):
        load_predictor(BASELINE_NAME)
    save_starter_model(weights_lib.root() / weights_lib.ARCHIVES[weights_lib.BASELINE_MODEL][0])
    predictor = load_predictor(BASELINE_NAME)
    assert predictor.num_classes == STARTER_CLASSES and predictor.class_name(0) == "class 0"


def test_train_dir_and_export_agree(trained):
    from_dir, from_export = load_predictor(trained["model"]), load_predictor(trained["export"])
    assert from_dir.class_names == from_export.class_names == ["alpha", "beta", "gamma", "delta"]
    assert from_dir.custom_labels and not from_dir.trained_on_yt8m
    videos = [random_video("a", 3, 7), random_video("b", 20, 8)]  # 20 frames: truncated to 12 by both
    np.testing.assert_allclose(from_dir.predict(videos), from_export.predict(videos), rtol=1e-4, atol=1e-5)
    frames, counts = dequantized_frames(videos, SPEC)
    assert frames.shape == (2, 12, WIDTH) and list(counts) == [3, 12]


def test_model_with_other_features_is_refused(tmp_path, trained, capsys):
    make_synthetic_records(tmp_path / "small.tfrecord", 16, 3, frames=(2, 4), seed=1, feature_sizes=(64, 16))
    config = ModelConfig.create(
        "FrameLevelLogisticModel", feature_spec=FeatureSpec(sizes=(64, 16), max_frames=4), num_classes=3,
        training={"batch_size": 8, "max_steps": 1},
    )
    training.train(str(tmp_path / "small.tfrecord"), tmp_path / "small", config)
    with pytest.raises(Yt8mError, match="rgb \\(64\\)"):
        check_model_features(load_predictor(tmp_path / "small"))
    code = main(["classify", str(trained["clip"]), "--model", str(tmp_path / "small"), "--weights", "random"])
    err = capsys.readouterr().err
    assert code == 1 and str(tmp_path / "small") in err and "extractor makes rgb (1024)" in err
    assert "Traceback" not in err


def test_no_model_says_how_to_get_one(trained, capsys):
    assert main(["classify", str(trained["clip"])]) == 1
    err = capsys.readouterr().err.strip()
    assert "yt8m models fetch --only baseline-model" in err and "yt8m train" in err and len(err.splitlines()) == 1
    assert main(["classify", str(trained["clip"]), "--model", str(trained["root"] / "nowhere")]) == 1
    assert "nowhere: no such model" in capsys.readouterr().err


def test_classify_cli_formats_and_report(trained, random_home, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("YT8M_HOME", str(random_home["home"]))
    base = ["classify", str(trained["clip"]), "--model", str(trained["model"]), "--weights", "random"]
    assert main(base + ["--format", "json", "--segments", "--top-k", "3", "--report", str(tmp_path / "r.html")]) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert len(results) == 1
    result = results[0]
    assert result["num_frames"] == 6 and len(result["labels"]) == 3
    assert result["fps"] == 1.0 and result["capped"] is False and result["source_duration_seconds"] == pytest.approx(6.0, abs=0.1)
    assert {label["name"] for label in result["labels"]} <= {"alpha", "beta", "gamma", "delta"}
    scores = [label["score"] for label in result["labels"]]
    assert scores == sorted(scores, reverse=True)
    assert [(s["start_seconds"], s["end_seconds"]) for s in result["segments"]] == [(0.0, 5.0), (5.0, 6.0)]
    assert result["settings"]["weights"].startswith("random") and "RANDOM" in " ".join(result["warnings"])
    assert "random" in captured.err.lower()  # the warning is shown
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert result["labels"][0]["name"] in page
    assert result["num_thumbnails"] == 6 and page.count("data:image/jpeg") == 6  # one per second, for the report

    assert main(base + ["--format", "csv", "--top-k", "2"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["rank"] for row in rows] == ["1", "2"]
    assert rows[0]["name"] == result["labels"][0]["name"]

    assert main(base + ["--top-k", "2"]) == 0
    out = capsys.readouterr().out
    assert result["labels"][0]["name"] in out and "clip.mp4" in out


def test_yt8m_trained_model_on_random_features_warns(tmp_path, trained, random_home, capsys):
    from yt8m.classification import NON_YT8M_WEIGHTS_WARNING, classify_files

    predictor = load_predictor(save_starter_model(tmp_path / "starter", classes=NUM_CLASSES))
    assert predictor.trained_on_yt8m  # YT8M's label space, no custom label map
    outcome = classify_files(
        [trained["clip"]], predictor, weights="random", feature_models=random_home["models"], thumbnails=False, top_k=2
    )
    assert outcome.results[0].warnings[0] == NON_YT8M_WEIGHTS_WARNING.format(weights="random")


def test_classify_decodes_each_video_once_and_its_thumbnails_are_the_sampled_frames(
    tmp_path, trained, random_home, monkeypatch
):
    """The thumbnails come from the frames the extractor sampled: one decode per video, not two."""
    colours = [(230, 25, 25), (25, 200, 60), (30, 60, 230), (240, 220, 30)]
    clip = write_test_video(tmp_path / "big.mp4", 4.0, size=(320, 240), colors=colours, motion="right")
    reference = [frame.image for frame in video_lib.iter_frames(clip, 1.0)]  # decoded here, before counting
    assert len(reference) == 4 and reference[0].shape[0] > THUMBNAIL_HEIGHT

    decodes = []
    real_iter_frames = video_lib.iter_frames

    def counting_iter_frames(path, *args, **kwargs):
        decodes.append(Path(path))
        return real_iter_frames(path, *args, **kwargs)

    monkeypatch.setattr(video_lib, "iter_frames", counting_iter_frames)
    outcome = classification.classify_files(
        [clip, trained["clip"]], load_predictor(trained["model"]), weights="random",
        feature_models=random_home["models"], top_k=2,
    )
    assert not outcome.errors and len(outcome.results) == 2
    assert sorted(decodes) == sorted([clip, trained["clip"]])  # each video decoded exactly once
    thumbnails = outcome.results[0].thumbnails
    assert len(thumbnails) == outcome.results[0].num_frames == 4
    for thumb, frame in zip(thumbnails, reference):
        width = round(frame.shape[1] * THUMBNAIL_HEIGHT / frame.shape[0])
        expected = cv2.resize(frame, (width, THUMBNAIL_HEIGHT), interpolation=cv2.INTER_AREA)
        assert thumb.dtype == np.uint8 and thumb.shape == (THUMBNAIL_HEIGHT, 192, 3)
        np.testing.assert_array_equal(thumb, expected)
    assert len(outcome.results[1].thumbnails) == 6  # the other video keeps its own, in its own result

    decodes.clear()
    outcome = classification.classify_files(
        [clip], load_predictor(trained["model"]), weights="random", feature_models=random_home["models"],
        thumbnails=False,
    )
    assert decodes == [clip] and outcome.results[0].thumbnails == []


def test_a_capped_video_is_said_on_the_console_in_the_json_and_in_the_report(
    trained, random_home, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("YT8M_HOME", str(random_home["home"]))
    report = tmp_path / "reports"
    report.mkdir()  # an existing folder: the report is written into it
    args = ["classify", str(trained["clip"]), "--model", str(trained["model"]), "--weights", "random",
            "--format", "json", "--max-frames", "4", "--report", str(report)]
    assert main(args) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)[0]
    assert result["capped"] is True and result["num_frames"] == 4 and result["duration_seconds"] == 4.0
    assert result["source_duration_seconds"] == pytest.approx(6.0, abs=0.1)
    lines = [line for line in captured.err.splitlines() if "capped" in line]
    named = [line for line in lines if str(trained["clip"]) in line]
    assert named and "--max-frames" in named[0] and "first 4 s of 6 s" in named[0]
    assert any("1 video(s) were cut at --max-frames 4" in line for line in lines)
    page = (report / "report.html").read_text(encoding="utf-8")
    assert 'class="capped"' in page and "--max-frames 0 classifies all of it" in page and "`max_frames`" not in page
    assert page.count("data:image/jpeg") == 4  # thumbnails of the 4 classified frames only


def test_frame_options_and_the_models_own_frame_limit(trained, random_home):
    """--fps / --max-frames 0 as in extract; a model reading fewer frames than classified says so."""
    predictor = load_predictor(trained["model"])  # its feature spec reads 12 frames
    outcome = classification.classify_files(
        [trained["clip"]], predictor, weights="random", feature_models=random_home["models"],
        fps=3.0, max_frames=0, segments=True, thumbnails=False,
    )
    (result,) = outcome.results
    assert result.fps == 3.0 and result.num_frames == 18 and not result.capped
    assert result.duration_seconds == pytest.approx(6.0)
    assert result.settings["max frames"] == "no limit" and "3 fps" in result.settings["sampling"]
    assert result.segments[1].start_seconds == pytest.approx(5 / 3)  # 5-frame windows at 3 fps
    text = " | ".join(result.warnings)
    assert "`fps` is 3" in text
    assert f"{trained['clip']}: the model reads at most 12 frames" in text
    with pytest.raises(Yt8mError, match="max_frames must be >= 0"):
        classification.classify_files([trained["clip"]], predictor, max_frames=-1)


def test_bad_files_are_reported_before_the_feature_networks_load(trained, tmp_path, monkeypatch):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video", encoding="utf-8")

    def no_networks(*args, **kwargs):
        raise AssertionError("the feature networks were loaded for nothing")

    monkeypatch.setattr(classification, "load_feature_models", no_networks)
    outcome = classification.classify([empty, text], trained["model"], weights="random")
    assert outcome.results == [] and len(outcome.errors) == 2
    assert outcome.errors[0].startswith(str(empty)) and outcome.errors[1].startswith(str(text))


def test_inspect_of_a_video_file_prints_one_error_line(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 64)
    assert main(["inspect", str(clip)]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == ""  # no empty summary table
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("yt8m: error:") and str(clip) in err[0]


def test_a_train_dir_that_cannot_load_fails_the_run_in_one_line(trained, random_home, tmp_path, capsys, monkeypatch):
    """The train dir's model loads beside the extraction (ModelLoading): its failure still ends the run, once."""
    monkeypatch.setenv("YT8M_HOME", str(random_home["home"]))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_bytes((trained["model"] / "config.json").read_bytes())  # no checkpoint
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for clip in (trained["clip"], empty):
        assert main(["classify", str(clip), "--model", str(broken), "--weights", "random"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no checkpoint to load" in err[0] and str(broken) in err[0]
