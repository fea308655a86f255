"""Backbones: the 2015 Inception GraphDef batched, VGGish from a TF1 checkpoint, Keras / hub / random kinds.

Every artifact is made here in the official format: a GraphDef with the 2015 graph's tensor
names and ops (DecodeJpeg ... BatchNormWithGlobalNormalization ... pool_3/_reshape) packed like
inception-2015-12-05.tgz, a V1 checkpoint with VGGish's variable names, the YT8M PCA archive and
MediaPipe's MatrixData files. They are loaded through `load_feature_models` and compared with
independent computations: the graph's own single-image path run in a TF1 Session, VGGish rebuilt
from tf.nn ops, the PCA formulas of the starter code and MediaPipe.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from yt8m.core import Yt8mError  # noqa: E402
from yt8m.extractor import backbones  # noqa: E402
from yt8m.extractor.backbones import keras_inception as keras_inception_lib  # noqa: E402
from yt8m.extractor.backbones import keras_tools  # noqa: E402
from yt8m.extractor.synthetic_models import (  # noqa: E402
    FEATURE_DIM,
    GraphBuilder,
    keras_inception_as_2015_graph,
    npy_bytes,
    tgz,
    tiny_inception_graph,
    vggish_values,
    write_v1_checkpoint,
)
from yt8m.pca import save_matrix_data  # noqa: E402

def single_image_features(graph_def, frames):
    """The official way: each frame fed to DecodeJpeg:0 in a TF1 Session, pool_3/_reshape:0 read."""
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            return np.stack([session.run("pool_3/_reshape:0", {"DecodeJpeg:0": frame})[0] for frame in frames])


def vggish_reference(values: dict[str, np.ndarray], examples: np.ndarray) -> np.ndarray:
    """VGGish as vggish_slim defines it, from tf.nn ops and the raw checkpoint values (no Keras)."""
    net = tf.reshape(tf.constant(examples), [-1, backbones.VGGISH_FRAMES, backbones.VGGISH_BANDS, 1])
    for name, kind, _, scope in backbones.VGGISH_LAYERS:
        if kind == "conv":
            net = tf.nn.relu(tf.nn.conv2d(net, values[f"{scope}/weights"], 1, "SAME") + values[f"{scope}/biases"])
        elif kind == "pool":
            net = tf.nn.max_pool2d(net, 2, 2, "SAME")
        elif kind == "flatten":
            net = tf.reshape(net, [tf.shape(net)[0], -1])
        else:
            net = tf.matmul(net, values[f"{scope}/weights"]) + values[f"{scope}/biases"]
            if kind == "dense":
                net = tf.nn.relu(net)
    return net.numpy()


def random_frames(count: int, height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_graph():
    return tiny_inception_graph()


@pytest.fixture(scope="module")
def official(tmp_path_factory, tiny_graph):
    """A models folder holding every official file in its published format (small random contents)."""
    root = tmp_path_factory.mktemp("official")
    tgz(root / "inception-2015-12-05.tgz", {
        "classify_image_graph_def.pb": tiny_graph.SerializeToString(),
        "LICENSE": b"Apache 2.0",
        "imagenet_synset_to_human_label_map.txt": b"n00000000\tthing\n",
    })
    rng = np.random.default_rng(11)
    mean = rng.normal(0.3, 0.1, (FEATURE_DIM, 1)).astype(np.float32)
    eigenvecs = np.linalg.qr(rng.standard_normal((FEATURE_DIM, 1024)))[0].T.astype(np.float32)  # rows
    eigenvals = np.sort(rng.uniform(0.001, 0.1, (1024, 1)))[::-1].astype(np.float32)
    tgz(root / "yt8m_pca.tgz", {"mean.npy": npy_bytes(mean), "eigenvals.npy": npy_bytes(eigenvals), "eigenvecs.npy": npy_bytes(eigenvecs)})
    values = vggish_values()
    write_v1_checkpoint(root / "vggish_model.ckpt", values)
    audio_mean = rng.normal(0, 1, (128, 1)).astype(np.float32)
    audio_projection = (rng.standard_normal((128, 128)) * 0.05).astype(np.float32)  # P [out, in]
    save_matrix_data(root / "vggish_mean_matrix_data.pb", audio_mean)
    save_matrix_data(root / "vggish_projection_matrix_data.pb", audio_projection)
    return {
        "dir": root, "mean": mean, "eigenvecs": eigenvecs, "eigenvals": eigenvals, "vggish": values,
        "audio_mean": audio_mean, "audio_projection": audio_projection,
    }


@pytest.fixture(scope="module")
def yt8m_models(official):
    return backbones.load_feature_models("yt8m", models_dir=official["dir"])


# ------------------------------------------------------------------------------------ the 2015 GraphDef


def single_image_resized(graph_def, frame):
    """The 2015 graph's own preprocessing of one frame, in a TF1 Session: ResizeBilinear:0."""
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            return session.run("ResizeBilinear:0", {"DecodeJpeg:0": frame})[0]


