"""The 2019 9th place's test-time augmentation and rank ensembles (hughshaoqz/3rd-Youtube8M-TM).

Their shift: `np.roll(video_batch, shift, axis=1)` on the padded [B, max_frames, D] matrix, then
5-frame segments at the unshifted starts (`src/inference.py`); their fusion: each listed segment
at place r adds `weight * w0 / (r + w0)`, classes list segments by total (`src/Ensemble.ipynb`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from yt8m.app.cli import main
from yt8m.classifier.config import ModelConfig
from yt8m.classifier.ensemble import PredictionSet, search_weights
from yt8m.classifier.readers import features_to_model_inputs
from yt8m.classifier.segment_ensemble import search_rank_weights
from yt8m.classifier.segments import (
    SegmentBatch,
    SegmentRanking,
    SegmentSource,
    predict_segment_batches,
    read_segment_csv,
    segment_id,
)
from yt8m.classifier.synthetic import make_synthetic_records
from yt8m.classifier.training import load_trained_model, train
from yt8m.classifier.tta import (
    TTA_CLAMP,
    TTA_W0,
    RankFusion,
    ShiftRankFusion,
    rank_from_scores,
    segment_map_of_ranking,
    write_ranking_csv,
)
from yt8m.core import SEGMENT_FRAMES, FeatureSpec, VideoFeatures
from yt8m.data.shards import ShardWriter

SIZES = (32, 8)
MAX_FRAMES = 20
SPEC = FeatureSpec(sizes=SIZES, max_frames=MAX_FRAMES)


def video_with_segments(video_id: str, frames: int, starts: list[int], seed: int) -> VideoFeatures:
    rng = np.random.default_rng(seed)
    return VideoFeatures(
        video_id=video_id,
        rgb=rng.integers(0, 256, size=(frames, SIZES[0]), dtype=np.uint8),
        audio=rng.integers(0, 256, size=(frames, SIZES[1]), dtype=np.uint8),
        labels=[1],
        segment_start_times=starts,
        segment_end_times=[s + SEGMENT_FRAMES for s in starts],
        segment_labels=[1] * len(starts),
        segment_scores=[1.0] * len(starts),
    )


def write_videos(path: Path, videos) -> str:
    writer = ShardWriter(path)
    for video in videos:
        writer.write(video)
    writer.close()
    return str(path)


def padded_matrix(video: VideoFeatures) -> np.ndarray:
    """Dequantized frames zero-padded to max_frames, as the starter's reader returns them."""
    frames, _ = features_to_model_inputs([video], SPEC, normalize=False)
    return frames[0]


def normalised(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-6)


def test_shifts_roll_the_padded_video_as_np_roll(tmp_path):
    video = video_with_segments("v", 13, [0, 5, 10], seed=1)  # 13 frames padded to 20: the roll wraps padding in
    path = write_videos(tmp_path / "s.tfrecord", [video])
    shifts = (-1, 0, 1, 3)
    batch = next(SegmentSource(path, SPEC, 3, shifts=shifts).iterate(8))
    padded = padded_matrix(video)
    for row, start in enumerate([0, 5, 10]):
        for k, shift in enumerate(shifts):
            expected = np.roll(padded, shift, axis=0)[start : start + SEGMENT_FRAMES]  # their inference.py
            np.testing.assert_allclose(batch["frames"][row, k], normalised(expected), rtol=1e-5, atol=1e-6)
            assert batch["num_frames"][row, k] == min(SEGMENT_FRAMES, 13 - start)  # get_segments' count
    # shift -1 reads the next frame (their sign), +1 at start 0 wraps the zero padding in
    assert np.all(batch["frames"][0, 2, 0] == 0) and np.any(batch["frames"][0, 0, 0] != 0)


def test_clamp_mode_moves_the_window_inside_the_video(tmp_path):
    video = video_with_segments("v", 13, [0, 5, 8], seed=2)
    path = write_videos(tmp_path / "s.tfrecord", [video])
    shifts = (-2, 1)
    batch = next(SegmentSource(path, SPEC, 3, shifts=shifts, tta_mode=TTA_CLAMP).iterate(8))
    frames = padded_matrix(video)
    for row, start in enumerate([0, 5, 8]):
        for k, shift in enumerate(shifts):
            moved = min(max(start - shift, 0), 13 - SEGMENT_FRAMES)
            np.testing.assert_allclose(batch["frames"][row, k], normalised(frames[moved : moved + SEGMENT_FRAMES]), rtol=1e-5, atol=1e-6)


def their_fusion(lists: list[list[str]], weights: list[float], w0: float, npt: int) -> list[str]:
    """One class of Ensemble.ipynb's submission_generate, written out as they loop."""
    place = {i: w0 / (i + w0) for i in range(npt)}
    totals: dict[str, float] = {}
    for listed, weight in zip(lists, weights):
        for ind, target in enumerate(listed):
            totals[target] = totals.get(target, 0) + place[ind] * weight
    return sorted(totals, key=totals.get, reverse=True)[:npt]


