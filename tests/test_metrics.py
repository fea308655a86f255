"""Tests of yt8m.classifier.metrics against slow, literal re-implementations of the starter code.

The reference functions below are deliberately naive Python loops that follow the google/youtube-8m
starter (eval_util.py, average_precision_calculator.py) step by step, with the two documented tie
rules of the module: each video's top-k is ordered by (score desc, class asc), and AP lists are
shuffled with np.random.RandomState(0).permutation before a stable descending sort.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from yt8m.classifier import metrics as m

# ----------------------------------------------------------------------------- references


def ref_hit_at_one(pred, labels):
    hits = 0
    for row in range(pred.shape[0]):
        hits += labels[row][int(np.argmax(pred[row]))] > 0
    return hits / pred.shape[0]


def ref_perr(pred, labels):
    """eval_util.calculate_precision_at_equal_recall_rate, literally (per-row argpartition)."""
    total = 0.0
    for row in range(pred.shape[0]):
        num_labels = int(np.sum(labels[row] > 0))
        top = np.argpartition(pred[row], -num_labels)[-num_labels:]
        precision = 0.0
        for index in top:
            if pred[row][index] > 0:
                precision += labels[row][index] > 0
        total += precision / top.size
    return total / pred.shape[0]


def ref_perr_canonical(pred, labels):
    """PERR with the module's documented tie rule: top-k by (score desc, class asc)."""
    total = 0.0
    for row in range(pred.shape[0]):
        num_labels = int(np.sum(labels[row] > 0))
        if num_labels == 0:
            continue
        top = sorted(range(pred.shape[1]), key=lambda c: (-pred[row][c], c))[:num_labels]
        total += sum(1 for c in top if pred[row][c] > 0 and labels[row][c] > 0) / num_labels
    return total / pred.shape[0]


def ref_ranked_ap(scores, labels, num_positives, n=None):
    """The starter's ap_at_n after its shuffle: stable descending sort + per-item loop."""
    if num_positives == 0:
        return 0.0
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)  # stable on ties
    numpos = num_positives if n is None else min(num_positives, n)
    delta_recall = 1.0 / numpos
    limit = len(order) if n is None else min(len(order), n)
    ap, poscount = 0.0, 0.0
    for i in range(limit):
        if labels[order[i]] > 0:
            poscount += 1
            ap += poscount / (i + 1) * delta_recall
    return ap


def ref_ap(scores, labels, num_positives=None, n=None):
    scores = list(scores)
    labels = list(labels)
    if num_positives is None:
        num_positives = sum(1 for x in labels if x > 0)
    perm = np.random.RandomState(0).permutation(len(scores))
    return ref_ranked_ap([scores[i] for i in perm], [labels[i] for i in perm], num_positives, n)


def ref_triplets(pred, labels, k):
    """Every video's top-k (class, score, label), video-major, each by (score desc, class asc)."""
    k = min(k, pred.shape[1])
    out = []
    for row in range(pred.shape[0]):
        classes = sorted(range(pred.shape[1]), key=lambda c: (-pred[row][c], c))[:k]
        out.extend((c, pred[row][c], int(labels[row][c] > 0)) for c in classes)
    return out


def ref_gap(pred, labels, k=20):
    triplets = ref_triplets(pred, labels, k)
    return ref_ap([t[1] for t in triplets], [t[2] for t in triplets], int(np.sum(labels > 0)))


def ref_per_class_ap(pred, labels, k=20):
    """Per-class dict lists filled in the order of the pooled list shuffled once (seed 0)."""
    triplets = ref_triplets(pred, labels, k)
    perm = np.random.RandomState(0).permutation(len(triplets))
    by_class_scores, by_class_labels = {}, {}
    for i in perm:
        c, s, t = triplets[i]
        by_class_scores.setdefault(c, []).append(s)
        by_class_labels.setdefault(c, []).append(t)
    aps = []
    for c in range(pred.shape[1]):
        positives = int(np.sum(labels[:, c] > 0))
        if positives == 0:
            aps.append(np.nan)
        else:
            aps.append(ref_ranked_ap(by_class_scores.get(c, []), by_class_labels.get(c, []), positives))
    return np.array(aps)


