"""Backbones: the 2015 Inception GraphDef batched, VGGish from a TF1 checkpoint, Keras / hub / random kinds.

Every artifact is made here in the official format: a GraphDef with the 2015 graph's tensor
names and ops (DecodeJpeg ... BatchNormWithGlobalNormalization ... pool_3/_reshape) packed like
inception-2015-12-05.tgz, a V1 checkpoint with VGGish's variable names, the YT8M PCA archive and
MediaPipe's MatrixData files. They are loaded through `load_feature_models` and compared with
independent computations: the graph's own single-image path run in a TF1 Session, VGGish rebuilt
from tf.nn ops, the PCA formulas of the starter code and MediaPipe.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from yt8m.core import Yt8mError  # noqa: E402
from yt8m.extractor import backbones  # noqa: E402
from yt8m.pca import save_matrix_data  # noqa: E402

GRAPH_2015_PRODUCER = 5  # the 2015 file predates GraphDef version 9 (BatchNormWithGlobalNormalization)
FEATURE_DIM = 2048


# ------------------------------------------------------------------------------------ artifacts


class GraphBuilder:
    """Write GraphDef nodes by hand, as the 2015 graph has them (old ops cannot be built in TF2)."""

    def __init__(self, seed: int) -> None:
        self.graph = tf.compat.v1.GraphDef()
        self.graph.versions.producer = GRAPH_2015_PRODUCER
        self.rng = np.random.default_rng(seed)

    def node(self, name, op, inputs=(), **attrs):
        node = self.graph.node.add()
        node.name, node.op = name, op
        node.input.extend(inputs)
        for key, value in attrs.items():
            attr = node.attr[key]
            if isinstance(value, tf.dtypes.DType):
                attr.type = value.as_datatype_enum
            elif isinstance(value, bool):
                attr.b = value
            elif isinstance(value, int):
                attr.i = value
            elif isinstance(value, float):
                attr.f = value
            elif isinstance(value, bytes):
                attr.s = value
            else:
                attr.list.i.extend(value)
        return name

    def const(self, name, array):
        array = np.asarray(array)
        node = self.graph.node.add()
        node.name, node.op = name, "Const"
        node.attr["dtype"].type = tf.as_dtype(array.dtype).as_datatype_enum
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(array))
        return name

    def preprocessing(self):
        """DecodeJpeg:0 -> Cast -> ExpandDims -> ResizeBilinear(299) -> Sub 128 -> Mul 1/128."""
        self.node("DecodeJpeg/contents", "Placeholder", dtype=tf.string)
        self.node("DecodeJpeg", "DecodeJpeg", ["DecodeJpeg/contents"], channels=3, ratio=1)
        self.node("Cast", "Cast", ["DecodeJpeg"], SrcT=tf.uint8, DstT=tf.float32)
        self.const("ExpandDims/dim", np.int32(0))
        self.node("ExpandDims", "ExpandDims", ["Cast", "ExpandDims/dim"], T=tf.float32, Tdim=tf.int32)
        self.const("ResizeBilinear/size", np.array([299, 299], np.int32))
        self.node("ResizeBilinear", "ResizeBilinear", ["ExpandDims", "ResizeBilinear/size"], T=tf.float32, align_corners=False)
        self.const("Sub/y", np.float32(128.0))
        self.node("Sub", "Sub", ["ResizeBilinear", "Sub/y"], T=tf.float32)
        self.const("Mul/y", np.float32(1.0 / 128.0))
        return self.node("Mul", "Mul", ["Sub", "Mul/y"], T=tf.float32)

    def batch_norm(self, name, source, mean, variance, beta, gamma=None, epsilon=0.001):
        scale_after = gamma is not None
        gamma = np.ones_like(beta) if gamma is None else gamma
        for suffix, value in (("moving_mean", mean), ("moving_variance", variance), ("beta", beta), ("gamma", gamma)):
            self.const(f"{name}/{suffix}", np.asarray(value, np.float32))
        inputs = [source] + [f"{name}/{s}" for s in ("moving_mean", "moving_variance", "beta", "gamma")]
        return self.node(name, "BatchNormWithGlobalNormalization", inputs, T=tf.float32,
                         variance_epsilon=float(epsilon), scale_after_normalization=scale_after)

    def random_batch_norm(self, name, source, channels, scale_after=True):
        r = self.rng
        return self.batch_norm(name, source, r.normal(0, 0.2, channels), r.uniform(0.5, 2.0, channels),
                               r.normal(0, 0.1, channels), r.uniform(0.5, 1.5, channels) if scale_after else None)

    def conv(self, name, source, kernel, stride, padding):
        self.const(f"{name}/conv2d_params", np.asarray(kernel, np.float32))
        return self.node(f"{name}/Conv2D", "Conv2D", [source, f"{name}/conv2d_params"], T=tf.float32,
                         strides=[1, stride, stride, 1], padding=padding)

    def conv_bn_relu(self, name, source, in_channels, out_channels, size, stride, padding, scale_after=True):
        kernel = self.rng.standard_normal((size, size, in_channels, out_channels)) * np.sqrt(2.0 / (size * size * in_channels))
        conv = self.conv(name, source, kernel, stride, padding)
        bn = self.random_batch_norm(f"{name}/batchnorm", conv, out_channels, scale_after)
        return self.node(name, "Relu", [bn], T=tf.float32)

    def head(self, source, spatial):
        """pool_3 (average pool to 1x1), its batch-1 reshape and a softmax classifier as in the 2015 graph."""
        self.node("pool_3", "AvgPool", [source], T=tf.float32, ksize=[1, spatial, spatial, 1], strides=[1, 1, 1, 1], padding=b"VALID")
        self.const("pool_3/_reshape/shape", np.array([1, FEATURE_DIM], np.int32))
        self.node("pool_3/_reshape", "Reshape", ["pool_3", "pool_3/_reshape/shape"], T=tf.float32, Tshape=tf.int32)
        self.const("softmax/weights", (self.rng.standard_normal((FEATURE_DIM, 10)) * 0.01).astype(np.float32))
        self.node("softmax/logits/MatMul", "MatMul", ["pool_3/_reshape", "softmax/weights"], T=tf.float32)
        self.const("softmax/biases", np.zeros(10, np.float32))
        self.node("softmax/logits", "Add", ["softmax/logits/MatMul", "softmax/biases"], T=tf.float32)
        self.node("softmax", "Softmax", ["softmax/logits"], T=tf.float32)


def tiny_inception_graph(seed: int = 0):
    """A small network with the 2015 graph's names and ops (old Concat, old batch norm, both BN modes)."""
    b = GraphBuilder(seed)
    net = b.preprocessing()
    net = b.conv_bn_relu("conv", net, 3, 8, 3, 2, b"VALID")  # 149 x 149
    net = b.node("pool", "MaxPool", [net], T=tf.float32, ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1], padding=b"VALID")  # 74
    net = b.random_batch_norm("pool/batchnorm", net, 8)  # not after a convolution: the Mul + BiasAdd path
    left = b.conv_bn_relu("mixed/conv", net, 8, 16, 1, 1, b"SAME", scale_after=False)
    right = b.conv_bn_relu("mixed/tower/conv", net, 8, 16, 3, 1, b"SAME")
    b.const("mixed/join/concat_dim", np.int32(3))
    net = b.node("mixed/join", "Concat", ["mixed/join/concat_dim", left, right], N=2, T=tf.float32)
    net = b.conv_bn_relu("mixed_10/conv", net, 32, FEATURE_DIM, 1, 8, b"SAME")  # 10 x 10 x 2048
    b.head(net, 10)
    return b.graph


