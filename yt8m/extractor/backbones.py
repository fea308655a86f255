"""The feature networks: Inception-v3 (frames -> 2048) and VGGish (log-mel -> 128), batched and compiled.

Weight kinds (`load_feature_models(weights=...)`):

- `yt8m`: what the YT8M dataset was made with (REFERENCE.md §3-4). Inception-v3 is the 2015
  GraphDef `classify_image_graph_def.pb`; VGGish is a Keras 3 model holding the official TF1
  checkpoint's variables (`vggish/conv1/weights` ...); the PCAs are YT8M's own.
- `keras`: Keras InceptionV3 with its ImageNet weights (global average pool, its own
  preprocessing). Different features: fine for a custom dataset, not for YT8M-trained models.
- `hub:HANDLE`: a TF Hub image feature-vector SavedModel (URL or local folder; float images in
  [0, 1], resized to the model's input size). TF Hub's `google/vggish/1` takes a waveform instead
  of log-mel examples, so it is offered separately (`load_hub_vggish`); `keras` and `hub:` use the
  official VGGish checkpoint for audio.
- `random`: the same architectures with fixed-seed random weights and random PCAs calibrated to
  spread the quantized bytes: smoke tests and benchmarks; never YT8M-compatible.

Every network runs as one TensorFlow concrete function traced once at load time (input signature
with a free batch size, so no retracing). Batch norms are folded into the preceding convolutions
(Keras InceptionV3 and the 2015 graph alike) so that oneDNN runs convolution + bias + ReLU as one
op. The 2015 graph predates GraphDef version 9: its `BatchNormWithGlobalNormalization` ops no
longer run in TF2 functions at all, so folding them (same arithmetic, float32 rounding
differences only) is also what makes the graph importable.

Batching the 2015 graph: its own preprocessing is `DecodeJpeg:0` (uint8 HxWx3) -> Cast ->
ExpandDims -> ResizeBilinear(299x299) -> Sub 128 -> Mul 1/128 for one image. The batch (cast to
float) enters at `ExpandDims:0`, so the graph's own resize op (with its own attributes) and
normalisation constants run on the whole batch; `pool_3:0` is read and reshaped to [B, 2048]
(`pool_3/_reshape` hard-codes a batch of 1).

`precision="bfloat16"` runs the networks in bfloat16 (faster on CPUs with AVX512-BF16 or AMX):
Keras models are rebuilt under a bfloat16 dtype policy; the 2015 graph has its network constants
and ops rewritten to bfloat16 after the (float32) resize and normalisation. Hub
SavedModels run as saved (float32 only).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yt8m.core import Yt8mError
from yt8m.extractor import weights as weights_lib
from yt8m.pca import Pca, load_matrix_data_pair, load_pca, load_vggish_npz, load_yt8m_npy

INCEPTION_NAME = "inception-v3"
VGGISH_NAME = "vggish"
INCEPTION_DIM = 2048
VGGISH_DIM = 128
INCEPTION_IMAGE_SIZE = 299
VGGISH_FRAMES = 96
VGGISH_BANDS = 64
VGGISH_SAMPLE_RATE = 16000

WEIGHTS_YT8M = "yt8m"
WEIGHTS_KERAS = "keras"
WEIGHTS_RANDOM = "random"
HUB_PREFIX = "hub:"
WEIGHT_KINDS = (WEIGHTS_YT8M, WEIGHTS_KERAS, WEIGHTS_RANDOM)
FLOAT32 = "float32"
BFLOAT16 = "bfloat16"
PRECISIONS = (FLOAT32, BFLOAT16)

# The 2015 graph's tensors (REFERENCE.md §3).
GRAPH_INPUT_NODE = "ExpandDims"  # [1, H, W, 3] float: a float batch [B, H, W, 3] goes in here
GRAPH_NORMALIZED_NODE = "Mul"  # [B, 299, 299, 3] after resize and (x - 128) / 128
GRAPH_FEATURE_NODE = "pool_3"  # [B, 1, 1, 2048]
GRAPH_BATCH_NORM_OP = "BatchNormWithGlobalNormalization"
GRAPH_IMPORT_SCOPE = "inception"

KERAS_INPUT_SCALE = 127.5  # keras.applications.inception_v3.preprocess_input: x / 127.5 - 1
HUB_IMAGE_SCALE = 255.0  # TF Hub image models take floats in [0, 1]
HUB_DEFAULT_IMAGE_SIZE = INCEPTION_IMAGE_SIZE

# VGGish (REFERENCE.md §4, vggish_slim): (Keras layer, kind, units, checkpoint scope).
# 3x3 convolutions stride 1 and 2x2 max pools stride 2, all 'SAME'; ReLU everywhere except the
# 128-d embedding, which is fc2's pre-activation.
VGGISH_LAYERS: tuple[tuple[str, str, int, str], ...] = (
    ("conv1", "conv", 64, "vggish/conv1"),
    ("pool1", "pool", 0, ""),
    ("conv2", "conv", 128, "vggish/conv2"),
    ("pool2", "pool", 0, ""),
    ("conv3_1", "conv", 256, "vggish/conv3/conv3_1"),
    ("conv3_2", "conv", 256, "vggish/conv3/conv3_2"),
    ("pool3", "pool", 0, ""),
    ("conv4_1", "conv", 512, "vggish/conv4/conv4_1"),
    ("conv4_2", "conv", 512, "vggish/conv4/conv4_2"),
    ("pool4", "pool", 0, ""),
    ("flatten", "flatten", 0, ""),
    ("fc1_1", "dense", 4096, "vggish/fc1/fc1_1"),
    ("fc1_2", "dense", 4096, "vggish/fc1/fc1_2"),
    ("fc2", "embedding", VGGISH_DIM, "vggish/fc2"),
)
VGGISH_KERNEL_SUFFIX = "weights"
VGGISH_BIAS_SUFFIX = "biases"

# Random weights and random PCAs: fixed seeds, so every run gives the same features.
RANDOM_SEED = 8
RANDOM_PCA_STD = 0.5  # target std of each random-PCA output: quantized bytes spread over ~[60, 190]
RANDOM_CALIBRATION_COUNT = 8
RANDOM_WARNING = (
    "weights=random: Inception-v3 and VGGish have RANDOM weights and the PCAs are random projections; "
    "these features are NOT YouTube-8M features (smoke tests and benchmarks only)"
)
AUDIO_PCA_FALLBACK_WARNING = (
    "audio PCA: using AudioSet's vggish_pca_params.npz because MediaPipe's YT8M audio PCA "
    "(vggish_mean/projection_matrix_data.pb) is missing; records are marked not YT8M-compatible "
    "(get it with `yt8m models fetch --only mediapipe-pca`)"
)


class Backbone:
    """A feature network as one compiled function: a batch in, float32 [B, output_dim] out.

    Inception: uint8 RGB frames [B, H, W, 3] (any H, W; one size per call). VGGish: float32
    log-mel examples [B, 96, 64].
    """

    def __init__(
        self,
        name: str,
        output_dim: int,
        weights: str,
        function: Callable[[Any], Any],
        input_dtype: str,
        input_shape: tuple[int | None, ...],
        precision: str = FLOAT32,
        source: str = "",
        owner: Any = None,
    ) -> None:
        self.name = name
        self.output_dim = int(output_dim)
        self.weights = weights
        self.precision = precision
        self.source = source
        self.input_dtype = np.dtype(input_dtype)
        self.input_shape = input_shape  # per example; None = any size
        self._function = function
        self._owner = owner  # the Keras model or SavedModel whose variables `function` reads

    def _check(self, batch: np.ndarray) -> np.ndarray:
        array = np.asarray(batch)
        if self.input_dtype == np.uint8 and array.dtype != np.uint8:
            raise ValueError(f"{self.name} takes uint8 RGB frames, got {array.dtype}")
        shape = tuple(array.shape[1:])
        ok = array.ndim == len(self.input_shape) + 1 and all(
            want is None or want == got for want, got in zip(self.input_shape, shape)
        )
        if not ok:
            wanted = ", ".join("any" if d is None else str(d) for d in self.input_shape)
            raise ValueError(f"{self.name} takes a batch [B, {wanted}], got shape {list(array.shape)}")
        return np.ascontiguousarray(array, dtype=self.input_dtype)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        array = self._check(batch)
        if array.shape[0] == 0:
            return np.zeros((0, self.output_dim), dtype=np.float32)
        import tensorflow as tf

        return np.asarray(self._function(tf.convert_to_tensor(array)), dtype=np.float32)

    def __repr__(self) -> str:
        return f"Backbone({self.name}, {self.output_dim}-d, weights={self.weights}, {self.precision})"


@dataclass
class FeatureModels:
    """Everything the extractor runs: the networks, their PCAs, and whether the result is YT8M's."""

    inception: Backbone
    vggish: Backbone | None
    rgb_pca: Pca
    audio_pca: Pca | None
    weights: str
    compatible_with_yt8m: bool
    warnings: list[str] = field(default_factory=list)
    precision: str = FLOAT32