def ref_map(pred, labels, k=20):
    aps = [a for a in ref_per_class_ap(pred, labels, k) if not np.isnan(a)]
    return float(np.mean(aps)) if aps else 0.0


def ref_segment_map(pred, labels, weights, top_k, class_ids=None):
    """Per class: all segments sorted by (score desc, row asc), first top_k, rated only, AP."""
    classes = range(pred.shape[1]) if class_ids is None else sorted(set(class_ids))
    aps = []
    for c in classes:
        rated_positives = sum(1 for r in range(pred.shape[0]) if weights[r][c] > 0 and labels[r][c] > 0)
        if rated_positives == 0:
            continue
        ranked = sorted(range(pred.shape[0]), key=lambda r: (-pred[r][c], r))[:top_k]
        kept = [r for r in ranked if weights[r][c] > 0]
        ap, hits = 0.0, 0
        for i, r in enumerate(kept):
            if labels[r][c] > 0:
                hits += 1
                ap += hits / (i + 1)
        aps.append(ap / rated_positives)
    return float(np.mean(aps)) if aps else 0.0


# ----------------------------------------------------------------------------- data


def random_case(seed, n, c, max_labels=4, ties=False, negatives=False):
    """Random predictions and multi-hot labels (some videos without labels)."""
    rng = np.random.default_rng(seed)
    pred = rng.random((n, c)).astype(np.float32)
    if ties:
        pred = np.round(pred * 4) / 4  # many equal scores, also across the top-k boundary
    if negatives:
        pred -= 0.3  # PERR counts only scores > 0
    labels = np.zeros((n, c), dtype=np.int64)
    for row in range(n):
        k = rng.integers(0, max_labels + 1)
        labels[row, rng.choice(c, size=k, replace=False)] = 1
    return pred, labels


def random_segments(seed, n, c, ties=False):
    rng = np.random.default_rng(seed)
    pred = rng.random((n, c)).astype(np.float32)
    if ties:
        pred = np.round(pred * 5) / 5
    weights = (rng.random((n, c)) < 0.3).astype(np.int64)
    labels = (rng.random((n, c)) < 0.5).astype(np.int64)
    return pred, labels, weights


CASES = [
    (0, 50, 10, 3, False, False),
    (1, 80, 30, 5, False, True),
    (2, 40, 8, 8, True, False),
    (3, 60, 25, 2, True, True),
    (4, 1, 12, 3, False, False),
]


# ----------------------------------------------------------------------------- random vs reference


@pytest.mark.parametrize("seed,n,c,max_labels,ties,negatives", CASES)
def test_video_metrics_match_reference(seed, n, c, max_labels, ties, negatives):
    pred, labels = random_case(seed, n, c, max_labels, ties, negatives)
    np.testing.assert_allclose(m.hit_at_one(pred, labels), ref_hit_at_one(pred, labels))
    for k in (1, 5, 20):
        np.testing.assert_allclose(m.gap(pred, labels, top_k=k), ref_gap(pred, labels, k))
        np.testing.assert_allclose(m.mean_ap(pred, labels, top_k=k), ref_map(pred, labels, k))
        np.testing.assert_allclose(m.per_class_ap(pred, labels, top_k=k), ref_per_class_ap(pred, labels, k))
    np.testing.assert_allclose(m.perr(pred, labels), ref_perr_canonical(pred, labels))
    if not ties:  # the starter's argpartition picks arbitrarily among equal scores
        np.testing.assert_allclose(m.perr(pred, labels), ref_perr(pred, labels))


