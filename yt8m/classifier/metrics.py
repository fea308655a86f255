"""YouTube-8M competition metrics in plain, vectorised numpy (no TensorFlow).

The definitions follow the google/youtube-8m starter code (``eval_util.py``,
``average_precision_calculator.py``, ``mean_average_precision_calculator.py``) and the 2019 Kaggle
segment task (MAP@100000):

- Hit@1: fraction of videos whose best-scoring class is a true label.
- PERR: for a video with k true labels, the precision of its k best predictions, counting only
  predictions with a score > 0; videos without labels contribute 0 but count in the mean.
- GAP@k: every video's k best (score, is-true) pairs pooled into one list, non-interpolated AP
  with the denominator = the number of true labels over all videos.
- mAP: per-class AP over the same top-k lists (denominator = all positives of the class),
  classes without positives dropped.
- segment MAP@K: per class, rank all segments by score, keep the first K, keep the rated
  (segment, class) pairs, AP with the denominator = rated positives of the class.

Deterministic tie rules (documented differences from the starter, which relies on
``numpy.argpartition`` and a Python ``random.seed(0)`` shuffle):

- a video's top-k is ordered by (score descending, class index ascending); so the selection at the
  k-th place among equal scores takes the lower class indices, whatever the batching;
- ties in an AP list are broken, as in the starter, by shuffling the list with a fixed seed before a
  stable sort by descending score; the shuffle is ``np.random.RandomState(TIE_SHUFFLE_SEED)
  .permutation(len(list))`` (the same idea, not the same permutation as Python's ``random``);
  mAP uses the permutation of the pooled top-k list for every class, so GAP and mAP see one order;
- in the segment task, equal scores are ranked by segment row order (earlier rows first), which
  is what a submission written in row order gives and what a streaming evaluation can reproduce.

Speed (`bench/metrics.py` runs the starter's calculators beside these): float32 top-k lists come
from a group-maximum prefilter ranked by exact integer keys (`_top_k_grouped`); `perr` needs only
top-k membership, decided from the same group maxima by repeated argmax and one partition of a
few candidates per row (`_perr_hits_grouped`), after two passes over the inputs; the per-class AP
lists are ordered by one packed int64 sort, and row chunks are scanned on threads. Each of these
gives exactly the result of the plain path (rows they cannot decide take it), which tests
compare them with.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np

T = TypeVar("T")
GAP_TOP_K = 20  # predictions per video kept for GAP / mAP (competition: GAP@20)
SEGMENT_TOP_K = 100_000  # segments per class a 2019 submission may list (MAP@100000)
TIE_SHUFFLE_SEED = 0  # the starter shuffles AP lists with seed 0 before sorting
CHUNK_ELEMENTS = 1 << 20  # rows are processed in chunks of about this many scores (bounds temporaries)
PERR_GROUP = 16  # classes per group of the prefilter shared by `perr`'s label-count buckets
PERR_PICK_LIMIT = 8  # rows with up to this many labels: one bucket per count, best groups picked by argmax
METRICS_THREADS = min(8, os.cpu_count() or 1)  # chunks scanned at once (numpy releases the GIL)
SEGMENT_CHUNK_ELEMENTS = 1 << 24  # class blocks transposed at once by `segment_map`
SEGMENT_PRUNE_FACTOR = 2  # a class's unrated buffer is pruned to top_k once it exceeds this x top_k
_INT16_MAX = np.iinfo(np.int16).max
# (largest k, classes per group) of the top-k prefilter (see `_top_k_grouped`); measured on 3862 classes
TOP_K_GROUP_SIZES: tuple[tuple[float, int], ...] = ((4, 32), (8, 16), (float("inf"), 8))
TOP_K_GROUP_MARGIN = 3  # the prefilter is used when there are at least this many groups per k


def _class_dtype(num_classes: int) -> np.dtype:
    """Smallest integer type that holds a class index (int16 for the 3862 YT8M classes)."""
    return np.dtype(np.int16) if num_classes <= _INT16_MAX else np.dtype(np.int32)


def _as_scores(predictions: Any) -> np.ndarray:
    """Predictions as a floating array (integers become float64 so that negation is safe)."""
    array = np.asarray(predictions)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    return array


def _check_pair(predictions: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a [N, C] prediction matrix and its label matrix; return both as arrays.

    Labels stay as given (any value > 0 is a positive); they are compared chunk by chunk so that no
    [N, C] boolean copy is made.
    """
    scores = _as_scores(predictions)
    truth = np.asarray(labels)
    if scores.ndim != 2:
        raise ValueError(f"predictions must be 2-D [videos, classes], got shape {scores.shape}")
    if truth.shape != scores.shape:
        raise ValueError(f"labels shape {truth.shape} differs from predictions shape {scores.shape}")
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"predictions must have at least one video and one class, got {scores.shape}")
    return scores, truth


def _check_top_k(top_k: int) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k <= 0:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    return int(top_k)


