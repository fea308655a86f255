"""Weighted ensembles of prediction sets, with the weights given or searched on a validation set.

A prediction set is a scores file written by `yt8m predict --save-scores` (`.npz`: `video_ids`,
`predictions` [N, C], `labels`; segment predictions also `weights`, the rated pairs) or a
video-level Kaggle CSV (`VideoId,LabelConfidencePairs`; classes not listed score 0). Sets are
aligned by id and combined as `sum_i w_i p_i / sum_i w_i`.

Weight search: Bayesian optimisation on the simplex, as the 2019 9th-place solution tuned its
ensemble: a Gaussian process (scikit-learn, Matern kernel + white noise) models the validation
metric (GAP@20 for videos, segment MAP for segments) as a function of the weights; each round
evaluates the candidate (among random Dirichlet draws) with the highest expected improvement.
The design starts with equal weights and every single model, so the result is never worse on
the validation set than the best member. Chosen weights are saved as JSON and can be reused.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from yt8m.classifier import metrics
from yt8m.classifier.evaluation import (
    PREDICTIONS_HEADER,
    format_prediction_line,
    load_scores,
    read_predictions_csv,
    save_scores,
    top_k_pairs,
)
from yt8m.classifier.segments import (
    SEGMENT_CSV_HEADER,
    SegmentBatch,
    SegmentRanking,
    resolve_segment_classes,
    save_segment_scores,
    write_segment_csv,
)
from yt8m.core import Yt8mError
from yt8m.data.files import atomic_path, write_text

WEIGHTS_FORMAT = 1
DEFAULT_SEARCH_ITERATIONS = 30
INITIAL_RANDOM_POINTS = 4  # random Dirichlet points besides equal weights and the vertices
CANDIDATES_PER_ROUND = 2000
EI_XI = 1e-4  # exploration margin of the expected improvement


@dataclass
class PredictionSet:
    """One model's predictions: ids, scores [N, C] and, when known, labels and rated pairs."""

    source: str
    ids: list[str]
    predictions: np.ndarray
    labels: np.ndarray | None = None
    weights: np.ndarray | None = None  # segment sets: 1 where the (segment, class) pair is rated

    @property
    def is_segments(self) -> bool:
        return self.weights is not None


def load_prediction_set(path: str | os.PathLike, num_classes: int | None = None) -> PredictionSet:
    """Read a `.npz` scores file or a video-level predictions CSV (see the module doc)."""
    path = Path(path)
    if not path.is_file():
        raise Yt8mError(f"{path}: no such predictions file")
    if path.suffix == ".npz":
        ids, predictions, labels = load_scores(path)
        with np.load(path, allow_pickle=False) as data:
            weights = data["weights"].astype(np.float32) if "weights" in data else None
        return PredictionSet(str(path), ids, predictions.astype(np.float32), labels.astype(np.float32), weights)
    with open(path, encoding="utf-8", errors="replace") as handle:
        header = handle.readline().strip()
    if header == SEGMENT_CSV_HEADER:
        raise Yt8mError(f"{path}: a Class,Segments CSV holds ranks, not scores; ensemble the .npz scores predict saves (`scores`)")
    if header != PREDICTIONS_HEADER:
        raise Yt8mError(f"{path}: not a .npz scores file or a {PREDICTIONS_HEADER} CSV")
    rows = read_predictions_csv(path)
    largest = max((label for pairs in rows.values() for label, _ in pairs), default=-1)
    classes = num_classes if num_classes is not None else largest + 1
    if largest >= classes:
        raise Yt8mError(f"{path}: label {largest} is outside 0..{classes - 1}")
    ids = list(rows)
    predictions = np.zeros((len(ids), max(classes, 1)), dtype=np.float32)
    for row, video_id in enumerate(ids):
        for label, score in rows[video_id]:
            predictions[row, label] = score
    return PredictionSet(str(path), ids, predictions)