def test_rank_fusion_is_their_place_weighting():
    a, b = {3: ["x", "y", "z"]}, {3: ["y", "x"]}
    assert RankFusion([a, b]).fuse(None, 1.0)[3] == ["x", "y", "z"]  # 1.5 each: first seen first
    assert RankFusion([a, b]).fuse([1, 2], 1.0)[3] == ["y", "x", "z"]  # x 2.0, y 2.5
    rng = np.random.default_rng(0)
    ids = [f"v{i}:{5 * j}" for i in range(30) for j in range(4)]
    rankings = [{c: [str(s) for s in rng.permutation(ids)[: rng.integers(20, 100)]] for c in range(5)} for _ in range(3)]
    weights, w0 = [30.3, 24.9, 99.9], 6.06  # their final blend's first weights and w0
    fused = RankFusion(rankings, max_pred=100).fuse(weights, w0)
    for c in range(5):
        assert fused[c] == their_fusion([r[c] for r in rankings], weights, w0, 100)
    assert RankFusion(rankings, max_pred=30).fuse(weights, w0) == {c: fused[c][:30] for c in range(5)}


def test_shift_rank_fusion_fuses_each_shifts_ranking():
    rng = np.random.default_rng(3)
    ids = [segment_id(f"v{i}", 5 * j) for i in range(10) for j in range(3)]
    per_shift = rng.random((len(ids), 3, 4)).astype(np.float32)
    labels = (rng.random((len(ids), 4)) < 0.3).astype(np.float32)
    weights = np.ones_like(labels)
    fusion = ShiftRankFusion([SegmentRanking(range(4), 10) for _ in range(3)], range(4), max_pred=10)
    for first in (0, 17):  # two batches
        rows = slice(first, first + 17)
        fusion.add(SegmentBatch(ids[rows], per_shift[rows].mean(1), labels[rows], weights[rows], per_shift[rows]))
    expected = RankFusion([rank_from_scores(ids, per_shift[:, k], range(4), 10) for k in range(3)], 10).fuse(None, TTA_W0)
    assert fusion.ranking() == expected
    rated = {(sid, c): bool(labels[r, c]) for r, sid in enumerate(ids) for c in range(4)}
    assert fusion.segment_map(10) == pytest.approx(segment_map_of_ranking(expected, rated, top_k=10))


def complementary_scores(rng, labels: np.ndarray) -> list[np.ndarray]:
    """Two models whose noises partly cancel (best mixed about half-half) and one that is mostly noise:
    equal weights are poor, single models are poor, the right mix is much better."""
    noise_a, noise_b = rng.normal(size=labels.shape), rng.normal(size=labels.shape)
    a = labels + 1.2 * noise_a
    b = labels + 1.2 * (-0.6 * noise_a + 0.8 * noise_b)
    c = 2.0 * rng.normal(size=labels.shape) + 0.3 * labels
    return [m.astype(np.float32) for m in (a, b, c)]


def test_weight_search_beats_equal_weights_and_its_starting_points():
    """Fails if the Gaussian-process rounds are removed: the start design alone does worse."""
    rng = np.random.default_rng(1)
    labels = (rng.random((400, 12)) < 0.15).astype(np.float32)
    ids = [str(i) for i in range(400)]
    sets = [PredictionSet(n, ids, p, labels) for n, p in zip("abc", complementary_scores(rng, labels))]
    result = search_weights(sets, iterations=30, seed=0)
    start = 1 + 3 + 4  # equal weights, each model, INITIAL_RANDOM_POINTS
    values = [value for _, value in result.history]
    assert len(values) == 30
    assert result.value > values[0] + 0.1  # equal weights
    assert result.value > max(values[:start]) + 0.01  # found by the search rounds, not the start design
    assert result.weights[2] < 0.1  # the noise model is left out


def rank_case(tmp_path: Path):
    rng = np.random.default_rng(4)
    ids = [segment_id(f"v{i}", 5 * j) for i in range(100) for j in range(4)]
    labels = (rng.random((len(ids), 6)) < 0.2).astype(np.float32)
    rated = {(sid, c): bool(labels[r, c]) for r, sid in enumerate(ids) for c in range(6) if rng.random() < 0.5}
    paths = []
    for name, scores in zip("abc", complementary_scores(rng, labels)):
        paths.append(write_ranking_csv(tmp_path / f"{name}.csv", rank_from_scores(ids, scores, range(6), 400)))
    return ids, labels, rated, paths