def test_pre_resize_path_equals_the_graphs_own_path(tiny_graph, tmp_path):
    """Large frames shrunk one by one in the decode threads give the features of the whole-frame path.

    The reference is the 2015 graph itself, unmodified, in a TF1 Session: each full 1920x1080 frame
    fed to DecodeJpeg:0 (its own Cast -> ExpandDims -> ResizeBilinear -> ... -> pool_3).
    """
    path = tmp_path / "classify_image_graph_def.pb"
    path.write_bytes(tiny_graph.SerializeToString())
    inception = backbones.load_graphdef_inception(path)
    frames = random_frames(2, 1080, 1920, 7)
    prepared = np.stack([inception.prepare(frame) for frame in frames])
    assert prepared.shape == (2, 299, 299, 3) and prepared.dtype == np.float32  # 1 MB per frame, not 6
    for frame, row in zip(frames, prepared):  # the graph's own resize, to the bit
        np.testing.assert_array_equal(row, single_image_resized(tiny_graph, frame))
    official = single_image_features(tiny_graph, frames)
    assert np.abs(official).max() > 0.1
    np.testing.assert_allclose(inception.run_prepared(prepared), official, rtol=0, atol=1e-5)
    keras_random = keras_inception_lib.keras_inception("random")
    small = random_frames(2, 720, 1280, 8)
    whole = keras_random(small)
    by_frame = keras_random.run_prepared(np.stack([keras_random.prepare(frame) for frame in small]))
    np.testing.assert_allclose(by_frame, whole, rtol=1e-5, atol=1e-5 * np.abs(whole).max())


def test_batched_graph_matches_the_single_image_path(tiny_graph, tmp_path):
    path = tmp_path / "classify_image_graph_def.pb"
    path.write_bytes(tiny_graph.SerializeToString())
    inception = backbones.load_graphdef_inception(path)
    assert (inception.name, inception.output_dim, inception.weights) == ("inception-v3", FEATURE_DIM, "yt8m")
    for count, height, width, seed in ((5, 90, 120, 1), (3, 240, 320, 2), (1, 299, 299, 3)):
        frames = random_frames(count, height, width, seed)
        expected = single_image_features(tiny_graph, frames)
        assert np.abs(expected).max() > 0.1  # the features are not trivially zero
        np.testing.assert_allclose(inception(frames), expected, atol=1e-4, rtol=0)
    assert inception(np.zeros((0, 10, 10, 3), np.uint8)).shape == (0, FEATURE_DIM)
    with pytest.raises(ValueError, match="uint8"):
        inception(frames.astype(np.float32))


def test_full_size_graph_batched_matches_single_image(tmp_path):
    graph = keras_inception_as_2015_graph()
    path = tmp_path / "classify_image_graph_def.pb"
    path.write_bytes(graph.SerializeToString())
    frames = random_frames(3, 180, 320, 7)
    expected = single_image_features(graph, frames)
    assert expected.std() > 0.01
    inception = backbones.load_graphdef_inception(path)
    np.testing.assert_allclose(inception(frames), expected, atol=1e-4, rtol=1e-4)
    # a full-HD frame resized alone (the extractor's pre-resize path) vs the graph fed the whole frame
    large = random_frames(1, 1080, 1920, 8)
    official = single_image_features(graph, large)
    ours = inception.run_prepared(inception.prepare(large[0])[None])
    np.testing.assert_allclose(ours, official, rtol=0, atol=1e-5 * np.abs(official).max())