def align(sets: Sequence[PredictionSet]) -> list[PredictionSet]:
    """The sets reordered to the first one's ids; every set must hold the same ids and classes."""
    if not sets:
        raise Yt8mError("an ensemble needs at least one prediction set")
    first = sets[0]
    order = first.ids
    aligned = [first]
    for other in sets[1:]:
        if other.is_segments != first.is_segments:
            raise Yt8mError(f"{other.source}: mixes segment and video predictions with {first.source}")
        width = max(first.predictions.shape[1], other.predictions.shape[1])
        if other.predictions.shape[1] != first.predictions.shape[1] and other.labels is not None:
            raise Yt8mError(f"{other.source}: has {other.predictions.shape[1]} classes, {first.source} {first.predictions.shape[1]}")
        index = {video_id: row for row, video_id in enumerate(other.ids)}
        missing = [video_id for video_id in order if video_id not in index]
        if missing or len(index) != len(order):
            example = missing[0] if missing else next(v for v in other.ids if v not in set(order))
            raise Yt8mError(f"{other.source}: does not hold the same ids as {first.source} (e.g. {example!r})")
        rows = np.asarray([index[video_id] for video_id in order], dtype=np.int64)
        predictions = np.zeros((len(order), width), dtype=np.float32)
        predictions[:, : other.predictions.shape[1]] = other.predictions[rows]
        aligned.append(
            PredictionSet(
                other.source,
                list(order),
                predictions[:, : first.predictions.shape[1]],
                None if other.labels is None else other.labels[rows],
                None if other.weights is None else other.weights[rows],
            )
        )
    return aligned


def check_weights(weights: Sequence[float], count: int) -> np.ndarray:
    values = np.asarray([float(w) for w in weights], dtype=np.float64)
    if values.size != count:
        raise Yt8mError(f"`weights` has {values.size} values for {count} prediction sets")
    if not np.all(np.isfinite(values)) or np.any(values < 0) or values.sum() <= 0:
        raise Yt8mError("`weights` must be finite, >= 0 and not all 0")
    return values / values.sum()


def combine(predictions: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The weighted mean of aligned prediction matrices."""
    w = check_weights(weights, len(predictions))
    total = np.zeros_like(np.asarray(predictions[0], dtype=np.float32))
    for weight, p in zip(w, predictions):
        total += np.float32(weight) * np.asarray(p, dtype=np.float32)
    return total


def metric_for(reference: PredictionSet, class_ids: Sequence[int] | None = None) -> tuple[str, Callable[[np.ndarray], float]]:
    """(name, fn(predictions) -> value) of the validation metric for `reference`'s labels."""
    if reference.labels is None:
        raise Yt8mError(f"{reference.source}: has no labels; searching weights needs labelled validation scores (.npz)")
    if reference.is_segments:
        labels, weights = reference.labels, reference.weights
        return "segment_map", lambda p: metrics.segment_map(p, labels, weights, class_ids=class_ids)
    labels = reference.labels
    return "gap", lambda p: metrics.gap(p, labels)


@dataclass
class SearchResult:
    weights: np.ndarray
    value: float
    metric: str
    history: list[tuple[list[float], float]]
    single: list[float]  # each member alone


def expected_improvement_rounds(
    history: list[tuple[np.ndarray, float]],
    evaluate: Callable[[np.ndarray], None],
    sample: Callable[[int], np.ndarray],
    rounds: int,
    seed: int = 0,
) -> None:
    """Bayesian optimisation rounds: fit a GP to `history` [(point, value)], `evaluate` (which
    appends to `history`) the candidate from `sample(n)` with the highest expected improvement."""
    kernel = ConstantKernel(1.0) * Matern(length_scale=0.3, nu=2.5) + WhiteKernel(1e-5, noise_level_bounds=(1e-10, 1e-1))
    for _ in range(max(0, rounds)):
        x = np.asarray([w for w, _ in history])
        y = np.asarray([v for _, v in history])
        gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=seed)
        with warnings.catch_warnings():  # a few points rarely pin the kernel's bounds: harmless here
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(x, y)
        candidates = sample(CANDIDATES_PER_ROUND)
        mean, std = gp.predict(candidates, return_std=True)
        best = y.max()
        std = np.maximum(std, 1e-12)
        z = (mean - best - EI_XI) / std
        improvement = (mean - best - EI_XI) * norm.cdf(z) + std * norm.pdf(z)
        evaluate(candidates[int(np.argmax(improvement))])