@pytest.mark.parametrize("seed", range(4))
def test_average_precision_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    scores = np.round(rng.random(n), 1)  # plenty of ties between positives and negatives
    truth = rng.random(n) < 0.4
    extra = int(rng.integers(0, 5))
    for top_n in (None, 1, 3, 10, 100):
        for num_pos in (None, int(truth.sum()) + extra):
            np.testing.assert_allclose(
                m.average_precision(scores, truth, num_positives=num_pos, top_n=top_n),
                ref_ap(scores, truth, num_pos, top_n),
            )


def test_top_k_by_class_lists_best_scores_and_all_positives():
    pred, labels = random_case(7, 30, 15, max_labels=6)
    top = m.top_k_by_class(pred, labels, top_k=4)
    assert top.classes.shape == top.scores.shape == top.labels.shape == (30, 4)
    for row in range(30):
        expected = sorted(range(15), key=lambda c: (-pred[row, c], c))[:4]
        assert list(top.classes[row]) == expected
        np.testing.assert_array_equal(top.scores[row], pred[row, expected])
        np.testing.assert_array_equal(top.labels[row], labels[row, expected] > 0)
    # positives over ALL videos, not only those inside the top-k
    np.testing.assert_array_equal(top.num_positives, labels.sum(axis=0))


def test_top_k_tie_at_boundary_takes_lower_class_indices():
    pred = np.array([[0.5, 0.9, 0.5, 0.5, 0.1]], dtype=np.float32)
    labels = np.zeros_like(pred)
    top = m.top_k_by_class(pred, labels, top_k=3)
    assert list(top.classes[0]) == [1, 0, 2]


# ----------------------------------------------------------------------------- hand-computed


# 3 videos x 4 classes
#            c0    c1    c2    c3          labels
# v0       0.90  0.80  0.10  0.00          c0, c2
# v1       0.20  0.70  0.60  0.30          c2, c3
# v2       0.50  0.40  0.95  0.05          c1
HAND_PRED = np.array([[0.9, 0.8, 0.1, 0.0], [0.2, 0.7, 0.6, 0.3], [0.5, 0.4, 0.95, 0.05]])
HAND_LABELS = np.array([[1, 0, 1, 0], [0, 0, 1, 1], [0, 1, 0, 0]])


def test_hand_hit_at_one():
    # argmax: v0 -> c0 (true), v1 -> c1 (false), v2 -> c2 (false)
    assert m.hit_at_one(HAND_PRED, HAND_LABELS) == pytest.approx(1 / 3)


def test_hand_perr():
    # v0 k=2: top {c0, c1} -> 1 hit -> 1/2;  v1 k=2: top {c1, c2} -> 1/2;  v2 k=1: top {c2} -> 0
    assert m.perr(HAND_PRED, HAND_LABELS) == pytest.approx((0.5 + 0.5 + 0) / 3)


def test_hand_gap_top2():
    # top-2 pairs: v0 (c0 .9 T)(c1 .8 F); v1 (c1 .7 F)(c2 .6 T); v2 (c2 .95 F)(c0 .5 F)
    # ranked: .95F .9T .8F .7F .6T .5F -> precisions at positives 1/2, 2/5; 5 true labels in all
    assert m.gap(HAND_PRED, HAND_LABELS, top_k=2) == pytest.approx((1 / 2 + 2 / 5) / 5)


def test_hand_map_top2_counts_class_never_in_top_k():
    # c0: (.9 T)(.5 F) -> 1/1, 1 positive  -> 1
    # c1: (.8 F)(.7 F), 1 positive (v2 at .4, outside the top-2) -> 0
    # c2: (.95 F)(.6 T) -> 1/2, 2 positives -> 1/4
    # c3: never in any top-2, 1 positive -> 0 but counted
    expected = np.array([1.0, 0.0, 0.25, 0.0])
    np.testing.assert_allclose(m.per_class_ap(HAND_PRED, HAND_LABELS, top_k=2), expected)
    assert m.mean_ap(HAND_PRED, HAND_LABELS, top_k=2) == pytest.approx(1.25 / 4)