def test_graph_in_bfloat16_stays_close_to_float32(tiny_graph, tmp_path):
    path = tmp_path / "classify_image_graph_def.pb"
    path.write_bytes(tiny_graph.SerializeToString())
    half = backbones.load_graphdef_inception(path, precision="bfloat16")
    assert half.precision == "bfloat16"
    frames = random_frames(4, 120, 160, 4)
    expected = single_image_features(tiny_graph, frames)
    got = half(frames)
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() <= 0.02 * np.abs(expected).max()
    assert not np.array_equal(got, backbones.load_graphdef_inception(path)(frames))  # really another precision


def test_bad_graph_files_are_user_errors(tmp_path):
    garbage = tmp_path / "classify_image_graph_def.pb"
    garbage.write_bytes(b"\xff\xfe not a protobuf \x00" * 10)
    with pytest.raises(Yt8mError, match=str(garbage)):
        backbones.load_graphdef_inception(garbage)
    other = tmp_path / "other.pb"
    b = GraphBuilder(0)
    b.const("x", np.float32(1.0))
    other.write_bytes(b.graph.SerializeToString())
    with pytest.raises(Yt8mError, match="no 'ExpandDims' node; not the 2015 Inception-v3 graph"):
        backbones.load_graphdef_inception(other)


# ------------------------------------------------------------------------------------ VGGish


def test_yt8m_models_from_official_files(official, yt8m_models, tiny_graph):
    models = yt8m_models
    assert models.weights == "yt8m" and models.compatible_with_yt8m and models.warnings == []
    assert (models.vggish.name, models.vggish.output_dim) == ("vggish", 128)
    root = official["dir"]
    assert (root / "inception-2015-12-05" / "classify_image_graph_def.pb").is_file()  # unpacked on first use

    frames = random_frames(3, 100, 140, 9)
    raw = models.inception(frames)
    np.testing.assert_allclose(raw, single_image_features(tiny_graph, frames), atol=1e-4, rtol=0)
    # the starter code's PCA: ((x - mean) @ eigenvecs.T[:, :1024]) / sqrt(eigenvals[:1024] + 1e-4)
    expected = ((raw - official["mean"][:, 0]) @ official["eigenvecs"].T[:, :1024]) / np.sqrt(official["eigenvals"][:1024, 0] + 1e-4)
    np.testing.assert_allclose(models.rgb_pca.apply(raw), expected, rtol=1e-4, atol=1e-4)

    examples = np.random.default_rng(3).normal(-1, 1.5, (5, 96, 64)).astype(np.float32)
    embedding = models.vggish(examples)
    reference = vggish_reference(official["vggish"], examples)
    assert np.abs(reference).max() > 0.1
    np.testing.assert_allclose(embedding, reference, atol=1e-4 * max(1.0, np.abs(reference).max()), rtol=1e-4)
    # MediaPipe's audio PCA: P @ (x - mean)
    audio = (official["audio_projection"] @ (embedding - official["audio_mean"][:, 0]).T).T
    np.testing.assert_allclose(models.audio_pca.apply(embedding), audio, rtol=1e-4, atol=1e-4)