# ---------------------------------------------------------------------------------------------
# helpers


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise Yt8mError(f"--precision must be {' or '.join(PRECISIONS)}, got {precision!r}")
    return precision


def parse_weights(weights: str) -> tuple[str, str]:
    """`(kind, hub handle)` for a `--weights` value; Yt8mError for anything else."""
    if weights.startswith(HUB_PREFIX):
        handle = weights[len(HUB_PREFIX):].strip()
        if not handle:
            raise Yt8mError("--weights hub: needs a handle, e.g. hub:https://tfhub.dev/... or hub:/path/to/saved_model")
        return "hub", handle
    if weights not in WEIGHT_KINDS:
        raise Yt8mError(f"--weights must be {', '.join(WEIGHT_KINDS)} or hub:HANDLE, got {weights!r}")
    return weights, ""


@contextlib.contextmanager
def _dtype_policy(precision: str) -> Iterator[None]:
    """Build Keras layers under `precision` (bfloat16: variables and math in bfloat16)."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _randomize(model: Any, seed: int) -> None:
    """Deterministic He-normal kernels (biases and batch-norm statistics keep their neutral defaults).

    He scaling keeps activations O(1) through the ReLU stack, so random features neither vanish
    nor overflow, in float32 or bfloat16.
    """
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(int(d) for d in variable.shape)
        if len(shape) < 2:
            continue
        fan_in = int(np.prod(shape[:-1]))
        variable.assign(rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in)))


def _compile_keras(
    model: Any,
    preprocess: Callable[[Any], Any],
    input_signature: Any,
) -> Callable[[Any], Any]:
    """One concrete function running `model(preprocess(batch))`, traced now (no retracing later).

    The weights stay variables: baking ~100-300 MB of constants into the graph makes tracing and
    grappler take tens of seconds for no speed gain once batch norms are folded (`_fold_keras_batch_norms`).
    The caller keeps `model` alive (functions hold their variables weakly).
    """
    import tensorflow as tf

    @tf.function(input_signature=[input_signature], autograph=False)
    def run(batch):
        return tf.cast(model(preprocess(batch), training=False), tf.float32)

    return run.get_concrete_function()


def _bfloat16_twin(model: Any, build: Callable[[], Any]) -> Any:
    """`build()` under a bfloat16 policy, holding `model`'s weights."""
    with _dtype_policy(BFLOAT16):
        twin = build()
    twin.set_weights(model.get_weights())
    return twin