def test_hand_map_drops_class_without_positives():
    labels = HAND_LABELS.copy()
    labels[1, 3] = 0  # c3 now has no positive: dropped from the mean (NaN)
    aps = m.per_class_ap(HAND_PRED, labels, top_k=2)
    assert np.isnan(aps[3])
    assert m.mean_ap(HAND_PRED, labels, top_k=2) == pytest.approx(1.25 / 3)


def test_hand_average_precision_top_n():
    scores, truth = [0.9, 0.8, 0.7, 0.6], [0, 1, 1, 1]
    # full list: positives at ranks 2, 3, 4 -> (1/2 + 2/3 + 3/4) / 3
    assert m.average_precision(scores, truth) == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)
    # top_n=2: only rank 2 counts, denominator min(3, 2) = 2 -> (1/2) / 2
    assert m.average_precision(scores, truth, top_n=2) == pytest.approx(0.25)
    # a denominator larger than the list's positives (positives missing from the list)
    assert m.average_precision(scores, truth, num_positives=6) == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 6)


def test_ties_among_equal_labels_do_not_matter():
    # .9 T, then two negatives tied at .5, then .1 T: positives at ranks 1 and 4 -> (1 + 2/4) / 2
    scores = [0.9, 0.5, 0.5, 0.1]
    truth = [1, 0, 0, 1]
    for perm in itertools.permutations(range(4)):
        s = [scores[i] for i in perm]
        t = [truth[i] for i in perm]
        assert m.average_precision(s, t) == pytest.approx(0.75)


def test_tie_between_positive_and_negative_is_shuffled():
    # the positive ties with a negative at .5 behind a negative at .9:
    # optimistic rank 2 -> 1/2, pessimistic rank 3 -> 1/3
    for scores, truth in (([0.9, 0.5, 0.5], [0, 1, 0]), ([0.9, 0.5, 0.5], [0, 0, 1]), ([0.5, 0.5, 0.9], [1, 0, 0])):
        ap = m.average_precision(scores, truth)
        assert 1 / 3 <= ap <= 1 / 2
        assert ap == pytest.approx(ref_ap(scores, truth))
    # a long list of ties: the shuffled result lies strictly between the two extremes
    scores = [0.5] * 40
    truth = [1] * 20 + [0] * 20
    optimistic = 1.0
    pessimistic = sum((i + 1) / (20 + i + 1) for i in range(20)) / 20
    ap = m.average_precision(scores, truth)
    assert pessimistic < ap < optimistic
    assert ap == pytest.approx(ref_ap(scores, truth))


def test_gap_with_ties_matches_reference_shuffle():
    pred = np.array([[0.5, 0.5, 0.2], [0.5, 0.1, 0.5], [0.5, 0.5, 0.5]], dtype=np.float32)
    labels = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    # top-2 per video (ties -> lower class): v0 c0 F, c1 T; v1 c0 T, c2 F; v2 c0 F, c1 F
    # six pairs all at .5 with 2 positives, 3 true labels: between (1/5 + 2/6)/3 and (1 + 1)/3
    value = m.gap(pred, labels, top_k=2)
    assert (1 / 5 + 2 / 6) / 3 <= value <= 2 / 3
    assert value == pytest.approx(ref_gap(pred, labels, 2))


# ----------------------------------------------------------------------------- edge cases


def test_no_positives_at_all():
    pred, _ = random_case(11, 20, 6)
    labels = np.zeros_like(pred, dtype=np.int64)
    assert m.hit_at_one(pred, labels) == 0.0
    assert m.perr(pred, labels) == 0.0
    assert m.gap(pred, labels) == 0.0
    assert m.mean_ap(pred, labels) == 0.0
    assert np.isnan(m.per_class_ap(pred, labels)).all()
    assert m.average_precision([0.3, 0.2], [0, 0]) == 0.0


