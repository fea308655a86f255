"""Video files -> `ClassificationResult`s (`yt8m.classify`): extract in memory, run a classifier, keep thumbnails.

No temporary TFRecord: the extractor's `VideoFeatures` go straight to the `Predictor`. A model
whose feature names or sizes differ from what the extractor makes (rgb 1024 + audio 128) is
refused before anything is decoded. Features from random or non-YT8M networks (`random`,
`keras`, `hub:`) fed to a model trained on YT8M features get a warning in the result, and the
weights used are always recorded in the result's settings.

Every file is probed (opens, holds a decodable video stream, its duration) before the feature
networks load: bad files are reported at once, and when none is left the networks are not
loaded at all. Each video is decoded once: the thumbnails are small copies of the frames the
extractor samples (its `on_frame` hook), taken in the decode threads.

Limits are visible: a video cut by `max_frames` is marked `capped` in its result, with its
whole duration (`source_duration_seconds`) and a warning naming it; a model that reads fewer
frames than were classified says so too.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yt8m.classifier import compact  # noqa: F401 - registers the compact bundle kinds (quantized, merged, ...)
from yt8m.classifier.bundle import USE_VIDEOS, ModelBundle
from yt8m.classifier.predictor import BASELINE_NAME, Predictor, load_predictor
from yt8m.classifier.readers import frame_level_key
from yt8m.classifier.results import THUMBNAIL_HEIGHT, ClassificationResult, LabelScore, SegmentPrediction
from yt8m.classifier.savedmodel import with_vocabulary
from yt8m.core import AUDIO_SIZE, MAX_FRAMES, RGB_SIZE, WEIGHTS_RANDOM, WEIGHTS_YT8M, Yt8mError
from yt8m.extractor import video as video_lib
from yt8m.extractor import weights as weights_lib
from yt8m.extractor.backbones import load_feature_models
from yt8m.extractor.inputs import collect_videos
from yt8m.extractor.job import YT8M_FPS
from yt8m.extractor.pipeline import FeatureExtractor, VideoInput, check_options

DEFAULT_TOP_K = 20
SEGMENT_TOP_K = 5  # labels kept per 5-second window
EXTRACTOR_FEATURES = (("rgb", RGB_SIZE), ("audio", AUDIO_SIZE))  # what the extractor makes
NON_YT8M_WEIGHTS_WARNING = (
    "features made with weights={weights} are not YouTube-8M features, but this model was trained on "
    "YT8M features: its labels are not meaningful (use the official weights: `yt8m models fetch`)"
)
NO_AUDIO_WARNING = "{source}: the video has no audio track: its audio features are neutral (127)"
CAPPED_WARNING = (
    "{source}: capped by `max_frames` ({frames} frames at {fps:g} fps): only the first {seen} of {whole} "
    "were classified; `max_frames` 0 classifies all of it"
)
MODEL_FRAMES_WARNING = (
    "{source}: the model reads at most {limit} frames: its video-level labels cover the first {seen} of "
    "the {frames} frames classified (segments cover them all)"
)
FPS_WARNING = (
    "`fps` is {fps:g}: YouTube-8M features have {yt8m:g} frame per second, and models trained on them expect that"
)
NO_MODEL_HINT = (
    "no model to classify with: fetch the official baseline (`yt8m models fetch --only baseline-model`, "
    "with `yt8m models fetch` for the feature networks), or train one (`yt8m train`) and pass its train "
    "dir as `model` (`yt8m demo` does it all offline)"
)
RANDOM_FEATURES_NOTE = (
    "features made with RANDOM network weights (weights=random): labels only mean something for a "
    "model trained on features made the same way (as `yt8m demo` does)"
)
NO_LIMIT = "no limit"


@dataclass
class ClassifyOutcome:
    """The results of a run, in input order, and one line per file that could not be classified."""

    results: list[ClassificationResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def capped(self) -> int:
        """How many videos `max_frames` cut."""
        return sum(1 for result in self.results if result.capped)


def check_model_features(predictor: Any) -> None:
    """Refuse a model whose features are not the extractor's rgb (1024) + audio (128)."""
    check_feature_spec(predictor.feature_spec, predictor.source)


def check_feature_spec(spec: Any, source: str) -> None:
    """Refuse a feature spec (of the model at `source`) that is not the extractor's rgb + audio."""
    given = [(frame_level_key(name), int(size)) for name, size in zip(spec.names, spec.sizes)]
    if given != list(EXTRACTOR_FEATURES):
        made = ", ".join(f"{name} ({size})" for name, size in EXTRACTOR_FEATURES)
        wants = ", ".join(f"{name} ({size})" for name, size in given)
        raise Yt8mError(f"{source}: this model takes features {wants}, but the extractor makes {made}")