def _fold_keras_batch_norms(model: Any, precision: str = FLOAT32) -> Any:
    """A copy of a Keras functional model with every Conv2D -> BatchNormalization pair merged.

    The convolution gets `kernel * s` and a bias `(bias - mean) * s + beta` with
    `s = gamma / sqrt(var + eps)` (computed in float64): the same inference arithmetic in one op
    that oneDNN fuses with the ReLU. Layers are rebuilt in `precision`.
    """
    import keras

    layers = keras.layers
    consumers: dict[int, list[Any]] = {}
    for layer in model.layers:
        if not isinstance(layer, layers.InputLayer):
            for tensor in layer.input if isinstance(layer.input, list) else [layer.input]:
                consumers.setdefault(id(tensor), []).append(layer)
    mapped: dict[int, Any] = {}
    merged: set[int] = set()
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            mapped[id(layer.output)] = keras.Input(shape=layer.output.shape[1:], dtype=layer.output.dtype, name=layer.name)
            continue
        if id(layer) in merged:
            continue
        inputs = [mapped[id(t)] for t in (layer.input if isinstance(layer.input, list) else [layer.input])]
        args = inputs if isinstance(layer.input, list) else inputs[0]
        config = dict(layer.get_config(), dtype=precision)
        users = consumers.get(id(layer.output), [])
        if (
            isinstance(layer, layers.Conv2D)
            and config.get("activation") in (None, "linear")
            and len(users) == 1
            and isinstance(users[0], layers.BatchNormalization)
        ):
            norm = users[0]
            conv = layers.Conv2D.from_config(dict(config, use_bias=True))
            mapped[id(norm.output)] = conv(args)
            kernel = layer.kernel.numpy().astype(np.float64)
            bias = layer.bias.numpy().astype(np.float64) if layer.use_bias else 0.0
            gamma = norm.gamma.numpy().astype(np.float64) if norm.scale else 1.0
            beta = norm.beta.numpy().astype(np.float64) if norm.center else 0.0
            scale = gamma / np.sqrt(norm.moving_variance.numpy().astype(np.float64) + norm.epsilon)
            shift = (bias - norm.moving_mean.numpy().astype(np.float64)) * scale + beta
            conv.set_weights([(kernel * scale).astype(np.float32), np.asarray(shift, np.float32)])
            merged.add(id(norm))
            continue
        clone = type(layer).from_config(config)
        mapped[id(layer.output)] = clone(args)
        if layer.weights:
            clone.set_weights(layer.get_weights())
    return keras.Model([mapped[id(t)] for t in model.inputs], [mapped[id(t)] for t in model.outputs], name=model.name)


# ---------------------------------------------------------------------------------------------
# Inception-v3: the 2015 GraphDef


def _node_name(reference: str) -> str:
    """`^name` (control input) or `name:1` -> `name`."""
    return reference.lstrip("^").split(":")[0]


def _read_graph_def(path: Path) -> Any:
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(Path(path).read_bytes())
    except OSError as error:
        raise Yt8mError(f"{path}: cannot read ({error.strerror or error})") from None
    except Exception as error:  # protobuf's DecodeError
        raise Yt8mError(f"{path}: not a TensorFlow GraphDef ({error})") from None
    return graph_def


def _reachable(nodes: dict[str, Any], start: str, stop: str, path: Path) -> set[str]:
    """Names of the nodes `start` depends on, not looking past `stop`."""
    keep: set[str] = set()
    stack = [start]
    while stack:
        name = stack.pop()
        if name in keep:
            continue
        if name not in nodes:
            raise Yt8mError(f"{path}: the graph refers to a missing node {name!r}")
        keep.add(name)
        if name != stop:
            stack.extend(_node_name(ref) for ref in nodes[name].input)
    return keep


def _const_array(node: Any, path: Path) -> np.ndarray:
    import tensorflow as tf

    if node.op != "Const":
        raise Yt8mError(f"{path}: expected a constant for {node.name}, found a {node.op} op")
    return tf.make_ndarray(node.attr["value"].tensor)


def _set_const(node: Any, array: np.ndarray) -> None:
    import tensorflow as tf

    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(array))
    node.attr["dtype"].type = tf.as_dtype(array.dtype).as_datatype_enum


def _new_node(graph_def: Any, name: str, op: str, inputs: list[str]) -> Any:
    node = graph_def.node.add()
    node.name, node.op = name, op
    node.input.extend(inputs)
    return node


def _fold_graph_batch_norms(graph_def: Any, path: Path) -> Any:
    """Replace each `BatchNormWithGlobalNormalization` by the same affine map in current ops.

    The op computes `(t - mean) / sqrt(var + eps) * gamma + beta` (gamma only when
    scale_after_normalization). When `t` comes straight from a Conv2D with a constant filter used
    nowhere else, the scale goes into the filter and the op becomes a BiasAdd (what oneDNN fuses);
    otherwise it becomes Mul + BiasAdd.
    """
    import tensorflow as tf

    out = tf.compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    nodes = {node.name: node for node in out.node}
    uses: dict[str, int] = {}
    for node in out.node:
        for ref in node.input:
            uses[_node_name(ref)] = uses.get(_node_name(ref), 0) + 1
    float_type = tf.float32.as_datatype_enum
    for node in list(out.node):
        if node.op != GRAPH_BATCH_NORM_OP:
            continue
        if len(node.input) != 5:
            raise Yt8mError(f"{path}: {node.name} has {len(node.input)} inputs, expected 5")
        source, mean, variance, beta, gamma = (ref for ref in node.input)
        mean_a, var_a, beta_a, gamma_a = (
            _const_array(nodes[_node_name(ref)], path).astype(np.float64) for ref in (mean, variance, beta, gamma)
        )
        scale = 1.0 / np.sqrt(var_a + node.attr["variance_epsilon"].f)
        if node.attr["scale_after_normalization"].b:
            scale = scale * gamma_a
        shift = (beta_a - mean_a * scale).astype(np.float32)
        producer = nodes.get(_node_name(source))
        filter_node = nodes.get(_node_name(producer.input[1])) if producer is not None and producer.op == "Conv2D" else None
        foldable = (
            filter_node is not None
            and filter_node.op == "Const"
            and uses.get(producer.name, 0) == 1
            and uses.get(filter_node.name, 0) == 1
            and ("data_format" not in producer.attr or producer.attr["data_format"].s == b"NHWC")
        )
        shift_node = _new_node(out, f"{node.name}/folded_shift", "Const", [])
        _set_const(shift_node, shift)
        bias_input = source
        if foldable:
            kernel = _const_array(filter_node, path).astype(np.float64)
            _set_const(filter_node, (kernel * scale).astype(np.float32))
        else:
            scale_node = _new_node(out, f"{node.name}/folded_scale", "Const", [])
            _set_const(scale_node, scale.astype(np.float32))
            multiply = _new_node(out, f"{node.name}/folded_mul", "Mul", [source, scale_node.name])
            multiply.attr["T"].type = float_type
            bias_input = multiply.name
        name = node.name
        node.Clear()
        node.name, node.op = name, "BiasAdd"
        node.input.extend([bias_input, shift_node.name])
        node.attr["T"].type = float_type
    return out