def _row_chunks(num_rows: int, num_classes: int, elements: int | None = None) -> Iterator[slice]:
    """Row slices holding about `elements` (default CHUNK_ELEMENTS) scores each."""
    step = max(1, (elements or CHUNK_ELEMENTS) // max(1, num_classes))
    for start in range(0, num_rows, step):
        yield slice(start, min(num_rows, start + step))


def _top_k_sorted(chunk: np.ndarray, k: int) -> np.ndarray:
    """[n, k] class indices of each row's k best scores, ordered by (score desc, class asc).

    float32 rows with many classes take the group-maximum prefilter (`_top_k_grouped`); the rest,
    and the rows that prefilter cannot decide, take the exact argpartition path. Both give the
    same indices.
    """
    num_classes = chunk.shape[1]
    if k == 1:  # np.argmax: the first of the highest scores, i.e. the lowest class among ties
        return np.argmax(chunk, axis=1)[:, None]
    group = _group_size(k)
    if chunk.dtype == np.float32 and k < num_classes and num_classes // group >= TOP_K_GROUP_MARGIN * k:
        return _top_k_grouped(chunk, k, group)
    return _top_k_sorted_exact(chunk, k)


def _group_size(k: int) -> int:
    """Classes per group of the prefilter: larger groups for small k (fewer groups to rank)."""
    return next(size for limit, size in TOP_K_GROUP_SIZES if k <= limit)


def _candidate_keys(chunk: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """int64 keys of the float32 scores at (`rows`, `columns` [n, m]) ordering them by (score desc, class asc).

    The float's bits become an int32 with the same order (negative floats: the magnitude bits
    flipped; -0.0 first made +0.0) in the high half, the complemented class in the low half: a
    larger key is a better (score, class) pair and no two keys of one row are equal.
    """
    num_classes = chunk.shape[1]
    flat = columns + (rows * num_classes)[:, None]
    values = np.take(chunk.reshape(-1), flat) + np.float32(0.0)  # -0.0 + 0.0 == +0.0
    bits = values.view(np.int32)
    bits ^= (bits >> 31) & np.int32(0x7FFFFFFF)
    keys = bits.astype(np.int64)
    keys <<= 32
    keys |= (num_classes - 1) - columns
    return keys


def _group_maxima(chunk: np.ndarray, group: int) -> np.ndarray:
    """[n, G] maxima of the groups of `_top_k_grouped` (group g: classes g, g+G, g+2G, ...)."""
    num_rows, num_classes = chunk.shape
    groups = num_classes // group
    return chunk[:, : groups * group].reshape(num_rows, group, groups).max(axis=1)


def _top_k_grouped(chunk: np.ndarray, k: int, group: int) -> np.ndarray:
    """`_top_k_sorted` for float32 through a group-maximum prefilter (same result, several x faster).

    The first B*G classes are split into G groups of B = `group` classes (group g holds the
    classes g, g+G, g+2G, ..., so that the maxima are one vectorised pass). A row's k best scores
    all lie in the k groups with the highest maxima (plus the few tail classes past B*G): the k-th
    best score is at least the k-th group maximum, and a group with a lower maximum holds nothing
    that high. Only those k*B + tail candidates are ranked, by exact integer keys. Rows where
    several groups tie at the k-th maximum (or hold NaN) are redone by the exact path.
    """
    chunk = np.ascontiguousarray(chunk)
    rows = np.arange(chunk.shape[0])
    return _top_k_from_groups(chunk, _group_maxima(chunk, group), rows, k, group)


def _top_k_from_groups(chunk: np.ndarray, group_max: np.ndarray, rows: np.ndarray, k: int, group: int) -> np.ndarray:
    """`_top_k_grouped` for the `rows` of a C-contiguous `chunk`, whose group maxima are `group_max`."""
    num_rows, num_classes = rows.size, chunk.shape[1]
    groups = group_max.shape[1]
    body = groups * group
    best_groups = np.argpartition(group_max, groups - k, axis=1)[:, groups - k :]
    kth_max = np.take_along_axis(group_max, best_groups, axis=1).min(axis=1)
    columns = (best_groups[:, :, None] + groups * np.arange(group)).reshape(num_rows, k * group)
    if body < num_classes:
        tail = np.broadcast_to(np.arange(body, num_classes), (num_rows, num_classes - body))
        columns = np.concatenate([columns, tail], axis=1)
    keys = _candidate_keys(chunk, rows, columns)
    width = keys.shape[1]
    best = np.partition(keys, width - k, axis=1)[:, width - k :]
    best.sort(axis=1)
    idx = (num_classes - 1) - (best[:, ::-1] & 0xFFFFFFFF)
    undecided = np.flatnonzero(np.count_nonzero(group_max >= kth_max[:, None], axis=1) != k)
    if undecided.size:  # ties (or NaN) at the k-th group maximum
        idx[undecided] = _top_k_sorted_exact(chunk[rows[undecided]], k)
    return idx


def _top_k_sorted_exact(chunk: np.ndarray, k: int) -> np.ndarray:
    """`_top_k_sorted` by a full argpartition of each row (any dtype, any k)."""
    num_classes = chunk.shape[1]
    if k >= num_classes:
        return np.argsort(-chunk, axis=1, kind="stable")
    idx = np.argpartition(chunk, num_classes - k, axis=1)[:, num_classes - k :]
    kth = np.take_along_axis(chunk, idx, axis=1).min(axis=1)
    n_ge = np.count_nonzero(chunk >= kth[:, None], axis=1)
    straddle = np.flatnonzero(n_ge > k)
    if straddle.size:
        sub = chunk[straddle]
        value = kth[straddle, None]
        greater = sub > value
        equal = sub == value
        need = k - np.count_nonzero(greater, axis=1)
        keep = greater | (equal & (np.cumsum(equal, axis=1) <= need[:, None]))
        idx[straddle] = np.nonzero(keep)[1].reshape(-1, k)
    idx.sort(axis=1)
    order = np.argsort(-np.take_along_axis(chunk, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


@dataclass
class TopK:
    """Each video's top-k predictions and the per-class positive counts over all videos.

    ``classes``/``scores``/``labels`` are [N, k] (k = min(top_k, C)), each row ordered by
    (score desc, class asc); ``num_positives`` is [C] int64, counted over ALL videos.
    """

    classes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    num_positives: np.ndarray


@dataclass
class _BatchStats:
    """What one pass over a prediction matrix yields (see `_scan`)."""

    num_videos: int
    hits_at_one: int
    perr_hits: np.ndarray | None  # [C+1] int64: true labels in the top-k of videos with k labels
    top: TopK


def _positive_mask(labels: np.ndarray) -> np.ndarray:
    """labels > 0 as bool (bool labels are used as they are)."""
    return labels if labels.dtype == np.bool_ else labels > 0


def _count_true(mask: np.ndarray, axis: int) -> np.ndarray:
    """count_nonzero of a bool matrix along `axis`, as int64, by a small-integer sum (faster)."""
    total = mask.shape[axis]
    dtype = np.uint16 if total <= np.iinfo(np.uint16).max else np.int64
    return mask.view(np.uint8).sum(axis=axis, dtype=dtype).astype(np.int64)


@dataclass
class _ChunkStats:
    hits: int
    perr_hits: np.ndarray | None
    num_positives: np.ndarray
    top: tuple[np.ndarray, np.ndarray, np.ndarray]


def _scan_chunk(chunk: np.ndarray, labels: np.ndarray, k: int, want_perr: bool, class_dtype: np.dtype) -> _ChunkStats:
    """Hit@1, PERR counts, positives per class and top-k triplets of a few rows (one sorted top list)."""
    num_classes = chunk.shape[1]
    truth = _positive_mask(labels)
    num_positives = _count_true(truth, axis=0)
    perr_hits = None
    k_max = 0
    if want_perr:
        num_labels = _count_true(truth, axis=1)
        k_max = min(int(num_labels.max()), num_classes)
    idx = _top_k_sorted(chunk, max(k, k_max))
    hits = int(np.count_nonzero(np.take_along_axis(truth, idx[:, :1], axis=1)))
    if want_perr:
        perr_hits = np.zeros(num_classes + 1, dtype=np.int64)
        if k_max > 0:
            row_hits = _perr_hits_of(chunk, truth, np.arange(chunk.shape[0]), idx[:, :k_max], num_labels)
            perr_hits += np.bincount(num_labels, weights=row_hits, minlength=num_classes + 1).astype(np.int64)
    sel = idx[:, :k]
    top = (sel.astype(class_dtype), np.take_along_axis(chunk, sel, axis=1), np.take_along_axis(truth, sel, axis=1))
    return _ChunkStats(hits, perr_hits, num_positives, top)


def _perr_prepare(scores: np.ndarray, truth: np.ndarray, rows: slice, grouped: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The two passes over every value of a few rows: label counts, and group maxima if `grouped`."""
    num_labels = np.minimum(_count_true(_positive_mask(truth[rows]), axis=1), scores.shape[1])
    return num_labels, _group_maxima(scores[rows], PERR_GROUP) if grouped else None


def _perr_block(
    scores: np.ndarray, truth: np.ndarray, num_labels: np.ndarray, group_max: np.ndarray | None, block: slice
) -> np.ndarray:
    """PERR counts of the rows in `block`: [C+1] int64, true labels in the top-k of videos with k labels.

    `scores` and `truth` are C-contiguous [N, C]; `group_max` (float32 rows with enough classes)
    are their rows' group maxima. Rows are ranked in buckets of equal label counts up to
    PERR_PICK_LIMIT (most videos have 1-4 labels), then one bucket for the rest, each only as deep
    as its rows need; the buckets work on small arrays only (candidates, maxima). Rows without
    group maxima, and those the prefilter cannot decide, take the exact top-k.
    """
    num_classes = scores.shape[1]
    perr_hits = np.zeros(num_classes + 1, dtype=np.int64)
    labelled = np.flatnonzero(num_labels[block]) + block.start
    bucket = np.minimum(num_labels[labelled], PERR_PICK_LIMIT + 1)
    order = np.argsort(bucket, kind="stable")
    by_bucket = labelled[order]
    keys, starts = np.unique(bucket[order], return_index=True)
    for key, rows in zip(keys, np.split(by_bucket, starts[1:])):
        counts = num_labels[rows]
        width = int(counts.max())
        row_hits = np.full(rows.size, -1, dtype=np.int64)
        if group_max is not None and group_max.shape[1] >= TOP_K_GROUP_MARGIN * width:
            if key <= PERR_PICK_LIMIT:
                row_hits = _perr_hits_grouped(scores, truth, group_max[rows], rows, width)
            else:
                idx = _top_k_from_groups(scores, group_max[rows], rows, width, PERR_GROUP)
                row_hits = _perr_hits_of(scores, truth, rows, idx, counts)
        undecided = np.flatnonzero(row_hits < 0)
        if undecided.size:  # no prefilter, or ties / NaN at a row's boundary: the exact top-k
            sub = rows[undecided]
            idx = _top_k_sorted_exact(scores[sub], width)
            row_hits[undecided] = _perr_hits_of(scores, truth, sub, idx, counts[undecided])
        perr_hits += np.bincount(counts, weights=row_hits, minlength=num_classes + 1).astype(np.int64)
    return perr_hits


def _perr_hits_of(scores: np.ndarray, truth: np.ndarray, rows: np.ndarray, idx: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per row of `rows`: true labels with a score > 0 among its first `counts` classes of `idx`."""
    num_classes = scores.shape[1]
    flat = idx + (rows * num_classes)[:, None]
    good = _positive_mask(np.take(truth.reshape(-1), flat)) & (np.take(scores.reshape(-1), flat) > 0)
    good &= np.arange(idx.shape[1])[None, :] < counts[:, None]
    return np.count_nonzero(good, axis=1).astype(np.int64)


def _perr_hits_grouped(scores: np.ndarray, truth: np.ndarray, group_max: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Per row of `rows` (C-contiguous float32 [N, C] `scores`, k labels each): true labels with a score > 0
    among its k best scores, or -1 where the row must take the exact path. `group_max` (the rows'
    group maxima, a copy the caller gives away) is overwritten.

    Only membership of the top-k set is needed, not its order. A row's k best groups (maxima of
    `_group_maxima`) are picked by repeated argmax, which also gives the next group maximum. The
    k-th best score is at least the k-th picked maximum and every other group lies at or below the
    next maximum, so when that one is strictly lower the top-k set is exactly the candidates
    (picked groups + tail classes) scoring at least the k-th best candidate. Rows with equal maxima
    at the boundary, NaN, or more than k candidates at or above the k-th best score (where the
    class-index tie rule decides) are returned as -1.
    """
    num_rows, num_classes = rows.size, scores.shape[1]
    groups = group_max.shape[1]
    body = groups * PERR_GROUP
    order = np.arange(num_rows)
    remaining = group_max  # the caller's copy (group_max[rows]); picked groups are set to -inf in it
    picked = np.empty((num_rows, k), dtype=np.intp)
    for j in range(k):
        best = np.argmax(remaining, axis=1)
        picked[:, j] = best
        if j == k - 1:
            kth_max = remaining[order, best]
        remaining[order, best] = -np.inf
    next_max = remaining.max(axis=1)
    starts = picked + (rows * num_classes)[:, None]
    flat = (starts[:, :, None] + groups * np.arange(PERR_GROUP)).reshape(num_rows, k * PERR_GROUP)
    if body < num_classes:
        flat = np.concatenate([flat, (rows * num_classes)[:, None] + np.arange(body, num_classes)], axis=1)
    values = np.take(scores.reshape(-1), flat)
    width = values.shape[1]
    kth = np.partition(values, width - k, axis=1)[:, width - k]
    in_top = values >= kth[:, None]
    top_rows, top_columns = np.nonzero(in_top)  # labels are read only where a score is in the top k
    good = _positive_mask(np.take(truth.reshape(-1), flat[top_rows, top_columns])) & (values[top_rows, top_columns] > 0)
    hits = np.bincount(top_rows[good], minlength=num_rows).astype(np.int64)
    # NaN: argmax picks a NaN group first and partition ranks NaN highest, while NaN >= kth is
    # False, so a row holding NaN always has fewer than k candidates in_top and is undecided.
    decided = (np.count_nonzero(in_top, axis=1) == k) & (next_max < kth_max)
    hits[~decided] = -1
    return hits


def _map_chunks(function: Callable[[slice], T], shape: tuple[int, int], elements: int | None = None) -> list[T]:
    """`function` over the row chunks of a [rows, classes] matrix, in row order, on METRICS_THREADS threads.

    Chunks are independent and numpy releases the GIL in the heavy calls; the callers join integer
    counts in row order, so results do not depend on the thread count.
    """
    chunks = list(_row_chunks(*shape, elements))
    threads = min(METRICS_THREADS, len(chunks))
    if threads <= 1:
        return [function(rows) for rows in chunks]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(function, chunks))


def _scan(scores: np.ndarray, labels: np.ndarray, top_k: int, want_perr: bool) -> _BatchStats:
    """One chunked pass: hit@1 count, PERR counts by label count (`want_perr`), and the top-k triplets.

    Each row's best class comes from the same sorted top list as the rest (its first entry is the
    first maximum, i.e. np.argmax), so Hit@1 costs no extra pass.
    """
    num_rows, num_classes = scores.shape
    class_dtype = _class_dtype(num_classes)
    k = min(top_k, num_classes)
    stats = _map_chunks(lambda rows: _scan_chunk(scores[rows], labels[rows], k, want_perr, class_dtype), scores.shape)
    top = TopK(
        classes=np.concatenate([s.top[0] for s in stats]),
        scores=np.concatenate([s.top[1] for s in stats]),
        labels=np.concatenate([s.top[2] for s in stats]),
        num_positives=np.sum([s.num_positives for s in stats], axis=0, dtype=np.int64),
    )
    perr_hits = np.sum([s.perr_hits for s in stats], axis=0) if want_perr else None
    return _BatchStats(num_rows, sum(s.hits for s in stats), perr_hits, top)


def _perr_from_counts(perr_hits: np.ndarray, num_videos: int) -> float:
    """mean_i(hits_i / k_i) written as sum_k(H[k] / k) / N, so batches add up exactly."""
    ks = np.arange(1, len(perr_hits), dtype=np.float64)
    return float(np.sum(perr_hits[1:] / ks) / num_videos)


def hit_at_one(predictions: Any, labels: Any) -> float:
    """Fraction of videos whose argmax class (first on ties) is a true label."""
    scores, truth = _check_pair(predictions, labels)

    def hits(rows: slice) -> int:
        best = np.argmax(scores[rows], axis=1)
        return int(np.count_nonzero(np.take_along_axis(truth[rows], best[:, None], axis=1) > 0))

    return float(sum(_map_chunks(hits, scores.shape)) / scores.shape[0])


def perr(predictions: Any, labels: Any) -> float:
    """Precision at equal recall rate, averaged over all videos (label-less videos count as 0)."""
    scores, truth = _check_pair(predictions, labels)
    scores, truth = np.ascontiguousarray(scores), np.ascontiguousarray(truth)
    num_rows, num_classes = scores.shape
    grouped = scores.dtype == np.float32 and num_classes // PERR_GROUP >= TOP_K_GROUP_MARGIN
    prepared = _map_chunks(lambda rows: _perr_prepare(scores, truth, rows, grouped), scores.shape)
    num_labels = np.concatenate([part[0] for part in prepared])
    group_max = np.concatenate([part[1] for part in prepared]) if grouped else None
    # The buckets' arrays are small when grouped: one block per thread (few numpy calls, little
    # GIL); else blocks of CHUNK_ELEMENTS bound the copies the exact top-k makes.
    elements = -(-num_rows // METRICS_THREADS) * num_classes if grouped else None
    counts = _map_chunks(lambda block: _perr_block(scores, truth, num_labels, group_max, block), scores.shape, elements)
    return _perr_from_counts(np.sum(counts, axis=0), num_rows)


def top_k_by_class(predictions: Any, labels: Any, top_k: int = GAP_TOP_K) -> TopK:
    """Each video's top-k (class, score, label) triplets plus per-class positives over all videos."""
    scores, truth = _check_pair(predictions, labels)
    return _scan(scores, truth, _check_top_k(top_k), want_perr=False).top


def _tie_shuffled_order(scores: np.ndarray) -> np.ndarray:
    """Indices ranking `scores` descending, ties broken by the seeded shuffle (see module doc)."""
    perm = np.random.RandomState(TIE_SHUFFLE_SEED).permutation(len(scores))
    return perm[np.argsort(-scores[perm], kind="stable")]


def average_precision(
    scores: Any, is_true: Any, num_positives: float | None = None, top_n: int | None = None
) -> float:
    """Non-interpolated AP of a ranked list (the starter's ``ap_at_n``).

    ``num_positives`` is the denominator (default: positives in the list); with ``top_n`` only the
    first top_n ranked items count and the denominator is capped at top_n. Returns 0.0 when there
    are no positives.
    """
    values = _as_scores(scores).ravel()
    truth = np.asarray(is_true).ravel() > 0
    if values.shape != truth.shape:
        raise ValueError(f"scores ({values.size}) and is_true ({truth.size}) differ in length")
    if top_n is not None:
        top_n = _check_top_k(top_n)
    if num_positives is not None and num_positives < 0:
        raise ValueError(f"num_positives must be >= 0, got {num_positives!r}")
    numpos = int(np.count_nonzero(truth)) if num_positives is None else num_positives
    if numpos == 0:
        return 0.0
    if top_n is not None:
        numpos = min(numpos, top_n)
    ranked = truth[_tie_shuffled_order(values)]
    if top_n is not None:
        ranked = ranked[:top_n]
    hits = np.cumsum(ranked)
    ranks = np.flatnonzero(ranked) + 1
    return float(np.sum(hits[ranked] / ranks) / numpos)


def _class_score_tie_order(classes: np.ndarray, scores: np.ndarray, tie_key: np.ndarray, num_classes: int) -> np.ndarray:
    """Indices sorting pairs by (class asc, score desc, tie_key asc): np.lexsort's order.

    For float32 scores whose three keys fit in 63 bits (YT8M: 12 + 32 + ~19) they are packed into
    one int64 and sorted once, several times faster than the three-key lexsort; the keys are
    unique (tie_key is a permutation rank), so the order is the same.
    """
    ties = int(tie_key.max()) + 1 if tie_key.size else 1
    tie_bits = max(1, ties - 1).bit_length()
    class_bits = max(1, num_classes - 1).bit_length()
    if scores.dtype != np.float32 or class_bits + 32 + tie_bits > 63 or (tie_key.size and tie_key.min() < 0):
        return np.lexsort((tie_key, -scores, classes))
    bits = (scores + np.float32(0.0)).view(np.int32)  # -0.0 + 0.0 == +0.0
    ordered = bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))  # int32 in the floats' order
    descending = (np.int64(0x7FFFFFFF) - ordered.astype(np.int64))  # in [0, 2**32): best score first
    keys = classes.astype(np.int64) << (32 + tie_bits)
    keys |= descending << tie_bits
    keys |= tie_key.astype(np.int64)
    return np.argsort(keys)


def _segmented_ap_sums(
    classes: np.ndarray, tie_key: np.ndarray, scores: np.ndarray, is_true: np.ndarray, num_classes: int
) -> np.ndarray:
    """Per-class sums of precision@positive over lists ranked by (score desc, tie_key asc).

    One lexsort of all pairs by (class, -score, tie_key), then segment-wise cumulative sums.
    """
    if classes.size == 0:
        return np.zeros(num_classes, dtype=np.float64)
    order = _class_score_tie_order(classes, scores, tie_key, num_classes)
    cls = classes[order].astype(np.int64)
    truth = is_true[order]
    start = np.searchsorted(cls, cls, side="left")
    rank = np.arange(1, cls.size + 1) - start
    cum = np.cumsum(truth)
    hits = cum - (cum[start] - truth[start])
    contrib = np.where(truth, hits / rank, 0.0)
    return np.bincount(cls, weights=contrib, minlength=num_classes)


def _gap_from_top(top: TopK) -> float:
    return average_precision(top.scores.ravel(), top.labels.ravel(), num_positives=int(top.num_positives.sum()))


def _per_class_ap_from_top(top: TopK) -> np.ndarray:
    scores = top.scores.ravel()
    shuffle_pos = np.empty(scores.size, dtype=np.int64)
    shuffle_pos[np.random.RandomState(TIE_SHUFFLE_SEED).permutation(scores.size)] = np.arange(scores.size)
    num_classes = top.num_positives.size
    sums = _segmented_ap_sums(top.classes.ravel(), shuffle_pos, scores, top.labels.ravel(), num_classes)
    ap = np.full(num_classes, np.nan)
    has = top.num_positives > 0
    ap[has] = sums[has] / top.num_positives[has]
    return ap


def _mean_ignoring_nan(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(np.mean(kept)) if kept.size else 0.0


def gap(predictions: Any, labels: Any, top_k: int = GAP_TOP_K) -> float:
    """Global average precision over every video's top-k predictions."""
    return _gap_from_top(top_k_by_class(predictions, labels, top_k))


def per_class_ap(predictions: Any, labels: Any, top_k: int = GAP_TOP_K) -> np.ndarray:
    """[C] AP of each class over the videos having it in their top-k; NaN without positives."""
    return _per_class_ap_from_top(top_k_by_class(predictions, labels, top_k))


def mean_ap(predictions: Any, labels: Any, top_k: int = GAP_TOP_K) -> float:
    """Mean of `per_class_ap` over classes with positives (0.0 when no class has any)."""
    return _mean_ignoring_nan(per_class_ap(predictions, labels, top_k))


class EvaluationMetrics:
    """Streaming Hit@1, PERR, GAP, mAP and loss over batches; equals the array functions exactly.

    Memory: running integer counts for Hit@1 and PERR, and per video only its top-k triplets
    (class int16/int32, score in the predictions' dtype, is-true bool): 7 bytes x top_k per video
    for float32 scores (140 B at top_k=20, so 1M videos ~ 140 MB); never the full [N, C] matrix.
    """

    def __init__(self, num_classes: int, top_k: int = GAP_TOP_K) -> None:
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.top_k = _check_top_k(top_k)
        self.clear()

    def clear(self) -> None:
        """Forget everything accumulated."""
        self._num_examples = 0
        self._hits = 0
        self._perr_hits = np.zeros(self.num_classes + 1, dtype=np.int64)
        self._num_positives = np.zeros(self.num_classes, dtype=np.int64)
        self._tops: list[TopK] = []
        self._loss_sum = 0.0
        self._loss_count = 0

    def accumulate(self, predictions: Any, labels: Any, loss: Any = None) -> dict[str, float | None]:
        """Add one batch; `loss` is a per-example array or the batch mean. Returns batch metrics."""
        scores, truth = _check_pair(predictions, labels)
        if scores.shape[1] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} classes, got predictions of shape {scores.shape}")
        stats = _scan(scores, truth, self.top_k, want_perr=True)
        top = stats.top
        self._num_examples += stats.num_videos
        self._hits += stats.hits_at_one
        self._perr_hits += stats.perr_hits
        self._num_positives += top.num_positives
        self._tops.append(top)
        batch_loss = None
        if loss is not None:
            losses = np.asarray(loss, dtype=np.float64)
            if losses.ndim == 0:
                self._loss_sum += float(losses) * stats.num_videos
                self._loss_count += stats.num_videos
                batch_loss = float(losses)
            else:
                self._loss_sum += float(losses.sum())
                self._loss_count += losses.size
                batch_loss = float(losses.mean()) if losses.size else None
        return {
            "hit_at_one": stats.hits_at_one / stats.num_videos,
            "perr": _perr_from_counts(stats.perr_hits, stats.num_videos),
            "loss": batch_loss,
        }

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored top-k triplets and counters."""
        held = self._perr_hits.nbytes + self._num_positives.nbytes
        return held + sum(t.classes.nbytes + t.scores.nbytes + t.labels.nbytes for t in self._tops)

    def _pooled(self) -> TopK:
        if len(self._tops) > 1:  # concatenate once so that later calls are cheap
            self._tops = [
                TopK(
                    classes=np.concatenate([t.classes for t in self._tops]),
                    scores=np.concatenate([t.scores for t in self._tops]),
                    labels=np.concatenate([t.labels for t in self._tops]),
                    num_positives=self._num_positives.copy(),
                )
            ]
        top = self._tops[0]
        return TopK(top.classes, top.scores, top.labels, self._num_positives)

    def get(self) -> dict[str, float | int | None]:
        """Metrics over everything accumulated: hit_at_one, perr, gap, map, loss, num_examples."""
        if self._num_examples == 0:
            raise ValueError("no examples accumulated")
        top = self._pooled()
        return {
            "hit_at_one": self._hits / self._num_examples,
            "perr": _perr_from_counts(self._perr_hits, self._num_examples),
            "gap": _gap_from_top(top),
            "map": _mean_ignoring_nan(_per_class_ap_from_top(top)),
            "loss": self._loss_sum / self._loss_count if self._loss_count else None,
            "num_examples": self._num_examples,
        }


# ---------------------------------------------------------------------------------------------
# 2019 segment task


def _class_index(class_ids: Iterable[int] | None, num_classes: int) -> np.ndarray:
    """Sorted unique class ids that count (all classes when None)."""
    if class_ids is None:
        return np.arange(num_classes, dtype=np.int64)
    ids = np.unique(np.asarray(list(class_ids), dtype=np.int64))
    if ids.size and (ids[0] < 0 or ids[-1] >= num_classes):
        raise ValueError(f"class_ids must lie in [0, {num_classes}), got {ids[0]}..{ids[-1]}")
    return ids


def _check_segment_inputs(predictions: Any, labels: Any, weights: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = _as_scores(predictions)
    truth = np.asarray(labels)
    rated = np.asarray(weights)
    if scores.ndim != 2:
        raise ValueError(f"predictions must be 2-D [segments, classes], got shape {scores.shape}")
    for name, array in (("labels", truth), ("weights", rated)):
        if array.shape != scores.shape:
            raise ValueError(f"{name} shape {array.shape} differs from predictions shape {scores.shape}")
    return scores, truth, rated


def _kth_best_key(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[float, int]:
    """The k-th best (score desc, row asc) key of a list longer than k: (score, row)."""
    n = scores.size
    value = np.partition(scores, n - k)[n - k]
    need = k - int(np.count_nonzero(scores > value))
    tied_rows = np.sort(rows[scores == value])
    return value, int(tied_rows[need - 1])


def _segment_map_from_rated(
    cls: np.ndarray, scores: np.ndarray, rows: np.ndarray, positive: np.ndarray, inside: np.ndarray, num_counted: int
) -> float:
    """Mean over classes with rated positives of the AP of their rated pairs inside the cap."""
    num_pos = np.bincount(cls[positive], minlength=num_counted)
    sums = _segmented_ap_sums(cls[inside], rows[inside], scores[inside], positive[inside], num_counted)
    has = num_pos > 0
    if not has.any():
        return 0.0
    return float(np.mean(sums[has] / num_pos[has]))


def segment_map(
    predictions: Any,
    labels: Any,
    weights: Any,
    top_k: int = SEGMENT_TOP_K,
    class_ids: Iterable[int] | None = None,
) -> float:
    """Kaggle 2019 segment MAP@top_k over [N segments, C] predictions, labels and 0/1 weights.

    Per class: rank all segments by score (desc; equal scores by row), keep the first top_k, keep
    the rated pairs, AP over positives with the denominator = rated positives of the class; mean
    over the classes (restricted to `class_ids`) having at least one rated positive, 0.0 if none.
    """
    scores, truth, rated = _check_segment_inputs(predictions, labels, weights)
    top_k = _check_top_k(top_k)
    num_rows, num_classes = scores.shape
    counted = _class_index(class_ids, num_classes)
    row_idx, local = np.nonzero(rated[:, counted] > 0)
    cols = counted[local]
    pair_scores = scores[row_idx, cols]
    positive = truth[row_idx, cols] > 0
    inside = np.ones(row_idx.size, dtype=bool)
    num_pos = np.bincount(local[positive], minlength=counted.size)
    needed = np.flatnonzero(num_pos > 0)
    if num_rows > top_k and needed.size:
        order = np.argsort(local, kind="stable")
        starts = np.searchsorted(local[order], np.arange(counted.size + 1))
        all_rows = np.arange(num_rows)
        block = max(1, SEGMENT_CHUNK_ELEMENTS // num_rows)
        for first in range(0, needed.size, block):
            group = needed[first : first + block]
            columns = np.ascontiguousarray(scores[:, counted[group]].T)
            for column, j in zip(columns, group):
                value, row_k = _kth_best_key(column, all_rows, top_k)
                members = order[starts[j] : starts[j + 1]]
                s, r = pair_scores[members], row_idx[members]
                inside[members] = (s > value) | ((s == value) & (r <= row_k))
    return _segment_map_from_rated(local, pair_scores, row_idx, positive, inside, counted.size)


class SegmentMapAccumulator:
    """Streaming `segment_map`: add batches of segment rows, get() equals the concatenated result.

    Memory: every rated (segment, class) pair (row int64, class int64, score, label bool: ~21 bytes
    with float32 scores) plus, per counted class, the best unrated (score, row) pairs, pruned back
    to top_k with np.partition whenever a class's buffer exceeds SEGMENT_PRUNE_FACTOR x top_k
    (12 bytes each for float32). Worst case ~ counted classes x 2 x top_k x 12 B: 2.4 GB for the
    1000 segment classes at top_k=100000 once more than 200k segments were seen; a smaller top_k
    or class_ids list shrinks it proportionally. New rows always come after old ones, so an unrated
    score not above a pruned class's k-th best can never enter the top_k and is dropped at once.
    """

    def __init__(self, num_classes: int, top_k: int = SEGMENT_TOP_K, class_ids: Iterable[int] | None = None) -> None:
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.top_k = _check_top_k(top_k)
        self._counted = _class_index(class_ids, self.num_classes)
        self.clear()

    def clear(self) -> None:
        """Forget everything accumulated."""
        n = self._counted.size
        self._num_rows = 0
        self._rated: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._buf_scores: list[list[np.ndarray]] = [[] for _ in range(n)]
        self._buf_rows: list[list[np.ndarray]] = [[] for _ in range(n)]
        self._buf_size = np.zeros(n, dtype=np.int64)
        self._threshold = np.full(n, -np.inf)
        self._pruned = np.zeros(n, dtype=bool)

    def accumulate(self, predictions: Any, labels: Any, weights: Any) -> None:
        """Add one batch of segment rows ([n, C] predictions, labels, 0/1 rating weights)."""
        scores, truth, rated = _check_segment_inputs(predictions, labels, weights)
        if scores.shape[1] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} classes, got predictions of shape {scores.shape}")
        counted = self._counted
        sub = scores[:, counted]
        is_rated = rated[:, counted] > 0
        offset = self._num_rows
        rows, local = np.nonzero(is_rated)
        self._rated.append((local, sub[rows, local], rows + offset, truth[rows, counted[local]] > 0))
        candidate = ~is_rated & ((sub > self._threshold) | ~self._pruned)
        local_u, rows_u = np.nonzero(candidate.T)  # grouped by class, rows ascending
        values_u = sub[rows_u, local_u]
        bounds = np.searchsorted(local_u, np.arange(counted.size + 1))
        for j in np.flatnonzero(np.diff(bounds)):
            part = slice(bounds[j], bounds[j + 1])
            self._buf_scores[j].append(values_u[part])
            self._buf_rows[j].append(rows_u[part] + offset)
            self._buf_size[j] += part.stop - part.start
            if self._buf_size[j] > SEGMENT_PRUNE_FACTOR * self.top_k:
                self._prune(j)
        self._num_rows += scores.shape[0]

    def _merged(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self._buf_scores[j]) > 1:
            self._buf_scores[j] = [np.concatenate(self._buf_scores[j])]
            self._buf_rows[j] = [np.concatenate(self._buf_rows[j])]
        if not self._buf_scores[j]:
            return np.empty(0), np.empty(0, dtype=np.int64)
        return self._buf_scores[j][0], self._buf_rows[j][0]

    def _prune(self, j: int) -> None:
        """Keep class j's best top_k unrated pairs; later scores must beat the k-th best."""
        s, r = self._merged(j)
        value, row_k = _kth_best_key(s, r, self.top_k)
        keep = (s > value) | ((s == value) & (r <= row_k))
        self._buf_scores[j] = [s[keep]]
        self._buf_rows[j] = [r[keep]]
        self._buf_size[j] = int(np.count_nonzero(keep))
        self._threshold[j] = value
        self._pruned[j] = True

    @property
    def nbytes(self) -> int:
        """Bytes held by the rated pairs and the unrated buffers."""
        held = sum(a.nbytes for pairs in self._rated for a in pairs)
        held += sum(a.nbytes for lst in self._buf_scores for a in lst)
        return held + sum(a.nbytes for lst in self._buf_rows for a in lst)

    @property
    def buffer_sizes(self) -> np.ndarray:
        """Unrated pairs currently kept per counted class (bounded by the prune factor x top_k)."""
        return self._buf_size.copy()

    def get(self) -> float:
        """Segment MAP over everything accumulated (see `segment_map`)."""
        if not self._rated:
            return 0.0
        local = np.concatenate([p[0] for p in self._rated])
        pair_scores = np.concatenate([p[1] for p in self._rated])
        rows = np.concatenate([p[2] for p in self._rated])
        positive = np.concatenate([p[3] for p in self._rated])
        inside = np.ones(local.size, dtype=bool)
        num_pos = np.bincount(local[positive], minlength=self._counted.size)
        order = np.argsort(local, kind="stable")
        starts = np.searchsorted(local[order], np.arange(self._counted.size + 1))
        for j in np.flatnonzero(num_pos > 0):
            members = order[starts[j] : starts[j + 1]]
            buf_s, buf_r = self._merged(int(j))
            if members.size + buf_s.size <= self.top_k:
                continue
            s, r = pair_scores[members], rows[members]
            value, row_k = _kth_best_key(np.concatenate([s, buf_s]), np.concatenate([r, buf_r]), self.top_k)
            inside[members] = (s > value) | ((s == value) & (r <= row_k))
        return _segment_map_from_rated(local, pair_scores, rows, positive, inside, self._counted.size)