def test_prepared_official_networks_are_kept_and_follow_their_files(official, tmp_path, monkeypatch):
    """The 2015 graph (folded, lifted) and VGGish (built from the checkpoint) are kept after the first load."""
    monkeypatch.setenv("YT8M_HOME", str(tmp_path / "cache"))
    first = backbones.load_feature_models("yt8m", models_dir=official["dir"])
    kept = sorted(p.name for p in (tmp_path / "cache" / "prepared").iterdir())
    assert any(name.startswith("inception-2015") for name in kept) and any(name.startswith("vggish") for name in kept)
    second = backbones.load_feature_models("yt8m", models_dir=official["dir"])
    assert "prepared copy" in second.vggish.source
    frames = random_frames(3, 120, 160, 4)
    np.testing.assert_allclose(second.inception(frames), first.inception(frames), rtol=1e-6, atol=1e-6)
    examples = np.random.default_rng(2).normal(-1, 1.5, (2, 96, 64)).astype(np.float32)
    np.testing.assert_allclose(second.vggish(examples), first.vggish(examples), rtol=1e-6, atol=1e-6)
    # A changed graph file is prepared again (the kept copy is keyed by path, size and time).
    graph = tmp_path / "classify_image_graph_def.pb"
    graph.write_bytes(tiny_inception_graph(seed=1).SerializeToString())
    before = backbones.load_graphdef_inception(graph)(frames)
    graph.write_bytes(tiny_inception_graph(seed=2).SerializeToString())
    assert not np.allclose(backbones.load_graphdef_inception(graph)(frames), before)


def test_models_fetch_prepares_the_networks_once_their_files_are_there(official, tmp_path, monkeypatch, capsys):
    """So that the first extract after `yt8m models fetch` starts warm; a partial fetch prepares nothing."""
    import shutil

    from yt8m.app.cli import main
    from yt8m.extractor import weights

    monkeypatch.setenv("YT8M_HOME", str(tmp_path / "cache"))
    prepared = tmp_path / "cache" / "prepared"
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(official["dir"] / "inception-2015-12-05.tgz", partial)
    said: list[str] = []
    assert backbones.prepare_official_networks(partial, progress=said.append) is None
    assert not said and not prepared.exists()

    monkeypatch.setattr(weights, "fetch", lambda name, directory=None, **_: weights.root(directory) / name)
    assert main(["models", "fetch", "--only", "vggish", "--models-dir", str(official["dir"]), "--no-prepare"]) == 0
    assert "prepar" not in capsys.readouterr().out and not prepared.exists()
    assert main(["models", "fetch", "--only", "vggish", "--models-dir", str(official["dir"])]) == 0
    out = capsys.readouterr().out
    assert "preparing the feature networks" in out and "feature networks prepared" in out
    kept = sorted(p.name for p in prepared.iterdir())
    assert any(name.startswith("inception-2015") for name in kept) and any(name.startswith("vggish") for name in kept)
    assert "prepared copy" in backbones.load_feature_models("yt8m", models_dir=official["dir"]).vggish.source


def test_vggish_embedding_is_the_pre_activation(yt8m_models):
    examples = np.random.default_rng(8).normal(0, 2, (16, 96, 64)).astype(np.float32)
    assert (yt8m_models.vggish(examples) < 0).any()  # fc2 has no ReLU


def test_vggish_bfloat16_from_the_checkpoint(official):
    half = backbones.keras_vggish(official["dir"] / "vggish_model.ckpt", precision="bfloat16")
    examples = np.random.default_rng(4).normal(-1, 1.5, (4, 96, 64)).astype(np.float32)
    reference = vggish_reference(official["vggish"], examples)
    got = half(examples)
    assert got.dtype == np.float32 and half.precision == "bfloat16"
    assert np.abs(got - reference).max() <= 0.05 * np.abs(reference).max()


def test_checkpoint_problems_name_the_file_and_variable(tmp_path, official):
    values = {k: v for k, v in official["vggish"].items() if k != "vggish/conv4/conv4_2/biases"}
    small = {k: v for k, v in values.items() if "fc1" not in k}  # keep the file small
    missing = write_v1_checkpoint(tmp_path / "missing" / "vggish_model.ckpt", small)
    model = backbones.build_vggish_model()
    with pytest.raises(Yt8mError, match="no variable vggish/conv4/conv4_2/biases"):
        backbones.load_vggish_checkpoint(model, missing)
    wrong = dict(small, **{"vggish/conv4/conv4_2/biases": np.zeros(7, np.float32)})
    wrong_path = write_v1_checkpoint(tmp_path / "wrong" / "vggish_model.ckpt", wrong)
    with pytest.raises(Yt8mError, match=r"vggish/conv4/conv4_2/biases has shape \[7\], VGGish needs \[512\]"):
        backbones.load_vggish_checkpoint(model, wrong_path)
    not_a_checkpoint = tmp_path / "junk.ckpt"
    not_a_checkpoint.write_bytes(b"junk")
    with pytest.raises(Yt8mError, match="junk.ckpt: not a readable TensorFlow checkpoint"):
        backbones.load_vggish_checkpoint(model, not_a_checkpoint)