def weights_are_yt8m(weights: str) -> bool:
    return weights == WEIGHTS_YT8M


def default_weights(predictor: Any) -> str:
    """The feature networks a model is fed by default: those its training records were made with, else yt8m."""
    return getattr(predictor, "feature_weights", None) or WEIGHTS_YT8M


def load_model(
    model: str | os.PathLike | None = None,
    models_dir: str | os.PathLike | None = None,
    trust_model: bool = False,
) -> Predictor:
    """A `Predictor` for `model` (train dir, SavedModel or `baseline`); None: the cached baseline, if fetched.

    A SavedModel whose graph reaches files, the network or Python is refused unless
    `trust_model` (yt8m's own exports and catalogue downloads are trusted).
    """
    if model is None:
        if not weights_lib.is_present(weights_lib.BASELINE_MODEL, models_dir):
            raise Yt8mError(NO_MODEL_HINT)
        model = BASELINE_NAME
    return load_predictor(model, models_dir, trust_model=trust_model)


def top_labels(predictor: Any, scores: np.ndarray, k: int) -> list[LabelScore]:
    """The `k` best classes of one score vector, best first (ties: lower class index first)."""
    order = np.lexsort((np.arange(scores.shape[0]), -scores))[:k]
    return [LabelScore(int(i), predictor.class_name(int(i)), float(scores[i])) for i in order]


def thumbnail(image: np.ndarray, height: int = THUMBNAIL_HEIGHT) -> np.ndarray:
    """A small RGB uint8 copy of a frame: shrunk to `height` (aspect kept, area averaging) when taller."""
    if image.shape[0] > height:
        width = max(1, round(image.shape[1] * height / image.shape[0]))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image, dtype=np.uint8)


class ThumbnailKeeper:
    """The extractor's `on_frame` hook: a thumbnail of every sampled frame, per input, in frame order.

    Runs in the decode threads (one video is decoded by one thread), so the video is not decoded
    a second time for its pictures and the full-size frame is dropped right after.
    """

    def __init__(self, height: int = THUMBNAIL_HEIGHT) -> None:
        self.height = int(height)
        self._frames: dict[int, list[np.ndarray | None]] = {}

    def __call__(self, item: VideoInput, index: int, image: np.ndarray) -> None:
        rows = self._frames.setdefault(id(item), [])
        if len(rows) <= index:
            rows.extend([None] * (index + 1 - len(rows)))
        rows[index] = thumbnail(image, self.height)

    def take(self, item: VideoInput, frames: int) -> list[np.ndarray]:
        """The thumbnails of the first `frames` frames of `item` (forgotten here afterwards)."""
        rows = self._frames.pop(id(item), [])[:frames]
        return [row for row in rows if row is not None]


@dataclass
class _Probed:
    """The inputs that passed the probe, their whole durations, and one line per file that did not."""

    items: list[VideoInput] = field(default_factory=list)
    durations: dict[int, float | None] = field(default_factory=dict)  # by id(item)
    errors: list[str] = field(default_factory=list)


def _probe(paths: Sequence[str | os.PathLike]) -> _Probed:
    probed = _Probed()
    for raw in paths:
        path = Path(raw)
        found = video_lib.probe(path)
        if not found.ok:
            probed.errors.append(found.message)
            continue
        has_audio = found.has_audio if found.audio_problem is None else None
        item = VideoInput(path, path.stem, has_audio=has_audio)
        probed.items.append(item)
        probed.durations[id(item)] = found.duration
    return probed