def search_weights(
    validation: Sequence[PredictionSet],
    *,
    iterations: int = DEFAULT_SEARCH_ITERATIONS,
    seed: int = 0,
    class_ids: Sequence[int] | None = None,
) -> SearchResult:
    """Bayesian optimisation of the ensemble weights on aligned, labelled validation sets."""
    sets = align(validation)
    name, metric = metric_for(sets[0], class_ids)
    predictions = [s.predictions for s in sets]
    count = len(sets)
    rng = np.random.default_rng(seed)
    points = [np.full(count, 1.0 / count)] + list(np.eye(count))
    points += list(rng.dirichlet(np.ones(count), size=INITIAL_RANDOM_POINTS)) if count > 1 else []
    history: list[tuple[np.ndarray, float]] = []

    def evaluate(w: np.ndarray) -> None:
        history.append((w, float(metric(combine(predictions, w)))))

    for point in points:
        evaluate(point)
    single = [value for w, value in history[1 : 1 + count]]
    if count > 1:
        expected_improvement_rounds(
            history, evaluate, lambda size: rng.dirichlet(np.ones(count), size=size), iterations - len(points), seed
        )
    best_w, best_value = max(history, key=lambda item: item[1])
    return SearchResult(
        weights=np.asarray(best_w, dtype=np.float64),
        value=best_value,
        metric=name,
        history=[(list(map(float, w)), v) for w, v in history],
        single=single,
    )


def save_weights(path: str | os.PathLike, sources: Sequence[str], weights: Sequence[float], **info: Any) -> Path:
    """Write the chosen weights as JSON (atomically), to be loaded again with `load_weights`."""
    data = {"format": WEIGHTS_FORMAT, "inputs": [str(s) for s in sources], "weights": [float(w) for w in weights], **info}
    return write_text(path, json.dumps(data, indent=2) + "\n")


def load_weights(path: str | os.PathLike, count: int) -> np.ndarray:
    """The weights saved by `save_weights` (one per prediction set, in the same order)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        weights = data["weights"]
    except FileNotFoundError:
        raise Yt8mError(f"{path}: no such weights file") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise Yt8mError(f"{path}: not a yt8m ensemble weights file ({error})") from None
    if not isinstance(weights, list) or len(weights) != count:
        raise Yt8mError(f"{path}: holds {len(weights) if isinstance(weights, list) else 0} weights for {count} prediction sets")
    try:
        return check_weights(weights, count)
    except Yt8mError as error:
        raise Yt8mError(f"{path}: {error}") from None


def write_outputs(
    reference: PredictionSet,
    combined: np.ndarray,
    out_path: str | os.PathLike | None,
    *,
    top_k: int = 20,
    class_ids: Sequence[int] | None = None,
    max_pred: int = 100_000,
    scores_path: str | os.PathLike | None = None,
) -> tuple[Path | None, Path | None]:
    """Write the ensemble's Kaggle CSV (video or segment format, as the inputs) and/or its scores."""
    csv_path = scores = None
    if out_path is not None:
        if reference.is_segments:
            classes = list(range(combined.shape[1])) if class_ids is None else list(class_ids)
            ranking = SegmentRanking(classes, max_pred)
            ranking.add(reference.ids, combined)
            csv_path = write_segment_csv(out_path, ranking)
        else:
            classes_k, scores_k = top_k_pairs(combined, top_k)
            with atomic_path(out_path) as temporary, open(temporary, "w", encoding="utf-8", newline="") as handle:
                handle.write(PREDICTIONS_HEADER + "\n")
                for video_id, c, s in zip(reference.ids, classes_k, scores_k):
                    handle.write(format_prediction_line(video_id, c, s))
            csv_path = Path(out_path)
    if scores_path is not None:
        labels = reference.labels if reference.labels is not None else np.zeros(combined.shape, bool)
        if reference.is_segments:
            batch = SegmentBatch(reference.ids, combined, labels, reference.weights)
            scores = save_segment_scores(scores_path, [batch], combined.shape[1])
        else:
            scores = save_scores(scores_path, reference.ids, combined, labels > 0)
    return csv_path, scores