# ------------------------------------------------------------------------------------ PCAs and missing files


def test_audio_pca_falls_back_to_audioset_with_a_warning(tmp_path, official):
    rng = np.random.default_rng(2)
    vectors, means = rng.standard_normal((128, 128)).astype(np.float32), rng.standard_normal(128).astype(np.float32)
    np.savez(tmp_path / "vggish_pca_params.npz", pca_eigen_vectors=vectors, pca_means=means)
    warnings: list[str] = []
    pca = backbones.official_audio_pca(tmp_path, warnings)
    assert not pca.compatible_with_yt8m and warnings == [backbones.AUDIO_PCA_FALLBACK_WARNING]
    x = rng.standard_normal((3, 128)).astype(np.float32)
    np.testing.assert_allclose(pca.apply(x), (vectors @ (x - means).T).T, rtol=1e-4, atol=1e-4)
    warnings.clear()
    assert backbones.official_audio_pca(official["dir"], warnings).compatible_with_yt8m and warnings == []


def test_mediapipe_rgb_pca_is_used_when_the_npy_files_are_missing(tmp_path):
    rng = np.random.default_rng(4)
    mean, projection = rng.standard_normal((FEATURE_DIM, 1)), rng.standard_normal((1024, FEATURE_DIM)) * 0.01
    save_matrix_data(tmp_path / "inception3_mean_matrix_data.pb", mean)
    save_matrix_data(tmp_path / "inception3_projection_matrix_data.pb", projection)
    pca = backbones.official_rgb_pca(tmp_path)
    x = rng.standard_normal((2, FEATURE_DIM)).astype(np.float32)
    np.testing.assert_allclose(pca.apply(x), (projection @ (x - mean[:, 0]).T).T, rtol=1e-3, atol=1e-3)
    assert pca.compatible_with_yt8m


def test_missing_files_say_how_to_get_them(tmp_path, official):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Yt8mError) as error:
        backbones.load_feature_models("yt8m", models_dir=empty)
    assert "classify_image_graph_def.pb" in str(error.value)
    assert f"`yt8m models fetch --only inception --models-dir {empty}`" in str(error.value)
    graph_only = tmp_path / "graph_only"
    graph_only.mkdir()
    (graph_only / "inception-2015-12-05.tgz").write_bytes((official["dir"] / "inception-2015-12-05.tgz").read_bytes())
    with pytest.raises(Yt8mError, match="yt8m models fetch --only yt8m-pca"):
        backbones.load_feature_models("yt8m", models_dir=graph_only, audio=False)
    with pytest.raises(Yt8mError, match="unknown weights 'imagenet'; choose yt8m, keras, random or hub:PATH"):
        backbones.load_feature_models("imagenet")
    with pytest.raises(Yt8mError, match="precision must be float32 or bfloat16"):
        backbones.load_feature_models("yt8m", precision="float16")


# ------------------------------------------------------------------------------------ random, keras, hub


