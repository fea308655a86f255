"""SavedModels built the way the starter's exporters build them, run through yt8m.

- `export_model_mediapipe.py` (google/youtube-8m): a TF1 training graph with the collections
  `input_batch_raw`, `num_frames`, `predictions` is checkpointed; the exporter re-imports its meta
  graph with `input_map` = {input_batch_raw: float32 placeholder [None, None, 1152], num_frames:
  squeeze(int32 placeholder [None, 1], axis=1)}, restores and `simple_save`s
  inputs {rgb_and_audio, num_frames} -> outputs {predictions}.
- `export_model.py` (google/youtube-8m): string placeholder [None]; frame-level models `map_fn`
  the reader's `prepare_serialized_examples` (parse_single_sequence_example, dequantize, pad to
  max_frames, batch of 1) over it, then l2_normalize, the model, `tf.nn.top_k(predictions, 20)`;
  video-level models `parse_example` the batch; `signature_def_utils.build_signature_def`
  (inputs {example_bytes}, outputs {video_id, class_indexes, predictions}) saved with
  `SavedModelBuilder` under the serving tag and the default serving key.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.saved_model import signature_constants, signature_def_utils, tag_constants
from tensorflow.python.saved_model import utils as saved_model_utils

from yt8m import classification, trust
from yt8m.app.cli import main
from yt8m.classifier import training
from yt8m.classifier.config import ModelConfig
from yt8m.classifier.export import SIGNATURE_RGB_AND_AUDIO, export_model
from yt8m.classifier.predictor import KIND_STARTER, load_predictor
from yt8m.classifier.savedmodel import LAYOUT_EXAMPLES, LAYOUT_FRAMES, load_saved_model, with_vocabulary
from yt8m.classifier.synthetic import make_synthetic_records
from yt8m.core import AUDIO_SIZE, NUM_CLASSES, RGB_SIZE, FeatureSpec, VideoFeatures, Yt8mError
from yt8m.extractor.synthetic import write_test_video
from yt8m.pca import dequantize

WIDTH = RGB_SIZE + AUDIO_SIZE
CLASSES = 25  # > the exporter's top 20, so that some classes are cut
STARTER_TOP_K = 20  # export_model.py _TOP_PREDICTIONS_IN_OUTPUT
MAX_FRAMES = 300


def model_weights() -> np.ndarray:
    return np.random.default_rng(11).normal(size=(WIDTH, CLASSES)).astype(np.float32)


def tiny_model(model_input_raw, num_frames):
    """A starter-style frame model: per-frame L2 normalisation, mean of the valid frames, logistic."""
    tf1 = tf.compat.v1
    model_input = tf.nn.l2_normalize(model_input_raw, 2)
    mask = tf.sequence_mask(num_frames, tf.shape(model_input)[1], dtype=tf.float32)[:, :, None]
    mean = tf.reduce_sum(model_input * mask, 1) / tf.cast(tf.maximum(num_frames, 1), tf.float32)[:, None]
    weights = tf1.get_variable("weights", initializer=model_weights())
    return tf.sigmoid(tf.matmul(mean, weights))


def expected_scores(video: VideoFeatures, first: int = 0, last: int | None = None) -> np.ndarray:
    frames = np.concatenate([dequantize(video.rgb), dequantize(video.audio)], axis=1)[first:last]
    frames = frames / np.maximum(np.linalg.norm(frames, axis=1, keepdims=True), 1e-6)
    return 1.0 / (1.0 + np.exp(-(frames.mean(axis=0) @ model_weights())))


def random_video(video_id: str, frames: int, seed: int) -> VideoFeatures:
    rng = np.random.default_rng(seed)
    return VideoFeatures(
        video_id=video_id,
        rgb=rng.integers(0, 256, size=(frames, RGB_SIZE), dtype=np.uint8),
        audio=rng.integers(0, 256, size=(frames, AUDIO_SIZE), dtype=np.uint8),
    )


def build_mediapipe_export(directory: Path, work: Path) -> Path:
    """What export_model_mediapipe.py does to a checkpoint of a starter training graph."""
    tf1 = tf.compat.v1
    checkpoint = str(work / "model.ckpt")
    with tf.Graph().as_default() as graph:  # the training graph, as train.py records it
        model_input_raw = tf1.placeholder(tf.float32, [None, MAX_FRAMES, WIDTH], name="model_input_raw")
        num_frames = tf1.placeholder(tf.int32, [None], name="num_frames_raw")
        predictions = tiny_model(model_input_raw, num_frames)
        tf1.add_to_collection("input_batch_raw", model_input_raw)
        tf1.add_to_collection("num_frames", num_frames)
        tf1.add_to_collection("predictions", predictions)
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            tf1.train.Saver().save(session, checkpoint)
    with tf.Graph().as_default() as graph:  # export_model_mediapipe.py main()
        tf1.train.import_meta_graph(checkpoint + ".meta", clear_devices=True)
        input_name = tf1.get_collection("input_batch_raw")[0].name
        num_frames_name = tf1.get_collection("num_frames")[0].name
    with tf.Graph().as_default() as graph:
        features = tf1.placeholder(tf.float32, shape=(None, None, WIDTH))
        counts = tf1.placeholder(tf.int32, shape=(None, 1))
        saver = tf1.train.import_meta_graph(
            checkpoint + ".meta",
            input_map={input_name: features, num_frames_name: tf.squeeze(counts, axis=1)},
            clear_devices=True,
        )
        predictions = tf1.get_collection("predictions")[0]
        with tf1.Session(graph=graph) as session:
            saver.restore(session, checkpoint)
            tf1.saved_model.simple_save(
                session, str(directory), inputs={"rgb_and_audio": features, "num_frames": counts},
                outputs={"predictions": predictions},
            )
    return directory


def _dequantize_tf(quantized):
    """The starter's utils.Dequantize with its default range [-2, 2]."""
    scalar = 4.0 / 255.0
    bias = 4.0 / 512.0 - 2.0
    return tf.cast(quantized, tf.float32) * scalar + bias


