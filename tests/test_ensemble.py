"""Weighted ensembles: loading and aligning prediction sets, Bayesian weight search, saved weights, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from yt8m.app.cli import main
from yt8m.classifier import ensemble as ens
from yt8m.classifier import metrics
from yt8m.classifier.evaluation import (
    PREDICTIONS_HEADER,
    format_prediction_line,
    read_predictions_csv,
    save_scores,
    top_k_pairs,
)
from yt8m.classifier.segments import SEGMENT_CSV_HEADER, SegmentBatch, read_segment_csv, save_segment_scores
from yt8m.core import Yt8mError

CLASSES = 10


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def make_labels(rng: np.random.Generator, count: int) -> np.ndarray:
    labels = np.zeros((count, CLASSES), dtype=bool)
    for row in range(count):
        labels[row, rng.choice(CLASSES, size=rng.integers(1, 4), replace=False)] = True
    return labels


def noisy_model(rng: np.random.Generator, labels: np.ndarray, noise: float) -> np.ndarray:
    """Scores that know the labels up to independent Gaussian noise of the given size."""
    logits = 2.0 * (2.0 * labels - 1.0) + rng.normal(0.0, noise, size=labels.shape)
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


@pytest.fixture
def video_sets(tmp_path):
    """A good and a noisy model on validation and test videos, saved as predict --save-scores files."""
    rng = np.random.default_rng(0)
    files = {}
    for split, count in (("val", 400), ("test", 300)):
        labels = make_labels(rng, count)
        ids = [f"{split}{i:04d}" for i in range(count)]
        for name, noise in (("good", 2.5), ("noisy", 5.0)):
            order = rng.permutation(count) if name == "noisy" else np.arange(count)  # other row order
            scores = noisy_model(rng, labels, noise)
            files[split, name] = save_scores(
                tmp_path / f"{split}_{name}.npz", [ids[i] for i in order], scores[order], labels[order]
            )
    return files


def test_search_beats_each_member_and_prefers_the_good_model(video_sets):
    sets = [ens.load_prediction_set(video_sets["val", name]) for name in ("good", "noisy")]
    result = ens.search_weights(sets, iterations=20)
    aligned = ens.align(sets)
    singles = [metrics.gap(s.predictions, aligned[0].labels) for s in aligned]
    assert result.single == pytest.approx(singles)
    assert result.metric == "gap"
    assert result.value > max(singles)  # independent errors: a mixture is better than either
    assert result.weights[0] > result.weights[1]
    assert result.weights.sum() == pytest.approx(1.0)
    combined = ens.combine([s.predictions for s in aligned], result.weights)
    assert metrics.gap(combined, aligned[0].labels) == pytest.approx(result.value)


def test_align_reorders_by_id_and_refuses_other_ids(video_sets, tmp_path):
    good = ens.load_prediction_set(video_sets["val", "good"])
    noisy = ens.load_prediction_set(video_sets["val", "noisy"])
    aligned = ens.align([good, noisy])
    np.testing.assert_array_equal(aligned[1].labels, good.labels)  # same videos, same labels, same rows
    other = save_scores(tmp_path / "o.npz", ["x"] + noisy.ids[1:], noisy.predictions, noisy.labels > 0)
    with pytest.raises(Yt8mError, match="does not hold the same ids"):
        ens.align([good, ens.load_prediction_set(other)])
    with pytest.raises(Yt8mError, match="`weights` has 3 values"):
        ens.combine([good.predictions, good.predictions], [1, 1, 1])


def test_cli_search_on_validation_saves_weights_and_reuses_them(video_sets, tmp_path, capsys):
    test = [video_sets["test", "good"], video_sets["test", "noisy"]]
    validation = f"{video_sets['val', 'good']},{video_sets['val', 'noisy']}"
    weights, first, second = tmp_path / "w.json", tmp_path / "a.csv", tmp_path / "b.csv"
    code, out, err = run(
        capsys, "ensemble", *test, "--search", "--validation", validation, "--search-iterations", "12",
        "--save-weights", weights, "-o", first,
    )
    assert code == 0, err
    saved = json.loads(weights.read_text())
    assert saved["metric"] == "gap" and len(saved["weights"]) == 2
    assert saved["value"] >= max(saved["single"])
    code, _, err = run(capsys, "ensemble", *test, "--weights-file", weights, "-o", second)
    assert code == 0, err
    assert first.read_text() == second.read_text()
    # The CSV is the weighted mean of the aligned test scores, top 20 per video.
    sets = ens.align([ens.load_prediction_set(p) for p in test])
    combined = ens.combine([s.predictions for s in sets], saved["weights"])
    classes, scores = top_k_pairs(combined, 20)
    expected = PREDICTIONS_HEADER + "\n" + "".join(
        format_prediction_line(v, c, s) for v, c, s in zip(sets[0].ids, classes, scores)
    )
    assert first.read_text() == expected


def test_cli_given_weights_and_csv_inputs(video_sets, tmp_path, capsys):
    good = ens.load_prediction_set(video_sets["test", "good"])
    csv = tmp_path / "good.csv"
    classes, scores = top_k_pairs(good.predictions, 5)
    csv.write_text(PREDICTIONS_HEADER + "\n" + "".join(format_prediction_line(v, c, s) for v, c, s in zip(good.ids, classes, scores)))
    out = tmp_path / "out.csv"
    code, _, err = run(capsys, "ensemble", csv, video_sets["test", "noisy"], "--weights", "1,0", "--num-classes", CLASSES, "-o", out, "--top-k", "5")
    assert code == 0, err
    got = read_predictions_csv(out)
    want = read_predictions_csv(csv)
    assert got.keys() == want.keys()
    for video_id in want:
        assert [c for c, _ in got[video_id]] == [c for c, _ in want[video_id]]
        np.testing.assert_allclose([s for _, s in got[video_id]], [s for _, s in want[video_id]], rtol=1e-5)
    code, _, err = run(capsys, "ensemble", csv, video_sets["test", "noisy"], "--weights", "1,x", "-o", out)
    assert code == 1 and "--weights" in err
    code, _, err = run(capsys, "ensemble", csv, video_sets["test", "noisy"], "--search", "--num-classes", CLASSES, "-o", out)
    assert code == 1 and "has no labels" in err


def test_segment_sets_search_segment_map_and_write_segment_csv(tmp_path, capsys):
    rng = np.random.default_rng(1)
    count = 300
    labels = make_labels(rng, count)
    rated = rng.random((count, CLASSES)) < 0.3
    rated |= labels
    ids = [f"v{i // 6}:{(i % 6) * 5}" for i in range(count)]
    paths = []
    for name, noise in (("good", 2.5), ("noisy", 5.0)):
        batch = SegmentBatch(ids, noisy_model(rng, labels, noise), labels.astype(np.float32), rated.astype(np.float32))
        paths.append(save_segment_scores(tmp_path / f"{name}.npz", [batch], CLASSES))
    sets = [ens.load_prediction_set(p) for p in paths]
    result = ens.search_weights(sets, iterations=15)
    assert result.metric == "segment_map"
    singles = [metrics.segment_map(s.predictions, labels, rated) for s in sets]
    assert result.single == pytest.approx(singles)
    assert result.value >= max(singles)
    out = tmp_path / "sub.csv"
    code, _, err = run(capsys, "ensemble", *paths, "--weights", "0.6,0.4", "-o", out, "--segment-max-pred", "7")
    assert code == 0, err
    assert out.read_text().splitlines()[0] == SEGMENT_CSV_HEADER
    ranking = read_segment_csv(out)
    assert sorted(ranking) == list(range(CLASSES)) and all(len(v) == 7 for v in ranking.values())
    combined = 0.6 * sets[0].predictions + 0.4 * sets[1].predictions
    best = [ids[i] for i in np.lexsort((np.arange(count), -combined[:, 3]))[:7]]
    assert ranking[3] == best
    code, _, err = run(capsys, "ensemble", out, paths[0], "-o", tmp_path / "x.csv")
    assert code == 1 and "holds ranks, not scores" in err