def _to_bfloat16(graph_def: Any, path: Path) -> Any:
    """The network part (everything after `Mul`) in bfloat16; resize and normalisation stay float32."""
    import tensorflow as tf

    nodes = {node.name: node for node in graph_def.node}
    preprocessing = _reachable(nodes, GRAPH_NORMALIZED_NODE, "", path)
    float_type, bf16_type = tf.float32.as_datatype_enum, tf.bfloat16.as_datatype_enum
    out = tf.compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    cast_name = f"{GRAPH_NORMALIZED_NODE}/to_bfloat16"
    for node in out.node:
        if node.name in preprocessing:
            continue
        for i, ref in enumerate(node.input):
            if _node_name(ref) == GRAPH_NORMALIZED_NODE:
                node.input[i] = cast_name
        for key in node.attr:
            if node.attr[key].WhichOneof("value") == "type" and node.attr[key].type == float_type:
                node.attr[key].type = bf16_type
        if node.op == "Const" and node.attr["dtype"].type == bf16_type:
            value = tf.make_ndarray(node.attr["value"].tensor) if node.attr["value"].tensor.dtype == float_type else None
            if value is not None:
                node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(tf.constant(value, dtype=tf.bfloat16)))
    cast = _new_node(out, cast_name, "Cast", [GRAPH_NORMALIZED_NODE])
    cast.attr["SrcT"].type = float_type
    cast.attr["DstT"].type = bf16_type
    return out


def prepare_inception_graph(graph_def: Any, path: Path, precision: str = FLOAT32) -> Any:
    """The part of the 2015 graph from `ExpandDims` to `pool_3`, made runnable (and batchable) in TF2.

    `ExpandDims` becomes a float placeholder (the batch), batch norms are folded, and for
    bfloat16 the network after the normalisation is converted.
    """
    import tensorflow as tf

    nodes = {node.name: node for node in graph_def.node}
    for required in (GRAPH_INPUT_NODE, GRAPH_NORMALIZED_NODE, GRAPH_FEATURE_NODE):
        if required not in nodes:
            raise Yt8mError(
                f"{path}: no {required!r} node; not the 2015 Inception-v3 graph ({weights_lib.INCEPTION_GRAPH_FILE})"
            )
    keep = _reachable(nodes, GRAPH_FEATURE_NODE, GRAPH_INPUT_NODE, path)
    if GRAPH_NORMALIZED_NODE not in keep or GRAPH_INPUT_NODE not in keep:
        raise Yt8mError(f"{path}: {GRAPH_FEATURE_NODE} does not depend on {GRAPH_INPUT_NODE} through {GRAPH_NORMALIZED_NODE}")
    sub = tf.compat.v1.GraphDef()
    sub.versions.CopyFrom(graph_def.versions)
    for node in graph_def.node:
        if node.name not in keep:
            continue
        if node.name == GRAPH_INPUT_NODE:
            placeholder = _new_node(sub, GRAPH_INPUT_NODE, "Placeholder", [])
            placeholder.attr["dtype"].type = tf.float32.as_datatype_enum
        else:
            sub.node.add().CopyFrom(node)
    sub = _fold_graph_batch_norms(sub, path)
    pruned_nodes = {node.name: node for node in sub.node}
    keep = _reachable(pruned_nodes, GRAPH_FEATURE_NODE, GRAPH_INPUT_NODE, path)
    pruned = tf.compat.v1.GraphDef()
    pruned.versions.CopyFrom(sub.versions)
    pruned.node.extend(node for node in sub.node if node.name in keep)
    if precision == BFLOAT16:
        pruned = _to_bfloat16(pruned, path)
    return pruned


