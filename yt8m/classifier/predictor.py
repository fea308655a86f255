"""One interface over the classifiers `classify` can run: train dirs, yt8m exports, starter SavedModels.

`load_predictor(path_or_name)` accepts
- a train dir made by `yt8m train` (config.json + checkpoint; EMA weights when kept),
- a SavedModel exported by yt8m (`assets/yt8m_model.json`, `rgb_and_audio` signature),
- a SavedModel with the starter / MediaPipe signature: inputs `rgb_and_audio` float32 [N, T, 1152]
  (dequantized rgb + audio) and `num_frames` int32 [N], output `predictions` [N, C] (e.g. the
  official YT8M baseline model), or the name `baseline` for the one `yt8m models fetch --only
  baseline-model` put in the cache.

Every `Predictor` takes `VideoFeatures` (quantized, as the extractor makes them) and returns
scores [N, C]; `predict_segments` scores 5-second windows by running the model on each window's
frames. Class names come from the model's label map, else from the cached YT8M vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from yt8m.core import NUM_CLASSES, SEGMENT_FRAMES, FeatureSpec, VideoFeatures, Yt8mError

BASELINE_NAME = "baseline"  # `--model baseline`: the official baseline SavedModel in the cache
KIND_TRAIN_DIR = "train-dir"
KIND_EXPORT = "yt8m-export"
KIND_STARTER = "starter-savedmodel"
STARTER_INPUT_FRAMES = "rgb_and_audio"
STARTER_INPUT_NUM_FRAMES = "num_frames"
STARTER_OUTPUT = "predictions"
SAVED_MODEL_FILE = "saved_model.pb"
PREDICT_BATCH = 32  # videos (or windows) per model call
DEFAULT_FPS = 1.0  # the YT8M sampling rate: one feature row per second


def _tf():
    from yt8m._tf import import_tensorflow_quietly

    return import_tensorflow_quietly()


@dataclass
class SegmentScores:
    """The scores of one window of a video: frames [start_frame, end_frame) and their seconds."""

    start_frame: int
    end_frame: int
    start_seconds: float
    end_seconds: float
    scores: np.ndarray  # [C]


@dataclass
class Predictor:
    """A loaded classifier: what it expects, its classes, and `predict(videos) -> scores [N, C]`."""

    source: str
    kind: str
    feature_spec: FeatureSpec
    num_classes: int
    class_names: list[str] | None
    video_level: bool = False
    step: int | None = None
    model_name: str = ""
    custom_labels: bool = False  # classes from the model's own label map, not YT8M's vocabulary
    feature_weights: str | None = None  # the feature networks' weights its training records were made with
    _run: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    _feeds_raw_frames: bool = field(default=True, repr=False)

    @property
    def trained_on_yt8m(self) -> bool:
        """Whether the model most likely learned from YT8M features (the YT8M label space)."""
        return self.num_classes == NUM_CLASSES and not self.custom_labels

    def class_name(self, index: int) -> str:
        if self.class_names and 0 <= index < len(self.class_names) and self.class_names[index]:
            return self.class_names[index]
        return f"class {index}"

    def _inputs(self, videos: Sequence[VideoFeatures]) -> tuple[np.ndarray, np.ndarray]:
        if self._feeds_raw_frames:
            return dequantized_frames(videos, self.feature_spec)
        from yt8m.classifier.readers import features_to_model_inputs

        return features_to_model_inputs(videos, self.feature_spec, video_level=self.video_level)

    def predict(self, videos: Sequence[VideoFeatures]) -> np.ndarray:
        """Scores float32 [N, num_classes] for `videos` (batched)."""
        videos = list(videos)
        if not videos:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        assert self._run is not None
        parts = []
        for start in range(0, len(videos), PREDICT_BATCH):
            frames, counts = self._inputs(videos[start : start + PREDICT_BATCH])
            scores = np.asarray(self._run(frames, counts), dtype=np.float32)
            if scores.ndim != 2 or scores.shape[1] != self.num_classes:
                raise Yt8mError(f"{self.source}: the model returned scores of shape {scores.shape}, expected [N, {self.num_classes}]")
            parts.append(scores)
        return np.concatenate(parts, axis=0)

    def predict_segments(
        self, videos: Sequence[VideoFeatures], segment_frames: int = SEGMENT_FRAMES
    ) -> list[list[SegmentScores]]:
        """Per video, the scores of consecutive `segment_frames`-frame windows (the last may be shorter)."""
        windows: list[VideoFeatures] = []
        spans: list[list[tuple[int, int, float]]] = []
        for video in videos:
            fps = float(video.extras.get("fps", DEFAULT_FPS) or DEFAULT_FPS)
            count = int(np.asarray(video.rgb).shape[0])
            mine = []
            for start in range(0, count, segment_frames):
                end = min(start + segment_frames, count)
                windows.append(_window(video, start, end))
                mine.append((start, end, fps))
            spans.append(mine)
        scores = self.predict(windows)
        out, row = [], 0
        for mine in spans:
            segments = []
            for start, end, fps in mine:
                segments.append(SegmentScores(start, end, start / fps, end / fps, scores[row]))
                row += 1
            out.append(segments)
        return out


def _window(video: VideoFeatures, start: int, end: int) -> VideoFeatures:
    """The frames [start, end) of a video as a video of their own (every frame-level feature cut)."""
    extras = {
        key: (np.asarray(value)[start:end] if isinstance(value, np.ndarray) and value.ndim == 2 else value)
        for key, value in video.extras.items()
    }
    return VideoFeatures(
        video_id=f"{video.video_id}@{start}",
        rgb=np.asarray(video.rgb)[start:end],
        audio=np.asarray(video.audio)[start:end],
        extras=extras,
    )


def dequantized_frames(videos: Sequence[VideoFeatures], spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Dequantized frames (not normalised) float32 [N, max_frames, D], zero-padded, and frame counts [N].

    What the starter / MediaPipe `rgb_and_audio` signature and yt8m exports take: the model
    graph does the per-frame L2 normalisation itself.
    """
    from yt8m.classifier.readers import features_to_model_inputs

    return features_to_model_inputs(videos, spec, normalize=False)