@dataclass
class EnsembleResult:
    """What `run_ensemble` chose and wrote."""

    weights: np.ndarray
    count: int  # prediction sets combined
    search: SearchResult | None = None
    weights_path: Path | None = None
    csv_path: Path | None = None
    scores_path: Path | None = None


def run_ensemble(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike | None = None,
    *,
    weights: Sequence[float] | None = None,
    weights_file: str | os.PathLike | None = None,
    search: bool = False,
    validation: Sequence[str | os.PathLike] | None = None,
    search_iterations: int = 30,
    seed: int = 0,
    save_weights_to: str | os.PathLike | None = None,
    save_scores: str | os.PathLike | None = None,
    num_classes: int | None = None,
    top_k: int = 20,
    segment_classes: str | os.PathLike | None = None,
    segment_max_pred: int = 100_000,
) -> EnsembleResult:
    """Combine prediction sets by a weighted mean (weights given, loaded, searched or equal) and write
    the ensemble's CSV (`output`), scores (`save_scores`) and chosen weights (`save_weights_to`).

    `search` tunes the weights on labelled `validation` sets (one per input, in the same order;
    default: the inputs themselves). `segment_classes` is the rated-class whitelist file for segment
    sets (default: the official one for 3862 classes, else every class).
    """
    if sum(1 for given in (weights is not None, weights_file is not None, search) if given) > 1:
        raise Yt8mError("give at most one of `weights`, `weights_file` and `search`")
    sets = align([load_prediction_set(path, num_classes) for path in inputs])
    reference = sets[0]
    classes = reference.predictions.shape[1]
    class_ids = resolve_segment_classes(segment_classes, classes) if reference.is_segments else None
    info: dict[str, Any] = {}
    found = None
    if search:
        validation_sets = sets
        if validation is not None:
            if len(validation) != len(inputs):
                raise Yt8mError(f"`validation` lists {len(validation)} files for {len(inputs)} inputs")
            validation_sets = [load_prediction_set(path, num_classes) for path in validation]
        found = search_weights(validation_sets, iterations=search_iterations, seed=seed, class_ids=class_ids)
        chosen = found.weights
        info = {"metric": found.metric, "value": found.value, "single": found.single, "method": "bayesian-optimisation"}
    elif weights_file is not None:
        chosen = load_weights(weights_file, len(sets))
    else:
        chosen = check_weights(list(weights) if weights is not None else [1.0] * len(sets), len(sets))
    if output is None and save_scores is None and not search and save_weights_to is None:
        raise Yt8mError("nothing to do: give `output`, `save_scores` or `save_weights`")
    result = EnsembleResult(weights=np.asarray(chosen), count=len(sets), search=found)
    if save_weights_to is not None:
        result.weights_path = save_weights(save_weights_to, [str(p) for p in inputs], chosen, **info)
    if output is not None or save_scores is not None:
        combined = combine([s.predictions for s in sets], chosen)
        result.csv_path, result.scores_path = write_outputs(
            reference, combined, output, top_k=top_k, class_ids=class_ids, max_pred=segment_max_pred,
            scores_path=save_scores,
        )
    return result
