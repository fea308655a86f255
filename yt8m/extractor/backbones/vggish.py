"""VGGish (log-mel examples [B, 96, 64] -> 128-d) as a Keras 3 model, from the official TF1
checkpoint (`vggish_model.ckpt`, REFERENCE.md §4) or with fixed-seed random weights.

Every provider but `random` uses the official checkpoint for audio.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from yt8m._tf import import_tensorflow_quietly
from yt8m.core import WEIGHTS_RANDOM, WEIGHTS_YT8M, Yt8mError
from yt8m.extractor import weights as weights_lib
from yt8m.extractor.backbones.frozen import import_lifted, keep_lifted, load_lifted, prepared_stem
from yt8m.extractor.backbones.keras_tools import bfloat16_twin, compile_keras, keras_module, randomize
from yt8m.extractor.backbones.network import BFLOAT16, FLOAT32, VGGISH_DIM, VGGISH_NAME, Backbone, check_precision

VGGISH_FRAMES = 96
VGGISH_BANDS = 64
VGGISH_SAMPLE_RATE = 16000
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
# Kernels are overwritten right after the build (checkpoint or seeded random values): Keras' own
# Glorot initialisation of ~72 M parameters would only cost start-up time.
PLACEHOLDER_INITIALIZER = "zeros"


def build_vggish_model() -> Any:
    """VGGish as a Keras 3 model: log-mel [B, 96, 64] -> 128-d embedding (fc2 pre-activation).

    Layers are named after the checkpoint scopes (`conv3_1` holds `vggish/conv3/conv3_1/*`).
    Kernels start at zero: load a checkpoint or `randomize` before use.
    """
    keras = keras_module()
    layers = keras.layers
    init = PLACEHOLDER_INITIALIZER
    inputs = keras.Input((VGGISH_FRAMES, VGGISH_BANDS), dtype="float32", name="log_mel")
    x = layers.Reshape((VGGISH_FRAMES, VGGISH_BANDS, 1), name="to_image")(inputs)
    for name, kind, units, _ in VGGISH_LAYERS:
        if kind == "conv":
            x = layers.Conv2D(units, 3, strides=1, padding="same", activation="relu", name=name, kernel_initializer=init)(x)
        elif kind == "pool":
            x = layers.MaxPooling2D(2, strides=2, padding="same", name=name)(x)
        elif kind == "flatten":
            x = layers.Flatten(name=name)(x)  # row-major over (time, frequency, channel), as slim.flatten
        else:
            activation = "relu" if kind == "dense" else None
            x = layers.Dense(units, activation=activation, name=name, kernel_initializer=init)(x)
    return keras.Model(inputs, x, name=VGGISH_NAME)


def load_vggish_checkpoint(model: Any, path: str | os.PathLike) -> None:
    """Assign the official checkpoint's variables (`vggish/conv1/weights` ...) to `model`'s layers.

    Reads TF1 (V1, as published) and V2 checkpoints; a missing variable or a wrong shape is a
    Yt8mError naming the file and the variable.
    """
    tf = import_tensorflow_quietly()
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


def _identity(examples: Any) -> Any:
    return examples


def keras_vggish(checkpoint: str | os.PathLike | None = None, precision: str = FLOAT32, seed: int = 9) -> Backbone:
    """VGGish with the checkpoint's weights (`checkpoint` given) or fixed-seed random ones."""
    tf = import_tensorflow_quietly()
    check_precision(precision)
    model = build_vggish_model()
    if checkpoint is None:
        randomize(model, seed)
        weights, source = WEIGHTS_RANDOM, f"random (seed {seed})"
    else:
        load_vggish_checkpoint(model, checkpoint)
        weights, source = WEIGHTS_YT8M, str(checkpoint)
    if precision == BFLOAT16:
        model = bfloat16_twin(model, build_vggish_model)
    signature = tf.TensorSpec([None, VGGISH_FRAMES, VGGISH_BANDS], tf.float32)
    network = compile_keras(model, _identity, signature)
    return Backbone(
        VGGISH_NAME, VGGISH_DIM, weights, network, "float32", (VGGISH_FRAMES, VGGISH_BANDS), precision, source,
        owner=model,
    )


def vggish_from_lifted(stored: tuple[Any, dict, str, str], weights: str, precision: str, source: str) -> Backbone:
    """VGGish from its kept form (`frozen.load_lifted`): no Keras build, no checkpoint read."""
    tf = import_tensorflow_quietly()
    structure, values, input_name, output_name = stored
    spec = tf.TensorSpec([None, VGGISH_FRAMES, VGGISH_BANDS], tf.float32)
    network, variables = import_lifted(structure, values, input_name, output_name, spec, scope=VGGISH_NAME)
    return Backbone(
        VGGISH_NAME, VGGISH_DIM, weights, network, "float32", (VGGISH_FRAMES, VGGISH_BANDS), precision, source,
        owner=variables,
    )


def official_vggish(models_dir: str | os.PathLike | None = None, precision: str = FLOAT32) -> Backbone:
    """VGGish from `vggish_model.ckpt` in `models_dir` or the cache (a Yt8mError says how to fetch it).

    Built with Keras from the checkpoint once; later runs load the kept form (`frozen.py`).
    """
    checkpoint = weights_lib.locate(weights_lib.VGGISH, models_dir)
    stem = prepared_stem(VGGISH_NAME, checkpoint, precision)
    stored = load_lifted(stem)
    if stored is not None:
        return vggish_from_lifted(stored, WEIGHTS_YT8M, precision, f"{checkpoint} (prepared copy {stem})")
    backbone = keras_vggish(checkpoint, precision)
    keep_lifted(stem, backbone.network)
    return backbone