def test_random_weights_are_marked_and_spread_the_bytes():
    models = backbones.load_feature_models("random")
    assert models.weights == "random" and not models.compatible_with_yt8m
    assert any("RANDOM" in w and "NOT YouTube-8M" in w for w in models.warnings)
    assert not models.rgb_pca.compatible_with_yt8m and not models.audio_pca.compatible_with_yt8m
    frames = random_frames(2, 72, 96, 12)
    rgb = models.inception(frames)
    # a lone frame gets exactly its features in a batch (a batch of one runs other CPU kernels: padded)
    np.testing.assert_array_equal(models.inception(frames[:1]), rgb[:1])
    np.testing.assert_array_equal(models.inception.run_prepared(models.inception.prepare(frames[1])[None]), rgb[1:])
    # the compiled function computes exactly the Keras InceptionV3 with the same seeded weights
    model = keras_inception_lib.keras_inception_model()
    keras_tools.randomize(model, backbones.RANDOM_SEED)
    direct = model(keras_inception_lib.keras_inception_preprocess(tf.constant(frames)), training=False).numpy()
    np.testing.assert_allclose(rgb, direct, rtol=1e-4, atol=1e-4 * np.abs(direct).max())
    rgb_bytes = models.rgb_pca.apply_and_quantize(rgb)
    log_mel = np.random.default_rng(1).normal(-1, 1.5, (3, 96, 64)).astype(np.float32)
    audio = models.vggish(log_mel[:2])
    np.testing.assert_array_equal(models.vggish(log_mel[1:2]), audio[1:])
    audio = models.vggish(log_mel)
    audio_bytes = models.audio_pca.apply_and_quantize(audio)
    for quantized in (rgb_bytes, audio_bytes):
        assert len(np.unique(quantized)) > 40 and 40 < quantized.mean() < 215  # spread, not piled at one value
    assert not np.array_equal(rgb_bytes[0], rgb_bytes[1])


@pytest.mark.slow
def test_random_networks_are_cached_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("YT8M_HOME", str(tmp_path / "cache"))
    models = backbones.load_feature_models("random")  # built with Keras, then kept in the cache
    assert "cached in" not in models.inception.source
    frames = random_frames(2, 72, 96, 12)
    rgb = models.inception(frames)
    log_mel = np.random.default_rng(1).normal(-1, 1.5, (3, 96, 64)).astype(np.float32)
    audio = models.vggish(log_mel)
    # A second load reads the cache (no Keras build, no calibration) and computes the same features.
    cached = backbones.load_feature_models("random")
    assert "cached in" in cached.inception.source and "cached in" in cached.vggish.source
    np.testing.assert_allclose(cached.inception(frames), rgb, rtol=1e-5, atol=1e-5 * np.abs(rgb).max())
    np.testing.assert_allclose(cached.vggish(log_mel), audio, rtol=1e-5, atol=1e-5 * np.abs(audio).max())
    np.testing.assert_array_equal(cached.rgb_pca.projection, models.rgb_pca.projection)
    # A damaged cache is not trusted: the networks are built again.
    for stored in (tmp_path / "cache" / "random").glob("*.npz"):
        stored.write_bytes(stored.read_bytes()[:1000])
    rebuilt = backbones.load_feature_models("random", audio=False)
    assert "cached in" not in rebuilt.inception.source
    np.testing.assert_allclose(rebuilt.inception(frames), rgb, rtol=1e-5, atol=1e-5 * np.abs(rgb).max())


def test_keras_weights_offline_is_a_user_error(monkeypatch):
    keras = keras_tools.keras_module()
    calls = []

    def offline(*args, **kwargs):
        calls.append(kwargs.get("weights"))
        if kwargs.get("weights") == "imagenet":
            raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno 101] unreachable")
        return original(*args, **kwargs)

    original = keras.applications.InceptionV3
    monkeypatch.setattr(keras.applications, "InceptionV3", offline)
    with pytest.raises(Yt8mError, match="yt8m models fetch --only keras-inception"):
        keras_inception_lib.keras_inception("keras")
    assert calls == [None, "imagenet"]


class _TinyImageModel(tf.Module):
    """An image feature-vector SavedModel as TF Hub publishes them: floats in [0, 1], fixed size."""

    def __init__(self, weights):
        super().__init__()
        self.weights = tf.Variable(weights)

    @tf.function(input_signature=[tf.TensorSpec([None, 64, 64, 3], tf.float32)])
    def __call__(self, images):
        return tf.matmul(tf.reduce_mean(images, axis=[1, 2]), self.weights)