def keras_inception_as_2015_graph(seed: int = 3):
    """The full-size Inception-v3 (Keras' layout, random weights) written with the 2015 graph's ops."""
    model = backbones._keras_inception_model()
    backbones._randomize(model, seed)
    b = GraphBuilder(seed)
    names = {id(model.inputs[0]): b.preprocessing()}
    for layer in model.layers[1:]:
        node = layer._inbound_nodes[0]
        inputs = [names[id(t)] for t in node.input_tensors]
        kind = type(layer).__name__
        if kind == "Conv2D":
            stride = layer.strides[0]
            out = b.conv(layer.name, inputs[0], layer.kernel.numpy(), stride, layer.padding.upper().encode())
        elif kind == "BatchNormalization":
            out = b.batch_norm(layer.name, inputs[0], layer.moving_mean.numpy(), layer.moving_variance.numpy(),
                               layer.beta.numpy(), layer.gamma.numpy() if layer.scale else None, layer.epsilon)
        elif kind == "Activation":
            out = b.node(layer.name, "Relu", inputs, T=tf.float32)
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            size, stride = layer.pool_size[0], layer.strides[0]
            out = b.node(layer.name, "MaxPool" if kind == "MaxPooling2D" else "AvgPool", inputs, T=tf.float32,
                         ksize=[1, size, size, 1], strides=[1, stride, stride, 1], padding=layer.padding.upper().encode())
        elif kind == "Concatenate":
            b.const(f"{layer.name}/concat_dim", np.int32(3))
            out = b.node(layer.name, "Concat", [f"{layer.name}/concat_dim", *inputs], N=len(inputs), T=tf.float32)
        elif kind == "GlobalAveragePooling2D":
            b.head(inputs[0], 8)
            out = "pool_3"
        else:
            raise AssertionError(kind)
        names[id(node.outputs[0])] = out
    return b.graph


