"""Model files in the official formats with random contents: for tests and benchmarks, offline.

Each artefact is written the way the published one is: a GraphDef with the 2015 Inception
graph's node names and ops (DecodeJpeg ... BatchNormWithGlobalNormalization ... pool_3/_reshape,
old `Concat`) packed like `inception-2015-12-05.tgz`, a TF1 V1 checkpoint with VGGish's variable
names (`vggish_model.ckpt`), the YT8M PCA archive (`yt8m_pca.tgz`) and MediaPipe's MatrixData
audio PCA. `keras_inception_as_2015_graph` gives a FULL-SIZE Inception-v3 in the 2015 format
(~95 MB, like the real file), so start-up and memory can be measured on the official path
without downloading it. Contents are random: features made with them mean nothing.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from yt8m._tf import import_tensorflow_quietly
from yt8m.extractor.backbones import VGGISH_BANDS, VGGISH_FRAMES, VGGISH_LAYERS
from yt8m.extractor.backbones.keras_inception import keras_inception_model
from yt8m.extractor.backbones.keras_tools import randomize
from yt8m.pca import save_matrix_data

tf = import_tensorflow_quietly()  # this module builds TensorFlow artefacts and nothing else

FEATURE_DIM = 2048


GRAPH_2015_PRODUCER = 5  # the 2015 file predates GraphDef version 9 (BatchNormWithGlobalNormalization)


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
    model = keras_inception_model()
    randomize(model, seed)
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
    channels, height, width = 1, VGGISH_FRAMES, VGGISH_BANDS
    for name, kind, units, scope in VGGISH_LAYERS:
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


def write_official_models(
    folder: str | Path, seed: int = 0, full_size: bool = True, inception_graph=None
) -> Path:
    """A models folder with every file `--weights yt8m` needs, in the published formats.

    `full_size`: the Inception graph is the full Inception-v3 (else the tiny test graph), or
    `inception_graph` when given. Returns the folder (pass it as `models_dir`).
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    if inception_graph is None:
        inception_graph = keras_inception_as_2015_graph(seed) if full_size else tiny_inception_graph(seed)
    tgz(root / "inception-2015-12-05.tgz", {
        "classify_image_graph_def.pb": inception_graph.SerializeToString(),
        "LICENSE": b"Apache 2.0",
        "imagenet_synset_to_human_label_map.txt": b"n00000000\tthing\n",
    })
    rng = np.random.default_rng(seed + 11)
    mean = rng.normal(0.3, 0.1, (FEATURE_DIM, 1)).astype(np.float32)
    eigenvecs = np.linalg.qr(rng.standard_normal((FEATURE_DIM, 1024)))[0].T.astype(np.float32)  # rows
    eigenvals = np.sort(rng.uniform(0.001, 0.1, (1024, 1)))[::-1].astype(np.float32)
    tgz(root / "yt8m_pca.tgz", {
        "mean.npy": npy_bytes(mean), "eigenvals.npy": npy_bytes(eigenvals), "eigenvecs.npy": npy_bytes(eigenvecs),
    })
    write_v1_checkpoint(root / "vggish_model.ckpt", vggish_values(seed + 5))
    save_matrix_data(root / "vggish_mean_matrix_data.pb", rng.normal(0, 1, (128, 1)).astype(np.float32))
    save_matrix_data(root / "vggish_projection_matrix_data.pb", (rng.standard_normal((128, 128)) * 0.05).astype(np.float32))
    return root