def load_graphdef_inception(path: str | os.PathLike, precision: str = FLOAT32) -> Backbone:
    """Inception-v3 from `classify_image_graph_def.pb`, batched: uint8 [B, H, W, 3] -> float32 [B, 2048]."""
    import tensorflow as tf

    path = Path(path)
    _check_precision(precision)
    graph_def = prepare_inception_graph(_read_graph_def(path), path, precision)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)], autograph=False)
    def run(frames):
        (pooled,) = tf.graph_util.import_graph_def(
            graph_def,
            input_map={f"{GRAPH_INPUT_NODE}:0": tf.cast(frames, tf.float32)},
            return_elements=[f"{GRAPH_FEATURE_NODE}:0"],
            name=GRAPH_IMPORT_SCOPE,
        )
        if pooled.shape.rank != 4 or pooled.shape[-1] is None:
            raise ValueError(f"{GRAPH_FEATURE_NODE} has shape {pooled.shape}, expected [B, 1, 1, D]")
        return tf.reshape(tf.cast(pooled, tf.float32), [-1, pooled.shape[-1]])

    try:
        concrete = run.get_concrete_function()
    except (ValueError, TypeError, tf.errors.OpError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Yt8mError(f"{path}: cannot import the Inception graph into TensorFlow {tf.__version__} ({first})") from None
    output_dim = int(concrete.structured_outputs.shape[-1])
    return Backbone(
        INCEPTION_NAME, output_dim, WEIGHTS_YT8M, concrete, "uint8", (None, None, 3), precision, source=str(path)
    )


# ---------------------------------------------------------------------------------------------
# Inception-v3: Keras (ImageNet or random weights)


def _keras_inception_model() -> Any:
    import keras

    return keras.applications.InceptionV3(
        include_top=False, weights=None, pooling="avg", input_shape=(INCEPTION_IMAGE_SIZE, INCEPTION_IMAGE_SIZE, 3)
    )


def _keras_inception_preprocess(frames: Any) -> Any:
    import tensorflow as tf

    images = tf.image.resize(tf.cast(frames, tf.float32), (INCEPTION_IMAGE_SIZE, INCEPTION_IMAGE_SIZE))
    return images / KERAS_INPUT_SCALE - 1.0


def keras_inception(
    weights: str = WEIGHTS_KERAS,
    precision: str = FLOAT32,
    models_dir: str | os.PathLike | None = None,
    seed: int = RANDOM_SEED,
) -> Backbone:
    """Keras InceptionV3 (global average pool, 2048-d) with ImageNet (`keras`) or random weights.

    ImageNet weights come from `models_dir` or the cache (`yt8m models fetch --only
    keras-inception`), else Keras downloads them (~/.keras); offline, a Yt8mError says how to get them.
    """
    import tensorflow as tf

    _check_precision(precision)
    model = _keras_inception_model()
    source = "random (seed %d)" % seed
    if weights == WEIGHTS_RANDOM:
        _randomize(model, seed)
    elif weights == WEIGHTS_KERAS:
        source = _load_keras_inception_weights(model, models_dir)
    else:
        raise ValueError(f"keras_inception: weights must be keras or random, got {weights!r}")
    model = _fold_keras_batch_norms(model, precision)
    signature = tf.TensorSpec([None, None, None, 3], tf.uint8)
    function = _compile_keras(model, _keras_inception_preprocess, signature)
    return Backbone(
        INCEPTION_NAME, INCEPTION_DIM, weights, function, "uint8", (None, None, 3), precision, source, owner=model
    )


def _load_keras_inception_weights(model: Any, models_dir: str | os.PathLike | None) -> str:
    """Load the ImageNet weights into `model`: a local copy if there is one, else Keras' download."""
    local = None
    for directory in ([models_dir] if models_dir is not None else []) + [None]:
        if weights_lib.is_present(weights_lib.KERAS_INCEPTION, directory):
            local = weights_lib.locate(weights_lib.KERAS_INCEPTION, directory)
            break
    if local is not None:
        try:
            model.load_weights(str(local))
        except Exception as error:  # h5py / Keras errors for a wrong or damaged file
            raise Yt8mError(f"{local}: cannot load Keras InceptionV3 weights ({error})") from None
        return str(local)
    import keras

    try:
        imagenet = keras.applications.InceptionV3(
            include_top=False, weights="imagenet", pooling="avg",
            input_shape=(INCEPTION_IMAGE_SIZE, INCEPTION_IMAGE_SIZE, 3),
        )
    except Exception as error:  # Keras raises a bare Exception for a failed download
        raise Yt8mError(
            f"cannot get the Keras InceptionV3 ImageNet weights ({str(error).splitlines()[0]}); run "
            f"`yt8m models fetch --only {weights_lib.KERAS_INCEPTION}` or put {weights_lib.KERAS_INCEPTION_FILE} "
            f"in {weights_lib.MODELS_DIR_OPTION}"
        ) from None
    model.set_weights(imagenet.get_weights())
    return "keras.applications ImageNet"


# ---------------------------------------------------------------------------------------------
# TF Hub


def _resolve_hub(handle: str) -> str:
    """A local SavedModel folder for `handle` (a folder already, or downloaded by tensorflow_hub)."""
    local = Path(handle).expanduser()
    if local.is_dir():
        return str(local)
    if "://" not in handle:
        raise Yt8mError(f"{handle}: no such SavedModel folder (hub: takes a TF Hub URL or a local folder)")
    try:
        import tensorflow_hub as hub

        return hub.resolve(handle)
    except Exception as error:  # network errors of every kind, from tensorflow_hub
        raise Yt8mError(
            f"cannot download TF Hub model {handle} ({str(error).splitlines()[0] if str(error) else type(error).__name__}); "
            "download it where there is internet and pass hub:/path/to/the/folder"
        ) from None


def _load_saved_model(handle: str) -> Any:
    import tensorflow as tf

    path = _resolve_hub(handle)
    try:
        return tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise Yt8mError(f"{handle}: cannot load the SavedModel ({str(error).splitlines()[0]})") from None


def _saved_model_callable(obj: Any, handle: str) -> Callable[[Any], Any]:
    if callable(obj):
        return obj
    signatures = getattr(obj, "signatures", {})
    if "serving_default" in signatures:
        signature = signatures["serving_default"]
        (key,) = list(signature.structured_input_signature[1]) or ["inputs"]
        return lambda x: signature(**{key: x})
    raise Yt8mError(f"{handle}: the SavedModel is not callable and has no serving_default signature")


def _first_input_shape(obj: Any) -> list[int | None] | None:
    """The static shape of the first input of a restored SavedModel's call, if it says."""
    candidates = []
    call = getattr(obj, "__call__", None)
    for concrete in getattr(call, "concrete_functions", []) or []:
        candidates.append(concrete.structured_input_signature)
    for signature in getattr(obj, "signatures", {}).values():
        candidates.append(signature.structured_input_signature)
    for args, kwargs in candidates:
        specs = list(args) + list(kwargs.values())
        for spec in specs:
            shape = getattr(spec, "shape", None)
            if shape is not None and shape.rank is not None:
                return shape.as_list()
    return None


def _single_output(outputs: Any, handle: str) -> Any:
    if isinstance(outputs, dict):
        if len(outputs) == 1:
            return next(iter(outputs.values()))
        for key in ("default", "feature_vector", "output_0", "embedding"):
            if key in outputs:
                return outputs[key]
        raise Yt8mError(f"{handle}: the SavedModel returns several outputs {sorted(outputs)}; cannot tell the features")
    if isinstance(outputs, (list, tuple)):
        return outputs[0]
    return outputs


def load_hub_image_backbone(handle: str, precision: str = FLOAT32) -> Backbone:
    """A TF Hub image feature-vector model: frames -> float [0, 1], resized to its input size -> [B, D].

    The input size is read from the SavedModel's signature when it is static, else 299.
    """
    import tensorflow as tf

    if _check_precision(precision) != FLOAT32:
        raise Yt8mError("--precision bfloat16 is not available for hub: models (a SavedModel runs as it was saved)")
    obj = _load_saved_model(handle)
    call = _saved_model_callable(obj, handle)
    shape = _first_input_shape(obj)
    height = shape[1] if shape and len(shape) == 4 and shape[1] else HUB_DEFAULT_IMAGE_SIZE
    width = shape[2] if shape and len(shape) == 4 and shape[2] else HUB_DEFAULT_IMAGE_SIZE

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)], autograph=False)
    def run(frames):
        images = tf.image.resize(tf.cast(frames, tf.float32) / HUB_IMAGE_SCALE, (height, width))
        features = tf.cast(_single_output(call(images), handle), tf.float32)
        return tf.reshape(features, [tf.shape(features)[0], -1])

    try:
        concrete = run.get_concrete_function()
        probe = concrete(tf.zeros([1, height, width, 3], tf.uint8))
    except (ValueError, TypeError, tf.errors.OpError) as error:
        raise Yt8mError(f"{handle}: does not take images [B, {height}, {width}, 3] ({str(error).splitlines()[0]})") from None
    return Backbone(
        INCEPTION_NAME, int(probe.shape[-1]), HUB_PREFIX + handle, concrete, "uint8", (None, None, 3), precision,
        handle, owner=obj,
    )


