"""Networks as a small GraphDef plus their weights, imported with the weights as variables.

A GraphDef that holds its weights as constants (the 2015 Inception graph: ~95 MB) is slow twice:
tracing copies every constant into the function graph, and grappler's constant folding walks
them at the first call (seconds each, more than a batch of frames costs). `lift_constants`
turns each large constant into a placeholder and keeps its value; `import_lifted` imports the
structure into one traced function and feeds the values back as variables: the same arithmetic,
fast to load.

Networks that take seconds to build are kept in this form in the cache dir once built
(`keep_lifted`; `load_lifted` reads them back without building anything): the random networks
(by seed, `random.py`), and the official 2015 graph and VGGish checkpoint after their one-time
preparation (batch-norm folding, Keras build), keyed by the source file's path, size and
modification time (`prepared_stem`), so a changed file is prepared again.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from yt8m import downloads
from yt8m._tf import import_tensorflow_quietly
from yt8m.data.files import atomic_path
from yt8m.extractor.backbones.network import compile_function

LIFT_MIN_BYTES = 4096  # constants this large become variables (the weights)
PREPARED_FOLDER = "prepared"  # in the cache dir: official networks after their one-time preparation
PREPARED_FORMAT_VERSION = 1  # bump when the preparation changes (invalidates what was kept)
STRUCTURE_SUFFIX = ".pb"
VALUES_SUFFIX = ".npz"
_INPUT_KEY = "__input__"  # npz entries naming the structure's input and output tensors
_OUTPUT_KEY = "__output__"
# TensorFlow's own freezing of a concrete function (public in TF 2, under tensorflow.python).
_CONVERT_MODULE = "tensorflow.python.framework.convert_to_constants"


def node_name(reference: str) -> str:
    """`^name` (control input) or `name:1` -> `name`."""
    return reference.lstrip("^").split(":")[0]


def new_node(graph_def: Any, name: str, op: str, inputs: list[str]) -> Any:
    node = graph_def.node.add()
    node.name, node.op = name, op
    node.input.extend(inputs)
    return node


def lift_node(graph_def: Any, node: Any, value: np.ndarray, values: dict[str, np.ndarray]) -> None:
    """Add to `graph_def` a Placeholder standing for `node` (same name, dtype, `value`'s shape); keep `value`."""
    tf = import_tensorflow_quietly()
    placeholder = new_node(graph_def, node.name, "Placeholder", [])
    placeholder.attr["dtype"].type = node.attr["dtype"].type
    placeholder.attr["shape"].shape.CopyFrom(tf.TensorShape(value.shape).as_proto())
    values[node.name] = value


def lift_constants(graph_def: Any, min_bytes: int = LIFT_MIN_BYTES) -> tuple[Any, dict[str, np.ndarray]]:
    """`graph_def` with each Const of at least `min_bytes` replaced by a Placeholder, and their values."""
    tf = import_tensorflow_quietly()
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    values: dict[str, np.ndarray] = {}
    for node in graph_def.node:
        tensor = node.attr["value"].tensor if node.op == "Const" else None
        if tensor is not None and len(tensor.tensor_content) >= min_bytes:
            lift_node(out, node, tf.make_ndarray(tensor), values)
        else:
            out.node.add().CopyFrom(node)
    return out, values


def import_lifted(
    structure: Any,
    values: dict[str, np.ndarray],
    input_name: str,
    output_name: str,
    input_spec: Any,
    finish: Callable[[Any], Any] = lambda output: output,
    scope: str = "net",
) -> tuple[Callable[[Any], Any], dict[str, Any]]:
    """One concrete function running `structure` (input `input_name` -> `finish(output_name)`).

    Returns the function and the variables holding `values` (the caller keeps them alive:
    functions hold their variables weakly).
    """
    tf = import_tensorflow_quietly()
    variables = {
        name: tf.Variable(value, trainable=False, name=name.replace("/", "_").replace(":", "_"))
        for name, value in values.items()
    }

    def run(batch: Any) -> Any:
        (output,) = tf.graph_util.import_graph_def(
            structure,
            input_map={input_name: batch, **{f"{name}:0": variable for name, variable in variables.items()}},
            return_elements=[output_name],
            name=scope,
        )
        return finish(output)

    return compile_function(run, input_spec), variables


def freeze(function: Any) -> tuple[Any, dict[str, np.ndarray], str, str]:
    """A traced single-input function as (structure, values, input tensor name, output tensor name).

    A flat graph (no nested functions: the Keras-built networks) has its variable reads swapped
    for placeholders directly (`lift_variables`); anything else goes through TensorFlow's own
    freezing and `lift_constants`, which is slower: it writes every weight into the GraphDef as a
    constant first (VGGish, 288 MB of weights: 8.5 s against 0.7 s on 2 cores).
    """
    lifted = lift_variables(function)
    if lifted is not None:
        return lifted
    convert = importlib.import_module(_CONVERT_MODULE).convert_variables_to_constants_v2
    frozen = convert(function)
    structure, values = lift_constants(frozen.graph.as_graph_def())
    return structure, values, frozen.inputs[0].name, frozen.outputs[0].name


def lift_variables(function: Any) -> tuple[Any, dict[str, np.ndarray], str, str] | None:
    """`freeze` of a flat concrete function: each read of a captured variable becomes a placeholder
    (same name, so its consumers are unchanged) whose value is the variable's, and each other
    captured tensor keeps its placeholder with the tensor's value. None when the graph calls
    functions or uses a variable other than by reading it (TensorFlow's freezing handles those).
    """
    tf = import_tensorflow_quietly()
    graph_def = function.graph.as_graph_def()
    if graph_def.library.function:
        return None
    captured = {internal.op.name: external for external, internal in function.graph.captures}
    resources = {name for name, external in captured.items() if external.dtype == tf.resource}
    reads = {node.name for node in graph_def.node if node.op == "ReadVariableOp" and node_name(node.input[0]) in resources}
    structure = tf.compat.v1.GraphDef()
    structure.versions.CopyFrom(graph_def.versions)
    values: dict[str, np.ndarray] = {}
    for node in graph_def.node:
        sources = [node_name(reference) for reference in node.input]
        if node.name in resources:
            continue  # the handle itself: its reads below become placeholders
        if node.name in reads:
            value = tf.raw_ops.ReadVariableOp(resource=captured[sources[0]], dtype=node.attr["dtype"].type)
            lift_node(structure, node, value.numpy(), values)
            continue
        if any(source in resources for source in sources):
            return None  # a variable used otherwise (assigned, gathered from): not a plain read
        if node.name in captured and node.op == "Placeholder":
            values[node.name] = captured[node.name].numpy()
        copy = structure.node.add()
        copy.CopyFrom(node)
        if any(reference.startswith("^") and node_name(reference) in reads for reference in node.input):
            # an ordering edge after a variable read: meaningless once the value is fixed, and a
            # control input on a placeholder would not be fed by import_graph_def's input_map
            del copy.input[:]
            copy.input.extend(r for r in node.input if not (r.startswith("^") and node_name(r) in reads))
    return structure, values, function.inputs[0].name, function.outputs[0].name


def save_lifted(stem: str | os.PathLike, structure: Any, values: dict[str, np.ndarray], input_name: str,
                output_name: str) -> None:
    """Write `stem.pb` (the structure) and `stem.npz` (the values and tensor names), atomically."""
    stem = Path(stem)
    with atomic_path(stem.with_name(stem.name + VALUES_SUFFIX)) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **values, **{_INPUT_KEY: np.array(input_name), _OUTPUT_KEY: np.array(output_name)})
    with atomic_path(stem.with_name(stem.name + STRUCTURE_SUFFIX)) as temporary:
        temporary.write_bytes(structure.SerializeToString())


