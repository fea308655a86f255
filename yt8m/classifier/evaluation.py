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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yt8m.classifier.metrics import GAP_TOP_K, EvaluationMetrics, top_k_by_class
from yt8m.core import Yt8mError

PREDICTIONS_HEADER = "VideoId,LabelConfidencePairs"
DEFAULT_BATCH_SIZE = 256  # eval / predict batches (memory, not the training batch)
SCORES_KEYS = ("video_ids", "predictions", "labels")


def _tf():
    from yt8m._tf import import_tensorflow_quietly

    return import_tensorflow_quietly()


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
    tf = _tf()
    from yt8m.classifier.readers import RecordSource

    if batch_size < 1:
        raise Yt8mError(f"batch size must be >= 1, got {batch_size}")
    source = RecordSource(pattern, config.feature_spec, config.num_classes, video_level=config.video_level)

    @tf.function(reduce_retracing=True)
    def forward(frames, num_frames):
        return model((frames, num_frames), training=False)

    for batch in source.iterate(batch_size):
        predictions = forward(tf.constant(batch["frames"]), tf.constant(batch["num_frames"])).numpy()
        yield PredictionBatch(
            video_ids=[v.decode("utf-8", errors="replace") for v in batch["video_id"]],
            predictions=predictions.astype(np.float32, copy=False),
            labels=batch["labels"],
        )


def batch_losses(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Per-example training loss (the starter's cross-entropy) of a batch, as numpy."""
    from yt8m.classifier.training import cross_entropy

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
    under `train_dir/logs/eval` at the checkpoint's step.
    """
    from yt8m.classifier.training import EVAL_LOG, LOG_DIR, ScalarLog, load_trained_model

    model, config, step = load_trained_model(train_dir, checkpoint)
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
    results["checkpoint"] = checkpoint or _latest(train_dir)
    if write_summaries:
        try:
            log = ScalarLog(Path(train_dir) / LOG_DIR / EVAL_LOG)
            log.write(step, {key: results[key] for key in ("hit_at_one", "perr", "gap", "map", "loss")})
            log.close()
        except (OSError, _tf().errors.OpError):
            pass  # a read-only train dir still evaluates; only the TensorBoard copy is skipped
    return results


def _latest(train_dir: str | os.PathLike) -> str | None:
    from yt8m.classifier.training import latest_checkpoint

    return latest_checkpoint(train_dir)


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
    """
    from yt8m.classifier.training import load_trained_model

    if top_k < 1:
        raise Yt8mError(f"--top-k must be >= 1, got {top_k}")
    model, config, step = load_trained_model(train_dir, checkpoint)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.inprogress")
    keep_scores = scores_path is not None
    ids: list[str] = []
    all_predictions: list[np.ndarray] = []
    all_labels: list[np.ndarray] = []
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
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
        saved_scores = None
        if keep_scores:
            saved_scores = save_scores(
                scores_path,
                ids,
                np.concatenate(all_predictions) if all_predictions else np.zeros((0, config.num_classes), np.float32),
                np.concatenate(all_labels) if all_labels else np.zeros((0, config.num_classes), bool),
            )
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return PredictResult(num_videos=count, csv_path=out, scores_path=saved_scores, step=step)


def save_scores(path: str | os.PathLike, video_ids: list[str], predictions: np.ndarray, labels: np.ndarray) -> Path:
    """Save scores as `.npz` (temp name + rename): video_ids, predictions float32 [N, C], labels bool [N, C]."""
    target = Path(path)
    if target.suffix != ".npz":
        target = target.with_name(target.name + ".npz")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.inprogress.npz")
    try:
        np.savez_compressed(
            tmp,
            video_ids=np.asarray(video_ids, dtype=str),
            predictions=predictions.astype(np.float32, copy=False),
            labels=labels.astype(bool, copy=False),
        )
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
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