# ----------------------------------------------------------------------------- loading


def load_predictor(path_or_name: str | os.PathLike, models_dir: str | os.PathLike | None = None) -> Predictor:
    """A `Predictor` for a train dir, a yt8m SavedModel export, a starter-signature SavedModel or `baseline`."""
    if str(path_or_name) == BASELINE_NAME:
        from yt8m.extractor import weights

        path = weights.locate(weights.BASELINE_MODEL, models_dir)  # Yt8mError naming the fetch command
        return _load_saved_model(_saved_model_dir(path) or path)
    path = Path(path_or_name)
    if not path.exists():
        raise Yt8mError(
            f"{path}: no such model (give a train dir, a SavedModel directory, or '{BASELINE_NAME}' after "
            "`yt8m models fetch --only baseline-model`)"
        )
    from yt8m.classifier.config import CONFIG_FILENAME

    if path.is_dir() and (path / CONFIG_FILENAME).is_file():
        return _load_train_dir(path)
    saved = _saved_model_dir(path) if path.is_dir() else None
    if saved is not None:
        return _load_saved_model(saved)
    raise Yt8mError(f"{path}: neither a yt8m train dir (no {CONFIG_FILENAME}) nor a SavedModel (no {SAVED_MODEL_FILE})")


def _saved_model_dir(path: Path) -> Path | None:
    """`path` or the one folder below it that holds saved_model.pb (archives often add a level)."""
    if (path / SAVED_MODEL_FILE).is_file():
        return path
    found = sorted(p.parent for p in path.glob(f"*/{SAVED_MODEL_FILE}"))
    return found[0] if len(found) == 1 else None


def _names_from(path: Path | None, num_classes: int) -> list[str] | None:
    if path is None or not path.is_file():
        return None
    from yt8m.classifier.vocabulary import load_vocabulary

    names = list(load_vocabulary(path).names)
    if len(names) != num_classes:
        raise Yt8mError(f"{path}: has {len(names)} class names, but the model has {num_classes} classes")
    return names


def _yt8m_names(num_classes: int) -> list[str] | None:
    if num_classes != NUM_CLASSES:
        return None
    from yt8m.classifier.vocabulary import try_load_vocabulary

    vocabulary = try_load_vocabulary()
    return list(vocabulary.names) if vocabulary is not None and len(vocabulary.names) == num_classes else None


def _load_train_dir(path: Path) -> Predictor:
    from yt8m.classifier.training import load_trained_model, train_dir_label_map

    model, config, step = load_trained_model(path)
    label_map = train_dir_label_map(path)
    names = _names_from(label_map, config.num_classes) if label_map else _yt8m_names(config.num_classes)

    def run(frames: np.ndarray, counts: np.ndarray) -> np.ndarray:
        return np.asarray(model((frames, counts), training=False))

    return Predictor(
        source=str(path),
        kind=KIND_TRAIN_DIR,
        feature_spec=config.feature_spec,
        num_classes=config.num_classes,
        class_names=names,
        video_level=config.video_level,
        step=step,
        model_name=config.model,
        custom_labels=label_map is not None,
        feature_weights=config.feature_weights,
        _run=run,
        _feeds_raw_frames=False,
    )