def test_rank_weight_search_beats_equal_weights_and_its_starting_points(tmp_path):
    _, _, rated, paths = rank_case(tmp_path)
    rankings = [read_segment_csv(p) for p in paths]
    result = search_rank_weights(rankings, rated, iterations=30, seed=0)
    values = [value for _, value in result.history]
    start = 1 + 3 + 4
    assert result.value > result.equal_value + 0.05
    assert result.value > max(values[:start]) + 0.005
    assert result.weights[2] < 0.15 and 0 < result.w0 <= 10
    fused = RankFusion(rankings).fuse(result.weights, result.w0)
    assert segment_map_of_ranking(fused, rated) == pytest.approx(result.value)


def test_ensemble_cli_fuses_class_segments_csvs(tmp_path, capsys):
    ids, labels, rated, paths = rank_case(tmp_path)
    videos = {}
    for (sid, c), present in rated.items():  # labelled records holding exactly the rated pairs
        video, start = sid.rsplit(":", 1)
        videos.setdefault(video, []).append((int(start), c, present))
    records = []
    for video, pairs in videos.items():
        v = video_with_segments(video, 20, [p[0] for p in pairs], seed=len(records))
        v.segment_labels, v.segment_scores = [p[1] for p in pairs], [1.0 if p[2] else 0.0 for p in pairs]
        records.append(v)
    rated_data = write_videos(tmp_path / "val.tfrecord", records)
    out, saved = tmp_path / "fused.csv", tmp_path / "w.json"
    argv = ["ensemble", *map(str, paths), "--search", "--rated-data", rated_data, "--search-iterations", "12",
            "-o", str(out), "--save-weights", str(saved)]
    assert main(argv) == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert "segment_map" in said and "equal weights" in said
    chosen = json.loads(saved.read_text())
    assert len(chosen["weights"]) == 3 and chosen["w0"] > 0 and chosen["value"] >= chosen["equal_weights_value"]
    expected = RankFusion([read_segment_csv(p) for p in paths]).fuse(chosen["weights"], chosen["w0"])
    assert read_segment_csv(out) == expected
    assert main(["ensemble", *map(str, paths), "--weights-file", str(saved), "-o", str(tmp_path / "again.csv")]) == 0
    assert read_segment_csv(tmp_path / "again.csv") == expected


def test_predict_and_eval_fuse_the_shifts_by_rank(tmp_path, capsys):
    """`yt8m predict/eval --segment-labels --tta-shifts -1,0,1`: one ranking per rolled shift, fused
    by rank (the default) or averaged (`--tta-combine mean`)."""
    classes = 4
    make_synthetic_records(tmp_path / "d.tfrecord", 24, classes, frames=(12, 20), segments=True, feature_sizes=SIZES, seed=1)
    config = ModelConfig.create(
        "FrameLevelLogisticModel", feature_spec=SPEC, num_classes=classes, training={"batch_size": 8, "max_steps": 2}
    )
    train(str(tmp_path / "d.tfrecord"), tmp_path / "run", config)
    data, run_dir = str(tmp_path / "d.tfrecord"), str(tmp_path / "run")
    model, loaded_config, _ = load_trained_model(run_dir)
    batches = list(predict_segment_batches(data, model, loaded_config, shifts=(-1, 0, 1)))
    ids = [sid for b in batches for sid in b.segment_ids]
    per_shift = np.concatenate([b.shift_predictions for b in batches])
    expected = RankFusion([rank_from_scores(ids, per_shift[:, k], range(classes), 50) for k in range(3)], 50).fuse(None, TTA_W0)
    base = ["--segment-labels", "--train-dir", run_dir, "--tta-shifts", "-1,0,1"]
    out = tmp_path / "rank.csv"
    assert main(["predict", "--input-data", data, "-o", str(out), "--segment-max-pred", "50", *base]) == 0
    assert read_segment_csv(out) == expected
    mean_out = tmp_path / "mean.csv"
    assert main(["predict", "--input-data", data, "-o", str(mean_out), "--segment-max-pred", "50", "--tta-combine", "mean", *base]) == 0
    assert read_segment_csv(mean_out) == rank_from_scores(ids, per_shift.mean(axis=1), range(classes), 50)
    capsys.readouterr()
    assert main(["eval", "--eval-data", data, "--json", "--segment-top-k", "50", *base]) == 0
    result = json.loads(capsys.readouterr().out)
    labels = np.concatenate([b.labels for b in batches])
    weights = np.concatenate([b.weights for b in batches])
    rated = {(sid, c): bool(labels[r, c]) for r, sid in enumerate(ids) for c in range(classes) if weights[r, c] > 0}
    assert result["tta_combine"] == "rank" and result["tta_mode"] == "roll"
    assert result["segment_map"] == pytest.approx(segment_map_of_ranking(expected, rated, top_k=50))
