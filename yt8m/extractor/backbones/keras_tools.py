"""Keras helpers shared by the Keras-built networks: seeded random weights, batch-norm folding,
bfloat16 twins and compiling a model into one traced function.

Keras is reached as `tf.keras` (Keras 3 in TF 2.21) so that TensorFlow is imported only when a
network is built, quietly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from yt8m._tf import import_tensorflow_quietly
from yt8m.extractor.backbones.network import BFLOAT16, FLOAT32, compile_function


def keras_module() -> Any:
    """Keras 3, imported (with TensorFlow) on first use."""
    return import_tensorflow_quietly().keras


@contextlib.contextmanager
def _dtype_policy(precision: str) -> Iterator[None]:
    """Build Keras layers under `precision` (bfloat16: variables and math in bfloat16)."""
    keras = keras_module()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def randomize(model: Any, seed: int) -> None:
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


def compile_keras(model: Any, scale: Callable[[Any], Any], input_signature: Any) -> Callable[[Any], Any]:
    """One concrete function running `model(scale(batch))` in float32 out, traced now.

    The weights stay variables: baking ~100-300 MB of constants into the graph makes tracing and
    grappler take tens of seconds for no speed gain once batch norms are folded (`fold_keras_batch_norms`).
    The caller keeps `model` alive (functions hold their variables weakly).
    """
    tf = import_tensorflow_quietly()
    return compile_function(lambda batch: tf.cast(model(scale(batch), training=False), tf.float32), input_signature)


def bfloat16_twin(model: Any, build: Callable[[], Any]) -> Any:
    """`build()` under a bfloat16 policy, holding `model`'s weights."""
    with _dtype_policy(BFLOAT16):
        twin = build()
    twin.set_weights(model.get_weights())
    return twin


def fold_keras_batch_norms(model: Any, precision: str = FLOAT32) -> Any:
    """A copy of a Keras functional model with every Conv2D -> BatchNormalization pair merged.

    The convolution gets `kernel * s` and a bias `(bias - mean) * s + beta` with
    `s = gamma / sqrt(var + eps)` (computed in float64): the same inference arithmetic in one op
    that oneDNN fuses with the ReLU. Layers are rebuilt in `precision`.
    """
    keras = keras_module()

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
