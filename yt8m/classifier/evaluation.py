"""Evaluating and applying trained classifiers: streaming metrics, the Kaggle predictions CSV, raw scores.

`evaluate` rebuilds a train dir's model (config.json + latest checkpoint, EMA weights when
trained with them) and streams Hit@1, PERR, GAP@20, mAP and the loss over the records with
`EvaluationMetrics`, never holding the full prediction matrix. `predict` writes the 2018 Kaggle
CSV (`VideoId,LabelConfidencePairs`, each row `id,label score label score ...`, the top 20 by
score, ties by class index) and optionally every score to an `.npz` (ids, predictions, labels)
for ensembling and for checking the metrics.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yt8m._tf import import_tensorflow_quietly
from yt8m.classifier.bundle import LOG_DIR, USE_SEGMENTS, USE_VIDEOS, ModelBundle
from yt8m.classifier.metrics import GAP_TOP_K, SEGMENT_TOP_K, EvaluationMetrics, SegmentMapAccumulator, top_k_by_class
from yt8m.classifier.readers import RecordSource
from yt8m.classifier.segments import (
    DEFAULT_TTA_SHIFTS,
    SegmentBatch,
    SegmentRanking,
    predict_segment_batches,
    save_segment_scores,
    write_segment_csv,
)
from yt8m.classifier.training import EVAL_LOG, ScalarLog, cross_entropy
from yt8m.classifier.tta import (
    COMBINE_RANK,
    DEFAULT_TTA_COMBINE,
    DEFAULT_TTA_MODE,
    ShiftRankFusion,
    check_tta_combine,
    write_ranking_csv,
)
from yt8m.core import Yt8mError
from yt8m.data.files import atomic_path

PREDICTIONS_HEADER = "VideoId,LabelConfidencePairs"
DEFAULT_BATCH_SIZE = 256  # eval / predict batches (memory, not the training batch)
SCORES_KEYS = ("video_ids", "predictions", "labels")


@dataclass
class PredictionBatch:
    video_ids: list[str]
    predictions: np.ndarray  # float32 [B, C]
    labels: np.ndarray  # float32 multi-hot [B, C]


def predict_batches(
    pattern: str,
    model,
    config,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[PredictionBatch]:
    """Run `model` over every record matching `pattern`, in file order, one batch at a time."""
    tf = import_tensorflow_quietly()
    if batch_size < 1:
        raise Yt8mError(f"`batch_size` must be >= 1, got {batch_size}")
    source = RecordSource.for_model(pattern, config)

    @tf.function(reduce_retracing=True)
    def forward(frames, num_frames):
        return model((frames, num_frames), training=False)

    for batch in source.iterate(batch_size):
        try:
            predictions = forward(tf.constant(batch["frames"]), tf.constant(batch["num_frames"])).numpy()
        except tf.errors.ResourceExhaustedError:
            raise Yt8mError(f"out of memory running the model on batches of {batch_size}; lower `batch_size`") from None
        yield PredictionBatch(
            video_ids=[v.decode("utf-8", errors="replace") for v in batch["video_id"]],
            predictions=predictions.astype(np.float32, copy=False),
            labels=batch["labels"],
        )


def batch_losses(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Per-example training loss (the starter's cross-entropy) of a batch, as numpy."""
    return np.asarray(cross_entropy(labels, predictions))


