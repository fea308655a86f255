"""Inception-v3 from the 2015 GraphDef (`classify_image_graph_def.pb`): the `yt8m` provider.

The official weights (REFERENCE.md §3-4): this graph for frames, the official VGGish checkpoint
for audio, and YT8M's own PCAs.

The 2015 graph's own preprocessing is `DecodeJpeg:0` (uint8 HxWx3) -> Cast -> ExpandDims ->
ResizeBilinear(299x299) -> Sub 128 -> Mul 1/128 for one image. It is cut in two graphs:

- preprocessing: a float batch enters at `ExpandDims:0` and leaves at `ResizeBilinear:0`, so the
  graph's own resize op (with its own attributes) runs; the extractor applies it to each frame
  as soon as it is decoded;
- network: `ResizeBilinear:0` (now a placeholder) -> normalisation -> `pool_3:0`, reshaped to
  [B, 2048] (`pool_3/_reshape` hard-codes a batch of 1).

The graph predates GraphDef version 9: its `BatchNormWithGlobalNormalization` ops no longer run
in TF2 functions at all, so they are folded into the convolutions before them (same arithmetic,
float32 rounding differences only; oneDNN then fuses convolution + bias + ReLU).
`precision="bfloat16"` rewrites the network after the (float32) normalisation to bfloat16.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from yt8m._tf import import_tensorflow_quietly
from yt8m.core import WEIGHTS_YT8M, Yt8mError
from yt8m.data.files import atomic_path
from yt8m.extractor import weights as weights_lib
from yt8m.extractor.backbones.frozen import (
    import_lifted,
    lift_constants,
    load_lifted,
    new_node,
    node_name,
    prepared_stem,
    save_lifted,
)
from yt8m.extractor.backbones.network import (
    BFLOAT16,
    FLOAT32,
    INCEPTION_NAME,
    Backbone,
    check_precision,
    compile_function,
)
from yt8m.extractor.backbones.provider import BackboneProvider, register

# The 2015 graph's tensors (REFERENCE.md §3).
GRAPH_INPUT_NODE = "ExpandDims"  # [1, H, W, 3] float: a float batch [B, H, W, 3] goes in here
GRAPH_RESIZE_NODE = "ResizeBilinear"  # [B, 299, 299, 3]: the end of the per-frame preprocessing
GRAPH_RESIZE_OP = "ResizeBilinear"
GRAPH_NORMALIZED_NODE = "Mul"  # [B, 299, 299, 3] after resize and (x - 128) / 128
GRAPH_FEATURE_NODE = "pool_3"  # [B, 1, 1, 2048]
GRAPH_BATCH_NORM_OP = "BatchNormWithGlobalNormalization"
GRAPH_IMPORT_SCOPE = "inception"
PREPARED_NAME = "inception-2015"  # the prepared graph's name in the cache (frozen.prepared_stem)
PREPROCESSING_SUFFIX = ".preprocessing.pb"


def _read_graph_def(path: Path) -> Any:
    tf = import_tensorflow_quietly()

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
            stack.extend(node_name(ref) for ref in nodes[name].input)
    return keep


def _const_array(node: Any, path: Path) -> np.ndarray:
    tf = import_tensorflow_quietly()

    if node.op != "Const":
        raise Yt8mError(f"{path}: expected a constant for {node.name}, found a {node.op} op")
    return tf.make_ndarray(node.attr["value"].tensor)


def _set_const(node: Any, array: np.ndarray) -> None:
    tf = import_tensorflow_quietly()

    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(array))
    node.attr["dtype"].type = tf.as_dtype(array.dtype).as_datatype_enum


def _fold_graph_batch_norms(graph_def: Any, path: Path) -> Any:
    """Replace each `BatchNormWithGlobalNormalization` by the same affine map in current ops.

    The op computes `(t - mean) / sqrt(var + eps) * gamma + beta` (gamma only when
    scale_after_normalization). When `t` comes straight from a Conv2D with a constant filter used
    nowhere else, the scale goes into the filter and the op becomes a BiasAdd (what oneDNN fuses);
    otherwise it becomes Mul + BiasAdd.
    """
    tf = import_tensorflow_quietly()

    out = tf.compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    nodes = {node.name: node for node in out.node}
    uses: dict[str, int] = {}
    for node in out.node:
        for ref in node.input:
            uses[node_name(ref)] = uses.get(node_name(ref), 0) + 1
    float_type = tf.float32.as_datatype_enum
    for node in list(out.node):
        if node.op != GRAPH_BATCH_NORM_OP:
            continue
        if len(node.input) != 5:
            raise Yt8mError(f"{path}: {node.name} has {len(node.input)} inputs, expected 5")
        source, mean, variance, beta, gamma = (ref for ref in node.input)
        mean_a, var_a, beta_a, gamma_a = (
            _const_array(nodes[node_name(ref)], path).astype(np.float64) for ref in (mean, variance, beta, gamma)
        )
        scale = 1.0 / np.sqrt(var_a + node.attr["variance_epsilon"].f)
        if node.attr["scale_after_normalization"].b:
            scale = scale * gamma_a
        shift = (beta_a - mean_a * scale).astype(np.float32)
        producer = nodes.get(node_name(source))
        filter_node = nodes.get(node_name(producer.input[1])) if producer is not None and producer.op == "Conv2D" else None
        foldable = (
            filter_node is not None
            and filter_node.op == "Const"
            and uses.get(producer.name, 0) == 1
            and uses.get(filter_node.name, 0) == 1
            and ("data_format" not in producer.attr or producer.attr["data_format"].s == b"NHWC")
        )
        shift_node = new_node(out, f"{node.name}/folded_shift", "Const", [])
        _set_const(shift_node, shift)
        bias_input = source
        if foldable:
            kernel = _const_array(filter_node, path).astype(np.float64)
            _set_const(filter_node, (kernel * scale).astype(np.float32))
        else:
            scale_node = new_node(out, f"{node.name}/folded_scale", "Const", [])
            _set_const(scale_node, scale.astype(np.float32))
            multiply = new_node(out, f"{node.name}/folded_mul", "Mul", [source, scale_node.name])
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
    tf = import_tensorflow_quietly()

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
            if node_name(ref) == GRAPH_NORMALIZED_NODE:
                node.input[i] = cast_name
        for key in node.attr:
            if node.attr[key].WhichOneof("value") == "type" and node.attr[key].type == float_type:
                node.attr[key].type = bf16_type
        if node.op == "Const" and node.attr["dtype"].type == bf16_type:
            value = tf.make_ndarray(node.attr["value"].tensor) if node.attr["value"].tensor.dtype == float_type else None
            if value is not None:
                node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(tf.constant(value, dtype=tf.bfloat16)))
    cast = new_node(out, cast_name, "Cast", [GRAPH_NORMALIZED_NODE])
    cast.attr["SrcT"].type = float_type
    cast.attr["DstT"].type = bf16_type
    return out


def _cut(graph_def: Any, keep: set[str], placeholder: str, dtype: Any = None) -> Any:
    """The nodes `keep` of `graph_def`, with node `placeholder` replaced by an input of `dtype` (float32)."""
    tf = import_tensorflow_quietly()
    sub = tf.compat.v1.GraphDef()
    sub.versions.CopyFrom(graph_def.versions)
    for node in graph_def.node:
        if node.name not in keep:
            continue
        if node.name == placeholder:
            new_node(sub, placeholder, "Placeholder", []).attr["dtype"].type = (dtype or tf.float32).as_datatype_enum
        else:
            sub.node.add().CopyFrom(node)
    return sub


def _uint8_resize(preprocessing: Any) -> bool:
    """Let `ResizeBilinear` read the uint8 frames itself when `ExpandDims` feeds it directly.

    The op converts each pixel it reads to float, so the result is bit-identical to resizing the
    float cast (tested), without a float copy of the whole frame (400 MB for an 8K frame).
    """
    tf = import_tensorflow_quietly()
    nodes = {node.name: node for node in preprocessing.node}
    resize = nodes[GRAPH_RESIZE_NODE]
    if node_name(resize.input[0]) != GRAPH_INPUT_NODE:
        return False
    nodes[GRAPH_INPUT_NODE].attr["dtype"].type = tf.uint8.as_datatype_enum
    resize.attr["T"].type = tf.uint8.as_datatype_enum
    return True


def prepare_inception_graph(graph_def: Any, path: Path, precision: str = FLOAT32) -> tuple[Any, Any]:
    """The 2015 graph as (preprocessing, network) GraphDefs, runnable and batchable in TF2.

    Preprocessing: `ExpandDims` (a float batch) -> `ResizeBilinear`. Network: `ResizeBilinear`
    (a float batch of resized frames) -> `pool_3`, batch norms folded, bfloat16 if asked.
    """
    nodes = {node.name: node for node in graph_def.node}
    for required in (GRAPH_INPUT_NODE, GRAPH_RESIZE_NODE, GRAPH_NORMALIZED_NODE, GRAPH_FEATURE_NODE):
        if required not in nodes:
            raise Yt8mError(
                f"{path}: no {required!r} node; not the 2015 Inception-v3 graph ({weights_lib.INCEPTION_GRAPH_FILE})"
            )
    if nodes[GRAPH_RESIZE_NODE].op != GRAPH_RESIZE_OP:
        raise Yt8mError(f"{path}: {GRAPH_RESIZE_NODE} is a {nodes[GRAPH_RESIZE_NODE].op} op, expected {GRAPH_RESIZE_OP}")
    before = _reachable(nodes, GRAPH_RESIZE_NODE, GRAPH_INPUT_NODE, path)
    after = _reachable(nodes, GRAPH_FEATURE_NODE, GRAPH_RESIZE_NODE, path)
    if GRAPH_INPUT_NODE not in before or GRAPH_NORMALIZED_NODE not in after or GRAPH_INPUT_NODE in after:
        raise Yt8mError(
            f"{path}: {GRAPH_FEATURE_NODE} does not depend on {GRAPH_INPUT_NODE} through "
            f"{GRAPH_RESIZE_NODE} and {GRAPH_NORMALIZED_NODE}"
        )
    preprocessing = _cut(graph_def, before, GRAPH_INPUT_NODE)
    network = _fold_graph_batch_norms(_cut(graph_def, after, GRAPH_RESIZE_NODE), path)
    pruned_nodes = {node.name: node for node in network.node}
    network = _cut(network, _reachable(pruned_nodes, GRAPH_FEATURE_NODE, GRAPH_RESIZE_NODE, path), "")
    if precision == BFLOAT16:
        network = _to_bfloat16(network, path)
    return preprocessing, network


def _prepared(path: Path, precision: str) -> tuple[Any, Any, dict[str, np.ndarray]]:
    """(preprocessing, lifted network, weights) of the graph at `path`: kept in the cache after
    the first preparation (parsing ~95 MB and folding the batch norms take seconds)."""
    tf = import_tensorflow_quietly()
    stem = prepared_stem(PREPARED_NAME, path, precision)
    kept = stem.with_name(stem.name + PREPROCESSING_SUFFIX)
    stored = load_lifted(stem)
    if stored is not None and kept.is_file():
        preprocessing_def = tf.compat.v1.GraphDef()
        try:
            preprocessing_def.ParseFromString(kept.read_bytes())
            return preprocessing_def, stored[0], stored[1]
        except Exception:  # protobuf's DecodeError: prepare it again
            pass
    preprocessing_def, network_def = prepare_inception_graph(_read_graph_def(path), path, precision)
    _uint8_resize(preprocessing_def)
    network_def, weights = lift_constants(network_def)  # weights as variables: fast to trace and to start
    try:
        save_lifted(stem, network_def, weights, f"{GRAPH_RESIZE_NODE}:0", f"{GRAPH_FEATURE_NODE}:0")
        with atomic_path(kept) as temporary:
            temporary.write_bytes(preprocessing_def.SerializeToString())
    except OSError:
        pass  # a read-only cache only costs the preparation next time
    return preprocessing_def, network_def, weights


def load_graphdef_inception(path: str | os.PathLike, precision: str = FLOAT32) -> Backbone:
    """Inception-v3 from `classify_image_graph_def.pb`, batched: uint8 [B, H, W, 3] -> float32 [B, 2048]."""
    tf = import_tensorflow_quietly()
    path = Path(path)
    check_precision(precision)
    preprocessing_def, network_def, weights = _prepared(path, precision)
    reads_uint8 = any(  # see _uint8_resize
        node.name == GRAPH_INPUT_NODE and node.attr["dtype"].type == tf.uint8.as_datatype_enum
        for node in preprocessing_def.node
    )

    def preprocess(frames: Any) -> Any:
        (resized,) = tf.graph_util.import_graph_def(
            preprocessing_def,
            input_map={f"{GRAPH_INPUT_NODE}:0": frames if reads_uint8 else tf.cast(frames, tf.float32)},
            return_elements=[f"{GRAPH_RESIZE_NODE}:0"],
            name=GRAPH_IMPORT_SCOPE,
        )
        return resized

    def pooled_features(pooled: Any) -> Any:
        if pooled.shape.rank != 4 or pooled.shape[-1] is None:
            raise ValueError(f"{GRAPH_FEATURE_NODE} has shape {pooled.shape}, expected [B, 1, 1, D]")
        return tf.reshape(tf.cast(pooled, tf.float32), [-1, pooled.shape[-1]])

    try:
        preprocess_fn = compile_function(preprocess, tf.TensorSpec([None, None, None, 3], tf.uint8))
        network_fn, variables = import_lifted(
            network_def, weights, f"{GRAPH_RESIZE_NODE}:0", f"{GRAPH_FEATURE_NODE}:0",
            tf.TensorSpec([None, None, None, 3], tf.float32), pooled_features, GRAPH_IMPORT_SCOPE,
        )
    except (ValueError, TypeError, tf.errors.OpError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Yt8mError(f"{path}: cannot import the Inception graph into TensorFlow {tf.__version__} ({first})") from None
    output_dim = int(network_fn.structured_outputs.shape[-1])
    return Backbone(
        INCEPTION_NAME, output_dim, WEIGHTS_YT8M, network_fn, "uint8", (None, None, 3), precision, source=str(path),
        owner=variables, preprocess=preprocess_fn,
    )


@register
class Yt8mProvider(BackboneProvider):
    """`weights="yt8m"`: what the YT8M dataset was made with (2015 graph, VGGish, YT8M's PCAs)."""

    kind = WEIGHTS_YT8M
    yt8m_compatible = True

    def load_rgb(self) -> Backbone:
        graph = weights_lib.find_member(weights_lib.INCEPTION, weights_lib.INCEPTION_GRAPH_FILE, self.models_dir)
        return load_graphdef_inception(graph, self.precision)
