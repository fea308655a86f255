"""frozen: networks kept as a small GraphDef plus their weights, and imported back as variables."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from yt8m.extractor.backbones import frozen  # noqa: E402
from yt8m.extractor.backbones.network import compile_function  # noqa: E402

SPEC = tf.TensorSpec([None, 4], tf.float32)


def _flat_function():
    """A traced function reading two variables (one read only ordered after) and a captured tensor."""
    rng = np.random.default_rng(0)
    kernel = tf.Variable(rng.normal(size=(4, 3)).astype(np.float32))
    bias = tf.Variable(rng.normal(size=(3,)).astype(np.float32))
    offsets = tf.constant(rng.normal(size=(256, 3)).astype(np.float32))  # large: captured, not inlined

    def run(batch):
        with tf.control_dependencies([bias.value()]):  # an ordering edge from a variable read
            batch = tf.identity(batch)
        return tf.nn.relu(tf.matmul(batch, kernel) + bias + tf.reduce_mean(offsets, axis=0))

    return compile_function(run, SPEC), (kernel, bias)


def test_flat_function_is_lifted_without_tensorflow_freezing(monkeypatch):
    function, owned = _flat_function()
    module = importlib.import_module(frozen._CONVERT_MODULE)
    monkeypatch.setattr(module, "convert_variables_to_constants_v2", lambda *a, **k: pytest.fail("TF freezing used"))
    traced = function.graph.as_graph_def()
    assert any(reference.startswith("^") and "ReadVariableOp" in reference for n in traced.node for reference in n.input)
    structure, values, input_name, output_name = frozen.freeze(function)
    assert not any(node.op in ("ReadVariableOp", "VarHandleOp") for node in structure.node)
    assert sorted(value.shape for value in values.values()) == [(3,), (3,), (4, 3), (256, 3)]
    network, variables = frozen.import_lifted(structure, values, input_name, output_name, SPEC, scope="lifted")
    batch = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(network(batch).numpy(), function(batch).numpy())


def test_kept_network_round_trips_through_the_cache_files(tmp_path):
    function, owned = _flat_function()
    frozen.keep_lifted(tmp_path / "net", function)
    stored = frozen.load_lifted(tmp_path / "net")
    assert stored is not None
    network, variables = frozen.import_lifted(*stored, SPEC, scope="kept")
    batch = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(network(batch).numpy(), function(batch).numpy())
    (tmp_path / "net.npz").write_bytes(b"cut")
    assert frozen.load_lifted(tmp_path / "net") is None  # damaged: the caller builds again


def test_a_variable_used_other_than_by_reading_takes_tensorflow_freezing():
    table = tf.Variable(np.arange(12, dtype=np.float32).reshape(6, 2))

    def run(batch):
        rows = tf.cast(batch[:, 0], tf.int32)
        return tf.gather(table, rows)  # ResourceGather on the handle, no ReadVariableOp

    spec = tf.TensorSpec([None, 1], tf.float32)
    function = compile_function(run, spec)
    assert frozen.lift_variables(function) is None
    structure, values, input_name, output_name = frozen.freeze(function)
    network, _ = frozen.import_lifted(structure, values, input_name, output_name, spec, scope="converted")
    batch = np.array([[5.0], [1.0]], np.float32)
    np.testing.assert_array_equal(network(batch).numpy(), [[10.0, 11.0], [2.0, 3.0]])
