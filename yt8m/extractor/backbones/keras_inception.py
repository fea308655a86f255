"""Keras InceptionV3 (global average pool, 2048-d): the `keras` provider, and the random network.

`weights="keras"`: the ImageNet weights with Keras' own preprocessing (resize to 299, x / 127.5 - 1).
Different features from the 2015 graph's: fine for a custom dataset, not for YT8M-trained models.
Batch norms are folded into the convolutions before them (same arithmetic, one fused op).
"""

from __future__ import annotations

import os
from typing import Any

from yt8m._tf import import_tensorflow_quietly
from yt8m.core import WEIGHTS_KERAS, WEIGHTS_RANDOM, Yt8mError
from yt8m.extractor import weights as weights_lib
from yt8m.extractor.backbones.keras_tools import compile_keras, fold_keras_batch_norms, keras_module, randomize
from yt8m.extractor.backbones.network import (
    FLOAT32,
    INCEPTION_DIM,
    INCEPTION_IMAGE_SIZE,
    INCEPTION_NAME,
    Backbone,
    check_precision,
    compile_function,
)
from yt8m.extractor.backbones.provider import BackboneProvider, register

KERAS_INPUT_SCALE = 127.5  # keras.applications.inception_v3.preprocess_input: x / 127.5 - 1
KERAS_WARNING = (
    "weights=keras: Keras InceptionV3 ImageNet features differ from the 2015 graph's; "
    "records are marked not YT8M-compatible"
)


def keras_inception_model() -> Any:
    """The InceptionV3 architecture (no top, average pool), weights not loaded."""
    return keras_module().applications.InceptionV3(
        include_top=False, weights=None, pooling="avg", input_shape=(INCEPTION_IMAGE_SIZE, INCEPTION_IMAGE_SIZE, 3)
    )


def keras_inception_resize(frames: Any) -> Any:
    """uint8 frames [B, H, W, 3] -> float [B, 299, 299, 3]: the resize of Keras' preprocessing.

    The resize reads the uint8 pixels itself (bit-identical to resizing their float cast, without
    a float copy of the whole frame).
    """
    tf = import_tensorflow_quietly()
    return tf.image.resize(frames, (INCEPTION_IMAGE_SIZE, INCEPTION_IMAGE_SIZE))


def keras_inception_scale(images: Any) -> Any:
    """Resized images -> the network's input range [-1, 1]."""
    return images / KERAS_INPUT_SCALE - 1.0


def keras_inception_preprocess(frames: Any) -> Any:
    """Keras' whole InceptionV3 preprocessing (resize, then scale)."""
    return keras_inception_scale(keras_inception_resize(frames))


def keras_inception(
    weights: str = WEIGHTS_KERAS,
    precision: str = FLOAT32,
    models_dir: str | os.PathLike | None = None,
    seed: int = 8,
) -> Backbone:
    """Keras InceptionV3 with ImageNet (`keras`) or fixed-seed random (`random`) weights.

    ImageNet weights come from `models_dir` or the cache (`yt8m models fetch --only
    keras-inception`), else Keras downloads them (~/.keras); offline, a Yt8mError says how to get them.
    """
    tf = import_tensorflow_quietly()
    check_precision(precision)
    model = keras_inception_model()
    source = f"random (seed {seed})"
    if weights == WEIGHTS_RANDOM:
        randomize(model, seed)
    elif weights == WEIGHTS_KERAS:
        source = _load_keras_inception_weights(model, models_dir)
    else:
        raise ValueError(f"keras_inception: weights must be keras or random, got {weights!r}")
    model = fold_keras_batch_norms(model, precision)
    preprocess = compile_function(keras_inception_resize, tf.TensorSpec([None, None, None, 3], tf.uint8))
    network = compile_keras(model, keras_inception_scale, tf.TensorSpec([None, None, None, 3], tf.float32))
    return Backbone(
        INCEPTION_NAME, INCEPTION_DIM, weights, network, "uint8", (None, None, 3), precision, source, owner=model,
        preprocess=preprocess,
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
    try:
        imagenet = keras_module().applications.InceptionV3(
            include_top=False, weights="imagenet", pooling="avg",
            input_shape=(INCEPTION_IMAGE_SIZE, INCEPTION_IMAGE_SIZE, 3),
        )
    except Exception as error:  # Keras raises a bare Exception for a failed download
        raise Yt8mError(
            f"cannot get the Keras InceptionV3 ImageNet weights ({str(error).splitlines()[0]}); run "
            f"`yt8m models fetch --only {weights_lib.KERAS_INCEPTION}` or put {weights_lib.KERAS_INCEPTION_FILE} "
            f"in the models folder"
        ) from None
    model.set_weights(imagenet.get_weights())
    return "keras.applications ImageNet"


@register
class KerasProvider(BackboneProvider):
    """`weights="keras"`: Keras ImageNet InceptionV3 for frames, the official VGGish for audio."""

    kind = WEIGHTS_KERAS
    warning = KERAS_WARNING

    def load_rgb(self) -> Backbone:
        return keras_inception(WEIGHTS_KERAS, self.precision, self.models_dir)