def _signature_with(loaded: Any, inputs: Sequence[str], output: str) -> tuple[str, Any] | None:
    """The first signature (serving_default first) taking `inputs` and returning `output`."""
    signatures = dict(loaded.signatures)
    for name in sorted(signatures, key=lambda n: (n != "serving_default", n)):
        function = signatures[name]
        _, given = function.structured_input_signature
        if set(inputs) <= set(given) and output in function.structured_outputs:
            return name, function
    return None


def _load_saved_model(path: Path) -> Predictor:
    tf = _tf()
    from yt8m.classifier.export import ASSETS_DIR, LABEL_MAP_FILENAME, METADATA_FILENAME

    try:
        loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Yt8mError(f"{path}: cannot load the SavedModel ({reason})") from None
    found = _signature_with(loaded, (STARTER_INPUT_FRAMES, STARTER_INPUT_NUM_FRAMES), STARTER_OUTPUT)
    if found is None:
        raise Yt8mError(
            f"{path}: no signature takes '{STARTER_INPUT_FRAMES}' and '{STARTER_INPUT_NUM_FRAMES}' and returns "
            f"'{STARTER_OUTPUT}' (export yt8m models with `yt8m export`)"
        )
    signature_name, function = found
    _, given = function.structured_input_signature
    frames_spec = given[STARTER_INPUT_FRAMES]
    num_frames_dtype = given[STARTER_INPUT_NUM_FRAMES].dtype
    metadata_path = path / ASSETS_DIR / METADATA_FILENAME
    step = None
    model_name = "SavedModel"
    feature_weights = None
    if metadata_path.is_file():
        from yt8m.classifier.config import ModelConfig
        from yt8m.classifier.export import read_export_metadata

        metadata = read_export_metadata(path)
        config = ModelConfig.from_dict(metadata["config"], source=str(metadata_path))
        spec, num_classes, step, model_name, kind = config.feature_spec, config.num_classes, metadata.get("step"), config.model, KIND_EXPORT
        feature_weights = config.feature_weights
    else:
        width = frames_spec.shape[-1] if frames_spec.shape.rank else None
        spec = FeatureSpec()
        if width is not None and int(width) != spec.total_size:
            raise Yt8mError(
                f"{path}: its '{STARTER_INPUT_FRAMES}' input takes {int(width)} values per frame; "
                f"YT8M features have {spec.total_size} (rgb 1024 + audio 128)"
            )
        num_classes = _output_classes(function)
        kind = KIND_STARTER
        if num_classes is None:
            probe = function(
                **{
                    STARTER_INPUT_FRAMES: tf.zeros([1, spec.max_frames, spec.total_size], frames_spec.dtype),
                    STARTER_INPUT_NUM_FRAMES: tf.ones([1], num_frames_dtype),
                }
            )
            num_classes = int(probe[STARTER_OUTPUT].shape[-1])
    label_map = None
    for candidate in (path / ASSETS_DIR / LABEL_MAP_FILENAME, path / LABEL_MAP_FILENAME):
        if candidate.is_file():
            label_map = candidate
            break
    names = _names_from(label_map, num_classes) if label_map else _yt8m_names(num_classes)
    custom = label_map is not None and num_classes != NUM_CLASSES

    def run(frames: np.ndarray, counts: np.ndarray) -> np.ndarray:
        outputs = function(
            **{
                STARTER_INPUT_FRAMES: tf.constant(frames, dtype=frames_spec.dtype),
                STARTER_INPUT_NUM_FRAMES: tf.constant(counts, dtype=num_frames_dtype),
            }
        )
        return np.asarray(outputs[STARTER_OUTPUT])

    return Predictor(
        source=str(path),
        kind=kind,
        feature_spec=spec,
        num_classes=int(num_classes),
        class_names=names,
        step=step,
        model_name=f"{model_name} ({signature_name})",
        custom_labels=custom,
        feature_weights=feature_weights,
        _run=run,
        _feeds_raw_frames=True,
    )


def _output_classes(function: Any) -> int | None:
    spec = function.structured_outputs[STARTER_OUTPUT]
    shape = getattr(spec, "shape", None)
    if shape is None or shape.rank is None or shape[-1] is None:
        return None
    return int(shape[-1])