def evaluate(
    eval_pattern: str,
    train_dir: str | os.PathLike,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    checkpoint: str | None = None,
    top_k: int = GAP_TOP_K,
    progress: Callable[[int], None] | None = None,
    write_summaries: bool = True,
) -> dict[str, Any]:
    """Metrics of a train dir's model on labelled records: hit_at_one, perr, gap, map, loss, num_examples.

    Also returns `step` and `checkpoint`; with `write_summaries` the numbers go to TensorBoard
    under `train_dir/logs/eval` at the checkpoint's step. A model that scores segments only is refused.
    """
    loaded = ModelBundle.open(train_dir, use=USE_VIDEOS).load(checkpoint)
    model, config, step = loaded.model, loaded.config, loaded.step
    metrics = EvaluationMetrics(config.num_classes, top_k=top_k)
    done = 0
    for batch in predict_batches(eval_pattern, model, config, batch_size):
        metrics.accumulate(batch.predictions, batch.labels, loss=batch_losses(batch.labels, batch.predictions))
        done += len(batch.video_ids)
        if progress is not None:
            progress(done)
    if done == 0:
        raise Yt8mError(f"{eval_pattern}: no records to evaluate")
    results: dict[str, Any] = dict(metrics.get())
    results["step"] = step
    results["checkpoint"] = loaded.checkpoint
    if write_summaries:
        try:
            log = ScalarLog(Path(train_dir) / LOG_DIR / EVAL_LOG)
            log.write(step, {key: results[key] for key in ("hit_at_one", "perr", "gap", "map", "loss")})
            log.close()
        except (OSError, import_tensorflow_quietly().errors.OpError):
            pass  # a read-only train dir still evaluates; only the TensorBoard copy is skipped
    return results