def _seconds(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") + " s"


def check_classify_options(top_k: int, fps: float, max_frames: int, sampling: str) -> None:
    """Every option error, as one line naming the parameter, before any work."""
    if top_k < 1:
        raise Yt8mError(f"`top_k` must be >= 1, got {top_k}")
    check_options(fps, max_frames, None, None)
    video_lib.check_sampling(sampling)


class ModelLoading:
    """A train dir's classifier being loaded in a background thread while the videos are probed,
    the feature networks load and the videos are extracted (building and restoring a large model
    takes seconds). What the run needs first is read from the bundle's config at once: its feature
    spec, the weights of its training records, and the refusal of a model that cannot label videos.
    """

    def __init__(self, bundle: ModelBundle, load: Callable[[], Predictor]) -> None:
        self.source = str(bundle.path)
        self.feature_spec = bundle.config.feature_spec
        self.feature_weights = bundle.feature_weights
        self._predictor: Predictor | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(load,), name="yt8m-load-classifier", daemon=True)
        self._thread.start()

    def _run(self, load: Callable[[], Predictor]) -> None:
        try:
            self._predictor = load()
        except BaseException as error:  # re-raised by the thread that needs the model
            self._error = error

    def raise_if_failed(self) -> None:
        """Raise the loading error now if loading has already failed (without waiting)."""
        if not self._thread.is_alive() and self._error is not None:
            raise self._error

    def get(self) -> Predictor:
        """The loaded `Predictor` (waits for it; raises what loading raised)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._predictor is not None
        return self._predictor


def classify_files(
    paths: Sequence[str | os.PathLike],
    predictor: Any,
    *,
    weights: str | None = None,
    models_dir: str | os.PathLike | None = None,
    feature_models: Any = None,
    top_k: int = DEFAULT_TOP_K,
    segments: bool = False,
    thumbnails: bool = True,
    fps: float = video_lib.DEFAULT_FPS,
    max_frames: int = MAX_FRAMES,
    sampling: str = video_lib.DEFAULT_SAMPLING,
    trust_model: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ClassifyOutcome:
    """Classify video files with `predictor` (or a `ModelLoading`); files that fail become one-line
    errors, the rest go on.

    `weights` (the feature networks) defaults to those the model's training records were made
    with, else the official yt8m ones. `feature_models` (from `load_feature_models`) may be
    passed to reuse loaded networks; else they are loaded for `weights` from `models_dir` or the
    cache, only when a file passed the probe. `fps`, `max_frames` and `sampling` are the
    extractor's (`max_frames` 0: no limit); `trust_model` lets a `hub:` feature network run
    even if its graph reaches files or Python.
    """
    pending = predictor if isinstance(predictor, ModelLoading) else None
    check_feature_spec(predictor.feature_spec, predictor.source)
    check_classify_options(top_k, fps, max_frames, sampling)
    probed = _probe(paths)
    outcome = ClassifyOutcome(errors=list(probed.errors))
    if not probed.items:
        if pending is not None:
            pending.get()  # a model that cannot load is the run's error even with no video left
        return outcome
    if weights is None:
        weights = default_weights(predictor)
    if pending is not None:
        pending.raise_if_failed()
    if feature_models is None:
        if progress:
            progress(f"loading feature networks (weights={weights})")
        feature_models = load_feature_models(weights, models_dir, trust_model=trust_model)
    weights = str(getattr(feature_models, "weights", weights))
    keeper = ThumbnailKeeper() if thumbnails else None
    extractor = FeatureExtractor(
        feature_models, fps=fps, max_frames=max_frames, sampling=sampling, on_frame=keeper
    )
    if pending is not None:
        pending.raise_if_failed()
    extracted = []
    for result in extractor.extract(probed.items):  # in input order
        item_thumbnails = keeper.take(result.input, result.frames) if keeper is not None else []
        if result.error is not None:
            outcome.errors.append(result.error)
            continue
        extracted.append((result, item_thumbnails))
        if progress:
            progress(f"extracted {result.input.path} ({result.frames} frames)")
    if pending is not None:
        if progress:
            progress(f"loading the classifier {pending.source}")
        predictor = pending.get()
    if not extracted:
        return outcome
    videos = [result.features for result, _ in extracted]
    scores = predictor.predict(videos)
    windows = predictor.predict_segments(videos) if segments else [[] for _ in videos]
    run_warnings = _warnings(predictor, weights, extractor.fps)
    for (result, item_thumbnails), video_scores, video_windows in zip(extracted, scores, windows):
        features = result.features
        source = str(result.input.path)
        whole = probed.durations.get(id(result.input))
        settings = {
            "model": predictor.source,
            "model kind": predictor.kind,
            "architecture": predictor.model_name,
            "classes": str(predictor.num_classes) + (" (custom label map)" if predictor.custom_labels else ""),
            "weights": weights + ("" if weights_are_yt8m(weights) else " (not YT8M features)"),
            "precision": str(getattr(feature_models, "precision", "")),
            "audio": str(features.extras.get("audio", "")),
            "sampling": f"{features.extras.get('sampling', '')} at {extractor.fps:g} fps",
            "max frames": str(extractor.max_frames) if extractor.max_frames else NO_LIMIT,
            "features": ", ".join(f"{n} ({s})" for n, s in EXTRACTOR_FEATURES),
        }
        if predictor.step is not None:
            settings["checkpoint step"] = str(predictor.step)
        warnings = list(run_warnings) + list(result.warnings)
        if features.extras.get("audio") == "missing":
            warnings.append(NO_AUDIO_WARNING.format(source=source))
        if result.capped:
            warnings.append(CAPPED_WARNING.format(
                source=source, frames=result.frames, fps=extractor.fps, seen=_seconds(result.seconds),
                whole=_seconds(whole) if whole else "the video",
            ))
        limit = int(predictor.feature_spec.max_frames)
        if not getattr(predictor, "video_level", False) and result.frames > limit > 0:
            warnings.append(MODEL_FRAMES_WARNING.format(
                source=source, limit=limit, seen=_seconds(limit / extractor.fps), frames=result.frames
            ))
        outcome.results.append(
            ClassificationResult(
                source=source,
                video_id=result.input.video_id,
                duration_seconds=float(result.seconds),
                num_frames=int(result.frames),
                labels=top_labels(predictor, video_scores, top_k),
                segments=[
                    SegmentPrediction(w.start_seconds, w.end_seconds, top_labels(predictor, w.scores, min(top_k, SEGMENT_TOP_K)))
                    for w in video_windows
                ],
                thumbnails=item_thumbnails,
                settings=settings,
                warnings=warnings,
                fps=float(extractor.fps),
                capped=bool(result.capped),
                source_duration_seconds=float(whole) if whole else None,
            )
        )
    return outcome


def _warnings(predictor: Any, weights: str, fps: float) -> list[str]:
    """What holds for every video of the run."""
    warnings = []
    if not weights_are_yt8m(weights) and predictor.trained_on_yt8m:
        warnings.append(NON_YT8M_WEIGHTS_WARNING.format(weights=weights))
    elif weights == WEIGHTS_RANDOM:
        warnings.append(RANDOM_FEATURES_NOTE)
    if fps != YT8M_FPS:
        warnings.append(FPS_WARNING.format(fps=fps, yt8m=YT8M_FPS))
    return warnings


def classify(
    paths: Iterable[str | os.PathLike] | str | os.PathLike,
    model: str | os.PathLike | Predictor | None = None,
    *,
    vocabulary: str | os.PathLike | None = None,
    models_dir: str | os.PathLike | None = None,
    trust_model: bool = False,
    **options: Any,
) -> ClassifyOutcome:
    """Classify `paths` (files, folders, globs) with `model` (a loaded `Predictor`, a train dir, a
    SavedModel, `baseline`; None: the cached baseline); see `classify_files` for the options.

    `vocabulary` (vocabulary.csv or a label map) names the classes of any model; `trust_model`
    runs a SavedModel (classifier or `hub:` feature network) even if its graph reaches files,
    the network or Python. A model that cannot serve (wrong features, a segment-context bundle,
    no such model) is refused before any video is read. A train dir's model is built and
    restored in a background thread while the videos are probed and extracted (`ModelLoading`);
    other models load first. The feature networks load only once a file has passed the probe.
    """
    check_classify_options(
        options.get("top_k", DEFAULT_TOP_K), options.get("fps", video_lib.DEFAULT_FPS),
        options.get("max_frames", MAX_FRAMES), options.get("sampling", video_lib.DEFAULT_SAMPLING),
    )
    inputs = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    found = collect_videos([str(path) for path in inputs])
    predictor: Predictor | ModelLoading
    if isinstance(model, Predictor):
        predictor = model
    elif model is not None and ModelBundle.is_bundle(model):
        bundle = ModelBundle.open(model, use=USE_VIDEOS)  # reads config.json only: refusals come now
        if vocabulary is not None and not Path(vocabulary).is_file():
            raise Yt8mError(f"{vocabulary}: no such vocabulary or label map")

        def load() -> Predictor:
            loaded = load_model(model, models_dir, trust_model)
            return with_vocabulary(loaded, vocabulary) if vocabulary is not None else loaded

        predictor = ModelLoading(bundle, load)
    else:
        predictor = load_model(model, models_dir, trust_model)
        if vocabulary is not None:
            predictor = with_vocabulary(predictor, vocabulary)
    return classify_files(
        [video.path for video in found], predictor, models_dir=models_dir, trust_model=trust_model, **options
    )
