"""The `Backbone` wrapper every provider returns, and the precisions it can run in.

A `Backbone` is a feature network split in two compiled TensorFlow functions, each traced once
(input signature with a free batch size, so no retracing):

- `preprocess`: uint8 RGB frames [B, H, W, 3] -> the network's input (the resize, with the
  network's own resize op); `None` for networks whose input needs nothing (VGGish);
- `network`: that input -> float32 features [B, output_dim].

`prepare(frame)` runs `preprocess` on ONE frame, so the extractor can shrink each sampled frame
to the network input as soon as it is decoded: memory is bounded by the batch, not by the frame
size, and `backbone(frames)` (both functions on the whole batch) gives the same features.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from yt8m._tf import import_tensorflow_quietly
from yt8m.core import Yt8mError

INCEPTION_NAME = "inception-v3"
VGGISH_NAME = "vggish"
INCEPTION_DIM = 2048
VGGISH_DIM = 128
INCEPTION_IMAGE_SIZE = 299
# A lone row runs other kernels than a batch (oneDNN's batch-1 paths): its floats differ (Inception
# up to 7e-7, VGGish up to 6e-5), so one frame would not give the features it gets in a batch.
# Every batch of one is run as MIN_BATCH copies and the first row kept: features do not depend on
# how frames happen to be batched (local run, Beam bundles, a last short batch).
MIN_BATCH = 2
PREPARE_DEVICE = "/CPU:0"  # where one frame is resized (in a decode thread), whatever runs the network
FLOAT32 = "float32"
BFLOAT16 = "bfloat16"
PRECISIONS = (FLOAT32, BFLOAT16)


def compile_function(function: Callable[[Any], Any], input_signature: Any) -> Callable[[Any], Any]:
    """`function` as one concrete function, traced now (no retracing later)."""
    tf = import_tensorflow_quietly()
    return tf.function(function, input_signature=[input_signature], autograph=False).get_concrete_function()


def networks_on_gpu() -> bool:
    """Whether TensorFlow places the networks on a GPU (it does, with no flag, when it sees one)."""
    return bool(import_tensorflow_quietly().config.list_logical_devices("GPU"))


def check_precision(precision: str) -> str:
    """`precision` if it is one of PRECISIONS, else a Yt8mError naming the parameter."""
    if precision not in PRECISIONS:
        raise Yt8mError(f"precision must be {' or '.join(PRECISIONS)}, got {precision!r}")
    return precision


class Backbone:
    """A feature network as compiled functions: frames (or log-mel examples) in, float32 [B, D] out.

    Inception: uint8 RGB frames [B, H, W, 3] (any H, W; one size per call). VGGish: float32
    log-mel examples [B, 96, 64]. See the module docstring for `preprocess` / `network`.
    """

    def __init__(
        self,
        name: str,
        output_dim: int,
        weights: str,
        network: Callable[[Any], Any],
        input_dtype: str,
        input_shape: tuple[int | None, ...],
        precision: str = FLOAT32,
        source: str = "",
        owner: Any = None,
        preprocess: Callable[[Any], Any] | None = None,
    ) -> None:
        self.name = name
        self.output_dim = int(output_dim)
        self.weights = weights
        self.precision = precision
        self.source = source
        self.input_dtype = np.dtype(input_dtype)
        self.input_shape = input_shape  # per example; None = any size
        self._network = network
        self._preprocess = preprocess
        self._owner = owner  # the Keras model or SavedModel whose variables the functions read

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
        """Features of a batch: the network's own preprocessing on the whole batch, then the network."""
        array = self._check(batch)
        if array.shape[0] == 0:
            return np.zeros((0, self.output_dim), dtype=np.float32)
        tf = import_tensorflow_quietly()
        inputs = tf.convert_to_tensor(array)
        if self._preprocess is not None:
            inputs = self._preprocess(inputs)
        return self._run_network(inputs)

    def prepare(self, example: np.ndarray) -> np.ndarray:
        """One frame (or example) as the network takes it: resized by the network's own op, float32."""
        array = self._check(np.asarray(example)[None])
        if self._preprocess is None:
            return array[0]
        tf = import_tensorflow_quietly()
        with tf.device(PREPARE_DEVICE):  # decode threads work on CPU; the batch goes to the GPU (if any) once
            return np.asarray(self._preprocess(tf.convert_to_tensor(array)))[0]

    def run_prepared(self, batch: np.ndarray) -> np.ndarray:
        """Features of a batch of `prepare`d rows [B, ...] (what the extractor runs)."""
        array = np.asarray(batch)
        if array.shape[0] == 0:
            return np.zeros((0, self.output_dim), dtype=np.float32)
        tf = import_tensorflow_quietly()
        return self._run_network(tf.convert_to_tensor(array))

    def _run_network(self, inputs: Any) -> np.ndarray:
        """The network on a non-empty batch of network inputs; a batch of one is padded (see MIN_BATCH)."""
        count = int(inputs.shape[0])
        if count < MIN_BATCH:
            tf = import_tensorflow_quietly()
            inputs = tf.concat([inputs] * MIN_BATCH, axis=0)
        return np.asarray(self._network(inputs), dtype=np.float32)[:count]

    @property
    def network(self) -> Callable[[Any], Any]:
        """The compiled network function (prepared batch -> features)."""
        return self._network

    def __repr__(self) -> str:
        return f"Backbone({self.name}, {self.output_dim}-d, weights={self.weights}, {self.precision})"