def _frame_reader(serialized):
    """The starter's YT8MFrameFeatureReader.prepare_serialized_examples (video labels, rgb+audio)."""
    tf1 = tf.compat.v1
    contexts, features = tf1.io.parse_single_sequence_example(
        serialized,
        context_features={"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64)},
        sequence_features={name: tf.io.FixedLenSequenceFeature([], dtype=tf.string) for name in ("rgb", "audio")},
    )
    matrices, num_frames = [], None
    for name, size in (("rgb", RGB_SIZE), ("audio", AUDIO_SIZE)):
        decoded = tf.reshape(tf.cast(tf.io.decode_raw(features[name], tf.uint8), tf.float32), [-1, size])
        frames = tf.minimum(tf.shape(decoded)[0], MAX_FRAMES)
        matrix = _dequantize_tf(decoded)[:MAX_FRAMES]
        matrix = tf.pad(matrix, [[0, MAX_FRAMES - tf.shape(matrix)[0]], [0, 0]])  # utils resize_axis
        matrices.append(matrix)
        num_frames = frames if num_frames is None else num_frames
    video_matrix = tf.concat(matrices, 1)
    return tf.expand_dims(contexts["id"], 0), tf.expand_dims(video_matrix, 0), tf.expand_dims(num_frames, 0)


def _video_reader(serialized):
    """The starter's YT8MAggregatedFeatureReader.prepare_serialized_examples (mean_rgb + mean_audio)."""
    features = tf.io.parse_example(
        serialized,
        features={
            "id": tf.io.FixedLenFeature([], tf.string),
            "labels": tf.io.VarLenFeature(tf.int64),
            "mean_rgb": tf.io.FixedLenFeature([RGB_SIZE], tf.float32),
            "mean_audio": tf.io.FixedLenFeature([AUDIO_SIZE], tf.float32),
        },
    )
    matrix = tf.concat([features["mean_rgb"], features["mean_audio"]], 1)
    return features["id"], matrix, tf.ones([tf.shape(serialized)[0]])


def build_starter_example_export(directory: Path, frame_features: bool = True) -> Path:
    """What export_model.py's ModelExporter builds and saves (the checkpoint restore aside)."""
    tf1 = tf.compat.v1

    def build_prediction_graph(serialized_examples):
        if frame_features:
            video_id, model_input_raw, num_frames = _frame_reader(serialized_examples)
            feature_dim = len(model_input_raw.get_shape()) - 1
            model_input = tf.nn.l2_normalize(model_input_raw, feature_dim)
            with tf1.variable_scope("tower", reuse=tf1.AUTO_REUSE):
                predictions = tiny_model(model_input, num_frames)
        else:
            video_id, model_input_raw, _ = _video_reader(serialized_examples)
            model_input = tf.nn.l2_normalize(model_input_raw, 1)
            with tf1.variable_scope("tower", reuse=tf1.AUTO_REUSE):
                weights = tf1.get_variable("weights", initializer=model_weights())
                predictions = tf.sigmoid(tf.matmul(model_input, weights))
        top_predictions, top_indices = tf.nn.top_k(predictions, STARTER_TOP_K)
        return video_id, top_indices, top_predictions

    with tf.Graph().as_default() as graph:
        serialized_examples = tf1.placeholder(tf.string, shape=(None,))
        if frame_features:
            outputs = tf1.map_fn(build_prediction_graph, serialized_examples, dtype=(tf.string, tf.int32, tf.float32))
        else:
            outputs = build_prediction_graph(serialized_examples)
        video_id_output, top_indices_output, top_predictions_output = outputs
        inputs = {"example_bytes": saved_model_utils.build_tensor_info(serialized_examples)}
        outputs = {
            "video_id": saved_model_utils.build_tensor_info(video_id_output),
            "class_indexes": saved_model_utils.build_tensor_info(top_indices_output),
            "predictions": saved_model_utils.build_tensor_info(top_predictions_output),
        }
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            signature = signature_def_utils.build_signature_def(
                inputs=inputs, outputs=outputs, method_name=signature_constants.PREDICT_METHOD_NAME
            )
            builder = tf1.saved_model.Builder(str(directory))
            builder.add_meta_graph_and_variables(
                session,
                tags=[tag_constants.SERVING],
                signature_def_map={signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY: signature},
                clear_devices=True,
            )
            builder.save()
    return directory


@pytest.fixture(scope="module")
def mediapipe_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mediapipe")
    return build_mediapipe_export(root / "export", root)


def test_mediapipe_exporter_model_gets_num_frames_as_declared(mediapipe_model):
    loaded = tf.saved_model.load(str(mediapipe_model))
    _, inputs = loaded.signatures["serving_default"].structured_input_signature
    assert inputs["num_frames"].shape.as_list() == [None, 1]  # the layout that broke `classify`
    predictor = load_predictor(mediapipe_model)
    assert predictor.kind == KIND_STARTER and predictor.num_classes == CLASSES
    videos = [random_video("a", 4, 1), random_video("b", 9, 2)]
    scores = predictor.predict(videos)
    for row, video in enumerate(videos):
        np.testing.assert_allclose(scores[row], expected_scores(video), rtol=1e-4, atol=1e-5)
    window = predictor.predict_segments([videos[1]])[0][1]  # frames 5..9
    np.testing.assert_allclose(window.scores, expected_scores(videos[1], 5, 9), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("frame_features", [True, False], ids=["frame-level", "video-level"])
def test_starter_example_exporter_model_scores_its_top_k(tmp_path, frame_features):
    path = build_starter_example_export(tmp_path / "export", frame_features)
    model = load_saved_model(path)
    assert model.layout == LAYOUT_EXAMPLES and model.top_k == STARTER_TOP_K
    assert model.num_classes == NUM_CLASSES  # no label map: YT8M's classes
    (path / "label_map.txt").write_text("".join(f"thing {i}\n" for i in range(CLASSES)), encoding="utf-8")
    predictor = load_predictor(path)
    assert predictor.num_classes == CLASSES and predictor.class_name(2) == "thing 2"
    assert "top 20" in predictor.model_name
    videos = [random_video("a", 4, 3), random_video("b", 7, 4)]
    scores = predictor.predict(videos)
    for row, video in enumerate(videos):
        expected = expected_scores(video) if frame_features else _video_level_expected(video)
        top = np.argsort(-expected)[:STARTER_TOP_K]
        np.testing.assert_allclose(scores[row, top], expected[top], rtol=1e-4, atol=1e-5)
        rest = np.setdiff1d(np.arange(CLASSES), top)
        assert np.all(scores[row, rest] == 0.0)  # unknown: outside the model's top 20


def _video_level_expected(video: VideoFeatures) -> np.ndarray:
    mean = np.concatenate([dequantize(video.rgb), dequantize(video.audio)], axis=1).mean(axis=0)
    mean = mean / np.linalg.norm(mean)
    return 1.0 / (1.0 + np.exp(-(mean @ model_weights())))


def _save_module(directory: Path, specs: list, body) -> Path:
    class Foreign(tf.Module):
        pass

    module = Foreign()
    module.serve = tf.function(body, input_signature=specs)
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})
    return directory