def load_lifted(stem: str | os.PathLike) -> tuple[Any, dict[str, np.ndarray], str, str] | None:
    """What `save_lifted` wrote at `stem`, or None when it is missing or unreadable."""
    tf = import_tensorflow_quietly()
    stem = Path(stem)
    try:
        structure = tf.compat.v1.GraphDef()
        structure.ParseFromString(stem.with_name(stem.name + STRUCTURE_SUFFIX).read_bytes())
        with np.load(stem.with_name(stem.name + VALUES_SUFFIX), allow_pickle=False) as stored:
            values = {name: stored[name] for name in stored.files if name not in (_INPUT_KEY, _OUTPUT_KEY)}
            input_name, output_name = str(stored[_INPUT_KEY]), str(stored[_OUTPUT_KEY])
    except Exception:  # missing, truncated or another format: OSError, ValueError, KeyError, DecodeError
        return None
    return structure, values, input_name, output_name


def prepared_stem(which: str, source: str | os.PathLike, precision: str) -> Path:
    """Where the prepared form of network `which` made from file `source` is kept."""
    source = Path(source)
    stat = source.stat()
    identity = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    key = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
    return downloads.cache_dir() / PREPARED_FOLDER / f"{which}-v{PREPARED_FORMAT_VERSION}-{key}-{precision}"


def keep_lifted(stem: str | os.PathLike, network: Any) -> None:
    """Freeze a traced network and keep it at `stem`; a cache that cannot be written is skipped."""
    try:
        save_lifted(stem, *freeze(network))
    except OSError:
        pass  # a read-only cache only costs the preparation next time