def test_top_k_larger_than_num_classes():
    pred, labels = random_case(12, 25, 5, max_labels=3)
    assert m.gap(pred, labels, top_k=50) == m.gap(pred, labels, top_k=5)
    np.testing.assert_allclose(m.gap(pred, labels, top_k=50), ref_gap(pred, labels, 50))
    np.testing.assert_allclose(m.mean_ap(pred, labels, top_k=50), ref_map(pred, labels, 50))
    # every positive is listed: per-class AP is plain AP over all videos
    for c in range(5):
        if labels[:, c].any():
            np.testing.assert_allclose(
                m.per_class_ap(pred, labels, top_k=50)[c],
                ref_ranked_ap(list(pred[:, c]), list(labels[:, c]), int(labels[:, c].sum())),
            )


def test_single_video():
    pred = np.array([[0.1, 0.7, 0.4, 0.9]])
    labels = np.array([[0, 1, 0, 1]])
    # ranked c3 T, c1 T, c2 F, c0 F
    assert m.hit_at_one(pred, labels) == 1.0
    assert m.perr(pred, labels) == 1.0
    assert m.gap(pred, labels, top_k=2) == 1.0
    # top_k=1: only c3 listed, 2 true labels -> 1/2
    assert m.gap(pred, labels, top_k=1) == pytest.approx(0.5)
    assert m.mean_ap(pred, labels, top_k=1) == pytest.approx(0.5)  # c3 -> 1, c1 -> 0


def test_perr_counts_only_positive_scores_and_label_less_videos():
    pred = np.array([[-0.1, -0.5, -0.9], [0.3, 0.2, 0.1]])
    labels = np.array([[1, 0, 0], [0, 0, 0]])
    # v0: its true label is the best score but not > 0 -> 0; v1: no labels -> 0 but counted
    assert m.perr(pred, labels) == 0.0
    pred[0, 0] = 0.2
    assert m.perr(pred, labels) == pytest.approx(0.5)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        m.gap(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError):
        m.gap(np.zeros((2, 3)), np.zeros((2, 3)), top_k=0)
    with pytest.raises(ValueError):
        m.average_precision([0.1, 0.2], [1])
    with pytest.raises(ValueError):
        m.segment_map(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)), class_ids=[5])
    with pytest.raises(ValueError):
        m.EvaluationMetrics(3).get()


# ----------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True)])
def test_evaluation_metrics_equal_array_functions(seed, ties):
    pred, labels = random_case(seed, 100, 20, max_labels=6, ties=ties, negatives=seed == 2)
    loss = np.random.default_rng(seed).random(100)
    acc = m.EvaluationMetrics(num_classes=20, top_k=5)
    start = 0
    for size in (1, 7, 30, 2, 60):
        acc.accumulate(pred[start : start + size], labels[start : start + size], loss[start : start + size])
        start += size
    result = acc.get()
    # exact equality: the accumulator must reproduce the array functions bit for bit
    assert result["hit_at_one"] == m.hit_at_one(pred, labels)
    assert result["perr"] == m.perr(pred, labels)
    assert result["gap"] == m.gap(pred, labels, top_k=5)
    assert result["map"] == m.mean_ap(pred, labels, top_k=5)
    assert result["num_examples"] == 100
    assert result["loss"] == pytest.approx(loss.mean())
    np.testing.assert_allclose(result["gap"], ref_gap(pred, labels, 5))
    # only the top-k triplets are kept: (class int16 + score float32 + bool) x k per video
    assert acc.nbytes < 100 * 5 * 7 + 2000
    acc.clear()
    acc.accumulate(pred[:10], labels[:10], loss=0.5)
    after = acc.get()
    assert after["num_examples"] == 10 and after["loss"] == 0.5
    assert after["gap"] == m.gap(pred[:10], labels[:10], top_k=5)