class WaveformBackbone:
    """TF Hub's `google/vggish/1` interface: a 16 kHz mono waveform in [-1, 1] -> float32 [N, 128].

    That model frames the audio itself (0.96 s examples, 0.96 s hop) and returns raw embeddings
    (no PCA), so it cannot replace the log-mel `Backbone` the extractor batches across videos; it
    is offered for users who want those embeddings directly.
    """

    def __init__(self, handle: str, function: Callable[[Any], Any], keepalive: Any) -> None:
        self.name = VGGISH_NAME
        self.weights = HUB_PREFIX + handle
        self.output_dim = VGGISH_DIM
        self.sample_rate = VGGISH_SAMPLE_RATE
        self._function = function
        self._keepalive = keepalive

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        array = np.asarray(waveform, dtype=np.float32)
        if array.ndim != 1:
            raise ValueError(f"{self.weights} takes a 1-D waveform, got shape {list(array.shape)}")
        return np.asarray(self._function(tf.convert_to_tensor(array)), dtype=np.float32).reshape(-1, self.output_dim)


def load_hub_vggish(handle: str) -> WaveformBackbone:
    """Load TF Hub's VGGish (`https://tfhub.dev/google/vggish/1`) or a local SavedModel with its interface."""
    import tensorflow as tf

    obj = _load_saved_model(handle)
    call = _saved_model_callable(obj, handle)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)], autograph=False)
    def run(waveform):
        return tf.cast(_single_output(call(waveform), handle), tf.float32)

    try:
        concrete = run.get_concrete_function()
    except (ValueError, TypeError, tf.errors.OpError) as error:
        raise Yt8mError(f"{handle}: does not take a 1-D waveform ({str(error).splitlines()[0]})") from None
    return WaveformBackbone(handle, concrete, obj)


# ---------------------------------------------------------------------------------------------
# VGGish


def build_vggish_model() -> Any:
    """VGGish as a Keras 3 model: log-mel [B, 96, 64] -> 128-d embedding (fc2 pre-activation).

    Layers are named after the checkpoint scopes (`conv3_1` holds `vggish/conv3/conv3_1/*`).
    """
    import keras

    layers = keras.layers
    inputs = keras.Input((VGGISH_FRAMES, VGGISH_BANDS), dtype="float32", name="log_mel")
    x = layers.Reshape((VGGISH_FRAMES, VGGISH_BANDS, 1), name="to_image")(inputs)
    for name, kind, units, _ in VGGISH_LAYERS:
        if kind == "conv":
            x = layers.Conv2D(units, 3, strides=1, padding="same", activation="relu", name=name)(x)
        elif kind == "pool":
            x = layers.MaxPooling2D(2, strides=2, padding="same", name=name)(x)
        elif kind == "flatten":
            x = layers.Flatten(name=name)(x)  # row-major over (time, frequency, channel), as slim.flatten
        else:
            x = layers.Dense(units, activation="relu" if kind == "dense" else None, name=name)(x)
    return keras.Model(inputs, x, name=VGGISH_NAME)