def top_k_pairs(predictions: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row the `top_k` class indices and scores, by score descending then class index ascending.

    The same selection and tie rule as the metrics' top-k lists (`metrics.top_k_by_class`).
    """
    top = top_k_by_class(predictions, np.zeros(predictions.shape, dtype=bool), top_k)
    return top.classes, top.scores


def format_prediction_line(video_id: str, classes: np.ndarray, scores: np.ndarray) -> str:
    """One CSV row: `id,label score label score ...` (scores with %g, as the starter's inference)."""
    pairs = " ".join(f"{int(c)} {float(s):g}" for c, s in zip(classes, scores))
    return f"{video_id},{pairs}\n"


@dataclass
class PredictResult:
    num_videos: int
    csv_path: Path
    scores_path: Path | None
    step: int


def predict(
    input_pattern: str,
    train_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    top_k: int = GAP_TOP_K,
    batch_size: int = DEFAULT_BATCH_SIZE,
    checkpoint: str | None = None,
    scores_path: str | os.PathLike | None = None,
    progress: Callable[[int], None] | None = None,
) -> PredictResult:
    """Write the Kaggle `VideoId,LabelConfidencePairs` CSV (top `top_k` per video) for the records.

    Files are written under a temporary name and renamed when complete. `scores_path` also saves
    every score (`video_ids`, `predictions` [N, C] float32, `labels` [N, C] multi-hot) as `.npz`.
    A model that scores segments only is refused.
    """
    if top_k < 1:
        raise Yt8mError(f"`top_k` must be >= 1, got {top_k}")
    out = Path(out_path)
    _refuse_folders(out_path=out, scores_path=scores_path)
    loaded = ModelBundle.open(train_dir, use=USE_VIDEOS).load(checkpoint)
    model, config, step = loaded.model, loaded.config, loaded.step
    try:
        saved_scores, count = _write_predictions(
            out, input_pattern, model, config, batch_size, top_k, scores_path, progress
        )
    except OSError as error:  # a full disk, a folder that cannot be written ...
        raise _write_error(error, out) from None
    return PredictResult(num_videos=count, csv_path=out, scores_path=saved_scores, step=step)


def _refuse_folders(**paths: str | os.PathLike | None) -> None:
    """Output parameters must name files: an existing folder is refused before any work."""
    for name, path in paths.items():
        if path is not None and Path(path).is_dir():
            raise Yt8mError(f"{path}: is a folder; `{name}` must name a file")


def _write_error(error: OSError, out: Path) -> Yt8mError:
    """One line for an output that could not be written (a full disk, no permission)."""
    return Yt8mError(f"{error.filename or out}: cannot write the predictions ({error.strerror or error})")


def _write_predictions(out, input_pattern, model, config, batch_size, top_k, scores_path, progress) -> tuple[Path | None, int]:
    """Write the predictions CSV (and the scores) under temporary names; (scores path, videos)."""
    keep_scores = scores_path is not None
    ids: list[str] = []
    all_predictions: list[np.ndarray] = []
    all_labels: list[np.ndarray] = []
    count = 0
    saved_scores = None
    with atomic_path(out) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            handle.write(PREDICTIONS_HEADER + "\n")
            for batch in predict_batches(input_pattern, model, config, batch_size):
                classes, scores = top_k_pairs(batch.predictions, top_k)
                for video_id, row_classes, row_scores in zip(batch.video_ids, classes, scores):
                    handle.write(format_prediction_line(video_id, row_classes, row_scores))
                count += len(batch.video_ids)
                if keep_scores:
                    ids.extend(batch.video_ids)
                    all_predictions.append(batch.predictions)
                    all_labels.append(batch.labels > 0)
                if progress is not None:
                    progress(count)
        if keep_scores:
            saved_scores = save_scores(
                scores_path,
                ids,
                np.concatenate(all_predictions) if all_predictions else np.zeros((0, config.num_classes), np.float32),
                np.concatenate(all_labels) if all_labels else np.zeros((0, config.num_classes), bool),
            )
    return saved_scores, count


def save_scores(path: str | os.PathLike, video_ids: list[str], predictions: np.ndarray, labels: np.ndarray) -> Path:
    """Save scores as `.npz` (atomically): video_ids, predictions float32 [N, C], labels bool [N, C]."""
    target = Path(path)
    if target.suffix != ".npz":
        target = target.with_name(target.name + ".npz")
    with atomic_path(target) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(
            handle,
            video_ids=np.asarray(video_ids, dtype=str),
            predictions=predictions.astype(np.float32, copy=False),
            labels=labels.astype(bool, copy=False),
        )
    return target


def load_scores(path: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read an `.npz` written by `save_scores`: (video_ids, predictions, labels)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in SCORES_KEYS if key not in data]
            if missing:
                raise Yt8mError(f"{path}: not a yt8m scores file (missing {', '.join(missing)})")
            return [str(v) for v in data["video_ids"]], data["predictions"], data["labels"]
    except (OSError, ValueError) as error:
        raise Yt8mError(f"{path}: unreadable scores file ({error})") from None


def read_predictions_csv(path: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Parse a `VideoId,LabelConfidencePairs` CSV into {video_id: [(label, score), ...]}."""
    rows: dict[str, list[tuple[int, float]]] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            header = handle.readline().strip()
            if header != PREDICTIONS_HEADER:
                raise Yt8mError(f"{path}: expected the header {PREDICTIONS_HEADER!r}, got {header!r}")
            for number, line in enumerate(handle, start=2):
                line = line.rstrip("\n")
                if not line:
                    continue
                video_id, sep, pairs = line.partition(",")
                values = pairs.split()
                if not sep or len(values) % 2:
                    raise Yt8mError(f"{path}: line {number} is not 'id,label score ...'")
                try:
                    rows[video_id] = [(int(values[i]), float(values[i + 1])) for i in range(0, len(values), 2)]
                except ValueError:
                    raise Yt8mError(f"{path}: line {number} has a label or score that is not a number") from None
    except OSError as error:
        raise Yt8mError(f"{path}: cannot read ({error.strerror or error})") from None
    return rows


# ----------------------------------------------------------------------------- the segment task (2019)


def evaluate_segments(
    eval_pattern: str,
    train_dir: str | os.PathLike,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    class_ids: Iterable[int] | None = None,
    shifts: Sequence[int] = DEFAULT_TTA_SHIFTS,
    top_k: int = SEGMENT_TOP_K,
    checkpoint: str | None = None,
    progress: Callable[[int], None] | None = None,
    tta_mode: str = DEFAULT_TTA_MODE,
    tta_combine: str = DEFAULT_TTA_COMBINE,
) -> dict[str, Any]:
    """Segment MAP@top_k of a train dir's model (video- or segment-trained) over rated segments.

    Streams with `SegmentMapAccumulator`; only rated (segment, class) pairs of the `class_ids`
    whitelist (all classes when None) count. Returns segment_map, num_segments, step, checkpoint.
    Several `shifts` with `tta_combine="rank"` fuse the per-shift rankings (tta.py) instead.
    """
    loaded = ModelBundle.open(train_dir, use=USE_SEGMENTS).load(checkpoint)
    accumulator = SegmentMapAccumulator(loaded.config.num_classes, top_k=top_k, class_ids=class_ids)
    fusion = _shift_fusion(shifts, tta_combine, class_ids, loaded.config.num_classes, top_k)
    done = 0
    for batch in predict_segment_batches(eval_pattern, loaded.model, loaded.config, batch_size, shifts, tta_mode):
        if fusion is not None:
            fusion.add(batch)
        else:
            accumulator.accumulate(batch.predictions, batch.labels, batch.weights)
        done += len(batch.segment_ids)
        if progress is not None:
            progress(done)
    if done == 0:
        raise Yt8mError(f"{eval_pattern}: no segments to evaluate")
    return {
        "segment_map": fusion.segment_map(top_k) if fusion is not None else accumulator.get(),
        "num_segments": done,
        "tta_shifts": list(shifts),
        "tta_mode": tta_mode,
        "tta_combine": tta_combine if fusion is not None else "mean",
        "step": loaded.step,
        "checkpoint": loaded.checkpoint,
    }


@dataclass
class SegmentPredictResult:
    num_segments: int
    csv_path: Path
    scores_path: Path | None
    step: int


def predict_segments(
    input_pattern: str,
    train_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    class_ids: Iterable[int] | None = None,
    max_pred: int = SEGMENT_TOP_K,
    shifts: Sequence[int] = DEFAULT_TTA_SHIFTS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    checkpoint: str | None = None,
    scores_path: str | os.PathLike | None = None,
    progress: Callable[[int], None] | None = None,
    tta_mode: str = DEFAULT_TTA_MODE,
    tta_combine: str = DEFAULT_TTA_COMBINE,
) -> SegmentPredictResult:
    """Write the `Class,Segments` submission CSV for every segment of the records.

    Each whitelisted class (all classes when `class_ids` is None) lists at most `max_pred` segment
    ids `vid:start`, best first. `scores_path` also saves every score (`video_ids` = segment ids,
    `predictions`, `labels`, `weights`) as `.npz` for ensembling (the shifts' mean). Several
    `shifts` with `tta_combine="rank"` list the rank fusion of the per-shift rankings (tta.py).
    """
    _refuse_folders(out_path=out_path, scores_path=scores_path)
    loaded = ModelBundle.open(train_dir, use=USE_SEGMENTS).load(checkpoint)
    config = loaded.config
    classes = list(range(config.num_classes)) if class_ids is None else list(class_ids)
    ranking = SegmentRanking(classes, max_pred)
    fusion = _shift_fusion(shifts, tta_combine, classes, config.num_classes, max_pred)
    kept: list[SegmentBatch] = []
    done = 0
    for batch in predict_segment_batches(input_pattern, loaded.model, config, batch_size, shifts, tta_mode):
        if fusion is not None:
            fusion.add(batch)
        else:
            ranking.add(batch.segment_ids, batch.predictions)
        if scores_path is not None:
            kept.append(batch)
        done += len(batch.segment_ids)
        if progress is not None:
            progress(done)
    saved = None
    try:
        if scores_path is not None:
            saved = save_segment_scores(scores_path, kept, config.num_classes)
        path = write_ranking_csv(out_path, fusion.ranking()) if fusion is not None else write_segment_csv(out_path, ranking)
    except OSError as error:
        raise _write_error(error, Path(out_path)) from None
    return SegmentPredictResult(num_segments=done, csv_path=path, scores_path=saved, step=loaded.step)


def _shift_fusion(shifts, combine: str, class_ids, num_classes: int, max_pred: int) -> ShiftRankFusion | None:
    """The rank fusion of several TTA shifts (tta.py), or None to average them."""
    if check_tta_combine(combine) != COMBINE_RANK or len(shifts) < 2:
        return None
    classes = list(range(num_classes)) if class_ids is None else list(class_ids)
    return ShiftRankFusion([SegmentRanking(classes, max_pred) for _ in shifts], classes, max_pred=max_pred)