def test_unknown_signature_is_one_line(tmp_path, capsys):
    images = _save_module(
        tmp_path / "images",
        [tf.TensorSpec([None, 8, 8, 3], tf.float32, name="images")],
        lambda images: {"logits": tf.reduce_sum(images, [1, 2])},
    )
    with pytest.raises(Yt8mError) as caught:
        load_predictor(images)
    message = str(caught.value)
    assert "\n" not in message and str(images) in message
    assert "images float32 [?, 8, 8, 3]" in message and "logits" in message  # what it has
    assert "rgb_and_audio" in message and "num_frames" in message  # what yt8m feeds
    (tmp_path / "clip.mp4").write_bytes(b"")  # the model is refused before any video is read
    code = main(["classify", str(tmp_path / "clip.mp4"), "--model", str(images)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1 and "images" in err


def test_mismatching_width_is_one_line(tmp_path):
    wide = _save_module(
        tmp_path / "wide",
        [tf.TensorSpec([None, None, 2048], tf.float32, name="rgb_and_audio"), tf.TensorSpec([None, 1], tf.int32, name="num_frames")],
        lambda rgb_and_audio, num_frames: {"predictions": tf.reduce_mean(rgb_and_audio, 1)},
    )
    with pytest.raises(Yt8mError, match="takes 2048 values per frame; the features have 1152") as caught:
        load_predictor(wide)
    assert "\n" not in str(caught.value) and str(wide) in str(caught.value)


def test_graph_failure_is_one_line(tmp_path):
    """A graph that fails at run time (here: asserts every video has 300 frames) gives one line."""

    def serve(rgb_and_audio, num_frames):
        check = tf.debugging.assert_equal(tf.shape(rgb_and_audio)[1], 301, message="needs 301 frames")
        with tf.control_dependencies([check]):
            return {"predictions": tf.reduce_mean(rgb_and_audio, 1)[:, :CLASSES]}

    strict = _save_module(
        tmp_path / "strict",
        [tf.TensorSpec([None, None, WIDTH], tf.float32, name="rgb_and_audio"), tf.TensorSpec([None], tf.int32, name="num_frames")],
        serve,
    )
    with pytest.raises(Yt8mError) as caught:
        load_predictor(strict).predict([random_video("a", 3, 1)])
    assert "\n" not in str(caught.value) and "needs 301 frames" in str(caught.value)


def test_yt8m_export_declares_the_mediapipe_inputs(tmp_path, mediapipe_model):
    """`yt8m export`'s rgb_and_audio signature takes exactly what the starter's MediaPipe exporter
    declares, so MediaPipe's YT8M inference graph can feed it; yt8m still scores it."""
    make_synthetic_records(tmp_path / "train.tfrecord", 16, 3, frames=(3, 6), seed=3)
    config = ModelConfig.create(
        "FrameLevelLogisticModel", feature_spec=FeatureSpec(max_frames=8), num_classes=3,
        training={"batch_size": 8, "max_steps": 1},
    )
    training.train(str(tmp_path / "train.tfrecord"), tmp_path / "model", config)
    export_model(tmp_path / "model", tmp_path / "export")

    def declared(path: Path, name: str) -> dict:
        _, inputs = tf.saved_model.load(str(path)).signatures[name].structured_input_signature
        return {key: (spec.dtype.name, spec.shape.as_list()) for key, spec in inputs.items()}

    ours = declared(tmp_path / "export", SIGNATURE_RGB_AND_AUDIO)
    assert ours == declared(mediapipe_model, "serving_default")
    assert ours == {"rgb_and_audio": ("float32", [None, None, WIDTH]), "num_frames": ("int32", [None, 1])}
    model = load_saved_model(tmp_path / "export")
    assert model.layout == LAYOUT_FRAMES and model.signature == SIGNATURE_RGB_AND_AUDIO
    videos = [random_video("a", 3, 7), random_video("b", 11, 8)]
    np.testing.assert_allclose(
        load_predictor(tmp_path / "model").predict(videos), load_predictor(tmp_path / "export").predict(videos),
        rtol=1e-4, atol=1e-5,
    )
    assert trust.is_trusted(tmp_path / "export")  # yt8m wrote it: loading it needs no `trust_model`


def _frames_model_that_writes(directory: Path, victim: Path) -> Path:
    """A frames-layout SavedModel (the starter's signature) whose serving function also writes a file."""

    def serve(rgb_and_audio, num_frames):
        with tf.control_dependencies([tf.io.write_file(str(victim), "pwned")]):
            return {"predictions": tf.sigmoid(tf.reduce_mean(rgb_and_audio, 1)[:, :CLASSES])}

    specs = [tf.TensorSpec([None, None, WIDTH], tf.float32, name="rgb_and_audio"),
             tf.TensorSpec([None], tf.int32, name="num_frames")]
    return _save_module(directory, specs, serve)


def test_a_savedmodel_that_reaches_files_is_refused_unless_trusted(tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    path = _frames_model_that_writes(tmp_path / "writes", victim)
    with pytest.raises(Yt8mError) as caught:
        load_saved_model(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "WriteFile" in message and "`trust_model=True`" in message
    with pytest.raises(Yt8mError, match="WriteFile"):
        load_predictor(path)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"never decoded: the model is refused first")
    assert main(["classify", str(clip), "--model", str(path), "--weights", "random"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "WriteFile" in err and "--trust-model" in err and "Traceback" not in err
    assert not victim.exists()
    assert load_saved_model(path, trust_model=True).layout == LAYOUT_FRAMES
    if "trust_model" in inspect.signature(load_predictor).parameters:  # until then: requested
        assert classification.load_model(path, trust_model=True).num_classes == CLASSES
    trust.mark_trusted(path, "test: as `yt8m export` marks the models it writes")
    assert load_saved_model(path).layout == LAYOUT_FRAMES  # in the trust registry: no flag needed


def test_vocabulary_names_any_model(tmp_path, mediapipe_model, shared_data):
    predictor = load_predictor(mediapipe_model)
    assert predictor.class_names is None  # no label map shipped
    names = tmp_path / "names.txt"
    names.write_text("".join(f"thing {i}\n" for i in range(CLASSES)), encoding="utf-8")
    named = with_vocabulary(predictor, names)
    assert named.class_name(4) == "thing 4" and named.custom_labels and predictor.class_names is None
    with pytest.raises(Yt8mError, match="vocabulary.csv: has 3862 class names, but the model has 25 classes"):
        with_vocabulary(predictor, shared_data / "vocabulary.csv")
    with pytest.raises(Yt8mError, match="nowhere.csv: no such vocabulary"):
        with_vocabulary(predictor, tmp_path / "nowhere.csv")


@pytest.mark.slow
def test_classify_cli_runs_the_mediapipe_export_with_a_vocabulary(tmp_path, mediapipe_model, shared_data, capsys):
    """`yt8m classify --model DIR --vocabulary FILE` on a clip: the starter-exported model runs and
    is named by the given label map; a vocabulary of another size is one line."""
    clip = write_test_video(tmp_path / "clip.mp4", 3.0, colors=[(30, 200, 30)], motion="right", audio="sine")
    names = tmp_path / "names.txt"
    names.write_text("".join(f"thing {i}\n" for i in range(CLASSES)), encoding="utf-8")
    base = ["classify", str(clip), "--model", str(mediapipe_model), "--weights", "random", "--format", "json", "--top-k", "3"]
    assert main(base + ["--vocabulary", str(names)]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    assert [label["name"] for label in result["labels"]] == [f"thing {label['index']}" for label in result["labels"]]
    assert main(base + ["--vocabulary", str(shared_data / "vocabulary.csv")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "vocabulary.csv: has 3862 class names, but the model has 25 classes" in err
