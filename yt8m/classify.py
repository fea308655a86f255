"""Video files -> `ClassificationResult`s: extract in memory, run a classifier, keep small thumbnails.

No temporary TFRecord: the extractor's `VideoFeatures` go straight to the `Predictor`. A model
whose feature names or sizes differ from what the extractor makes (rgb 1024 + audio 128) is
refused before anything is decoded. Features from random or non-YT8M networks (`random`,
`keras`, `hub:`) fed to a model trained on YT8M features get a warning in the result, and the
weights used are always recorded in the result's settings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yt8m.classifier.results import ClassificationResult, LabelScore, SegmentPrediction
from yt8m.core import AUDIO_SIZE, MAX_FRAMES, RGB_SIZE, Yt8mError

DEFAULT_TOP_K = 20
SEGMENT_TOP_K = 5  # labels kept per 5-second window
THUMBNAIL_HEIGHT = 72  # pixels; one thumbnail per sampled second
EXTRACTOR_FEATURES = (("rgb", RGB_SIZE), ("audio", AUDIO_SIZE))  # what the extractor makes
NON_YT8M_WEIGHTS_WARNING = (
    "features made with weights={weights} are not YouTube-8M features, but this model was trained on "
    "YT8M features: its labels are not meaningful (use the official weights: `yt8m models fetch`)"
)
NO_AUDIO_WARNING = "the video has no audio track: its audio features are neutral (127)"
RANDOM_FEATURES_NOTE = (
    "features made with RANDOM network weights (weights=random): labels only mean something for a "
    "model trained on features made the same way (as `yt8m demo` does)"
)


@dataclass
class ClassifyOutcome:
    """The results of a run, in input order, and one line per file that could not be classified."""

    results: list[ClassificationResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def check_model_features(predictor: Any) -> None:
    """Refuse a model whose features are not the extractor's rgb (1024) + audio (128)."""
    spec = predictor.feature_spec
    from yt8m.classifier.readers import frame_level_key

    given = [(frame_level_key(name), int(size)) for name, size in zip(spec.names, spec.sizes)]
    if given != list(EXTRACTOR_FEATURES):
        made = ", ".join(f"{name} ({size})" for name, size in EXTRACTOR_FEATURES)
        wants = ", ".join(f"{name} ({size})" for name, size in given)
        raise Yt8mError(f"{predictor.source}: this model takes features {wants}, but the extractor makes {made}")


def weights_are_yt8m(weights: str) -> bool:
    from yt8m.extractor.backbones import WEIGHTS_YT8M

    return weights == WEIGHTS_YT8M


def top_labels(predictor: Any, scores: np.ndarray, k: int) -> list[LabelScore]:
    """The `k` best classes of one score vector, best first (ties: lower class index first)."""
    order = np.lexsort((np.arange(scores.shape[0]), -scores))[:k]
    return [LabelScore(int(i), predictor.class_name(int(i)), float(scores[i])) for i in order]


def thumbnails_of(path: str | os.PathLike, fps: float, max_frames: int, height: int = THUMBNAIL_HEIGHT) -> list[np.ndarray]:
    """One small RGB uint8 image per sampled frame (shrunk to `height`, aspect kept)."""
    import cv2

    from yt8m.extractor import video as video_lib

    images = []
    for frame in video_lib.iter_frames(path, fps, max_frames=max_frames, check_truncation=False):
        image = frame.image
        if image.shape[0] > height:
            width = max(1, round(image.shape[1] * height / image.shape[0]))
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        images.append(np.ascontiguousarray(image, dtype=np.uint8))
    return images


