"""Test-time augmentation of segment predictions and rank fusion, as the 2019 9th place did it.

Reference: hughshaoqz/3rd-Youtube8M-TM (the 9th place of the 3rd YouTube-8M challenge).

Shifts (`src/inference.py`, flag `--shift`): the batch of padded video matrices [B, 300, D] is
`np.roll`ed along time by `shift` before it is cut into 5-frame segments at the unshifted starts
(`get_segments`), one inference per shift. So shift -1 makes the segment at start s read frames
s+1..s+5 and shift +1 frames s-1..s+3; the roll wraps around the padded matrix, so frames come
back from the other end (zero padding for videos shorter than `max_frames`, the video's own last
frames otherwise). Each segment keeps its own frame count (min(5, num_frames - start)).
`TTA_ROLL` (the default) reproduces this on the padded length max(max_frames, num_frames);
`TTA_CLAMP` (yt8m's earlier rule, same sign) moves the window instead and clamps it inside the
video, so no padding or wrapped frame is ever read.

Combination (`src/Ensemble.ipynb`, `combine_tta` and `submission_generate`): every per-shift (or
per-model) `Class,Segments` list is read as a ranking; the segment at position r (0-based) of a
list adds `weight * w0 / (r + w0)` to its total, and each class lists its segments by total,
highest first (ties in first-seen order), keeping at most 100000 (`npt`). Their TTA used equal
weights and w0 = 3.72384689385059; their model ensemble searched w0 in [0, 10] and each weight
in [0, 200] by Bayesian optimisation (bayes_opt, 3 random points, then expected improvement)
on the out-of-fold segment MAP. `COMBINE_MEAN` (averaging the shifts' scores) stays an option.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from yt8m._tf import import_tensorflow_quietly
from yt8m.classifier.metrics import SEGMENT_TOP_K
from yt8m.core import SEGMENT_FRAMES, Yt8mError
from yt8m.data.files import atomic_path

TTA_ROLL = "roll"  # 9th place: np.roll on the padded matrix (wrap-around)
TTA_CLAMP = "clamp"  # the window moves and is clamped inside the video
TTA_MODES = (TTA_ROLL, TTA_CLAMP)
DEFAULT_TTA_MODE = TTA_ROLL
COMBINE_MEAN = "mean"  # average the shifts' scores
COMBINE_RANK = "rank"  # fuse the shifts' ranked lists, position r weighted w0 / (r + w0)
TTA_COMBINES = (COMBINE_MEAN, COMBINE_RANK)
DEFAULT_TTA_COMBINE = COMBINE_RANK  # their combine_tta
TTA_W0 = 3.72384689385059  # their combine_tta
W0_BOUNDS = (0.0, 10.0)  # their Bayesian optimisation bounds of w0 (0 itself is excluded: 0 / 0 at r = 0)
W0_MIN = 1e-3
SEGMENT_MAX_PRED = 100_000  # their npt: places kept per class
_CSV_HEADER = "Class,Segments"  # segments.SEGMENT_CSV_HEADER (segments.py imports this module)


def check_tta_mode(mode: str) -> str:
    if mode not in TTA_MODES:
        raise Yt8mError(f"`tta_mode` must be one of {', '.join(TTA_MODES)}, got {mode!r}")
    return mode


def check_tta_combine(combine: str) -> str:
    if combine not in TTA_COMBINES:
        raise Yt8mError(f"`tta_combine` must be one of {', '.join(TTA_COMBINES)}, got {combine!r}")
    return combine


def shifted_windows(quantized, starts, shifts: Sequence[int], max_frames: int, mode: str = DEFAULT_TTA_MODE):
    """The 5-frame windows of one video for every shift (TensorFlow, inside the record parser).

    `quantized` uint8 [T, D] (the whole video), `starts` int32 [N]. Returns (windows uint8
    [N, K, 5, D], counts int32 [N, K], valid float32 [N, K, 5]): `valid` is 1 where the row is a
    frame of the video and 0 where it is padding (to be zeroed after dequantizing, as the starter's
    reader pads dequantized matrices with zeros).
    """
    tf = import_tensorflow_quietly()
    check_tta_mode(mode)
    num_frames = tf.shape(quantized)[0]
    offsets = tf.range(SEGMENT_FRAMES, dtype=tf.int32)
    last_frame = tf.maximum(num_frames - 1, 0)
    windows, counts, valid = [], [], []
    for shift in shifts:
        if mode == TTA_ROLL:
            padded = tf.maximum(num_frames, max_frames)
            index = tf.math.floormod(starts[:, None] + offsets[None, :] - int(shift), padded)
            count = tf.clip_by_value(num_frames - starts, 0, SEGMENT_FRAMES)
        else:
            last_start = tf.maximum(num_frames - SEGMENT_FRAMES, 0)
            start = tf.clip_by_value(starts - int(shift), 0, last_start)
            index = start[:, None] + offsets[None, :]
            count = tf.reduce_sum(tf.cast(index < num_frames, tf.int32), axis=1)
        windows.append(tf.gather(quantized, tf.minimum(index, last_frame)))
        counts.append(count)
        valid.append(tf.cast(index < num_frames, tf.float32))
    return tf.stack(windows, axis=1), tf.stack(counts, axis=1), tf.stack(valid, axis=1)


def position_weights(length: int, w0: float) -> np.ndarray:
    """w0 / (r + w0) for the places r = 0..length-1 of a ranked list."""
    if not np.isfinite(w0) or w0 <= 0:
        raise Yt8mError(f"`w0` must be > 0, got {w0}")
    return w0 / (np.arange(length, dtype=np.float64) + w0)


class RankFusion:
    """Ranked lists (one {class id: [segment ids best first]} per member) fused by weighted places.

    The lists are indexed once, so that `fuse` can be called many times (the weight search).
    """

    def __init__(self, rankings: Sequence[Mapping[int, Sequence[str]]], max_pred: int = SEGMENT_MAX_PRED) -> None:
        if not rankings:
            raise Yt8mError("rank fusion needs at least one ranked list")
        if max_pred < 1:
            raise Yt8mError(f"`max_pred` must be >= 1, got {max_pred}")
        self.count = len(rankings)
        self.max_pred = int(max_pred)
        self.class_ids = sorted({int(c) for ranking in rankings for c in ranking})
        self._ids: dict[int, list[str]] = {}
        self._places: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        longest = 1
        for class_id in self.class_ids:
            index: dict[str, int] = {}  # first-seen order: member 0's list first, as their dict
            places = []
            for ranking in rankings:
                listed = list(ranking.get(class_id, []))
                longest = max(longest, len(listed))
                rows = np.fromiter((index.setdefault(sid, len(index)) for sid in listed), np.int64, len(listed))
                places.append((np.arange(len(listed), dtype=np.int64), rows))
            self._ids[class_id] = list(index)
            self._places[class_id] = places
        self._longest = longest

    def fuse(self, weights: Sequence[float] | None = None, w0: float = TTA_W0) -> dict[int, list[str]]:
        """{class id: segment ids by fused total, best first (ties: first seen), at most max_pred}."""
        weights = np.ones(self.count) if weights is None else np.asarray(weights, dtype=np.float64)
        if weights.shape != (self.count,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise Yt8mError(f"`weights` must be {self.count} finite values >= 0, got {list(weights)}")
        place = position_weights(self._longest, w0)
        fused = {}
        for class_id in self.class_ids:
            totals = np.zeros(len(self._ids[class_id]), dtype=np.float64)
            for weight, (positions, rows) in zip(weights, self._places[class_id]):
                np.add.at(totals, rows, weight * place[positions])
            order = np.argsort(-totals, kind="stable")[: self.max_pred]
            ids = self._ids[class_id]
            fused[class_id] = [ids[i] for i in order]
        return fused


def fuse_rankings(
    rankings: Sequence[Mapping[int, Sequence[str]]],
    weights: Sequence[float] | None = None,
    w0: float = TTA_W0,
    max_pred: int = SEGMENT_MAX_PRED,
) -> dict[int, list[str]]:
    """Rank fusion of ranked lists (see the module doc); equal weights by default."""
    return RankFusion(rankings, max_pred).fuse(weights, w0)


def rank_from_scores(segment_ids: Sequence[str], scores: np.ndarray, class_ids: Iterable[int], max_pred: int) -> dict[int, list[str]]:
    """{class id: the max_pred best segment ids by score (ties: earlier rows first)} of [B, C] scores."""
    scores = np.asarray(scores)
    ranking = {}
    for class_id in class_ids:
        order = np.lexsort((np.arange(scores.shape[0]), -scores[:, class_id]))[:max_pred]
        ranking[int(class_id)] = [segment_ids[i] for i in order]
    return ranking


class ShiftRankFusion:
    """Segment batches with per-shift predictions -> one ranking per shift -> their rank fusion.

    `rankings` holds one empty ranking per shift (`segments.SegmentRanking`: `add(ids, scores)`,
    `ranked()`); memory is what they keep. Rated (segment, class) pairs of the batches are kept
    too, for `segment_map`.
    """

    def __init__(self, rankings: Sequence, class_ids: Iterable[int], w0: float = TTA_W0, max_pred: int = SEGMENT_MAX_PRED) -> None:
        self.rankings = list(rankings)
        self.class_ids = sorted({int(c) for c in class_ids})
        self.max_pred = int(max_pred)
        self.w0 = float(w0)
        self.rated: dict[tuple[str, int], bool] = {}
        self._allowed = np.asarray(self.class_ids, dtype=np.int64)

    def add(self, batch) -> None:
        """Add a `segments.SegmentBatch` (its `shift_predictions` [B, K, C], else its predictions)."""
        per_shift = batch.predictions[:, None] if batch.shift_predictions is None else batch.shift_predictions
        if per_shift.shape[1] != len(self.rankings):
            raise Yt8mError(f"a batch has {per_shift.shape[1]} shifts for {len(self.rankings)} rankings")
        for k, ranking in enumerate(self.rankings):
            ranking.add(batch.segment_ids, per_shift[:, k])
        rows, cols = np.nonzero(np.asarray(batch.weights)[:, self._allowed] > 0)
        for row, col in zip(rows, cols):
            class_id = int(self._allowed[col])
            key = (batch.segment_ids[row], class_id)
            self.rated[key] = self.rated.get(key, False) or bool(batch.labels[row, class_id] > 0)

    def ranking(self) -> dict[int, list[str]]:
        """{class id: segment ids best first}: the shifts' rankings fused with equal weights and w0."""
        return RankFusion([dict(r.ranked()) for r in self.rankings], self.max_pred).fuse(None, self.w0)

    def segment_map(self, top_k: int = SEGMENT_TOP_K) -> float:
        return segment_map_of_ranking(self.ranking(), self.rated, class_ids=self.class_ids, top_k=top_k)