def load_vggish_checkpoint(model: Any, path: str | os.PathLike) -> None:
    """Assign the official checkpoint's variables (`vggish/conv1/weights` ...) to `model`'s layers.

    Reads TF1 (V1, as published) and V2 checkpoints; a missing variable or a wrong shape is a
    Yt8mError naming the file and the variable.
    """
    import tensorflow as tf

    path = Path(path)
    try:
        reader = tf.train.load_checkpoint(str(path))
        shapes = reader.get_variable_to_shape_map()
    except (ValueError, tf.errors.OpError) as error:
        raise Yt8mError(f"{path}: not a readable TensorFlow checkpoint ({str(error).splitlines()[0]})") from None
    for name, kind, _, scope in VGGISH_LAYERS:
        if not scope:
            continue
        layer = model.get_layer(name)
        values = []
        for suffix, variable in ((VGGISH_KERNEL_SUFFIX, layer.kernel), (VGGISH_BIAS_SUFFIX, layer.bias)):
            key = f"{scope}/{suffix}"
            if key not in shapes:
                raise Yt8mError(f"{path}: no variable {key} (not a VGGish checkpoint?)")
            if list(shapes[key]) != list(variable.shape):
                raise Yt8mError(f"{path}: {key} has shape {list(shapes[key])}, VGGish needs {list(variable.shape)}")
            values.append(reader.get_tensor(key))
        layer.set_weights(values)


def _vggish_preprocess(examples: Any) -> Any:
    return examples


def keras_vggish(
    checkpoint: str | os.PathLike | None = None,
    precision: str = FLOAT32,
    seed: int = RANDOM_SEED,
) -> Backbone:
    """VGGish with the checkpoint's weights (`checkpoint` given) or fixed-seed random ones."""
    import tensorflow as tf

    _check_precision(precision)
    model = build_vggish_model()
    if checkpoint is None:
        _randomize(model, seed + 1)
        weights, source = WEIGHTS_RANDOM, "random (seed %d)" % (seed + 1)
    else:
        load_vggish_checkpoint(model, checkpoint)
        weights, source = WEIGHTS_YT8M, str(checkpoint)
    if precision == BFLOAT16:
        model = _bfloat16_twin(model, build_vggish_model)
    signature = tf.TensorSpec([None, VGGISH_FRAMES, VGGISH_BANDS], tf.float32)
    function = _compile_keras(model, _vggish_preprocess, signature)
    return Backbone(
        VGGISH_NAME, VGGISH_DIM, weights, function, "float32", (VGGISH_FRAMES, VGGISH_BANDS), precision, source,
        owner=model,
    )


# ---------------------------------------------------------------------------------------------
# PCAs


def calibration_frames(count: int = RANDOM_CALIBRATION_COUNT, seed: int = RANDOM_SEED) -> np.ndarray:
    """Deterministic uint8 frames [count, 120, 160, 3]: noise, gradients and flat colours."""
    rng = np.random.default_rng(seed)
    height, width = 120, 160
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    frames = []
    for i in range(count):
        if i % 3 == 0:
            frame = rng.integers(0, 256, (height, width, 3))
        elif i % 3 == 1:
            frame = np.broadcast_to(ramp * rng.uniform(0.2, 1.0, 3), (height, width, 3))
        else:
            frame = np.broadcast_to(rng.integers(0, 256, 3), (height, width, 3))
        frames.append(np.asarray(frame, dtype=np.uint8))
    return np.stack(frames)


def calibration_log_mel(count: int = RANDOM_CALIBRATION_COUNT, seed: int = RANDOM_SEED) -> np.ndarray:
    """Deterministic log-mel examples [count, 96, 64] in the range real audio gives (log(0.01) .. ~3)."""
    rng = np.random.default_rng(seed)
    tilt = np.linspace(1.0, -3.0, VGGISH_BANDS, dtype=np.float32)[None, :]
    examples = rng.normal(0.0, 1.0, (count, VGGISH_FRAMES, VGGISH_BANDS)).astype(np.float32) + tilt
    return np.clip(examples, np.log(0.01), 3.0).astype(np.float32)


def random_pca(features: np.ndarray, out_dim: int, seed: int, source: str) -> Pca:
    """A fixed-seed random orthonormal projection, each output scaled to std RANDOM_PCA_STD on `features`.

    Stands in for a PCA with random weights: the quantized bytes spread over the range instead of
    piling up at one value, so downstream code sees realistic data.
    """
    features = np.asarray(features, dtype=np.float64)
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((features.shape[1], out_dim)))
    mean = features.mean(axis=0)
    spread = ((features - mean) @ basis).std(axis=0)
    floor = max(float(np.median(spread)) * 1e-3, 1e-12)
    projection = basis * (RANDOM_PCA_STD / np.maximum(spread, floor))
    return Pca(mean=mean, projection=projection, source=source, compatible_with_yt8m=False)


def _user_pca(path: str | os.PathLike, backbone: Backbone, what: str) -> Pca:
    pca = load_pca(path)
    if pca.input_dim != backbone.output_dim:
        raise Yt8mError(
            f"{path}: the {what} PCA takes {pca.input_dim}-d features but {backbone.name} "
            f"({backbone.weights}) gives {backbone.output_dim}"
        )
    return pca


def official_rgb_pca(models_dir: str | os.PathLike | None = None) -> Pca:
    """YT8M's RGB PCA: yt8m_pca.tgz's npy files, else MediaPipe's inception3 MatrixData pair."""
    if weights_lib.is_present(weights_lib.YT8M_PCA, models_dir):
        return load_yt8m_npy(weights_lib.locate(weights_lib.YT8M_PCA, models_dir))
    pair = (weights_lib.MEDIAPIPE_INCEPTION_MEAN, weights_lib.MEDIAPIPE_INCEPTION_PROJECTION)
    if all(weights_lib.is_present(name, models_dir) for name in pair):
        return load_matrix_data_pair(*(weights_lib.locate(name, models_dir) for name in pair))
    weights_lib.locate(weights_lib.YT8M_PCA, models_dir)  # raises the error naming the file and the fix
    raise AssertionError("unreachable")