def test_evaluation_metrics_get_twice_and_continue():
    pred, labels = random_case(5, 40, 9)
    acc = m.EvaluationMetrics(9, top_k=3)
    acc.accumulate(pred[:15], labels[:15])
    acc.accumulate(pred[15:25], labels[15:25])
    assert acc.get()["gap"] == m.gap(pred[:25], labels[:25], top_k=3)
    acc.accumulate(pred[25:], labels[25:])
    result = acc.get()
    assert result["gap"] == m.gap(pred, labels, top_k=3)
    assert result["map"] == m.mean_ap(pred, labels, top_k=3)
    assert result["loss"] is None


# ----------------------------------------------------------------------------- segment MAP


def test_segment_cap_excludes_positives_ranked_below_top_k():
    pred = np.array([[0.9], [0.8], [0.7], [0.6], [0.5]])
    labels = np.array([[0], [0], [0], [1], [1]])
    weights = np.ones_like(labels)
    # all 5 kept: positives at ranks 4 and 5 -> (1/4 + 2/5) / 2
    assert m.segment_map(pred, labels, weights, top_k=5) == pytest.approx((1 / 4 + 2 / 5) / 2)
    # top_k=4: rank 5 cut, denominator still 2 -> (1/4) / 2
    assert m.segment_map(pred, labels, weights, top_k=4) == pytest.approx(1 / 8)
    # top_k=3: no positive inside the cap -> 0
    assert m.segment_map(pred, labels, weights, top_k=3) == 0.0


def test_segment_unrated_pairs_do_not_count_but_fill_the_cap():
    pred = np.array([[0.9], [0.8], [0.7]])
    labels = np.array([[1], [0], [1]])
    weights = np.array([[0], [1], [1]])
    # rated: (.8 F), (.7 T) -> positive at rated rank 2 -> 1/2; the unrated .9 positive is ignored
    assert m.segment_map(pred, labels, weights, top_k=3) == pytest.approx(0.5)
    # top_k=2: the unrated .9 still takes a place, .7 falls out -> 0
    assert m.segment_map(pred, labels, weights, top_k=2) == 0.0


def test_segment_class_ids_restrict_the_mean():
    pred = np.array([[0.9, 0.2], [0.1, 0.8], [0.5, 0.9]])
    labels = np.array([[1, 0], [0, 1], [0, 0]])
    weights = np.ones_like(labels)
    # c0: .9 T, .5 F, .1 F -> 1;  c1: .9 F, .8 T, .2 F -> 1/2
    assert m.segment_map(pred, labels, weights) == pytest.approx(0.75)
    assert m.segment_map(pred, labels, weights, class_ids=[0]) == pytest.approx(1.0)
    assert m.segment_map(pred, labels, weights, class_ids=[1]) == pytest.approx(0.5)
    # a class without rated positives is dropped
    no_c1 = weights.copy()
    no_c1[1, 1] = 0
    assert m.segment_map(pred, labels, no_c1) == pytest.approx(1.0)
    assert m.segment_map(pred, labels, np.zeros_like(weights)) == 0.0


def test_segment_ties_follow_row_order():
    pred = np.array([[0.5], [0.5], [0.5]])
    labels = np.array([[0], [1], [0]])
    weights = np.ones_like(labels)
    # equal scores ranked by row: positive at rank 2 -> 1/2; with top_k=1 it is cut -> 0
    assert m.segment_map(pred, labels, weights, top_k=3) == pytest.approx(0.5)
    assert m.segment_map(pred, labels, weights, top_k=1) == 0.0


@pytest.mark.parametrize(
    "seed,n,c,top_k,ties,class_ids",
    [(0, 60, 5, 100, False, None), (1, 80, 6, 25, False, None), (2, 70, 4, 20, True, None), (3, 90, 8, 30, True, [1, 3, 6])],
)
def test_segment_map_and_accumulator_match_reference(seed, n, c, top_k, ties, class_ids):
    pred, labels, weights = random_segments(seed, n, c, ties)
    expected = ref_segment_map(pred, labels, weights, top_k, class_ids)
    value = m.segment_map(pred, labels, weights, top_k=top_k, class_ids=class_ids)
    np.testing.assert_allclose(value, expected)
    acc = m.SegmentMapAccumulator(c, top_k=top_k, class_ids=class_ids)
    start = 0
    for size in (3, 17, 1, 40, n):
        acc.accumulate(pred[start : start + size], labels[start : start + size], weights[start : start + size])
        start += size
        if start >= n:
            break
    assert acc.get() == value  # exact
    # the unrated buffers stay bounded by the prune factor
    assert (acc.buffer_sizes <= m.SEGMENT_PRUNE_FACTOR * top_k).all()