def segment_map_of_ranking(
    ranking: Mapping[int, Sequence[str]],
    rated: Mapping[tuple[str, int], bool],
    *,
    class_ids: Iterable[int] | None = None,
    top_k: int = SEGMENT_TOP_K,
) -> float:
    """Segment MAP@top_k of ranked lists against rated (segment id, class) pairs.

    The definition of `metrics.segment_map`: per class keep the first top_k listed segments, keep
    the rated ones, AP over the rated positives (denominator: all rated positives of the class,
    listed or not); mean over the (whitelisted) classes with a rated positive; 0.0 if none.
    """
    allowed = None if class_ids is None else {int(c) for c in class_ids}
    positives: dict[int, int] = {}
    for (_, label), present in rated.items():
        if present and (allowed is None or label in allowed):
            positives[label] = positives.get(label, 0) + 1
    aps = []
    for label, count in positives.items():
        hits = seen = 0
        total = 0.0
        for sid in list(ranking.get(label, []))[:top_k]:
            present = rated.get((sid, label))
            if present is None:
                continue
            seen += 1
            if present:
                hits += 1
                total += hits / seen
        aps.append(total / count)
    return float(np.mean(aps)) if aps else 0.0


def write_ranking_csv(path: str | os.PathLike, ranking: Mapping[int, Sequence[str]]) -> Path:
    """Write {class id: segment ids} as a Kaggle 2019 `Class,Segments` CSV (atomically, by class id)."""
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8", newline="") as handle:
        handle.write(_CSV_HEADER + "\n")
        for class_id in sorted(ranking):
            handle.write(f"{class_id},{' '.join(ranking[class_id])}\n")
    return Path(path)
