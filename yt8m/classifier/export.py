"""SavedModel export of a trained classifier with the two serving signatures YT8M tools use.

- `serialized` (also `serving_default`): input `serialized`, a string [N] of serialized
  frame-level SequenceExamples (or video-level Examples for video-level models), parsed exactly
  as the readers do; outputs `predictions` float32 [N, C] and `video_id` string [N].
- `rgb_and_audio`: inputs `rgb_and_audio` float32 [N, T, sum(feature sizes)] (dequantized
  features, rgb then audio, as MediaPipe's YT8M graph and the starter's exporter feed them) and
  `num_frames` int32 [N, 1], squeezed in the graph, exactly as the starter's
  `export_model_mediapipe.py` declares them, so MediaPipe's YT8M inference graph can run the
  export (`savedmodel.py` feeds both this and older [N] exports); output `predictions`. Frames past `num_frames` are ignored, the rest
  truncated to max_frames and L2-normalised per frame (video-level models take their mean,
  L2-normalised unless the model was trained on raw means). Both signatures normalise in the
  graph, as the starter's exported graphs do: callers feed dequantized features.

The `ModelConfig`, the checkpoint step and the signature layout are saved as
`assets/yt8m_model.json` inside the SavedModel directory, readable without TensorFlow, and the
class names (when a vocabulary or label map of the right size is given, or the cached YT8M
vocabulary for a 3862-class model) as `assets/label_map.txt`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from yt8m import trust
from yt8m._tf import import_tensorflow_quietly
from yt8m.classifier.bundle import USE_VIDEOS, ModelBundle
from yt8m.classifier.config import package_version
from yt8m.classifier.readers import (
    FRAMES,
    LABELS,
    NUM_FRAMES,
    QUANTIZED,
    VIDEO_ID,
    finish_frames,
    normalize_video_vector,
    parse_frame_bytes,
    parse_video_record,
)
from yt8m.core import L2_EPSILON, Yt8mError
from yt8m.data.files import atomic_path, write_text
from yt8m.data.vocabulary import LABEL_MAP_FILENAME, write_label_map

SIGNATURE_SERIALIZED = "serialized"
SIGNATURE_RGB_AND_AUDIO = "rgb_and_audio"
DEFAULT_SIGNATURE = "serving_default"
INPUT_SERIALIZED = "serialized"
INPUT_FRAMES = "rgb_and_audio"
INPUT_NUM_FRAMES = "num_frames"
OUTPUT_PREDICTIONS = "predictions"
OUTPUT_VIDEO_ID = "video_id"
METADATA_FILENAME = "yt8m_model.json"
ASSETS_DIR = "assets"
TRUST_SOURCE = "yt8m export"  # how the trust registry names the exports yt8m wrote


def serving_module(model, config):
    """A `tf.Module` holding `model` with the two serving functions as attributes."""
    tf = import_tensorflow_quietly()
    spec = config.feature_spec
    width = spec.total_size

    normalize_video = config.training.l2_normalize_video_inputs  # what the model was trained on

    def parse(serialized):
        if config.video_level:
            return parse_video_record(serialized, spec, config.num_classes, normalize_video)
        return parse_frame_bytes(serialized, spec, config.num_classes)

    if config.video_level:
        inputs_spec = {FRAMES: tf.TensorSpec([width], tf.float32)}
    else:
        inputs_spec = {QUANTIZED: tf.TensorSpec([spec.max_frames, width], tf.uint8)}
    element_spec = {
        VIDEO_ID: tf.TensorSpec([], tf.string),
        NUM_FRAMES: tf.TensorSpec([], tf.int32),
        LABELS: tf.TensorSpec([config.num_classes], tf.float32),
        **inputs_spec,
    }

    class Serving(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="yt8m_serving")
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_SERIALIZED)])
        def serialized(self, serialized):
            parsed = tf.map_fn(parse, serialized, fn_output_signature=element_spec)
            if not config.video_level:
                parsed = finish_frames(parsed, spec)  # dequantize + normalise the whole batch
            predictions = self.model((parsed[FRAMES], parsed[NUM_FRAMES]), training=False)
            return {OUTPUT_PREDICTIONS: predictions, OUTPUT_VIDEO_ID: parsed[VIDEO_ID]}

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None, width], tf.float32, name=INPUT_FRAMES),
                tf.TensorSpec([None, 1], tf.int32, name=INPUT_NUM_FRAMES),  # the MediaPipe layout
            ]
        )
        def rgb_and_audio(self, rgb_and_audio, num_frames):
            frames = rgb_and_audio if config.video_level else rgb_and_audio[:, : spec.max_frames]
            length = tf.shape(frames)[1]
            num_frames = tf.clip_by_value(tf.squeeze(num_frames, axis=1), 0, length)
            frames = frames * tf.sequence_mask(num_frames, length, dtype=tf.float32)[:, :, None]
            if config.video_level:  # the mean of all valid frames, as the video-level reader
                count = tf.maximum(tf.cast(num_frames, tf.float32), 1.0)[:, None]
                inputs = tf.reduce_sum(frames, axis=1) / count
                if normalize_video:
                    inputs = normalize_video_vector(inputs)
                counts = tf.clip_by_value(num_frames, 1, spec.max_frames)
            else:
                frames = tf.pad(frames, [[0, 0], [0, spec.max_frames - length], [0, 0]])
                inputs = tf.math.l2_normalize(frames, axis=-1, epsilon=L2_EPSILON)
                counts = num_frames
            return {OUTPUT_PREDICTIONS: self.model((inputs, counts), training=False)}

    return Serving()


def export_model(
    train_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    checkpoint: str | None = None,
    overwrite: bool = False,
    vocabulary: str | os.PathLike | None = None,
) -> Path:
    """Export a train dir's model (EMA weights when trained with them) as a SavedModel at `out_dir`.

    Written to a temporary directory beside `out_dir` and renamed when complete. An existing
    `out_dir` is replaced only with `overwrite` (and only if it is empty or an earlier export).
    `vocabulary` (vocabulary.csv or a label map) supplies the class names saved with the model,
    else the train dir's own label map, else the cached YT8M vocabulary for a 3862-class model.
    A model that scores segments only (trained with video context) is refused.
    """
    tf = import_tensorflow_quietly()
    out = Path(out_dir)
    if out.resolve() == Path(train_dir).resolve():
        raise Yt8mError(f"{out}: the export must not replace the train dir")
    if out.exists():
        is_export = (out / ASSETS_DIR / METADATA_FILENAME).exists()
        empty = out.is_dir() and not any(out.iterdir())
        if not empty and not (overwrite and is_export):
            reason = "pass `overwrite=True` to replace it" if is_export else "not an earlier yt8m export"
            raise Yt8mError(f"{out}: already exists ({reason})")
    bundle = ModelBundle.open(train_dir, use=USE_VIDEOS)
    names = bundle.class_names(vocabulary)
    loaded = bundle.load(checkpoint)
    config = loaded.config
    module = serving_module(loaded.model, config)
    serialized = module.serialized.get_concrete_function()
    rgb_and_audio = module.rgb_and_audio.get_concrete_function()
    signatures = {
        DEFAULT_SIGNATURE: serialized,
        SIGNATURE_SERIALIZED: serialized,
        SIGNATURE_RGB_AND_AUDIO: rgb_and_audio,
    }
    metadata = export_metadata(config, loaded.step, has_label_map=bool(names))
    with atomic_path(out) as staging:
        tf.saved_model.save(module, str(staging), signatures=signatures)
        write_text(staging / ASSETS_DIR / METADATA_FILENAME, json.dumps(metadata, indent=2) + "\n")
        if names:
            write_label_map(staging / ASSETS_DIR / LABEL_MAP_FILENAME, names)
    # yt8m wrote this graph itself: loading it later needs no `trust_model` (the hash is recorded).
    trust.mark_trusted(out, TRUST_SOURCE)
    return out


def export_metadata(config, step: int, has_label_map: bool) -> dict[str, Any]:
    """What `assets/yt8m_model.json` says: version, step, the model's config, labels and signatures."""
    return {
        "yt8m_version": package_version(),
        "step": step,
        "config": config.to_dict(),
        "labels": {
            "num_classes": config.num_classes,
            "label_map": f"{ASSETS_DIR}/{LABEL_MAP_FILENAME}" if has_label_map else None,
        },
        "signatures": {
            SIGNATURE_SERIALIZED: {
                "inputs": {INPUT_SERIALIZED: "string [N] serialized tf.train.SequenceExample"},
                "outputs": {OUTPUT_PREDICTIONS: "float32 [N, C]", OUTPUT_VIDEO_ID: "string [N]"},
            },
            SIGNATURE_RGB_AND_AUDIO: {
                "inputs": {
                    INPUT_FRAMES: f"float32 [N, T, {config.feature_spec.total_size}] dequantized "
                    + "+".join(config.feature_spec.names),
                    INPUT_NUM_FRAMES: "int32 [N, 1]",
                },
                "outputs": {OUTPUT_PREDICTIONS: "float32 [N, C]"},
            },
        },
    }


def read_export_metadata(export_dir: str | os.PathLike) -> dict[str, Any]:
    """The `yt8m_model.json` of an export (config, step, signatures); `Yt8mError` if absent."""
    path = Path(export_dir) / ASSETS_DIR / METADATA_FILENAME
    if not path.exists():
        raise Yt8mError(f"{export_dir}: not a yt8m SavedModel export (no {ASSETS_DIR}/{METADATA_FILENAME})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise Yt8mError(f"{path}: unreadable ({error})") from None