def single_image_features(graph_def, frames):
    """The official way: each frame fed to DecodeJpeg:0 in a TF1 Session, pool_3/_reshape:0 read."""
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            return np.stack([session.run("pool_3/_reshape:0", {"DecodeJpeg:0": frame})[0] for frame in frames])


def tgz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def vggish_values(seed: int = 5) -> dict[str, np.ndarray]:
    """Random values for every checkpoint variable of VGGish, at the official shapes."""
    rng = np.random.default_rng(seed)
    shapes = {}
    channels, height, width = 1, backbones.VGGISH_FRAMES, backbones.VGGISH_BANDS
    for name, kind, units, scope in backbones.VGGISH_LAYERS:
        if kind == "conv":
            shapes[scope] = (3, 3, channels, units)
            channels = units
        elif kind == "pool":
            height, width = (height + 1) // 2, (width + 1) // 2
        elif kind == "flatten":
            channels = height * width * channels
        elif kind in ("dense", "embedding"):
            shapes[scope] = (channels, units)
            channels = units
    values = {}
    for scope, shape in shapes.items():
        fan_in = int(np.prod(shape[:-1]))
        values[f"{scope}/weights"] = (rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in)))
        values[f"{scope}/biases"] = rng.normal(0, 0.05, shape[-1]).astype(np.float32)
    return values


def write_v1_checkpoint(path: Path, values: dict[str, np.ndarray]) -> Path:
    """A TF1 checkpoint in the V1 format, as vggish_model.ckpt is published."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.Graph().as_default():
        feeds = {name: tf.compat.v1.placeholder(tf.float32, value.shape) for name, value in values.items()}
        variables = {name: tf.compat.v1.Variable(feed, name=name) for name, feed in feeds.items()}
        saver = tf.compat.v1.train.Saver(variables, write_version=tf.compat.v1.train.SaverDef.V1)
        with tf.compat.v1.Session() as session:  # values fed, not baked into the graph: much faster
            session.run(tf.compat.v1.global_variables_initializer(), {feeds[n]: v for n, v in values.items()})
            saver.save(session, str(path), write_meta_graph=False, write_state=False)
    return path


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
    np.testing.assert_allclose(backbones.load_graphdef_inception(path)(frames), expected, atol=1e-4, rtol=1e-4)


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
    with pytest.raises(Yt8mError, match="--weights must be yt8m, keras, random or hub:HANDLE"):
        backbones.load_feature_models("imagenet")
    with pytest.raises(Yt8mError, match="--precision must be float32 or bfloat16"):
        backbones.load_feature_models("yt8m", precision="float16")


# ------------------------------------------------------------------------------------ random, keras, hub


def test_random_weights_are_marked_and_spread_the_bytes():
    models = backbones.load_feature_models("random")
    assert models.weights == "random" and not models.compatible_with_yt8m
    assert any("RANDOM" in w and "NOT YouTube-8M" in w for w in models.warnings)
    assert not models.rgb_pca.compatible_with_yt8m and not models.audio_pca.compatible_with_yt8m
    frames = random_frames(2, 72, 96, 12)
    rgb = models.inception(frames)
    # the compiled function computes exactly the Keras InceptionV3 with the same seeded weights
    model = backbones._keras_inception_model()
    backbones._randomize(model, backbones.RANDOM_SEED)
    direct = model(backbones._keras_inception_preprocess(tf.constant(frames)), training=False).numpy()
    np.testing.assert_allclose(rgb, direct, rtol=1e-4, atol=1e-4 * np.abs(direct).max())
    rgb_bytes = models.rgb_pca.apply_and_quantize(rgb)
    audio = models.vggish(np.random.default_rng(1).normal(-1, 1.5, (3, 96, 64)).astype(np.float32))
    audio_bytes = models.audio_pca.apply_and_quantize(audio)
    for quantized in (rgb_bytes, audio_bytes):
        assert len(np.unique(quantized)) > 40 and 40 < quantized.mean() < 215  # spread, not piled at one value
    assert not np.array_equal(rgb_bytes[0], rgb_bytes[1])


def test_keras_weights_offline_is_a_user_error(monkeypatch):
    import keras

    calls = []

    def offline(*args, **kwargs):
        calls.append(kwargs.get("weights"))
        if kwargs.get("weights") == "imagenet":
            raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno 101] unreachable")
        return original(*args, **kwargs)

    original = keras.applications.InceptionV3
    monkeypatch.setattr(keras.applications, "InceptionV3", offline)
    with pytest.raises(Yt8mError, match="yt8m models fetch --only keras-inception"):
        backbones.keras_inception("keras")
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
