"""One interface over the classifiers `classify` can run: train dirs, yt8m exports, starter SavedModels.

`load_predictor(path_or_name)` accepts
- a train dir made by `yt8m train` (config.json + checkpoint; EMA weights when kept),
- a SavedModel exported by yt8m (`assets/yt8m_model.json`, `rgb_and_audio` signature),
- a SavedModel with a starter signature (`savedmodel.py`): inputs `rgb_and_audio` float32
  [N, T, 1152] (dequantized rgb + audio) and `num_frames` int32 [N, 1] as the starter's
  `export_model_mediapipe.py` declares it (or [N]), output `predictions` [N, C] (e.g. the
  official YT8M baseline model); or the older `export_model.py` signature (serialized examples
  in, top-k `class_indexes` + `predictions` out), or the name `baseline` for the one
  `yt8m models fetch --only baseline-model` put in the cache.

Every `Predictor` takes `VideoFeatures` (quantized, as the extractor makes them) and returns
scores [N, C]; `predict_segments` scores 5-second windows by running the model on each window's
frames. Class names come from the model's label map, else from the cached YT8M vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from yt8m.classifier.bundle import USE_VIDEOS, ModelBundle
from yt8m.classifier.config import CONFIG_FILENAME
from yt8m.classifier.readers import features_to_model_inputs
from yt8m.classifier.savedmodel import KIND_EXPORT, KIND_STARTER, load_saved_model
from yt8m.core import NUM_CLASSES, SEGMENT_FRAMES, FeatureSpec, VideoFeatures, Yt8mError
from yt8m.extractor import weights as weights_lib

BASELINE_NAME = "baseline"  # `--model baseline`: the official baseline SavedModel in the cache
KIND_TRAIN_DIR = "train-dir"
SAVED_MODEL_FILE = "saved_model.pb"
PREDICT_BATCH = 32  # videos (or windows) per model call
DEFAULT_FPS = 1.0  # the YT8M sampling rate: one feature row per second


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
    _run_videos: Callable[[Sequence[VideoFeatures]], np.ndarray] | None = field(default=None, repr=False)  # savedmodel.py
    _feeds_raw_frames: bool = field(default=True, repr=False)
    _normalize_video: bool = field(default=True, repr=False)  # video-level: `l2_normalize_video_inputs`

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
        normalize = self._normalize_video or not self.video_level  # frames are always L2-normalised
        return features_to_model_inputs(videos, self.feature_spec, video_level=self.video_level, normalize=normalize)

    def predict(self, videos: Sequence[VideoFeatures]) -> np.ndarray:
        """Scores float32 [N, num_classes] for `videos` (batched)."""
        videos = list(videos)
        if not videos:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        assert self._run is not None or self._run_videos is not None
        parts = []
        for start in range(0, len(videos), PREDICT_BATCH):
            batch = videos[start : start + PREDICT_BATCH]
            if self._run_videos is not None:  # e.g. a SavedModel fed serialized examples
                scores = np.asarray(self._run_videos(batch), dtype=np.float32)
            else:
                frames, counts = self._inputs(batch)
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
    return features_to_model_inputs(videos, spec, normalize=False)


# ----------------------------------------------------------------------------- loading


def load_predictor(
    path_or_name: str | os.PathLike, models_dir: str | os.PathLike | None = None, trust_model: bool = False
) -> Predictor:
    """A `Predictor` for a train dir, a yt8m SavedModel export, a starter-signature SavedModel or `baseline`.

    A train dir whose model scores segments only (trained with video context) is refused: a
    predictor scores whole videos. A SavedModel with file or Python ops is refused unless
    `trust_model` (see `yt8m.trust`).
    """
    if str(path_or_name) == BASELINE_NAME:
        path = weights_lib.locate(weights_lib.BASELINE_MODEL, models_dir)  # Yt8mError naming the fetch command
        return _load_saved_model(_saved_model_dir(path) or path, trust_model)
    path = Path(path_or_name)
    if not path.exists():
        raise Yt8mError(
            f"{path}: no such model (give a train dir, a SavedModel directory, or '{BASELINE_NAME}' after "
            "`yt8m models fetch --only baseline-model`)"
        )
    if path.is_dir() and ModelBundle.is_bundle(path):
        return _load_train_dir(path)
    saved = _saved_model_dir(path) if path.is_dir() else None
    if saved is not None:
        return _load_saved_model(saved, trust_model)
    raise Yt8mError(f"{path}: neither a yt8m train dir (no {CONFIG_FILENAME}) nor a SavedModel (no {SAVED_MODEL_FILE})")


def _saved_model_dir(path: Path) -> Path | None:
    """`path` or the one folder below it that holds saved_model.pb (archives often add a level)."""
    if (path / SAVED_MODEL_FILE).is_file():
        return path
    found = sorted(p.parent for p in path.glob(f"*/{SAVED_MODEL_FILE}"))
    return found[0] if len(found) == 1 else None


def _load_train_dir(path: Path) -> Predictor:
    bundle = ModelBundle.open(path, use=USE_VIDEOS)
    loaded = bundle.load()
    config, step = loaded.config, loaded.step
    label_map = bundle.label_map_path
    names = bundle.class_names()

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
        _run=loaded.scores,
        _feeds_raw_frames=False,
        _normalize_video=config.training.l2_normalize_video_inputs,
    )


def _load_saved_model(path: Path, trust_model: bool = False) -> Predictor:
    """A SavedModel through `savedmodel.load_saved_model`: the signature's declared inputs are fed."""
    model = load_saved_model(path, trust_model=trust_model)
    return Predictor(
        source=str(path),
        kind=model.kind,
        feature_spec=model.feature_spec,
        num_classes=model.num_classes,
        class_names=model.class_names,
        step=model.step,
        model_name=model.model_name,
        custom_labels=model.custom_labels,
        feature_weights=model.feature_weights,
        _run=model.run_frames,
        _run_videos=None if model.run_frames is not None else model.run_videos,
        _feeds_raw_frames=True,
    )
