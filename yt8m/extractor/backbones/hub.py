"""TF Hub SavedModels: the `hub:HANDLE` provider (image feature vectors) and TF Hub's VGGish.

`weights="hub:HANDLE"`: an image feature-vector SavedModel (URL or local folder; float images in
[0, 1], resized to the model's input size) for frames, the official VGGish checkpoint for audio.
TF Hub's `google/vggish/1` takes a waveform instead of log-mel examples, so it is offered
separately (`load_hub_vggish`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from yt8m import trust
from yt8m._tf import import_tensorflow_quietly
from yt8m.core import HUB_PREFIX, Yt8mError
from yt8m.extractor.backbones.network import (
    FLOAT32,
    INCEPTION_IMAGE_SIZE,
    INCEPTION_NAME,
    VGGISH_DIM,
    VGGISH_NAME,
    Backbone,
    check_precision,
    compile_function,
)
from yt8m.extractor.backbones.provider import BackboneProvider, register
from yt8m.extractor.backbones.vggish import VGGISH_SAMPLE_RATE

HUB_IMAGE_SCALE = 255.0  # TF Hub image models take floats in [0, 1]
HUB_DEFAULT_IMAGE_SIZE = INCEPTION_IMAGE_SIZE
HUB_WARNING = "weights={weights}: TF Hub features differ from YT8M's; records are marked not YT8M-compatible"
HUB_OUTPUT_KEYS = ("default", "feature_vector", "output_0", "embedding")


def hub_handle(weights: str) -> str:
    """The handle of a `hub:HANDLE` weights value; Yt8mError when it is empty."""
    handle = weights[len(HUB_PREFIX):].strip() if weights.startswith(HUB_PREFIX) else weights
    if not handle:
        raise Yt8mError("weights hub: needs a handle, e.g. hub:https://tfhub.dev/... or hub:/path/to/saved_model")
    return handle


def _resolve_hub(handle: str) -> str:
    """A local SavedModel folder for `handle` (a folder already, or downloaded by tensorflow_hub)."""
    local = Path(handle).expanduser()
    if local.is_dir():
        return str(local)
    if "://" not in handle:
        raise Yt8mError(f"{handle}: no such SavedModel folder (hub: takes a TF Hub URL or a local folder)")
    try:
        hub = importlib.import_module("tensorflow_hub")  # optional dependency, only needed for URLs
        return hub.resolve(handle)
    except Exception as error:  # ImportError and network errors of every kind, from tensorflow_hub
        raise Yt8mError(
            f"cannot download TF Hub model {handle} ({str(error).splitlines()[0] if str(error) else type(error).__name__}); "
            "download it where there is internet and pass hub:/path/to/the/folder"
        ) from None


def _load_saved_model(handle: str, trust_model: bool = False) -> Any:
    tf = import_tensorflow_quietly()

    path = _resolve_hub(handle)
    trust.check_saved_model(path, trust_model=trust_model)  # a SavedModel is a program: file/network/Python ops refused
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
        for key in HUB_OUTPUT_KEYS:
            if key in outputs:
                return outputs[key]
        raise Yt8mError(f"{handle}: the SavedModel returns several outputs {sorted(outputs)}; cannot tell the features")
    if isinstance(outputs, (list, tuple)):
        return outputs[0]
    return outputs


def load_hub_image_backbone(handle: str, precision: str = FLOAT32, trust_model: bool = False) -> Backbone:
    """A TF Hub image feature-vector model: frames -> float [0, 1], resized to its input size -> [B, D].

    The input size is read from the SavedModel's signature when it is static, else 299. A model
    whose graph touches files, the network or Python is refused unless `trust_model`.
    """
    tf = import_tensorflow_quietly()
    if check_precision(precision) != FLOAT32:
        raise Yt8mError("precision bfloat16 is not available for hub: models (a SavedModel runs as it was saved)")
    obj = _load_saved_model(handle, trust_model)
    call = _saved_model_callable(obj, handle)
    shape = _first_input_shape(obj)
    height = shape[1] if shape and len(shape) == 4 and shape[1] else HUB_DEFAULT_IMAGE_SIZE
    width = shape[2] if shape and len(shape) == 4 and shape[2] else HUB_DEFAULT_IMAGE_SIZE

    def preprocess(frames: Any) -> Any:
        return tf.image.resize(frames, (height, width)) / HUB_IMAGE_SCALE  # resize reads uint8 itself

    def network(images: Any) -> Any:
        features = tf.cast(_single_output(call(images), handle), tf.float32)
        return tf.reshape(features, [tf.shape(features)[0], -1])

    try:
        preprocess_fn = compile_function(preprocess, tf.TensorSpec([None, None, None, 3], tf.uint8))
        network_fn = compile_function(network, tf.TensorSpec([None, height, width, 3], tf.float32))
        probe = network_fn(tf.zeros([1, height, width, 3], tf.float32))
    except (ValueError, TypeError, tf.errors.OpError) as error:
        raise Yt8mError(f"{handle}: does not take images [B, {height}, {width}, 3] ({str(error).splitlines()[0]})") from None
    return Backbone(
        INCEPTION_NAME, int(probe.shape[-1]), HUB_PREFIX + handle, network_fn, "uint8", (None, None, 3), precision,
        handle, owner=obj, preprocess=preprocess_fn,
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
        tf = import_tensorflow_quietly()

        array = np.asarray(waveform, dtype=np.float32)
        if array.ndim != 1:
            raise ValueError(f"{self.weights} takes a 1-D waveform, got shape {list(array.shape)}")
        return np.asarray(self._function(tf.convert_to_tensor(array)), dtype=np.float32).reshape(-1, self.output_dim)


def load_hub_vggish(handle: str) -> WaveformBackbone:
    """Load TF Hub's VGGish (`https://tfhub.dev/google/vggish/1`) or a local SavedModel with its interface."""
    tf = import_tensorflow_quietly()

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


@register
class HubProvider(BackboneProvider):
    """`weights="hub:HANDLE"`: a TF Hub image model for frames, the official VGGish for audio."""

    kind = HUB_PREFIX
    warning = HUB_WARNING

    def load_rgb(self) -> Backbone:
        return load_hub_image_backbone(hub_handle(self.weights), self.precision, self.trust_model)