def official_audio_pca(models_dir: str | os.PathLike | None, warnings: list[str]) -> Pca:
    """YT8M's audio PCA (MediaPipe's vggish MatrixData pair), else AudioSet's npz with a warning."""
    pair = (weights_lib.MEDIAPIPE_VGGISH_MEAN, weights_lib.MEDIAPIPE_VGGISH_PROJECTION)
    if all(weights_lib.is_present(name, models_dir) for name in pair):
        return load_matrix_data_pair(*(weights_lib.locate(name, models_dir) for name in pair))
    if weights_lib.is_present(weights_lib.VGGISH_PCA, models_dir):
        warnings.append(AUDIO_PCA_FALLBACK_WARNING)
        return load_vggish_npz(weights_lib.locate(weights_lib.VGGISH_PCA, models_dir), compatible_with_yt8m=False)
    where = weights_lib.root(models_dir)
    flag = f" {weights_lib.MODELS_DIR_OPTION} {models_dir}" if models_dir is not None else ""
    raise Yt8mError(
        f"no audio PCA in {where}: neither {weights_lib.get(pair[0]).filename} + {weights_lib.get(pair[1]).filename} "
        f"nor {weights_lib.get(weights_lib.VGGISH_PCA).filename}; run `yt8m models fetch --only mediapipe-pca{flag}` "
        "(or use --no-audio)"
    )


# ---------------------------------------------------------------------------------------------
# everything together


def load_feature_models(
    weights: str = WEIGHTS_YT8M,
    models_dir: str | os.PathLike | None = None,
    precision: str = FLOAT32,
    audio: bool = True,
    rgb_pca_path: str | os.PathLike | None = None,
    audio_pca_path: str | os.PathLike | None = None,
) -> FeatureModels:
    """Load the networks and PCAs for `weights` (see the module docstring), ready to run.

    Files come from `models_dir` or the yt8m cache, never from the network (except Keras' and TF
    Hub's own downloads for `keras` / `hub:`); a missing file is a Yt8mError naming it and the
    `yt8m models fetch` command that gets it. `audio=False` loads no VGGish and no audio PCA.
    """
    kind, handle = parse_weights(weights)
    _check_precision(precision)
    warnings: list[str] = []
    if kind == WEIGHTS_RANDOM:
        warnings.append(RANDOM_WARNING)
        inception = keras_inception(WEIGHTS_RANDOM, precision)
        vggish = keras_vggish(None, precision) if audio else None
        rgb_pca = (
            _user_pca(rgb_pca_path, inception, "rgb")
            if rgb_pca_path is not None
            else random_pca(inception(calibration_frames()), 1024, RANDOM_SEED, "random projection (weights=random)")
        )
        audio_pca = None
        if vggish is not None:
            audio_pca = (
                _user_pca(audio_pca_path, vggish, "audio")
                if audio_pca_path is not None
                else random_pca(vggish(calibration_log_mel()), VGGISH_DIM, RANDOM_SEED + 1, "random projection (weights=random)")
            )
        return FeatureModels(inception, vggish, rgb_pca, audio_pca, weights, False, warnings, precision)

    if kind == WEIGHTS_YT8M:
        graph = weights_lib.find_member(weights_lib.INCEPTION, weights_lib.INCEPTION_GRAPH_FILE, models_dir)
        inception = load_graphdef_inception(graph, precision)
    elif kind == WEIGHTS_KERAS:
        inception = keras_inception(WEIGHTS_KERAS, precision, models_dir)
        warnings.append(
            "weights=keras: Keras InceptionV3 ImageNet features differ from the 2015 graph's; "
            "records are marked not YT8M-compatible"
        )
    else:
        inception = load_hub_image_backbone(handle, precision)
        warnings.append(f"weights={weights}: TF Hub features differ from YT8M's; records are marked not YT8M-compatible")

    if rgb_pca_path is not None:
        rgb_pca = _user_pca(rgb_pca_path, inception, "rgb")
    elif inception.output_dim != INCEPTION_DIM:
        raise Yt8mError(
            f"weights={weights} gives {inception.output_dim}-d features but YT8M's PCA takes {INCEPTION_DIM}; "
            "pass a PCA fitted on these features with --rgb-pca (see yt8m.pca.fit_pca)"
        )
    else:
        rgb_pca = official_rgb_pca(models_dir)
        if kind != WEIGHTS_YT8M:
            warnings.append(
                "the YT8M RGB PCA was fitted on the 2015 graph's features; for other weights fit your own "
                "(yt8m.pca.fit_pca) and pass it with --rgb-pca"
            )

    vggish = audio_pca = None
    if audio:
        checkpoint = weights_lib.locate(weights_lib.VGGISH, models_dir)
        vggish = keras_vggish(checkpoint, precision)
        audio_pca = (
            _user_pca(audio_pca_path, vggish, "audio")
            if audio_pca_path is not None
            else official_audio_pca(models_dir, warnings)
        )
    if precision != FLOAT32:
        warnings.append(
            f"precision={precision}: quantized features differ from float32's by more than one step "
            "too often to match YT8M; records are marked not YT8M-compatible"
        )
    compatible = (
        kind == WEIGHTS_YT8M
        and precision == FLOAT32
        and rgb_pca.compatible_with_yt8m
        and (audio_pca is None or audio_pca.compatible_with_yt8m)
    )
    return FeatureModels(inception, vggish, rgb_pca, audio_pca, weights, compatible, warnings, precision)