def classify_files(
    paths: Sequence[str | os.PathLike],
    predictor: Any,
    *,
    weights: str = "yt8m",
    models_dir: str | os.PathLike | None = None,
    feature_models: Any = None,
    top_k: int = DEFAULT_TOP_K,
    segments: bool = False,
    thumbnails: bool = True,
    max_frames: int = MAX_FRAMES,
    progress: Callable[[str], None] | None = None,
) -> ClassifyOutcome:
    """Classify video files with `predictor`; files that fail become one-line errors, the rest go on.

    `feature_models` (from `load_feature_models`) may be passed to reuse loaded networks; else
    they are loaded for `weights` from `models_dir` or the cache.
    """
    from yt8m.extractor.pipeline import FeatureExtractor, VideoInput

    check_model_features(predictor)
    if top_k < 1:
        raise Yt8mError(f"--top-k must be >= 1, got {top_k}")
    if feature_models is None:
        from yt8m.extractor.backbones import load_feature_models

        if progress:
            progress(f"loading feature networks (weights={weights})")
        feature_models = load_feature_models(weights, models_dir)
    weights = str(getattr(feature_models, "weights", weights))
    extractor = FeatureExtractor(feature_models, max_frames=max_frames)
    inputs = [VideoInput(Path(p), Path(p).stem) for p in paths]
    outcome = ClassifyOutcome()
    extracted = []
    for result in extractor.extract(inputs):
        if result.error is not None:
            outcome.errors.append(result.error)
            continue
        extracted.append(result)
        if progress:
            progress(f"extracted {result.input.path} ({result.frames} frames)")
    if not extracted:
        return outcome
    videos = [r.features for r in extracted]
    scores = predictor.predict(videos)
    windows = predictor.predict_segments(videos) if segments else [[] for _ in videos]
    warnings = _warnings(predictor, weights, feature_models)
    for result, video_scores, video_windows in zip(extracted, scores, windows):
        features = result.features
        settings = {
            "model": predictor.source,
            "model kind": predictor.kind,
            "architecture": predictor.model_name,
            "classes": str(predictor.num_classes) + (" (custom label map)" if predictor.custom_labels else ""),
            "weights": weights + ("" if weights_are_yt8m(weights) else " (not YT8M features)"),
            "precision": str(getattr(feature_models, "precision", "")),
            "audio": str(features.extras.get("audio", "")),
            "sampling": f"{features.extras.get('sampling', '')} at {extractor.fps:g} fps",
            "features": ", ".join(f"{n} ({s})" for n, s in EXTRACTOR_FEATURES),
        }
        if predictor.step is not None:
            settings["checkpoint step"] = str(predictor.step)
        outcome.results.append(
            ClassificationResult(
                source=str(result.input.path),
                video_id=result.input.video_id,
                duration_seconds=float(result.seconds),
                num_frames=int(result.frames),
                labels=top_labels(predictor, video_scores, top_k),
                segments=[
                    SegmentPrediction(w.start_seconds, w.end_seconds, top_labels(predictor, w.scores, min(top_k, SEGMENT_TOP_K)))
                    for w in video_windows
                ],
                thumbnails=thumbnails_of(result.input.path, extractor.fps, max_frames) if thumbnails else [],
                settings=settings,
                warnings=list(warnings) + ([NO_AUDIO_WARNING] if features.extras.get("audio") == "missing" else []),
            )
        )
    return outcome


def _warnings(predictor: Any, weights: str, feature_models: Any) -> list[str]:
    from yt8m.extractor.backbones import WEIGHTS_RANDOM

    warnings = []
    if not weights_are_yt8m(weights) and predictor.trained_on_yt8m:
        warnings.append(NON_YT8M_WEIGHTS_WARNING.format(weights=weights))
    elif weights == WEIGHTS_RANDOM:
        warnings.append(RANDOM_FEATURES_NOTE)
    return warnings


def classify(
    paths: Iterable[str | os.PathLike],
    model: str | os.PathLike = "baseline",
    **options: Any,
) -> ClassifyOutcome:
    """Load `model` (train dir, SavedModel or `baseline`) and classify `paths` (see `classify_files`)."""
    from yt8m.classifier.predictor import load_predictor

    predictor = load_predictor(model, options.get("models_dir"))
    return classify_files(list(paths), predictor, **options)
