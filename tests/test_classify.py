"""Predictor (train dir, yt8m export, starter-signature SavedModel, `baseline`) and `yt8m classify`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from yt8m.app.cli import main
from yt8m.classifier import training
from yt8m.classifier.config import ModelConfig
from yt8m.classifier.export import export_model
from yt8m.classifier.predictor import BASELINE_NAME, KIND_STARTER, dequantized_frames, load_predictor
from yt8m.classifier.synthetic import make_synthetic_records
from yt8m.classify import check_model_features
from yt8m.core import AUDIO_SIZE, NUM_CLASSES, RGB_SIZE, FeatureSpec, VideoFeatures, Yt8mError
from yt8m.extractor import weights as weights_lib
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


def test_classify_cli_formats_and_report(trained, tmp_path, capsys):
    base = ["classify", str(trained["clip"]), "--model", str(trained["model"]), "--weights", "random"]
    assert main(base + ["--format", "json", "--segments", "--top-k", "3", "--report", str(tmp_path / "r.html")]) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert len(results) == 1
    result = results[0]
    assert result["num_frames"] == 6 and len(result["labels"]) == 3
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


def test_yt8m_trained_model_on_random_features_warns(tmp_path, trained, capsys):
    from yt8m.classify import NON_YT8M_WEIGHTS_WARNING, classify_files

    predictor = load_predictor(save_starter_model(tmp_path / "starter", classes=NUM_CLASSES))
    assert predictor.trained_on_yt8m  # YT8M's label space, no custom label map
    outcome = classify_files([trained["clip"]], predictor, weights="random", thumbnails=False, top_k=2)
    assert outcome.results[0].warnings[0] == NON_YT8M_WEIGHTS_WARNING.format(weights="random")