class _TinyVggish(tf.Module):
    """TF Hub's VGGish interface: a 16 kHz waveform -> one 128-d row per 0.96 s."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, waveform):
        frames = tf.signal.frame(waveform, 15360, 15360)
        return tf.reduce_mean(frames, axis=1, keepdims=True) * tf.range(1, 129, dtype=tf.float32)


def test_hub_image_model_from_a_local_saved_model(tmp_path):
    weights = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    tf.saved_model.save(_TinyImageModel(weights), str(tmp_path / "hub_model"))
    hub = backbones.load_hub_image_backbone(str(tmp_path / "hub_model"))
    assert hub.output_dim == 16 and hub.weights == f"hub:{tmp_path / 'hub_model'}"
    colours = np.array([[255, 0, 0], [10, 200, 30]], dtype=np.uint8)
    frames = np.broadcast_to(colours[:, None, None, :], (2, 48, 80, 3)).copy()  # flat: resizing is exact
    np.testing.assert_allclose(hub(frames), (colours / 255.0) @ weights, rtol=1e-3, atol=1e-3)
    with pytest.raises(Yt8mError, match="bfloat16 is not available for hub"):
        backbones.load_hub_image_backbone(str(tmp_path / "hub_model"), precision="bfloat16")
    with pytest.raises(Yt8mError, match="takes 16-d features|gives 16-d features"):
        backbones.load_feature_models(f"hub:{tmp_path / 'hub_model'}", audio=False)
    with pytest.raises(Yt8mError, match="no such SavedModel folder"):
        backbones.load_feature_models(f"hub:{tmp_path / 'nothing'}", audio=False)


def test_hub_model_with_its_own_pca(tmp_path):
    from yt8m.pca import fit_pca, save_yt8m_npy

    weights = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    handle = str(tmp_path / "hub_model")
    tf.saved_model.save(_TinyImageModel(weights), handle)
    features = backbones.load_hub_image_backbone(handle)(random_frames(40, 32, 32, 5))
    save_yt8m_npy(tmp_path / "pca", fit_pca(features, 3))
    models = backbones.load_feature_models(f"hub:{handle}", audio=False, rgb_pca_path=tmp_path / "pca")
    assert models.vggish is None and models.audio_pca is None and not models.compatible_with_yt8m
    assert (models.rgb_pca.input_dim, models.rgb_pca.output_dim) == (16, 3)
    assert any("TF Hub" in w for w in models.warnings)
    inception_like = np.random.default_rng(6).standard_normal((20, FEATURE_DIM))
    save_yt8m_npy(tmp_path / "official_shape", fit_pca(inception_like, 4))
    with pytest.raises(Yt8mError, match="the rgb PCA takes 2048-d features but inception-v3"):
        backbones.load_feature_models(f"hub:{handle}", audio=False, rgb_pca_path=tmp_path / "official_shape")


def test_hub_vggish_waveform_interface(tmp_path):
    tf.saved_model.save(_TinyVggish(), str(tmp_path / "vggish_hub"))
    hub = backbones.load_hub_vggish(str(tmp_path / "vggish_hub"))
    waveform = np.random.default_rng(0).uniform(-1, 1, 16000 * 3).astype(np.float32)
    got = hub(waveform)
    chunks = waveform[: 3 * 15360].reshape(3, 15360).mean(axis=1)
    np.testing.assert_allclose(got, chunks[:, None] * np.arange(1, 129), rtol=1e-4, atol=1e-5)
    assert got.shape == (3, 128) and hub.weights.startswith("hub:")


class _TinyImageModelWithPython(_TinyImageModel):
    """The same image model, but its serving function calls back into Python (a py_function)."""

    @tf.function(input_signature=[tf.TensorSpec([None, 64, 64, 3], tf.float32)])
    def __call__(self, images):
        pooled = tf.reduce_mean(images, axis=[1, 2])
        return tf.matmul(tf.py_function(lambda t: t, [pooled], tf.float32), self.weights)


def test_untrusted_hub_model_is_refused_unless_trust_model(tmp_path):
    handle = str(tmp_path / "python_model")
    tf.saved_model.save(_TinyImageModelWithPython(np.ones((3, 16), np.float32)), handle)
    with pytest.raises(Yt8mError, match="trust_model"):
        backbones.load_feature_models(f"hub:{handle}", audio=False)
    # trusted: loading goes past the check (and stops at the next one: the default PCA is for 2048-d)
    with pytest.raises(Yt8mError, match="16-d features"):
        backbones.load_feature_models(f"hub:{handle}", audio=False, trust_model=True)
