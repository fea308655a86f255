"""The yt8m library in a few calls, as openai/whisper offers `load_model` and `transcribe`:

    import yt8m
    outcome = yt8m.classify(["clip.mp4"], model="runs/nextvlad")     # labels for video files
    result = yt8m.train("features/*.tfrecord", "runs/nextvlad", "NeXtVLADModel", max_steps=1000)
    metrics = yt8m.evaluate("val/*.tfrecord", "runs/nextvlad")
    yt8m.predict("test/*.tfrecord", "runs/nextvlad", "predictions.csv")
    yt8m.export("runs/nextvlad", "saved_model")
    summary = yt8m.extract(["videos/"], "features/videos.tfrecord")

The rules that protect users live here (and below), not in the CLI: a model trained on segments
with video context is refused for whole videos, segment labels are checked before training,
classify feeds a model the feature networks its training records were made with, and every
check runs before anything is written. Errors are `Yt8mError`s naming the parameter (in
backquotes, e.g. `num_classes`); the CLI shows them with its option names. The `yt8m` commands
are thin: parse options, call these functions, print.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from yt8m.classifier import compact  # noqa: F401 - registers the compact bundle kinds (quantized, merged, ...)
from yt8m.classifier.compact.distill import DEFAULT_LAMBDA, resolve_distillation
from yt8m.classifier.compact.ema import DEFAULT_EMA_HALFLIFE
from yt8m.classifier.compact.size import export_within_budget
from yt8m.classifier.bundle import EXPORT_DIR, ModelBundle
from yt8m.classifier.config import load_label_weights
from yt8m.classifier.evaluation import (
    DEFAULT_BATCH_SIZE,
    PredictResult,
    SegmentPredictResult,
    evaluate_segments,
)
from yt8m.classifier.evaluation import evaluate as evaluate_videos
from yt8m.classifier.evaluation import predict as predict_videos
from yt8m.classifier.evaluation import predict_segments
from yt8m.classifier.export import export_model
from yt8m.classifier.metrics import GAP_TOP_K
from yt8m.classifier.predictor import Predictor
from yt8m.classifier.savedmodel import with_vocabulary
from yt8m.classifier.segments import parse_shifts, resolve_segment_classes, segment_map_of_csv
from yt8m.classifier.tta import DEFAULT_TTA_COMBINE, DEFAULT_TTA_MODE
from yt8m.classifier.training import TrainProgress, TrainResult, resolve_train_config
from yt8m.classifier.training import train as run_training
from yt8m.classification import DEFAULT_TOP_K, ClassifyOutcome
from yt8m.classification import classify as classify_videos
from yt8m.classification import load_model as load_classifier
from yt8m.core import MAX_FRAMES, NUM_CLASSES, FeatureSpec, Yt8mError
from yt8m.extractor.video import DEFAULT_FPS, DEFAULT_SAMPLING
from yt8m.extractor.job import extract

SEGMENT_TOP_K = 100_000  # the 2019 task's MAP@100000 and its submission's segments per class

__all__ = ["classify", "evaluate", "export", "extract", "load_model", "predict", "train"]


def load_model(
    path_or_name: str | os.PathLike | None = None,
    models_dir: str | os.PathLike | None = None,
    trust_model: bool = False,
) -> Predictor:
    """A classifier ready to score videos: a train dir, a SavedModel (yt8m export or the starter's
    signature) or `baseline` (the official baseline model; None: it, when fetched). A SavedModel
    whose graph reaches files or Python is refused unless `trust_model`."""
    return load_classifier(path_or_name, models_dir, trust_model)


def classify(
    videos: Iterable[str | os.PathLike] | str | os.PathLike,
    model: str | os.PathLike | Predictor | None = None,
    *,
    weights: str | None = None,
    models_dir: str | os.PathLike | None = None,
    top_k: int = DEFAULT_TOP_K,
    segments: bool = False,
    thumbnails: bool = True,
    fps: float = DEFAULT_FPS,
    max_frames: int = MAX_FRAMES,
    sampling: str = DEFAULT_SAMPLING,
    trust_model: bool = False,
    progress: Callable[[str], None] | None = None,
    vocabulary: str | os.PathLike | None = None,
) -> ClassifyOutcome:
    """Ranked labels for video files (files, folders or globs), per video and with `segments` per 5 s.

    `weights` (the feature networks) defaults to those the model's training records were made
    with, else the official ones. Each file is probed first and decoded once (thumbnails come
    from the sampled frames); a model that cannot serve is refused before any video is read.
    Files that fail become one-line `errors`; the others go on. `max_frames` (0: no limit) cuts
    long videos and the results say so (`capped`). `vocabulary` (vocabulary.csv or a label map)
    names the classes of any model; `trust_model` runs a SavedModel whose graph reaches files or
    Python.
    """
    return classify_videos(
        videos,
        model,
        vocabulary=vocabulary,
        models_dir=models_dir,
        trust_model=trust_model,
        weights=weights,
        top_k=top_k,
        segments=segments,
        thumbnails=thumbnails,
        fps=fps,
        max_frames=max_frames,
        sampling=sampling,
        progress=progress,
    )


def train(
    train_data: str | Sequence[str],
    train_dir: str | os.PathLike,
    model: str | None = None,
    *,
    feature_spec: FeatureSpec | None = None,
    num_classes: int | None = None,
    set_values: Sequence[str] = (),
    label_weights: str | os.PathLike | Sequence[float] | None = None,
    start_new_model: bool = False,
    init_from: str | os.PathLike | None = None,
    freeze_pooling_steps: int = 0,
    label_map: str | os.PathLike | None = None,
    segment_labels: bool = False,
    segment_context: bool = False,
    devices: Sequence[str] | None = None,
    strategy: Any = None,
    export: bool | str | os.PathLike = False,
    progress: Callable[[TrainProgress], None] | None = None,
    distill_from: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    distill_lambda: float = DEFAULT_LAMBDA,
    distill_weights: Sequence[float] | None = None,
    ema_from: str | os.PathLike | None = None,
    ema_halflife: float = DEFAULT_EMA_HALFLIFE,
    **settings: Any,
) -> TrainResult:
    """Train (or resume, or fine-tune with `init_from`) a classifier on records; see `training.train`.

    `settings` are training settings or model hyperparameters by name (`max_steps=1000`,
    `batch_size=160`, `nextvlad_cluster_size=64`); `set_values` the same as `key=value` strings.
    A new train dir needs `model`; a resumed one keeps its architecture. `export` also writes a
    SavedModel at the end (to `train_dir/export`, or to the path given).

    Compact models (the 2018 first place): `distill_from` (teacher bundles, or 'records' for a
    `distill-data` set) trains with loss = `distill_lambda` x CE(teacher) + (1 - lambda) x CE(labels);
    `ema_from` runs the EMA stage on a trained bundle (decay 1 - 1/`ema_halflife`, batch-norm
    statistics included) into the new `train_dir`.
    """
    if ema_from is not None and settings.get("ema_decay") is not None:
        raise Yt8mError("`ema_decay` cannot be combined with `ema_from` (the EMA stage's decay is 1 - 1/`ema_halflife`)")
    distill = resolve_distillation(distill_from, distill_lambda, distill_weights)
    training = {}
    if label_weights is not None:
        training["label_weights"] = (
            load_label_weights(label_weights) if isinstance(label_weights, (str, os.PathLike)) else list(label_weights)
        )
    config = resolve_train_config(
        train_dir,
        model,
        set_values=list(set_values),
        training=training,
        feature_spec=feature_spec,
        num_classes=num_classes,
        start_new_model=start_new_model,
        init_from=ema_from if ema_from is not None else init_from,  # an EMA stage has its source's model
        segment_labels=segment_labels,
        segment_context=segment_context,
        overrides={key: value for key, value in settings.items() if value is not None},
    )
    result = run_training(
        train_data,
        train_dir,
        config,
        start_new_model=start_new_model,
        progress=progress,
        devices=devices,
        strategy=strategy,
        init_from=init_from,
        freeze_pooling_steps=freeze_pooling_steps,
        label_map=label_map,
        distill=distill,
        ema_from=ema_from,
        ema_halflife=ema_halflife,
    )
    if export:
        target = Path(train_dir) / EXPORT_DIR if export is True else Path(export)
        result.export_dir = export_model(train_dir, target, overwrite=True)
    return result


def _segment_classes(path: str | os.PathLike | None, train_dir: str | os.PathLike | None) -> list[int] | None:
    """The rated-class whitelist for the segment task (all classes of a custom label space)."""
    num_classes = ModelBundle.open(train_dir).config.num_classes if train_dir is not None else NUM_CLASSES
    return resolve_segment_classes(path, num_classes)


def evaluate(
    eval_data: str,
    train_dir: str | os.PathLike | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    top_k: int = GAP_TOP_K,
    checkpoint: str | None = None,
    segment_labels: bool = False,
    segment_classes: str | os.PathLike | None = None,
    tta_shifts: str | Sequence[int] | None = None,
    segment_top_k: int = SEGMENT_TOP_K,
    predictions: str | os.PathLike | None = None,
    progress: Callable[[int], None] | None = None,
    write_summaries: bool = True,
    tta_mode: str = DEFAULT_TTA_MODE,
    tta_combine: str = DEFAULT_TTA_COMBINE,
) -> dict[str, Any]:
    """Metrics of a trained model on labelled records: Hit@1, PERR, GAP@`top_k`, mAP and loss.

    With `segment_labels`: the 2019 segment MAP@`segment_top_k` over rated segments, of the
    model (with `tta_shifts`) or of a `Class,Segments` CSV given as `predictions`. A model trained
    on segments with video context is refused for whole videos.
    """
    if segment_labels:
        if predictions is not None:
            class_ids = _segment_classes(segment_classes, train_dir)
            return segment_map_of_csv(predictions, eval_data, class_ids=class_ids, top_k=segment_top_k)
        if train_dir is None:
            raise Yt8mError("`train_dir` is required (the model to evaluate), or `predictions` (a Class,Segments CSV)")
        return evaluate_segments(
            eval_data,
            train_dir,
            batch_size,
            class_ids=_segment_classes(segment_classes, train_dir),
            shifts=parse_shifts(tta_shifts),
            top_k=segment_top_k,
            checkpoint=checkpoint,
            progress=progress,
            tta_mode=tta_mode,
            tta_combine=tta_combine,
        )
    if predictions is not None:
        raise Yt8mError("`predictions` needs `segment_labels=True` (it scores a Class,Segments CSV)")
    if train_dir is None:
        raise Yt8mError("`train_dir` is required (the model to evaluate)")
    return evaluate_videos(
        eval_data, train_dir, batch_size, checkpoint=checkpoint, top_k=top_k, progress=progress,
        write_summaries=write_summaries,
    )


def predict(
    input_data: str,
    train_dir: str | os.PathLike,
    output: str | os.PathLike,
    *,
    top_k: int = GAP_TOP_K,
    batch_size: int = DEFAULT_BATCH_SIZE,
    checkpoint: str | None = None,
    scores: str | os.PathLike | None = None,
    segment_labels: bool = False,
    segment_classes: str | os.PathLike | None = None,
    segment_max_pred: int = SEGMENT_TOP_K,
    tta_shifts: str | Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
    tta_mode: str = DEFAULT_TTA_MODE,
    tta_combine: str = DEFAULT_TTA_COMBINE,
) -> PredictResult | SegmentPredictResult:
    """Write the Kaggle predictions CSV of a trained model: top `top_k` label/score pairs per video,
    or with `segment_labels` the 2019 `Class,Segments` CSV; `scores` also saves every score (.npz)."""
    if segment_labels:
        return predict_segments(
            input_data,
            train_dir,
            output,
            class_ids=_segment_classes(segment_classes, train_dir),
            max_pred=segment_max_pred,
            shifts=parse_shifts(tta_shifts),
            batch_size=batch_size,
            checkpoint=checkpoint,
            scores_path=scores,
            progress=progress,
            tta_mode=tta_mode,
            tta_combine=tta_combine,
        )
    return predict_videos(
        input_data, train_dir, output, top_k=top_k, batch_size=batch_size, checkpoint=checkpoint,
        scores_path=scores, progress=progress,
    )


def export(
    train_dir: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    vocabulary: str | os.PathLike | None = None,
    checkpoint: str | None = None,
    max_size: str | int | None = None,
) -> Path:
    """Export a trained model as a SavedModel (`serialized` and `rgb_and_audio` signatures) at
    `output` (default `train_dir/export`); class names from `vocabulary`, else the model's own.
    `max_size` (e.g. '1GB', the 2018 limit) refuses a larger SavedModel, naming its largest parts."""
    target = Path(output) if output is not None else Path(train_dir) / EXPORT_DIR
    if max_size is not None:
        return export_within_budget(
            train_dir, target, max_size, overwrite=overwrite, vocabulary=vocabulary, checkpoint=checkpoint
        ).path
    return export_model(train_dir, target, checkpoint=checkpoint, overwrite=overwrite, vocabulary=vocabulary)