def test_segment_accumulator_prunes_long_streams():
    pred, labels, weights = random_segments(9, 400, 3, ties=True)
    acc = m.SegmentMapAccumulator(3, top_k=10)
    for start in range(0, 400, 13):
        acc.accumulate(pred[start : start + 13], labels[start : start + 13], weights[start : start + 13])
    assert (acc.buffer_sizes <= 2 * 10).all()
    assert acc.get() == m.segment_map(pred, labels, weights, top_k=10)
    np.testing.assert_allclose(acc.get(), ref_segment_map(pred, labels, weights, 10))


# ----------------------------------------------------------------------------- fast paths (many classes)


def _wide_scores(seed, n, c, kind):
    """float32 scores with the cases the fast paths must get right: ties, -0.0, negatives, tails."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.random((n, c), dtype=np.float32)
    if kind == "ties":
        return (np.round(rng.random((n, c)) * 20) / 20).astype(np.float32)
    if kind == "signed_zeros":
        pred = (rng.integers(-3, 3, (n, c)) * 0.5).astype(np.float32)
        pred[pred == 0] = np.float32(-0.0)
        pred[:, ::3][pred[:, ::3] == 0] = np.float32(0.0)
        return pred
    return rng.standard_normal((n, c)).astype(np.float32)


@pytest.mark.parametrize("kind", ["uniform", "ties", "signed_zeros", "normal"])
@pytest.mark.parametrize("c", [1000, 3862, 4001])  # 3862 and 4001 leave tail classes past the groups
def test_grouped_top_k_equals_the_exact_path(kind, c):
    """The group-maximum prefilter gives exactly the (score desc, class asc) top-k of argpartition."""
    pred = _wide_scores(c, 120, c, kind)
    for k in (2, 3, 5, 9, 20):
        group = m._group_size(k)
        assert c // group >= m.TOP_K_GROUP_MARGIN * k  # the prefilter is really exercised
        np.testing.assert_array_equal(m._top_k_grouped(pred, k, group), m._top_k_sorted_exact(pred, k))
        np.testing.assert_array_equal(m._top_k_sorted(pred, k), m._top_k_sorted_exact(pred, k))
    np.testing.assert_array_equal(m._top_k_sorted(pred, 1), m._top_k_sorted_exact(pred, 1))


def test_packed_sort_order_equals_lexsort():
    rng = np.random.default_rng(3)
    classes = rng.integers(0, 3862, 20_000)
    scores = (np.round(rng.random(20_000) * 50) / 50 - 0.2).astype(np.float32)
    scores[::13] = np.float32(-0.0)
    tie_key = rng.permutation(20_000)
    expected = np.lexsort((tie_key, -scores, classes))
    np.testing.assert_array_equal(m._class_score_tie_order(classes, scores, tie_key, 3862), expected)
    wide = scores.astype(np.float64)  # float64 scores take the lexsort itself
    np.testing.assert_array_equal(m._class_score_tie_order(classes, wide, tie_key, 3862), expected)


@pytest.mark.parametrize("ties", [False, True])
def test_metrics_with_many_classes_match_reference(ties, monkeypatch):
    """Every metric on the fast paths (600 classes, up to 9 labels: all PERR buckets) equals the
    literal references, whatever the number of threads."""
    pred, labels = random_case(11, 90, 600, max_labels=9, ties=ties)
    expected = {
        "hit": ref_hit_at_one(pred, labels),
        "perr": ref_perr_canonical(pred, labels),
        "gap": ref_gap(pred, labels, 20),
        "map": ref_map(pred, labels, 20),
    }
    for threads in (1, 3):
        monkeypatch.setattr(m, "METRICS_THREADS", threads)
        monkeypatch.setattr(m, "CHUNK_ELEMENTS", 600 * 7)  # several chunks
        np.testing.assert_allclose(m.hit_at_one(pred, labels), expected["hit"])
        np.testing.assert_allclose(m.perr(pred, labels), expected["perr"])
        np.testing.assert_allclose(m.gap(pred, labels), expected["gap"])
        np.testing.assert_allclose(m.mean_ap(pred, labels), expected["map"])
        metrics = m.EvaluationMetrics(600)
        metrics.accumulate(pred[:50], labels[:50])
        metrics.accumulate(pred[50:], labels[50:])
        got = metrics.get()
        np.testing.assert_allclose([got["hit_at_one"], got["perr"], got["gap"], got["map"]],
                                   [expected["hit"], expected["perr"], expected["gap"], expected["map"]])


@pytest.mark.parametrize("kind", ["uniform", "ties", "signed_zeros", "normal", "nan_inf"])
@pytest.mark.parametrize("c", [1000, 3862, 4001])
def test_perr_prefilter_equals_the_exact_path(kind, c, monkeypatch):
    """perr's group-maximum path (equal-label-count buckets, repeated argmax picks, ties and NaN
    sent to the exact path) gives exactly the counts of the plain exact top-k."""
    rng = np.random.default_rng(c)
    pred = _wide_scores(c + 1, 150, c, "uniform" if kind == "nan_inf" else kind)
    labels = np.zeros(pred.shape, np.float32)
    for row, count in enumerate(rng.integers(0, 13, pred.shape[0])):
        labels[row, rng.choice(c, size=count, replace=False)] = 1.0
    pred[::2] += labels[::2] * np.float32(0.5)  # half the rows rank their labels high
    if kind == "nan_inf":
        pred[1, 7] = np.nan
        pred[3, c - 1] = np.nan  # a tail class
        pred[5] = -np.inf
        pred[9, :3] = np.inf
    decided = []
    grouped = m._perr_hits_grouped

    def spy(*args):
        hits = grouped(*args)
        decided.append(int(np.count_nonzero(hits >= 0)))
        return hits

    monkeypatch.setattr(m, "_perr_hits_grouped", spy)
    monkeypatch.setattr(m, "METRICS_THREADS", 2)
    fast = m.perr(pred, labels)
    if kind in ("uniform", "normal", "nan_inf"):  # (the other two are mostly ties: exact path)
        assert sum(decided) > 60  # the prefilter decided most rows with at most PERR_PICK_LIMIT labels
    monkeypatch.setattr(m, "PERR_GROUP", c)  # one group: no prefilter, every row exact
    assert m.perr(pred, labels) == fast
    if kind in ("uniform", "ties"):
        np.testing.assert_allclose(fast, ref_perr_canonical(pred, labels))


def test_perr_prefilter_tie_inside_a_picked_group_takes_the_lower_class():
    """k = 2: 0.9 (class 5), then 0.8 twice: class 67 (group 5's second best) and class 10 (group
    10's best); the group maxima do not tie, the candidates do, and the lower class (10) wins."""
    rng = np.random.default_rng(0)
    pred = (rng.random((1, 1000)) * 0.1).astype(np.float32)
    groups = 1000 // m.PERR_GROUP
    pred[0, 5], pred[0, 5 + groups], pred[0, 10] = 0.9, 0.8, 0.8
    labels = np.zeros_like(pred)
    labels[0, [5, 5 + groups]] = 1.0
    assert m.perr(pred, labels) == 0.5 == ref_perr_canonical(pred, labels)
    pred[0, 10] = 0.7  # no tie: both labels are the top 2
    assert m.perr(pred, labels) == 1.0
